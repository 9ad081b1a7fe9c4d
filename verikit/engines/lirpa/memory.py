"""How much memory auto_LiRPA's CROWN needs on a traced network, worked out before it runs.

verikit runs auto_LiRPA in its dense "matrix" mode (see support.bound_opts): the bounds of an
activation's input with n values are found by a backward pass that carries an (n, m) matrix per node of
m values on the way back, for the lower and the upper bound. On a CIFAR-sized CNN that is gigabytes;
past the cap the engine answers unknown with the estimate instead of running the machine out of memory.
"""

from __future__ import annotations

from math import prod

import torch

BYTES_PER_VALUE = 4  # float32
ALPHA_FACTOR = 3  # α-CROWN keeps the graph for the gradient: about three times CROWN's matrices


def _values(node) -> int:
    shape = getattr(node, "output_shape", None)
    return int(prod(shape[1:])) if shape is not None and len(shape) > 1 else 1


def crown_matrix_bytes(module: torch.nn.Module, method: str = "crown") -> int:
    """Estimated peak bytes of CROWN's (or α-CROWN's) backward matrices on a traced BoundedModule.

    The largest (activation input size) x (largest input-dependent node before that input) pair, times
    lower and upper, times 4 bytes; nodes are read in auto_LiRPA's (topological) order after a forward
    pass set their shapes. The identity a pass starts from is left out: auto_LiRPA starts from the
    unstable neurons only.
    """
    if method == "ibp":
        return 0
    largest_before: dict[int, int] = {}  # id(node) -> largest input-dependent node strictly before it
    running, peak = 0, 0
    for node in module._modules.values():  # noqa: SLF001 - auto_LiRPA keeps its nodes there, in order
        if not getattr(node, "from_input", False):
            continue
        largest_before[id(node)] = running
        for index in getattr(node, "requires_input_bounds", None) or []:
            source = node.inputs[index] if index < len(node.inputs) else None
            if source is not None and getattr(source, "from_input", False):
                peak = max(peak, _values(source) * max(largest_before.get(id(source), 0), 1))
        running = max(running, _values(node))
    total = 2 * BYTES_PER_VALUE * peak
    return total * ALPHA_FACTOR if method == "alpha-crown" else total


def over_cap(module: torch.nn.Module, method: str, cap_bytes: int | None) -> str | None:
    """Why `method` is not run (its matrices would pass `cap_bytes`), or None when it fits or no cap."""
    if not cap_bytes:
        return None
    needed = crown_matrix_bytes(module, method)
    if needed <= cap_bytes:
        return None
    return (f"{method} bounds would need about {needed / 2**30:.1f} GiB of dense bound matrices, above the "
            f"memory cap of {cap_bytes / 2**30:.1f} GiB (bounds.max_matrix_bytes)")
