"""Shared paths and fixtures. ../shared/benchmarks is optional: tests that need it skip without it."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MODELS = ROOT / "models"
SPECS = ROOT / "specs"
SHARED_BENCHMARKS = ROOT.parent / "shared" / "benchmarks"


@pytest.fixture
def shared_benchmarks() -> Path:
    if not (SHARED_BENCHMARKS / "test").is_dir():
        pytest.skip(f"../shared/benchmarks not found at {SHARED_BENCHMARKS}")
    return SHARED_BENCHMARKS


@pytest.fixture(scope="module")
def one_torch_thread():
    """Tiny matrices: torch's thread pool only adds overhead (and stalls on a busy machine). Modules opt in
    with `pytestmark = pytest.mark.usefixtures("one_torch_thread")`; the thread count is restored after."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def shared_file(*parts: str) -> Path:
    """A file under ../shared/benchmarks; the calling test skips when it is absent (it is optional)."""
    path = SHARED_BENCHMARKS.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"{path} not found (../shared/benchmarks is optional)")
    return path


@pytest.fixture(scope="session")
def ray_executor():
    """One local Ray with 2 CPUs for the whole session (starting Ray takes seconds); skips without Ray."""
    pytest.importorskip("ray", reason="Ray is an optional extra: pip install 'verikit[ray]'")
    from verikit.apps.executors import make_executor

    executor = make_executor("ray", jobs=2, retries=1)
    yield executor
    executor.close()
