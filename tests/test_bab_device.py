"""Branch and bound on a torch device: the device name, batch sizes from free accelerator memory, and —
where a CUDA device is present — the same answers as on the CPU."""

from __future__ import annotations

import pytest
import torch
from click.testing import CliRunner
from test_bab import tiny_instance
from test_settings import TINY, UNSAT

from verikit.cli import main
from verikit.core.errors import UsageError
from verikit.core.result import Budget, Falsified, Proven
from verikit.engines.bab import engine as bab
from verikit.engines.bab.common import BabSettings
from verikit.engines.bab.device import (
    MAX_GPU_BATCH, batch_from_memory, relu_domain_bytes, sized_for, torch_device,
)

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine")


def test_batch_fills_the_given_share_of_free_memory_between_floor_and_ceiling():
    assert batch_from_memory(free_bytes=1_000_000, per_domain_bytes=1_000, fraction=0.5, floor=8) == 500
    assert batch_from_memory(free_bytes=1_000, per_domain_bytes=1_000, fraction=0.5, floor=8) == 8
    assert batch_from_memory(free_bytes=10**15, per_domain_bytes=1, fraction=0.5, floor=8) == MAX_GPU_BATCH


def test_gpu_batch_sizes_follow_free_memory_and_the_cpu_keeps_the_settings():
    settings = BabSettings()
    shape = ((256, 256, 256, 256), 784, 9)
    assert sized_for(settings, torch.device("cpu"), *shape) is settings
    # torch.device("cuda") is only a name here: free_bytes is given, so no CUDA call is made
    roomy = sized_for(settings, torch.device("cuda"), *shape, free_bytes=80 * 2**30)
    per_domain = relu_domain_bytes(*shape, itemsize=4)
    assert roomy.relu_batch_size == min(MAX_GPU_BATCH, int(0.5 * 80 * 2**30) // per_domain) > settings.relu_batch_size
    assert roomy.batch_size >= settings.batch_size
    cramped = sized_for(settings, torch.device("cuda"), *shape, free_bytes=2**20)
    assert (cramped.relu_batch_size, cramped.batch_size) == (settings.relu_batch_size, settings.batch_size)
    fixed = BabSettings(gpu_memory_fraction=0.0)
    assert sized_for(fixed, torch.device("cuda"), *shape, free_bytes=80 * 2**30) is fixed


def test_unknown_or_absent_devices_are_usage_errors():
    with pytest.raises(UsageError, match="tpu"):
        torch_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(UsageError, match="no CUDA"):
            torch_device("cuda")
        network, pwl, case, _ = tiny_instance(0)
        with pytest.raises(UsageError):
            bab.run(pwl, network, case, Budget.seconds(5), device="cuda")


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_verify_with_bab_on_cuda_without_a_gpu_exits_2():
    result = CliRunner().invoke(main, ["verify", str(TINY), str(UNSAT), "--device", "cuda", "--engine", "bab"])
    assert result.exit_code == 2, result.output
    assert "cuda" in result.output.lower()


@needs_cuda
@pytest.mark.parametrize("branching", ["input", "relu"])
def test_cuda_gives_the_cpu_answers(branching):
    for seed in range(6):
        network, pwl, case, sat = tiny_instance(seed, 1 + seed % 2, 1 + (seed // 2) % 2)
        outcome = bab.run(pwl, network, case, Budget.seconds(60), branching=branching, device="cuda")
        assert isinstance(outcome, Falsified if sat else Proven), (seed, outcome)
        if sat:
            assert case.box.contains(outcome.counterexample.x)


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_gpu_check_script_refuses_in_one_line_without_cuda():
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_check.sh"
    done = subprocess.run(["bash", str(script)], env={"PYTHON": sys.executable, "PATH": "/usr/bin:/bin"},
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert done.stdout == "" and done.stderr.count("\n") == 1 and "no CUDA device" in done.stderr
