"""The torch thread count: one thread for small networks, never more than the CPUs free or usable."""

import os

import pytest

from verikit.core.threads import PER_THREAD, SMALL_NETWORK, CpuState, choose_threads, cpu_state


@pytest.mark.parametrize("usable,busy,free", [(2, 0.0, 2), (2, 1.0, 1), (2, 5.0, 1), (8, 2.2, 6), (1, 0.0, 1)])
def test_free_cpus(usable, busy, free):
    assert CpuState(usable, busy).free == free


def test_small_networks_get_one_thread_whatever_is_free():
    assert choose_threads(13_000, CpuState(16, 0.0)) == 1  # ACAS Xu
    assert choose_threads(SMALL_NETWORK - 1, CpuState(16, 0.0)) == 1


def test_large_networks_get_the_free_cpus_and_no_more():
    huge = 100 * PER_THREAD
    assert choose_threads(huge, CpuState(2, 0.0)) == 2
    assert choose_threads(huge, CpuState(2, 1.0)) == 1  # one CPU-burning process beside
    assert choose_threads(huge, CpuState(16, 3.0)) == 13
    assert choose_threads(2 * PER_THREAD, CpuState(16, 0.0)) == 3


def test_the_real_machine_state_is_within_the_affinity_set():
    import os

    state = cpu_state()
    assert 1 <= state.free <= state.usable <= (os.cpu_count() or 1)


def test_importing_verikit_makes_openmp_threads_sleep_while_they_wait_unless_told_otherwise():
    """Spinning OpenMP waits made the root α-CROWN 27x slower beside one busy process (bench_omp_wait.py)."""
    import subprocess
    import sys

    code = "import os, verikit; print(os.environ.get('OMP_WAIT_POLICY'))"
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    plain = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    told = subprocess.run([sys.executable, "-c", code], env={**env, "OMP_WAIT_POLICY": "ACTIVE"},
                          capture_output=True, text=True, check=True)
    assert plain.stdout.strip() == "PASSIVE"
    assert told.stdout.strip() == "ACTIVE"
