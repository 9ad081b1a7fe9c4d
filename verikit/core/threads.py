"""How many threads torch may use: from the problem's size and the CPUs really free, chosen once per run.

Two torch threads fighting another job for two cores made verikit 16x slower beside one busy process
(benchmarks/README.md); small networks gain nothing from a second thread anyway.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

SMALL_NETWORK = 200_000  # parameters; below this one thread is fastest (matrices too small to split)
PER_THREAD = 1_000_000  # parameters each further thread should have to work on


@dataclass(frozen=True)
class CpuState:
    """What the process may use (`usable`: its affinity set) and how many other tasks want a CPU now."""

    usable: int
    busy: float

    @property
    def free(self) -> int:
        """CPUs not taken by other runnable tasks (at least 1: this process runs somewhere)."""
        return max(1, min(self.usable, int(self.usable - self.busy + 0.5)))


def cpu_state() -> CpuState:
    """The CPUs this process may run on, and the other runnable tasks: the smaller of the 1-minute load
    average and the runnable count right now (a burst and a lagging average both overstate the load)."""
    try:
        usable = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        usable = os.cpu_count() or 1
    try:
        load = os.getloadavg()[0]
    except OSError:
        load = 0.0
    try:
        with open("/proc/loadavg") as file:
            running = int(file.read().split()[3].split("/")[0]) - 1  # minus this process
        busy = min(load, max(0, running))
    except (OSError, IndexError, ValueError):
        busy = load
    return CpuState(usable=max(1, usable), busy=max(0.0, busy))


def choose_threads(parameters: int, cpus: CpuState | None = None) -> int:
    """torch intra-op threads for a network of `parameters` weights: 1 for small networks, else one per
    PER_THREAD parameters, never more than the CPUs free now (nor than the process may use)."""
    if parameters < SMALL_NETWORK:
        return 1
    cpus = cpus or cpu_state()
    return max(1, min(cpus.free, 1 + parameters // PER_THREAD))


def apply_threads(parameters: int, cpus: CpuState | None = None) -> int:
    """Set torch's intra-op thread count for this run (an explicit OMP_NUM_THREADS wins); returns it."""
    import torch

    explicit = os.environ.get("OMP_NUM_THREADS", "")
    threads = int(explicit) if explicit.isdigit() and int(explicit) > 0 else choose_threads(parameters, cpus)
    torch.set_num_threads(threads)
    return threads
