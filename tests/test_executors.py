"""Executors: values come back, a task that raises or outlives its limit fails alone, a killed worker is
retried a bounded number of times and then reported, never waited for; files travel by content."""

from __future__ import annotations

import hashlib

import pytest

import executor_tasks as work
from verikit.apps.executors import Failed, Task, base, make_executor
from verikit.core.errors import UsageError


def fault_tasks(tmp_path) -> list[Task]:
    return [Task("square", work.square, (7,)), Task("die-once", work.die_once, (str(tmp_path / "marker"),)),
            Task("always-die", work.always_die, ()), Task("raises", work.raise_value_error, ()),
            Task("sleeps", work.sleep, (600.0,), timeout=1.0), Task("threads", work.torch_threads, (), threads=1)]


def check_faults(results: dict, retries: int) -> None:
    assert results["square"] == 49
    assert results["die-once"] == "survived"  # killed once, retried, finished
    dead = results["always-die"]
    assert isinstance(dead, Failed) and not dead.timed_out and dead.attempts == retries + 1
    assert "died" in dead.reason
    raised = results["raises"]
    assert isinstance(raised, Failed) and raised.reason == "ValueError: bad input in a task" and raised.attempts == 1
    late = results["sleeps"]
    assert isinstance(late, Failed) and late.timed_out and "killed after" in late.reason
    assert results["threads"] == 1


@pytest.mark.slow  # restarts worker processes several times
def test_local_pool_survives_killed_workers_and_overruns(tmp_path, monkeypatch):
    monkeypatch.setattr(base, "GRACE_S", 1.0)
    with make_executor("local", jobs=2, retries=1) as executor:
        results = {task.key: value for task, value in executor.run(fault_tasks(tmp_path))}
    assert set(results) == {t.key for t in fault_tasks(tmp_path)}  # every task answered exactly once
    check_faults(results, retries=1)


def test_local_in_process_runs_in_order_and_reports_raises():
    with make_executor("local", jobs=1) as executor:
        results = list(executor.run([Task("a", work.square, (2,)), Task("b", work.raise_value_error, ()),
                                     Task("c", work.square, (3,))]))
    assert [task.key for task, _ in results] == ["a", "b", "c"]
    assert results[0][1] == 4 and isinstance(results[1][1], Failed) and results[2][1] == 9


def test_local_files_are_their_paths(tmp_path):
    source = tmp_path / "model.onnx"
    source.write_text("bytes")
    ref = make_executor("local").ship(source)
    assert ref.local_path() == source and ref.data is None


def test_unknown_executor_is_a_usage_error():
    with pytest.raises(UsageError):
        make_executor("slurm")


@pytest.mark.slow  # restarts worker processes several times
def test_ray_survives_killed_workers_and_overruns(ray_executor, tmp_path, monkeypatch):
    monkeypatch.setattr(base, "GRACE_S", 1.0)
    results = {task.key: value for task, value in ray_executor.run(fault_tasks(tmp_path))}
    assert set(results) == {t.key for t in fault_tasks(tmp_path)}
    check_faults(results, retries=1)


def test_ray_ships_files_by_content_not_by_path(ray_executor, tmp_path):
    source = tmp_path / "spec.vnnlib"
    source.write_text("(declare-const X_0 Real)")
    ref = ray_executor.ship(source)
    assert ref.sha256 == hashlib.sha256(source.read_bytes()).hexdigest() and ref.data is not None
    source.unlink()  # the worker must not need the original path
    [(_, (path, text))] = list(ray_executor.run([Task("read", work.read_shipped, (ref,))]))
    assert text == "(declare-const X_0 Real)"
    assert ref.sha256 in path and path.endswith("spec.vnnlib")  # the cache keeps the name, keyed by the hash
