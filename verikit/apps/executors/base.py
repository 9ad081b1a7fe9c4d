"""What executors share: tasks, failures, shipped files (the executors: verikit.apps.executors).

Files reach tasks as `FileRef`s. Locally a FileRef is just the path. On Ray it carries the file's
bytes (put into the object store once per sha256), and the worker writes them to a cache folder named
by that hash, so a task never depends on a path that may not exist on the machine it runs on.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

from verikit.core.errors import UsageError

EXECUTORS = ("local", "ray")
DEFAULT_RETRIES = 2  # a worker killed mid-task is retried this many times before the task is `error`
GRACE_S = 30.0  # past a task's own timeout before it is killed (loading the model is outside its budget)
_CACHE = Path(tempfile.gettempdir()) / "verikit-files"


@dataclass(frozen=True)
class Task:
    """`function(*args)` with a hard limit of `timeout` seconds (None: no limit) on `threads` torch threads
    (None: torch's own choice when run in this process, one thread in a worker)."""

    key: str
    function: Callable[..., Any]
    args: tuple
    timeout: float | None = None
    threads: int | None = None

    @property
    def cpus(self) -> int:
        return self.threads or 1


@dataclass(frozen=True)
class Failed:
    """No value: why (one line), whether the limit killed it, and how many times it was started."""

    reason: str
    timed_out: bool = False
    attempts: int = 1


@dataclass(frozen=True)
class FileRef:
    """A task's input file: a local path, or (shipped) its name, sha256 and bytes (or a Ray object ref)."""

    name: str
    path: str = ""
    sha256: str = ""
    data: Any = None

    def local_path(self) -> Path:
        """A path to the file's bytes on this machine (written once to a cache named by the sha256)."""
        if self.data is None:
            return Path(self.path)
        target = _CACHE / self.sha256 / self.name
        if not target.is_file():
            data = self.data if isinstance(self.data, bytes) else _ray().get(self.data)
            if hashlib.sha256(data).hexdigest() != self.sha256:
                raise OSError(f"shipped bytes of {self.name} do not match their sha256")
            target.parent.mkdir(parents=True, exist_ok=True)
            scratch = target.with_name(f".{self.name}.{os.getpid()}")
            scratch.write_bytes(data)
            scratch.replace(target)  # atomic: workers sharing the cache never read half a file
        return target


def _call(function: Callable[..., Any], args: tuple, threads: int | None) -> Any:
    if threads is not None:
        import torch

        if torch.get_num_threads() != threads:
            torch.set_num_threads(threads)
    return function(*args)


class Executor:
    """Runs tasks; `ship(path)` turns an input file into what a task on this executor can open."""

    retries: int = DEFAULT_RETRIES

    def ship(self, path: str | Path) -> FileRef:
        return FileRef(Path(path).name, path=str(path))

    def run(self, tasks: Iterable[Task]) -> Iterator[tuple[Task, Any]]:
        raise NotImplementedError

    def close(self) -> None:
        """Free workers; the executor cannot run tasks afterwards."""

    def __enter__(self) -> Executor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _ray():
    try:
        import ray
    except ImportError:
        raise UsageError("--executor ray needs Ray: pip install 'verikit[ray]'") from None
    return ray


def deadline(task: Task, started: float, attempts: int = 1) -> float:
    """When a task started at `started` (monotonic s) is killed; inf without a limit."""
    if task.timeout is None:
        return float("inf")
    return started + (task.timeout + GRACE_S) * attempts


def now() -> float:
    """Monotonic seconds (the clock every deadline uses)."""
    return time.monotonic()

