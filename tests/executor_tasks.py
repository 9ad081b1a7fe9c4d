"""Module-level task functions for the executor tests (workers import them by name)."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path


def square(x: int) -> int:
    return x * x


def die_once(marker: str) -> str:
    """Kill this worker the first time (leaving `marker`), succeed when retried."""
    if not Path(marker).exists():
        Path(marker).write_text("killed once")
        os.kill(os.getpid(), signal.SIGKILL)
    return "survived"


def always_die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def raise_value_error() -> None:
    raise ValueError("bad input in a task")


def sleep(seconds: float) -> float:
    time.sleep(seconds)
    return seconds


def read_shipped(ref) -> tuple[str, str]:
    path = ref.local_path()
    return str(path), path.read_text()


def torch_threads() -> int:
    import torch

    return torch.get_num_threads()
