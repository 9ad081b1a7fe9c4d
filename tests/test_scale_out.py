"""bench, audit, gate and soundness run on an executor: the same answers locally and on Ray, resumable
without losing or repeating a row, and a killed worker ends in a retried or `error` row, never a hang."""

from __future__ import annotations

import csv
import shutil
import threading
import time

import numpy as np
import pytest

from tests.conftest import MODELS, ROOT, SPECS
from verikit.apps import bench
from verikit.apps.audit import AuditSettings
from verikit.apps.audit_shards import AuditShardError, audit_sharded
from verikit.apps.data import Normalization
from verikit.apps.executors import Executor, Failed, make_executor

pytestmark = pytest.mark.usefixtures("one_torch_thread")
INSTANCES = [("tiny_relu.onnx", "tiny_relu_max_below_1.5_sat.vnnlib", "sat"),
             ("tiny_relu.onnx", "tiny_relu_min_above_neg0.75_unsat.vnnlib", "unsat"),
             ("tiny_relu.onnx", "tiny_relu_min_above_neg0.25_unsat.vnnlib", "unsat"),
             ("digits_mlp.onnx", "digits_mlp_robust_eps0.3_idx1_sat.vnnlib", "sat")]
DIGITS = MODELS / "data" / "digits_test_100.npz"


def small_family(tmp_path):
    family = tmp_path / "family"
    family.mkdir()
    for model, spec, _ in INSTANCES:
        shutil.copy(MODELS / model, family / model)
        shutil.copy(SPECS / spec, family / spec)
    (family / "instances.csv").write_text("".join(f"{m},{s},30\n" for m, s, _ in INSTANCES))
    return bench.read_instances(family)


def answers(out) -> dict[str, list[str]]:
    """vnnlib name -> every result row written for it (a repeated row shows up as two entries)."""
    found: dict[str, list[str]] = {}
    for row in list(csv.reader((out / "results.csv").read_text().splitlines()))[1:]:
        found.setdefault(row[2].rsplit("/", 1)[-1], []).append(row[4])
    return found


class Interrupt(Exception):
    pass


@pytest.mark.slow  # worker processes import torch: seconds each
@pytest.mark.parametrize("kind", ["local", "ray"])
def test_interrupted_bench_resumes_without_losing_or_repeating_rows(kind, tmp_path, request):
    instances = small_family(tmp_path)
    out = tmp_path / "out"
    executor = request.getfixturevalue("ray_executor") if kind == "ray" else make_executor("local", jobs=2)
    seen = []

    def stop_after_two(row):
        seen.append(row)
        if len(seen) == 2:
            raise Interrupt  # as a ^C would, between two rows

    with pytest.raises(Interrupt):
        bench.run(instances, out, options=bench.Options(), executor=executor, on_row=stop_after_two)
    assert sum(len(v) for v in answers(out).values()) == 2
    rows = bench.run(instances, out, options=bench.Options(), executor=executor)
    expected = {spec: [truth] for _, spec, truth in INSTANCES}
    assert answers(out) == expected and len(rows) == len(INSTANCES)
    assert len(list((out / "witnesses").iterdir())) == 2  # the sat rows' witnesses came back from the workers
    if kind == "local":
        executor.close()


@pytest.mark.slow  # worker processes import torch: seconds each
def test_bench_worker_killed_mid_task_is_retried(tmp_path):
    instances = small_family(tmp_path)
    executor = make_executor("local", jobs=2, retries=2)
    killed = []

    def kill_a_busy_worker():
        deadline = time.monotonic() + 120
        while not killed and time.monotonic() < deadline:
            for worker in list(executor._workers):
                if worker.task is not None and worker.process.is_alive():
                    worker.process.kill()
                    killed.append(worker.task.key)
                    break
            time.sleep(0.01)

    killer = threading.Thread(target=kill_a_busy_worker, daemon=True)
    killer.start()
    rows = bench.run(instances, tmp_path / "out", options=bench.Options(), executor=executor)
    killer.join()
    assert killed, "no worker was caught running a task"
    assert {r.vnnlib.rsplit("/", 1)[-1]: r.result for r in rows} == {s: t for _, s, t in INSTANCES}


class FailingExecutor(Executor):
    """Every task's worker died on each retry (as Ray reports after max_retries)."""

    def run(self, tasks):
        for task in tasks:
            yield task, Failed("worker died on each of 3 attempt(s): WorkerCrashedError", attempts=3)


def test_bench_records_a_task_that_keeps_dying_as_error_with_the_reason(tmp_path):
    instances = small_family(tmp_path)[:2]
    rows = bench.run(instances, tmp_path / "out", options=bench.Options(), executor=FailingExecutor())
    assert [r.result for r in rows] == ["error", "error"]
    assert all("worker died on each of 3 attempt(s)" in r.message for r in rows)
    assert "WorkerCrashedError" in (tmp_path / "out" / bench.DETAILS).read_text()


def test_a_row_cut_short_by_a_crash_is_rerun_not_glued_to(tmp_path):
    instances = small_family(tmp_path)[:2]
    out = tmp_path / "out"
    out.mkdir()
    first = instances[0]
    cut = f"family,{first.onnx},{first.vnnlib},0.1,un"  # no run_s, no newline: the writer was killed here
    (out / "results.csv").write_text("category,onnx,vnnlib,prepare_s,result,run_s\n" + cut)
    rows = bench.run(instances, out, options=bench.Options(), executor=FailingExecutor())
    assert len(rows) == 2  # the cut row did not count as done
    lines = (out / "results.csv").read_text().splitlines()
    assert lines[-2].endswith(",error,0.0000") and lines[-1].endswith(",error,0.0000")
    assert set(bench.read_results(out / "results.csv")) == {i.key for i in instances}


def audit_settings() -> AuditSettings:
    return AuditSettings(eps=(0.01, 0.05), normalization=Normalization(clip_min=0.0, clip_max=1.0))


def per_sample(result) -> list[tuple]:
    return [(o.eps, o.status(i), o.certified_margin[i], o.attack_margin[i])
            for o in result.per_eps for i in range(result.samples)]


@pytest.mark.slow  # worker processes import torch: seconds each
def test_sharded_audit_gives_the_same_samples_locally_and_on_ray(ray_executor, tmp_path):
    model = str(MODELS / "digits_mlp.onnx")
    with make_executor("local", jobs=2) as local:
        here = audit_sharded(model, str(DIGITS), audit_settings(), local, shard_size=40, out_dir=tmp_path / "a")
    there = audit_sharded(model, str(DIGITS), audit_settings(), ray_executor, shard_size=40)
    assert here.samples == there.samples == 100
    np.testing.assert_equal(per_sample(here), per_sample(there))
    assert {o.eps: sorted(o.witnesses) for o in here.per_eps} == {o.eps: sorted(o.witnesses) for o in there.per_eps}
    assert any(o.witnesses for o in here.per_eps)  # the comparison covers counterexamples too
    # resumed from the saved shards: nothing runs again (this executor would fail every task)
    again = audit_sharded(model, str(DIGITS), audit_settings(), FailingExecutor(), shard_size=40,
                          out_dir=tmp_path / "a")
    np.testing.assert_equal(per_sample(again), per_sample(here))
    with pytest.raises(AuditShardError, match="samples 0..39 could not be audited"):
        audit_sharded(model, str(DIGITS), audit_settings(), FailingExecutor(), shard_size=40)


def test_gate_on_ray_decides_as_in_process(ray_executor, tmp_path):
    from test_gate import policy_text, write_policy
    from verikit.apps.gate.policy import load_policy
    from verikit.apps.gate.run import run_gate

    extra = f"""
[[property]]
name = "specs"
kind = "vnnlib"
timeout = 30
specs = ["{SPECS / 'digits_mlp_robust_eps0.3_idx1_sat.vnnlib'}",
         "{SPECS / 'digits_mlp_robust_eps0.01_idx1_unsat.vnnlib'}"]
"""
    policy = load_policy(write_policy(tmp_path, policy_text(extra=extra)))
    here = run_gate(policy, use_baseline=False)
    there = run_gate(policy, use_baseline=False, executor=ray_executor)
    assert [(c.id, c.verdict) for c in there.checks] == [(c.id, c.verdict) for c in here.checks]
    assert [c.spec for c in there.checks] == [c.spec for c in here.checks]  # the policy's paths, not the cache's
    assert there.passed == here.passed and set(there.audits) == set(here.audits)


def test_soundness_run_on_ray_judges_as_in_process(ray_executor, tmp_path):
    from verikit.apps.soundness.answers import read_answers
    from verikit.apps.soundness.harness import Verifier, run_harness

    instances = small_family(tmp_path)
    truth = tmp_path / "truth.csv"
    truth.write_text("onnx,vnnlib,truth\n" + "".join(f"family/{m},family/{s},{t}\n" for m, s, t in INSTANCES))
    known = read_answers(truth)
    here = run_harness(instances, Verifier(), known, tmp_path / "here")
    there = run_harness(instances, Verifier(), known, tmp_path / "there", executor=ray_executor)
    assert [(j.vnnlib, j.answer, j.judgement) for j in there] == [(j.vnnlib, j.answer, j.judgement) for j in here]
    assert {j.judgement for j in there} == {"correct"}


@pytest.mark.slow  # worker processes import torch: seconds each
def test_bench_command_on_ray_writes_results_and_html(ray_executor, tmp_path):
    from click.testing import CliRunner

    from verikit.cli import main

    small_family(tmp_path)
    out, page = tmp_path / "out", tmp_path / "bench.html"
    result = CliRunner().invoke(main, ["bench", str(tmp_path / "family"), "--executor", "ray", "--jobs", "2",
                                       "--out", str(out), "--html", str(page), "--json"])
    assert result.exit_code == 0, result.output
    assert answers(out) == {spec: [truth] for _, spec, truth in INSTANCES}
    assert page.read_text().startswith("<!DOCTYPE html>")


def test_ray_address_needs_the_ray_executor(tmp_path):
    from click.testing import CliRunner

    from verikit.cli import main

    small_family(tmp_path)
    result = CliRunner().invoke(main, ["bench", str(tmp_path / "family"), "--ray-address", "localhost:6379",
                                       "--out", str(tmp_path / "out")])
    assert result.exit_code == 2 and "--ray-address needs --executor ray" in result.output
