"""The Ray executor: tasks as Ray tasks on a local Ray or an existing cluster (ray imported lazily).

Ray restarts a task whose worker died (`max_retries`); exceptions a task raises are not retried (they
are deterministic). At most as many tasks are in flight as the cluster has CPUs for, so a task's
limit is counted from its submission without charging it for time spent queued; past that limit it
is cancelled (its worker killed) and reported as timed out.
"""

from __future__ import annotations

import hashlib
import logging
import os
import sys
from collections import deque
from pathlib import Path
from typing import Any, Iterable, Iterator

from verikit.apps.executors.base import DEFAULT_RETRIES, Executor, Failed, FileRef, Task, _call, _ray, deadline, now

_POLL_S = 1.0
LOCAL_OBJECT_STORE_BYTES = 512 * 1024**2  # a local Ray's shared memory: models and specs, not datasets of images


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return text[0] if text else type(error).__name__


class RayExecutor(Executor):
    """Runs tasks on Ray: joins the cluster at `address`, or starts a local Ray with `jobs` CPUs."""

    def __init__(self, jobs: int = 1, *, address: str | None = None, retries: int = DEFAULT_RETRIES):
        ray = _ray()
        self.retries = retries
        self._owns = not ray.is_initialized()
        if self._owns:
            settings = dict(include_dashboard=False, logging_level=logging.WARNING, log_to_driver=False)
            if address:
                ray.init(address=address, **settings)
            else:
                # address="local": a new Ray on this machine, never a cluster found through RAY_ADDRESS or
                # `ray start`; its workers import what this process imports (as spawned processes do)
                path = os.pathsep.join(entry for entry in sys.path if entry)
                ray.init(address="local", num_cpus=max(1, int(jobs)), object_store_memory=LOCAL_OBJECT_STORE_BYTES,
                         runtime_env={"env_vars": {"PYTHONPATH": path}}, **settings)
        self.capacity = max(1, int(ray.cluster_resources().get("CPU", jobs)))
        self._remote = ray.remote(_call)
        self._shipped: dict[str, Any] = {}

    def ship(self, path: str | Path) -> FileRef:
        """The file's bytes, put into the object store once per content hash."""
        ray = _ray()
        data = Path(path).read_bytes()
        sha256 = hashlib.sha256(data).hexdigest()
        if sha256 not in self._shipped:
            self._shipped[sha256] = ray.put(data)
        return FileRef(Path(path).name, path=str(path), sha256=sha256, data=self._shipped[sha256])

    def run(self, tasks: Iterable[Task]) -> Iterator[tuple[Task, Any]]:
        ray = _ray()
        pending = deque(tasks)
        running: dict[Any, tuple[Task, float]] = {}
        try:
            while pending or running:
                in_use = sum(task.cpus for task, _ in running.values())
                while pending and (not running or in_use + pending[0].cpus <= self.capacity):
                    task = pending.popleft()
                    reference = self._remote.options(num_cpus=min(task.cpus, self.capacity),
                                                     max_retries=self.retries, retry_exceptions=False,
                                                     ).remote(task.function, task.args, task.cpus)
                    running[reference] = (task, now())
                    in_use += task.cpus
                soonest = min(self._deadline(task, started) for task, started in running.values())
                ready, _ = ray.wait(list(running), num_returns=1, timeout=max(0.0, min(_POLL_S, soonest - now())))
                for reference in ready:
                    task, _ = running.pop(reference)
                    yield task, self._value(reference)
                for reference, (task, started) in list(running.items()):
                    if now() > self._deadline(task, started):
                        ray.cancel(reference, force=True)
                        del running[reference]
                        yield task, Failed(f"killed after {now() - started:.0f} s (limit {task.timeout:g} s + "
                                           "grace)", timed_out=True)
        finally:
            for reference in running:
                ray.cancel(reference, force=True)

    def _deadline(self, task: Task, started: float) -> float:
        return deadline(task, started, attempts=self.retries + 1)  # the clock also covers Ray's retries

    def _value(self, reference) -> Any:
        from ray import exceptions

        try:
            return _ray().get(reference)
        except exceptions.RayTaskError as error:  # the task raised: recorded by the caller, not retried
            cause = error.cause if getattr(error, "cause", None) is not None else error
            return Failed(f"{type(cause).__name__}: {_first_line(cause)}")
        except exceptions.RayError as error:  # the worker died on every attempt, or its node was lost
            return Failed(f"worker died on each of {self.retries + 1} attempt(s): {type(error).__name__}: "
                          f"{_first_line(error)}", attempts=self.retries + 1)

    def close(self) -> None:
        if self._owns:
            _ray().shutdown()
            self._owns = False
