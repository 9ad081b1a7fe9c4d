"""HTML reports: one self-contained file per bench, audit and gate run, checked in headless Chromium.

The browser test saves reports/screenshots/{bench,audit,gate}.png (docs/img/ holds copies).
"""

from __future__ import annotations

import json
import re
import shutil

import pytest
from click.testing import CliRunner

from tests.conftest import MODELS, ROOT, SPECS
from verikit.apps import bench
from verikit.apps.html_inputs import audit_html, bench_html, render
from verikit.cli import main
from verikit.report.html import gate_page

pytestmark = pytest.mark.usefixtures("one_torch_thread")
SCREENSHOTS = ROOT / "reports" / "screenshots"
INSTANCES = [("tiny_relu.onnx", "tiny_relu_max_below_1.5_sat.vnnlib"),
             ("tiny_relu.onnx", "tiny_relu_min_above_neg0.75_unsat.vnnlib"),
             ("tiny_relu.onnx", "tiny_relu_min_above_neg0.25_unsat.vnnlib"),
             ("digits_mlp.onnx", "digits_mlp_robust_eps0.3_idx1_sat.vnnlib"),
             ("digits_mlp.onnx", "digits_mlp_robust_eps0.01_idx1_unsat.vnnlib")]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A bench folder (one deliberately false ground-truth row), an audit.json and a gate.json."""
    from test_gate import policy_text, write_policy
    from verikit.apps.audit import AuditSettings, audit_files
    from verikit.apps.data import Normalization
    from verikit.apps.gate.policy import load_policy
    from verikit.apps.gate.run import run_gate
    from verikit.report import audit as audit_report
    from verikit.report import gate as gate_report

    root = tmp_path_factory.mktemp("html")
    family = root / "family"
    family.mkdir()
    for model, spec in INSTANCES:
        shutil.copy(MODELS / model, family / model)
        shutil.copy(SPECS / spec, family / spec)
    (family / "instances.csv").write_text("".join(f"{m},{s},30\n" for m, s in INSTANCES))
    truth = root / "truth.csv"  # the last row lies (unsat instance called sat): the report must show it first
    truth.write_text("onnx,vnnlib,truth\n" + "".join(
        f"family/{m},family/{s},{'sat' if k == len(INSTANCES) - 1 else s.rsplit('_', 1)[1].split('.')[0]}\n"
        for k, (m, s) in enumerate(INSTANCES)))
    instances = bench.read_instances(family)
    rows = bench.run(instances, root / "bench", options=bench.Options())
    summary = bench.summarise(rows, instances, bench.read_ground_truth(truth))
    (root / "bench" / "summary.json").write_text(json.dumps(bench.summary_dict(summary)))
    other = root / "other_tool" / "results.csv"  # another tool's VNN-COMP results, twice as slow
    other.parent.mkdir()
    other.write_text("".join(f"family,{r.onnx},{r.vnnlib},0.5,{r.result},{2 * r.run_s + 0.1}\n" for r in rows))

    settings = AuditSettings(eps=(0.01, 0.03, 0.05, 0.1), normalization=Normalization(clip_min=0.0, clip_max=1.0))
    result = audit_files(str(MODELS / "digits_mlp.onnx"), str(MODELS / "data" / "digits_test_100.npz"), settings)
    audit_report.write_all(result, root / "audit")

    # a gate that passes its thresholds but fails on a regression: the baseline claims 10 points more
    policy = load_policy(write_policy(root / "gate", policy_text(eps="[0.01, 0.03]", min_certified=0.6)))
    before = gate_report.to_dict(run_gate(policy, use_baseline=False))
    for check in before["checks"]:
        check["metrics"]["certified_robust_accuracy"] += 0.10 if check["id"].endswith("0.03") else 0.0
    baseline = gate_report.write(before, root / "gate" / "baseline.json")
    gate_report.write(gate_report.to_dict(run_gate(policy, baseline=baseline)), root / "gate" / "gate.json")
    return {"root": root, "truth": truth, "other": other}


def test_bench_report_lists_wrong_answers_first_and_overlays_other_tools(runs):
    page = bench_html(runs["root"] / "bench", compare=[runs["other"]], ground_truth=runs["truth"])
    wrong = page.index("Wrong answers")
    assert "digits_mlp_robust_eps0.01_idx1_unsat.vnnlib" in page[wrong:page.index("Cactus plot")]
    assert "verikit (5)" in page and "other_tool (5)" in page  # both staircases, named with their counts
    instances = page[page.index("<h2>Instances"):]
    assert instances.index("eps0.01_idx1") < instances.index("tiny_relu")  # the wrong row leads the table
    assert ">attack<" in instances and (">bounds<" in instances or ">bab<" in instances)  # deciding engines


def test_audit_report_shows_the_curve_table_and_counterexample_pairs(runs):
    report = json.loads((runs["root"] / "audit" / "audit.json").read_text())
    page = render(runs["root"] / "audit" / "audit.json")
    assert "Accuracy against ε" in page and page.count('class="sortable"') == 1
    assert page.count("<tr>") >= 400  # 100 samples × 4 ε, plus headers
    falsified = sum(r["counts"]["falsified"] for r in report["results"])
    assert falsified > 0 and page.count('class="pair"') == min(falsified, 12)
    assert "counterexample → <b>" in page
    # without the model (or with other bytes under its name) no picture is drawn, the rest still is
    report["model"]["sha256"] = "0" * 64
    assert 'class="pair"' not in audit_html(report, [(0, 0.1, None)])


def test_gate_report_shows_verdict_thresholds_and_checks(runs):
    report = json.loads((runs["root"] / "gate" / "gate.json").read_text())
    page = gate_page(report)
    assert not report["passed"] and "FAILED (exit 1)" in page
    assert "certified ≥ 60.0%" in page and all(check["id"] in page for check in report["checks"])
    regressions = page[page.index("<h2>Baseline"):]
    assert "certified-drop" in regressions and "linf/mlp/eps=0.03" in regressions


@pytest.mark.parametrize("kind", ["bench", "audit", "gate"])
def test_report_html_command_writes_one_self_contained_file(runs, kind, tmp_path):
    source = {"bench": runs["root"] / "bench", "audit": runs["root"] / "audit" / "audit.json",
              "gate": runs["root"] / "gate" / "gate.json"}[kind]
    target = tmp_path / f"{kind}.html"
    result = CliRunner().invoke(main, ["report", "html", str(source), "-o", str(target)])
    assert result.exit_code == 0, result.output
    page = target.read_text()
    assert page.startswith("<!DOCTYPE html>")
    # nothing to fetch: no src/href except inline data, no URL but the SVG namespace
    assert not re.search(r'\b(src|href)="(?!data:)', page)
    assert set(re.findall(r"https?://[^\s\"'<>]+", page)) <= {"http://www.w3.org/2000/svg"}


def test_report_html_refuses_what_it_cannot_read(tmp_path):
    junk = tmp_path / "other.json"
    junk.write_text('{"schema": "something-else"}')
    for target in (junk, tmp_path / "missing"):
        result = CliRunner().invoke(main, ["report", "html", str(target), "-o", str(tmp_path / "x.html")])
        assert result.exit_code == 3 and result.output.startswith("verikit: error:")


def test_reports_render_in_headless_chromium(runs):
    browser = pytest.importorskip("browser")
    if browser.find_browser() is None:
        pytest.skip("no Chromium on this machine (Debian: apt-get install chromium): browser check skipped")
    pytest.importorskip("websocket", reason="the browser check needs websocket-client (the test extra)")
    sources = {"bench": bench_html(runs["root"] / "bench", compare=[runs["other"]], ground_truth=runs["truth"]),
               "audit": render(runs["root"] / "audit" / "audit.json"),
               "gate": render(runs["root"] / "gate" / "gate.json")}
    for kind, page in sources.items():
        html_file = runs["root"] / f"{kind}.html"
        html_file.write_text(page)
        check = browser.check_page(html_file, SCREENSHOTS / f"{kind}.png")
        assert check.console_errors == [], (kind, check.console_errors)
        assert check.failed_requests == [], (kind, check.failed_requests)
        assert check.requests == [html_file.resolve().as_uri()], (kind, check.requests)
        assert check.title.startswith("verikit")
        assert (SCREENSHOTS / f"{kind}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
