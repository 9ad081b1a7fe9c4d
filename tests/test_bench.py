"""`verikit bench`: results rows, scoring against ground truth (by content hash), resuming."""

import csv
import json
import shutil

from click.testing import CliRunner

from tests.conftest import ROOT, SPECS
from verikit.apps import bench
from verikit.cli import main


def _small_suite(tmp_path):
    """Two example instances copied under new names (ground truth must match by content, not name)."""
    suite = tmp_path / "suite"
    suite.mkdir()
    shutil.copy(ROOT / "models" / "tiny_relu.onnx", suite / "renamed_model.onnx")
    shutil.copy(SPECS / "tiny_relu_max_below_1.5_sat.vnnlib", suite / "a.vnnlib")
    shutil.copy(SPECS / "tiny_relu_min_above_neg0.75_unsat.vnnlib", suite / "b.vnnlib")
    (suite / "instances.csv").write_text("renamed_model.onnx,a.vnnlib,30\nrenamed_model.onnx,b.vnnlib,30\n")
    return suite


def test_bench_scores_against_ground_truth_matched_by_content(tmp_path):
    suite = _small_suite(tmp_path)
    out = tmp_path / "out"
    result = CliRunner().invoke(main, ["bench", str(suite), "--ground-truth", str(SPECS / "expected.csv"),
                                       "--out", str(out), "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["correct"] == 2 and summary["wrong"] == [] and summary["score"] == 20
    rows = list(csv.reader((out / "results.csv").read_text().splitlines()))
    assert rows[0] == list(bench.RESULT_FIELDS)
    assert sorted(r[4] for r in rows[1:]) == ["sat", "unsat"]
    witnesses = list((out / "witnesses").iterdir())
    assert len(witnesses) == 1 and witnesses[0].read_text().startswith("sat\n((X_0 ")


def test_bench_flags_wrong_answers_and_exits_1(tmp_path):
    suite = _small_suite(tmp_path)
    truth = tmp_path / "lies.csv"
    truth.write_text("onnx,vnnlib,truth\nsuite/renamed_model.onnx,suite/b.vnnlib,sat\n")
    result = CliRunner().invoke(main, ["bench", str(suite), "--ground-truth", str(truth),
                                       "--out", str(tmp_path / "out")])
    assert result.exit_code == 1
    assert "WRONG" in result.stdout and "b.vnnlib" in result.stdout


def test_bench_resumes_without_rerunning(tmp_path):
    suite = _small_suite(tmp_path)
    out = tmp_path / "out"
    instances = bench.read_instances(suite)
    bench.run(instances[:1], out, options=bench.Options())
    seen = []
    bench.run(instances, out, options=bench.Options(), on_row=seen.append)
    assert len(seen) == 2
    assert len(list(csv.reader((out / "results.csv").read_text().splitlines()))) == 3  # header + 2 rows, none repeated


def test_bench_in_process_chooses_torch_threads_per_model_unless_told(tmp_path, monkeypatch):
    """torch's default (every core) ran an MNIST-FC instance 78 s past its budget beside one busy process."""
    import torch

    from verikit.core import threads

    chosen = []
    monkeypatch.setattr(threads, "apply_threads", lambda parameters: chosen.append(parameters) or 1)
    suite = _small_suite(tmp_path)
    instances = bench.read_instances(suite)
    bench.run(instances[:1], tmp_path / "sized", options=bench.Options())
    model_bytes = (suite / "renamed_model.onnx").stat().st_size
    assert chosen == [model_bytes // 4]
    before = torch.get_num_threads()
    try:
        bench.run(instances[1:], tmp_path / "told", options=bench.Options(), threads=1)
        assert chosen == [model_bytes // 4] and torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
