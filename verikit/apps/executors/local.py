"""The local executor: `jobs` spawned worker processes, each running one task at a time.

A pool of our own rather than concurrent.futures: ProcessPoolExecutor marks every pending task broken
when one worker dies, and cannot kill a task that runs past its limit. Here each worker holds exactly
one task, so a death is charged to that task alone (retried, then `Failed`) and an overrun kills only
that worker. With jobs = 1 tasks run in this process, one after the other (no hard limit, no retries).
"""

from __future__ import annotations

import multiprocessing
from collections import deque
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from typing import Any, Iterable, Iterator

from verikit.apps.executors.base import DEFAULT_RETRIES, Executor, Failed, Task, _call, deadline, now

_POLL_S = 1.0  # longest sleep between checks of deadlines


def _serve(connection: Connection) -> None:
    """A worker's loop: receive (function, args, threads), send back ("ok", value) or ("raised", reason)."""
    while True:
        try:
            message = connection.recv()
        except EOFError:
            return
        if message is None:
            return
        function, args, threads = message
        try:
            reply = ("ok", _call(function, args, threads))
        except Exception as error:  # reported as this task's failure; the caller records it, never a verdict
            reply = ("raised", f"{type(error).__name__}: {error}")
        connection.send(reply)


@dataclass
class _Worker:
    process: Any
    connection: Connection
    task: Task | None = None
    started: float = 0.0


class LocalExecutor(Executor):
    """`jobs` worker processes on this machine (spawned, so torch starts clean in each), kept between runs
    until `close()`."""

    def __init__(self, jobs: int = 1, *, retries: int = DEFAULT_RETRIES):
        self.jobs = max(1, int(jobs))
        self.retries = retries
        self._context = multiprocessing.get_context("spawn")
        self._workers: list[_Worker] = []

    def _start(self) -> _Worker:
        mine, theirs = self._context.Pipe()
        process = self._context.Process(target=_serve, args=(theirs,), daemon=True)
        process.start()
        theirs.close()
        return _Worker(process, mine)

    def _stop(self, worker: _Worker) -> None:
        if worker.process.is_alive():
            worker.process.kill()
        worker.process.join()
        worker.connection.close()

    def run(self, tasks: Iterable[Task]) -> Iterator[tuple[Task, Any]]:
        if self.jobs == 1:
            for task in tasks:
                try:
                    yield task, _call(task.function, task.args, task.threads)
                except Exception as error:  # the task's failure, recorded by the caller as `error`
                    yield task, Failed(f"{type(error).__name__}: {error}")
            return
        yield from self._run_pool(deque(tasks))

    def _run_pool(self, pending: deque) -> Iterator[tuple[Task, Any]]:
        attempts: dict[str, int] = {}
        self._workers = [w for w in self._workers if w.process.is_alive()]
        while len(self._workers) < min(self.jobs, len(pending)):
            self._workers.append(self._start())
        try:
            while pending or any(w.task is not None for w in self._workers):
                for worker in self._workers:
                    if worker.task is None and pending:
                        worker.task = pending.popleft()
                        attempts[worker.task.key] = attempts.get(worker.task.key, 0) + 1
                        worker.started = now()
                        worker.connection.send((worker.task.function, worker.task.args, worker.task.cpus))
                busy = [w for w in self._workers if w.task is not None]
                soonest = min(deadline(w.task, w.started) for w in busy)
                wait([w.connection for w in busy] + [w.process.sentinel for w in busy],
                     timeout=max(0.0, min(_POLL_S, soonest - now())))
                for index, worker in enumerate(self._workers):
                    task = worker.task
                    if task is None:
                        continue
                    tries = attempts[task.key]
                    outcome = self._collect(worker, tries)
                    if outcome is None:
                        continue
                    worker.task = None
                    if outcome == "died" or outcome == "killed":
                        self._stop(worker)
                        self._workers[index] = self._start()
                    if outcome == "died" and tries <= self.retries:
                        pending.appendleft(task)
                    elif outcome == "died":
                        yield task, Failed(f"worker died {tries} time(s) running it (last exit code "
                                           f"{worker.process.exitcode})", attempts=tries)
                    elif outcome == "killed":
                        yield task, Failed(f"killed after {now() - worker.started:.0f} s (limit "
                                           f"{task.timeout:g} s + grace)", timed_out=True, attempts=tries)
                    else:
                        yield task, outcome
        finally:  # stopped early (an interrupt, an error): abandon running tasks, keep idle workers for reuse
            for worker in [w for w in self._workers if w.task is not None]:
                self._stop(worker)
                self._workers.remove(worker)

    def _collect(self, worker: _Worker, tries: int):
        """The finished task's value or Failed, "died", "killed" (past its deadline), or None (still running)."""
        if worker.connection.poll():
            try:
                kind, value = worker.connection.recv()
            except (EOFError, OSError):
                return "died"
            return value if kind == "ok" else Failed(value, attempts=tries)
        if not worker.process.is_alive():
            return "died"
        if now() > deadline(worker.task, worker.started):
            return "killed"
        return None

    def close(self) -> None:
        for worker in self._workers:
            self._stop(worker)
        self._workers = []
