"""Soundness testing end to end: a generated benchmark with hidden counterexamples, verikit on it, and
fault-injected verifiers (tests/fault_verifiers/) that `verikit soundness run` must catch.

The benchmark is generated once per session (4 instances on one small ReLU MLP: 2 planted, 2 clean).
"""

from __future__ import annotations

import csv
import json
import re
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch
from click.testing import CliRunner

from verikit.apps.bench import Instance, read_instances
from verikit.cli import main
from verikit.engines.attack import engine as attack
from verikit.onnx.load import load_network
from verikit.core.result import Budget, Falsified, Verdict
from verikit.apps.soundness.answers import Answer, read_answers
from verikit.apps.soundness.generate import GenerateConfig, generate
from verikit.apps.soundness.harness import Verifier, run_harness
from verikit.apps.soundness.judge import judge, tally
from verikit.apps.soundness.training import TrainSettings
from verikit.spec.load import load_spec
from verikit.portfolio.options import Options
from verikit.portfolio.runner import verify
from verikit.witness.check import check_witness, check_witness_files
from verikit.witness.formats import read_witness

FAULTS = Path(__file__).resolve().parent / "fault_verifiers"
SHARED = Path(__file__).resolve().parents[2] / "shared" / "benchmarks"
CONFIG = GenerateConfig(count=4, seed=0, input_sizes=(8,), hidden=16, instances_per_model=4, timeout=30.0,
                        train=TrainSettings(steps=200), attack_seconds=1.0, prove_seconds=2.0)


@pytest.fixture(scope="session")
def bench(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("soundness") / "bench"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny nets: one thread is faster, and much faster on a busy machine
    try:
        generate(CONFIG, out)
    finally:
        torch.set_num_threads(threads)
    return out


@pytest.fixture(scope="session")
def answers(bench) -> dict:
    return read_answers(bench / "answers" / "answers.csv")


def _answer_rows(bench: Path) -> list[dict]:
    with (bench / "answers" / "answers.csv").open(newline="") as handle:
        return list(csv.DictReader(handle))


@pytest.fixture(scope="session")
def planted(bench) -> list[Instance]:
    sat = {row["vnnlib"] for row in _answer_rows(bench) if row["truth"] == "sat"}
    return [i for i in read_instances(bench) if str(Path(i.vnnlib).relative_to(bench)) in sat]


def independent_check(onnx: Path, vnnlib: Path, x: np.ndarray, tol: float = 1e-4) -> bool:
    """onnxruntime replay and a hand-rolled reading of the VNN-LIB asserts (boxes, Y atoms, or/and)."""
    session = ort.InferenceSession(onnx.read_bytes(), providers=["CPUExecutionProvider"])
    feed = session.get_inputs()[0]
    shape = [d if isinstance(d, int) else 1 for d in feed.shape]
    x32 = np.asarray(x, dtype=np.float32).reshape(-1)
    y = session.run(None, {feed.name: x32.reshape(shape)})[0].reshape(-1).astype(np.float64)
    text = "\n".join(line.split(";")[0] for line in vnnlib.read_text().splitlines())
    atom = re.compile(r"\((<=|>=) ([XY]_\d+|[-+\d.eE]+) ([XY]_\d+|[-+\d.eE]+)\)")

    def value(token: str) -> float:
        if token[0] in "XY":
            return float((x32 if token[0] == "X" else y)[int(token[2:])])
        return float(token)

    def holds(op: str, a: str, b: str) -> bool:
        return value(a) <= value(b) + tol if op == "<=" else value(a) + tol >= value(b)

    top, _, rest = text.partition("(assert (or")
    if not all(holds(*m) for m in atom.findall(top)):
        return False
    groups = re.findall(r"\(and ([^()]*(?:\([^()]*\)[^()]*)*)\)", rest)
    return not rest or any(all(holds(*m) for m in atom.findall(group)) for group in groups)


def test_benchmark_layout_keeps_answers_apart(bench):
    lines = (bench / "instances.csv").read_text().split()
    assert len(lines) == 4 and all(len(line.split(",")) == 3 for line in lines)
    assert "sat" not in (bench / "instances.csv").read_text()
    rows = _answer_rows(bench)
    assert sorted(row["truth"] for row in rows) == ["sat", "sat", "unsat", "unsat"]
    for row in rows:
        assert (row["witness"] != "") == (row["truth"] == "sat")


def test_planted_witnesses_replay_and_agree_with_independent_check(bench):
    for row in _answer_rows(bench):
        if row["truth"] != "sat":
            continue
        model, spec, witness = bench / row["onnx"], bench / row["vnnlib"], bench / "answers" / row["witness"]
        parsed, report = check_witness_files(model, spec, witness)
        assert report.status == "strict" and report.y_agrees
        assert independent_check(model, spec, parsed.x, tol=0.0)
        other = next(r for r in _answer_rows(bench) if r["vnnlib"] != row["vnnlib"])
        _, wrong = check_witness_files(model, bench / other["vnnlib"], witness)
        assert not wrong.valid and not independent_check(model, bench / other["vnnlib"], parsed.x)


def test_attack_finds_none_of_the_hidden_counterexamples(planted):
    assert len(planted) == 2
    for instance in planted:
        network = load_network(instance.onnx)
        (case,) = load_spec(instance.vnnlib).cases
        outcome = attack.run(network, case, Budget.seconds(3.0), seed=1)
        assert not isinstance(outcome, Falsified), instance.vnnlib


def test_complete_mode_answers_sat_or_unknown_never_unsat_on_planted(planted, answers, tmp_path):
    verifier = Verifier(options=Options(engines=("bounds", "bab", "smt")))
    judgements = run_harness(planted, verifier, answers, tmp_path, timeout_scale=0.25)
    for item in judgements:
        assert item.answer in ("sat", "unknown", "timeout"), item
        assert item.judgement in ("correct", "undecided"), item
        if item.answer == "sat":
            assert item.witness_status in ("strict", "within_tolerance")
    for result_file in (tmp_path / "results" / "witnesses").glob("*"):  # verikit's own witnesses
        instance = next(i for i in planted if Path(i.vnnlib).stem in result_file.name)
        witness = read_witness(result_file)
        network = load_network(instance.onnx)
        report = check_witness(network, load_spec(instance.vnnlib), witness.x, witness.y)
        assert report.valid == independent_check(Path(instance.onnx), Path(instance.vnnlib), witness.x)
        assert report.valid


def test_checker_agrees_with_independent_check_on_witnesses_verikit_finds(bench, tmp_path):
    """Around each planted x* (a box the attack can search), verikit's witnesses and moved copies."""
    from verikit.core.property import Box, Case, Property
    from verikit.spec.vnnlib_writer import write_vnnlib

    checked = 0
    for row in _answer_rows(bench):
        if row["truth"] != "sat":
            continue
        model = bench / row["onnx"]
        network = load_network(model)
        (case,) = load_spec(bench / row["vnnlib"]).cases
        x_star = read_witness(bench / "answers" / row["witness"]).x
        near = Box(x_star - 0.002, x_star + 0.002)
        prop = Property((Case(near, case.disjuncts),), network.n_inputs, network.n_outputs)
        spec = tmp_path / f"near_{Path(row['vnnlib']).name}"
        spec.write_text(write_vnnlib(prop))
        prop = load_spec(spec)
        result = verify(network, prop, Options(timeout=10.0, engines=("attack",), seed=2))
        assert result.verdict is Verdict.FALSIFIED
        x = result.counterexample.x.astype(np.float64)
        for candidate in (x, x + 0.01, np.where(np.arange(x.size) == 0, x + 1e-5, x)):
            report = check_witness(network, prop, candidate)
            assert report.status != "within_tolerance" or not independent_check(model, spec, candidate, 0.0)
            assert report.valid == independent_check(model, spec, candidate), candidate
            checked += 1
    assert checked == 6


def _external(name: str) -> Verifier:
    return Verifier.external(str(FAULTS / f"{name}.sh"), grace=20.0)


@pytest.fixture(autouse=True)
def _python_for_wrappers(monkeypatch):
    monkeypatch.setenv("VERIKIT_PYTHON", sys.executable)


def _last_disjunct_targets(bench: Path) -> set[str]:
    """Planted instances whose target class is the spec's last disjunct (the one drop_row drops)."""
    chosen = set()
    for row in _answer_rows(bench):
        if row["truth"] == "sat":
            label, target = map(int, re.findall(r"\d+", row["notes"]))
            if target == (2 if label != 2 else 1):
                chosen.add(row["vnnlib"])
    return chosen


@pytest.mark.parametrize("fault", ["shrink_box", "drop_row", "loosen"])
def test_fault_injected_verifier_is_flagged(fault, bench, planted, answers, tmp_path):
    instances = planted
    if fault == "drop_row":  # exposed only where the dropped disjunct is the planted target
        exposed = _last_disjunct_targets(bench)
        instances = [i for i in planted if str(Path(i.vnnlib).relative_to(bench)) in exposed]
        assert instances, "the fixture's seed should plant at least one target in the last disjunct"
    # A faulty verifier answers unsat as soon as it "proves" its weakened property. loosen needs
    # branch and bound for that: a few seconds on one planted instance of this seed, a minute on the
    # other, which it may leave as a timeout (one soundness bug is enough).
    scale = 0.7 if fault == "loosen" else 1.0
    judgements = run_harness(instances, _external(fault), answers, tmp_path, jobs=2, timeout_scale=scale)
    assert tally(judgements)["soundness_bug"] >= 1, [j.to_dict() for j in judgements]


def test_never_attack_verifier_flagged_through_the_cli(bench, planted, tmp_path):
    listing = tmp_path / "planted_instances.csv"  # an instances CSV of its own: absolute paths
    listing.write_text("".join(f"{i.onnx},{i.vnnlib},{i.timeout:g}\n" for i in planted))
    args = ["soundness", "run", str(listing), "--answers", str(bench / "answers" / "answers.csv"),
            "--verifier", str(FAULTS / "never_attack.sh"), "--jobs", "2", "--out", str(tmp_path), "--json"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 1, result.output
    data = json.loads((tmp_path / "soundness.json").read_text())
    assert data["counts"]["soundness_bug"] == 2 and not data["sound"]
    assert all(j["answer"] == "unsat" for j in data["judgements"])


def test_fake_witness_verifier_gives_false_alarms(planted, answers, tmp_path):
    judgements = run_harness(planted, _external("fake_witness"), answers, tmp_path, jobs=2)
    assert tally(judgements)["false_alarm"] == 2
    assert all("invalid" in j.reason for j in judgements)


def test_sat_without_a_witness_is_unchecked_not_a_false_alarm(bench, planted, tmp_path):
    # nnenum's run_instance.sh writes only `violated`: right answers that cannot be checked, not wrong ones
    listing = tmp_path / "planted_instances.csv"
    listing.write_text("".join(f"{i.onnx},{i.vnnlib},{i.timeout:g}\n" for i in planted))
    args = ["soundness", "run", str(listing), "--answers", str(bench / "answers" / "answers.csv"),
            "--verifier", str(FAULTS / "no_witness.sh"), "--jobs", "2", "--out", str(tmp_path), "--json"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    data = json.loads((tmp_path / "soundness.json").read_text())
    assert data["counts"]["unchecked"] == 2 and data["counts"]["false_alarm"] == 0, data["judgements"]
    assert all(j["answer"] == "sat" and j["witness_status"] == "missing" for j in data["judgements"])


def test_honest_verifier_is_not_flagged(bench, answers, tmp_path):
    # 15 s each: the timeout is a hard deadline from the process start, and on a loaded 2-core machine
    # starting Python and importing torch alone took 3-4.5 s of the 4.5 s a 0.15 scale leaves
    judgements = run_harness(read_instances(bench), _external("honest"), answers, tmp_path, jobs=2,
                             timeout_scale=0.5)
    counts = tally(judgements)
    assert counts["soundness_bug"] == counts["false_alarm"] == counts["truth_wrong"] == 0
    assert counts["correct"] >= 2  # the clean instances are proven


def test_judge_table(bench, answers):
    row = next(r for r in _answer_rows(bench) if r["truth"] == "sat")
    model, spec = bench / row["onnx"], bench / row["vnnlib"]
    network = load_network(model)
    prop = load_spec(spec)
    witness = read_witness(bench / "answers" / row["witness"])
    sat, unsat = Answer("sat", "planted"), Answer("unsat", "proof")
    assert judge("m", "s", "unsat", sat).judgement == "soundness_bug"
    assert judge("m", "s", "unsat", unsat).judgement == "correct"
    assert judge("m", "s", "unsat", None).judgement == "unchecked"
    assert judge("m", "s", "sat", sat).judgement == "unchecked"  # no witness: cannot be checked
    kwargs = {"witness": witness, "network": network, "prop": prop}
    assert judge("m", "s", "sat", sat, **kwargs).judgement == "correct"
    assert judge("m", "s", "sat", unsat, **kwargs).judgement == "truth_wrong"
    assert judge("m", "s", "sat", None, **kwargs).judgement == "new_sat"
    assert judge("m", "s", "timeout", sat).judgement == "undecided"


def test_generate_rejects_bad_settings(tmp_path):
    result = CliRunner().invoke(main, ["soundness", "generate", str(tmp_path / "b"), "--input-size", "4"])
    assert result.exit_code == 3 and "input sizes" in result.output


@pytest.fixture
def shared_test() -> Path:
    if not (SHARED / "test").is_dir():
        pytest.skip(f"../shared/benchmarks not found at {SHARED}")
    return SHARED


def test_witness_checker_on_every_sat_instance_of_shared_test(shared_test):
    truths = read_answers(shared_test / "ground_truth" / "test.csv")
    sat_instances = [i for i in read_instances(shared_test / "test")
                     if truths.get(_key(i)) and truths[_key(i)].truth == "sat"]
    assert sat_instances
    for instance in sat_instances:
        network = load_network(instance.onnx)
        prop = load_spec(instance.vnnlib, n_inputs=network.n_inputs, n_outputs=network.n_outputs)
        result = verify(network, prop, Options(timeout=20.0, engines=("attack",)))
        assert result.verdict is Verdict.FALSIFIED
        x = result.counterexample.x
        assert check_witness(network, prop, x).status == "strict"
        assert independent_check(Path(instance.onnx), Path(instance.vnnlib), x, tol=0.0)
        moved = np.array(x, dtype=np.float64)
        moved[0] = prop.cases[0].box.upper[0] + 0.01  # outside the box: both must reject it
        assert not check_witness(network, prop, moved).valid
        assert not independent_check(Path(instance.onnx), Path(instance.vnnlib), moved)


def _key(instance: Instance) -> tuple[str, str]:
    from verikit.apps.bench import file_sha256

    return file_sha256(instance.onnx), file_sha256(instance.vnnlib)


def test_soundness_run_on_shared_ground_truth(shared_test, tmp_path):
    args = ["soundness", "run", str(shared_test / "test"), "--answers",
            str(shared_test / "ground_truth" / "test.csv"), "--timeout-scale", "0.1", "--out", str(tmp_path)]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    data = json.loads((tmp_path / "soundness.json").read_text())
    assert data["counts"]["soundness_bug"] == data["counts"]["false_alarm"] == 0
    sat = [j for j in data["judgements"] if j["truth"] == "sat"]
    assert len(sat) == 1 and sat[0]["judgement"] == "correct"
