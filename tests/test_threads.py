"""The torch thread count: one thread for small networks, never more than the CPUs free or usable."""

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
