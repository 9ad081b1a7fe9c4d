"""Where independent tasks run: a local process pool, or a Ray cluster (an optional extra).

A task is one instance, one shard of samples or one gate check: a module-level function and its
arguments, a hard wall-clock limit and a torch thread count. Executors yield each task's value as it
finishes (in completion order), or a `Failed` saying why there is none: the task raised, its worker
died more often than `retries` allows, or it ran past its limit and was killed. They never hang on
a lost worker, and never turn a failure into a verdict: the caller records it as `error`/`timeout`.
"""

from __future__ import annotations

from verikit.apps.executors.base import DEFAULT_RETRIES, EXECUTORS, Executor, Failed, FileRef, Task
from verikit.core.errors import UsageError


def make_executor(kind: str = "local", *, jobs: int = 1, address: str | None = None,
                  retries: int = DEFAULT_RETRIES) -> Executor:
    """`local` (a process pool of `jobs` workers; in process when jobs is 1) or `ray` (`jobs` CPUs when it
    starts a local Ray; `address` joins an existing cluster instead)."""
    if kind == "local":
        from verikit.apps.executors.local import LocalExecutor

        return LocalExecutor(jobs, retries=retries)
    if kind == "ray":
        from verikit.apps.executors.on_ray import RayExecutor

        return RayExecutor(jobs, address=address, retries=retries)
    raise UsageError(f"unknown executor {kind!r}; choose one of {', '.join(EXECUTORS)}")


__all__ = ["DEFAULT_RETRIES", "EXECUTORS", "Executor", "Failed", "FileRef", "Task", "make_executor"]
