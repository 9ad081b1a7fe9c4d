"""Release gates: policy validation, pass/fail on the example models, reports, baseline regressions."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from conftest import MODELS, ROOT, SPECS
from onnx import numpy_helper

from verikit.cli import main
from verikit.core.errors import PolicyError
from verikit.apps.gate.policy import load_policy, parse_policy
from verikit.apps.gate.run import run_gate

MLP = MODELS / "digits_mlp.onnx"
SAMPLE = MODELS / "data" / "digits_test_100.npz"


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def policy_text(model: Path = MLP, *, eps="[0.01, 0.03]", min_certified=0.5, extra: str = "",
                head: str = "") -> str:
    return f"""
version = 1
seed = 0
{head}
[[model]]
name = "mlp"
path = "{model}"

[[dataset]]
name = "digits"
path = "{SAMPLE}"
clip_min = 0.0
clip_max = 1.0

[[property]]
name = "linf"
kind = "robustness"
dataset = "digits"
eps = {eps}
min_certified_accuracy = {min_certified}
{extra}
"""


def write_policy(folder: Path, text: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "verikit.toml"
    path.write_text(text)
    return path


def gate(*args: str, env: dict | None = None):
    return CliRunner().invoke(main, ["gate", "--quiet", *args], env=env)


def check_report_schema(report: dict) -> None:
    """The fields docs/policy.md documents for verikit-gate/1, with their types."""
    assert report["schema"] == "verikit-gate/1"
    assert isinstance(report["passed"], bool) and report["exit_code"] == (0 if report["passed"] else 1)
    assert set(report["policy"]) == {"path", "sha256"} and isinstance(report["seed"], int)
    assert set(report["thresholds"]) == {"unknown", "max_falsified", "max_certified_drop", "fail_on_regression"}
    assert set(report["summary"]) == {"checks", "verified", "falsified", "unknown", "timeout", "error",
                                      "regressions"}
    assert all(isinstance(line, str) for line in report["failures"] + report["warnings"])
    for model in report["models"]:
        assert set(model) == {"name", "path", "sha256", "inputs", "outputs"}
    for dataset in report["datasets"]:
        assert set(dataset) == {"name", "path", "sha256", "samples", "normalization"}
    for check in report["checks"]:
        assert set(check) == {"id", "property", "kind", "model", "model_sha256", "definition_sha256", "verdict",
                              "status", "message", "seconds", "metrics", "spec", "counterexample"}
        assert check["verdict"] in ("verified", "falsified", "unknown", "timeout", "error")
        assert check["status"] in ("pass", "fail", "warn", "ignored")
        assert check["kind"] in ("robustness", "vnnlib", "output-range")
        if check["kind"] == "robustness":
            metrics = check["metrics"]
            assert metrics["certified_robust_accuracy"] <= metrics["empirical_robust_accuracy"]
            assert metrics["empirical_robust_accuracy"] <= metrics["clean_accuracy"]
    baseline = report["baseline"]
    if baseline is not None:
        assert set(baseline) == {"path", "compared", "regressions", "not_comparable", "missing", "new"}
        for regression in baseline["regressions"]:
            assert regression["kind"] in ("newly-falsified", "certified-drop", "lost-proof")
    assert isinstance(report["seconds"], float) and "verikit" in report["versions"]


def junit(path: Path) -> ET.Element:
    root = ET.parse(path).getroot()
    assert root.tag == "testsuites"
    return root


def weaker_mlp(path: Path, sigma: float = 0.5) -> Path:
    """The example MLP with seeded noise on every weight matrix: less accurate and less robust."""
    model = onnx.load(MLP)
    rng = np.random.default_rng(0)
    for initializer in model.graph.initializer:
        weights = numpy_helper.to_array(initializer)
        if weights.ndim == 2:
            noisy = weights + sigma * weights.std() * rng.standard_normal(weights.shape)
            initializer.CopyFrom(numpy_helper.from_array(noisy.astype(np.float32), initializer.name))
    onnx.save(model, path)
    return path


# --- policy validation ------------------------------------------------------------------------------


@pytest.mark.parametrize("change, message", [
    (lambda t: t.replace("eps = [0.01, 0.03]", "eps = -0.1"), "property[1].eps: must be a positive number"),
    (lambda t: t.replace("eps = [0.01, 0.03]", 'eps = [0.01, "a"]'), "property[1].eps[2]: must be a finite number"),
    (lambda t: t.replace('kind = "robustness"', 'kind = "robust"'), "property[1].kind: must be one of"),
    (lambda t: t.replace("version = 1", ""), "version: is required"),
    (lambda t: t.replace("version = 1", "version = 1\nsede = 3"), "sede: unknown key"),
    (lambda t: t.replace(str(MLP), "nowhere.onnx"), "model[1].path: file not found"),
    (lambda t: t.replace('dataset = "digits"', 'dataset = "mnist"'), "property[1].dataset: no dataset named 'mnist'"),
    (lambda t: t + 'models = ["cnn"]', "property[1].models: no model named 'cnn'"),
    (lambda t: t.replace("min_certified_accuracy = 0.5", "min_certified_accuracy = 1.5"),
     "property[1].min_certified_accuracy: must be at most 1"),
    (lambda t: t.replace("min_certified_accuracy = 0.5", ""), "property[1].min_certified_accuracy: is required"),
    (lambda t: t + "[thresholds]\nunknown = 'maybe'", "thresholds.unknown: must be one of 'fail', 'warn', 'ignore'"),
    (lambda t: t.replace("clip_max = 1.0", "clip_max = 1.0\nstd = 0"), "dataset[1].std: must be a positive number"),
    (lambda t: t + '\n[[property]]\nkind = "output-range"\ninput_lower = 0\ninput_upper = 1',
     "property[2].max: give 'min', 'max' or both"),
    (lambda t: t + '\n[[property]]\nkind = "vnnlib"\nspec = "absent.vnnlib"', "property[2].spec: file not found"),
    (lambda t: t + "\n[[property]\n", "not valid TOML"),
    (lambda t: t + '\n[[property]]\nkind = "output-range"\ninput_lower = 0\ninput_upper = 1\nmax = 5\n'
     'settings = { "bab.batchsize" = 8 }', "property[2].settings: unknown setting 'bab.batchsize'"),
    (lambda t: t + '\n[defaults]\nsettings = { "attack.restarts" = "many" }',
     "defaults.settings: setting attack.restarts: cannot use 'many'"),
])  # fmt: skip
def test_invalid_policy_names_the_key_and_the_problem(tmp_path, change, message):
    path = write_policy(tmp_path, change(policy_text()))
    with pytest.raises(PolicyError) as caught:
        load_policy(path)
    assert str(caught.value).startswith(f"{path}: ")
    assert message in str(caught.value)


def test_policy_settings_reach_the_options_of_its_checks(tmp_path):
    from verikit.apps.gate.checks import _options

    text = policy_text() + ('\n[defaults]\nsettings = { "attack.restarts" = 16 }\n[[property]]\nname = "range"\n'
                            'kind = "output-range"\ninput_lower = 0\ninput_upper = 1\nmax = 5\n'
                            'settings = { "bab.batch_size" = 256, "smt.use_crown" = false }')
    policy = load_policy(write_policy(tmp_path, text))
    prop = next(p for p in policy.properties if p.kind == "output-range")
    options = _options(prop, seed=3)
    assert (options.attack.restarts, options.bab.batch_size, options.smt.use_crown) == (16, 256, False)
    assert options.as_dict()["bab"]["batch_size"] == 256


def test_missing_or_invalid_policy_exits_3(tmp_path):
    run = gate(str(tmp_path / "verikit.toml"))
    assert run.exit_code == 3 and "policy file not found" in run.output
    bad = write_policy(tmp_path, policy_text(eps="0"))
    run = gate(str(bad))
    assert run.exit_code == 3 and "property[1].eps: must be a positive number" in run.output


def test_example_policy_parses_with_every_kind():
    policy = load_policy(ROOT / "examples" / "verikit.toml")
    assert {prop.kind for prop in policy.properties} == {"robustness", "vnnlib", "output-range"}
    assert all(model.path.is_file() for model in policy.models)


# --- pass and fail ----------------------------------------------------------------------------------


def test_example_policy_passes_and_writes_reports(tmp_path):
    summary_file = tmp_path / "step-summary.md"
    out = tmp_path / "out"
    run = gate(str(ROOT / "examples" / "verikit.toml"), "--out", str(out), "--no-baseline",
               env={"GITHUB_STEP_SUMMARY": str(summary_file)})
    assert run.exit_code == 0, run.output
    assert "verikit gate PASSED" in run.output
    report = json.loads((out / "gate.json").read_text())
    check_report_schema(report)
    assert report["passed"] and report["summary"]["verified"] == report["summary"]["checks"] == 6
    root = junit(out / "junit.xml")
    assert root.get("tests") == "6" and root.get("failures") == "0"
    assert "verikit gate PASSED" in summary_file.read_text()
    assert (out / "audits" / "digits-linf__digits-mlp.csv").is_file()


def test_unmet_policy_fails_with_a_readable_summary(tmp_path):
    extra = f"""
[[property]]
name = "logits-small"
kind = "output-range"
input_lower = 0.0
input_upper = 1.0
max = 10.0
timeout = 20

[[property]]
name = "known-sat"
kind = "vnnlib"
spec = "{SPECS / 'digits_mlp_robust_eps0.3_idx1_sat.vnnlib'}"
timeout = 20
"""
    path = write_policy(tmp_path, policy_text(min_certified=0.95, extra=extra))
    run = gate(str(path), "--out", str(tmp_path / "out"))
    assert run.exit_code == 1, run.output
    assert "verikit gate FAILED" in run.output and "Why it failed" in run.output
    assert "4 check(s) falsified, at most 0 allowed" in run.output
    report = json.loads((tmp_path / "out" / "gate.json").read_text())
    check_report_schema(report)
    by_id = {check["id"]: check for check in report["checks"]}
    assert by_id["linf/mlp/eps=0.03"]["verdict"] == "falsified"  # empirical < 95%: proven below the bar
    assert by_id["logits-small/mlp"]["counterexample"]["y"]
    root = junit(tmp_path / "out" / "junit.xml")
    failures = root.findall(".//testcase/failure")
    assert len(failures) == 4 and root.get("failures") == "4"
    assert any("counterexample replayed through onnxruntime" in (f.text or "") for f in failures)


@pytest.mark.parametrize("unknown, code", [("warn", 0), ("fail", 1), ("ignore", 0)])
def test_undecided_check_follows_the_unknown_policy(tmp_path, unknown, code):
    # L2 at 0.02: certified 86% < 86.5% <= empirical 87% on this sample, so the check stays undecided
    extra = 'norm = "2"'
    head = f'[thresholds]\nunknown = "{unknown}"'
    path = write_policy(tmp_path, policy_text(eps="0.02", min_certified=0.865, extra=extra, head=head))
    run = gate(str(path), "--out", str(tmp_path / "out"))
    assert run.exit_code == code, run.output
    report = json.loads((tmp_path / "out" / "gate.json").read_text())
    check_report_schema(report)
    assert report["checks"][0]["verdict"] == "unknown"
    skipped = junit(tmp_path / "out" / "junit.xml").find(".//testcase/skipped")
    assert skipped is not None and "unknown: certified" in skipped.get("message")
    assert (unknown == "warn") == any("undecided" in line for line in report["warnings"])


# --- baseline ---------------------------------------------------------------------------------------


def test_weaker_model_regresses_against_the_baseline(tmp_path):
    baseline_dir = tmp_path / "baseline"
    run = gate(str(write_policy(tmp_path / "v1", policy_text())), "--out", str(baseline_dir))
    assert run.exit_code == 0, run.output

    weak = weaker_mlp(tmp_path / "weak.onnx")
    head = "[baseline]\n" f'path = "{baseline_dir / "gate.json"}"\nrequired = true\nmax_certified_drop = 0.02'
    run = gate(str(write_policy(tmp_path / "v2", policy_text(weak, head=head))), "--out", str(tmp_path / "out"))
    assert run.exit_code == 1, run.output  # thresholds are still met; the regression alone fails the gate
    assert "regression(s) against the baseline" in run.output and "certified robust accuracy" in run.output
    report = json.loads((tmp_path / "out" / "gate.json").read_text())
    check_report_schema(report)
    assert report["summary"]["verified"] == 2
    kinds = {(r["id"], r["kind"]) for r in report["baseline"]["regressions"]}
    assert ("linf/mlp/eps=0.01", "certified-drop") in kinds and ("linf/mlp/eps=0.03", "certified-drop") in kinds
    baseline_suite = junit(tmp_path / "out" / "junit.xml").findall("testsuite")[1]
    assert baseline_suite.get("failures") == "2"


def test_changed_property_is_not_compared(tmp_path):
    baseline_dir = tmp_path / "baseline"
    assert gate(str(write_policy(tmp_path / "v1", policy_text(eps="0.01"))), "--out", str(baseline_dir)).exit_code == 0
    changed = policy_text(eps="0.01", min_certified=0.4)
    run = gate(str(write_policy(tmp_path / "v2", changed)), "--out", str(tmp_path / "out"),
               "--baseline", str(baseline_dir / "gate.json"))
    assert run.exit_code == 0, run.output
    report = json.loads((tmp_path / "out" / "gate.json").read_text())
    assert report["baseline"]["not_comparable"] == ["linf/mlp/eps=0.01"] and report["baseline"]["compared"] == 0


def test_same_seed_gives_identical_gate_results(tmp_path):
    extra = '\n[[property]]\nname = "range"\nkind = "output-range"\ninput_lower = 0.0\ninput_upper = 1.0\nmax = 10.0'
    policy = parse_policy(policy_text(eps="[0.02, 0.05]", extra=extra), tmp_path / "verikit.toml")
    first, second = run_gate(policy, use_baseline=False), run_gate(policy, use_baseline=False)

    def essence(result):
        return [(c.id, c.verdict, c.metrics.get("certified_robust_accuracy"),
                 c.metrics.get("empirical_robust_accuracy"), json.dumps(c.counterexample)) for c in result.checks]

    assert essence(first) == essence(second)
    audits = list(first.audits.values()) + list(second.audits.values())
    np.testing.assert_array_equal(audits[0].per_eps[1].attack_margin, audits[1].per_eps[1].attack_margin)
