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
