"""End-to-end CLI: verdicts and exit codes, reports, and one-line errors with exit code 3 on bad input."""

import json

import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from onnx import TensorProto, helper

from tests.conftest import MODELS, SPECS
from verikit.cli import main

MLP = MODELS / "digits_mlp.onnx"
SAT_SPEC = SPECS / "digits_mlp_robust_eps0.3_idx1_sat.vnnlib"
UNSAT_SPEC = SPECS / "digits_mlp_robust_eps0.01_idx1_unsat.vnnlib"
TINY_SPEC = SPECS / "tiny_relu_max_below_1.5_sat.vnnlib"


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def assert_one_line_error(result, code=3, *fragments):
    assert result.exit_code == code, result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("verikit: error:")
    assert "Traceback" not in result.output + result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def test_verified_exits_0_and_writes_the_report(tmp_path):
    report = tmp_path / "run.json"
    result = invoke("verify", MLP, UNSAT_SPEC, "--timeout", 60, "--report", report)
    assert result.exit_code == 0, result.output
    assert "VERIFIED (unsat)" in result.stdout
    data = json.loads(report.read_text())
    assert data["schema"] == "verikit-report/1" and data["verdict"] == "verified" and data["vnncomp"] == "unsat"
    assert data["model"]["sha256"] and data["spec"]["sha256"]
    assert all(case["status"] == "proven" for case in data["cases"])
    for case in data["cases"]:
        assert all(any(v > 0 for v in d["margin_lower_bounds"]) for d in case["certificate"]["disjuncts"])


def test_falsified_exits_1_with_a_replayable_witness(tmp_path):
    result_file = tmp_path / "out.txt"
    result = invoke("verify", MLP, SAT_SPEC, "--json", "--result-file", result_file)
    assert result.exit_code == 1, result.output
    data = json.loads(result.stdout)
    assert data["verdict"] == "falsified"
    cex = data["counterexample"]
    from verikit.onnx.load import load_network
    from verikit.spec.load import load_spec

    network = load_network(MLP)
    case = load_spec(SAT_SPEC).cases[cex["case"]]
    x = np.array(cex["x"], dtype=np.float32)
    assert case.box.contains(x)
    y = network.replay(x[None, :])[0]
    assert case.disjuncts[cex["disjunct"]].holds(y)
    lines = result_file.read_text().splitlines()
    assert lines[0] == "sat" and lines[1].startswith("((X_0 ") and "(Y_0 " in result_file.read_text()


def test_usage_error_exits_2():
    assert invoke("verify", MLP).exit_code == 2
    assert invoke("verify", MLP, UNSAT_SPEC, "--no-such-option").exit_code == 2


def test_missing_files(tmp_path):
    assert_one_line_error(invoke("verify", tmp_path / "absent.onnx", UNSAT_SPEC), 3, "absent.onnx")
    assert_one_line_error(invoke("verify", MLP, tmp_path / "absent.vnnlib"), 3, "absent.vnnlib")


def test_garbage_and_truncated_onnx(tmp_path):
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"this is not a protobuf \x00\xff" * 10)
    assert_one_line_error(invoke("verify", garbage, UNSAT_SPEC), 3, "garbage.onnx")
    truncated = tmp_path / "truncated.onnx"
    truncated.write_bytes(MLP.read_bytes()[:700])
    assert_one_line_error(invoke("verify", truncated, UNSAT_SPEC), 3, "truncated.onnx")


def test_unsupported_operator_names_the_node(tmp_path):
    graph = helper.make_graph(
        [helper.make_node("Hardmax", ["x"], ["y"], name="strange_node")], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2])])
    path = tmp_path / "hardmax.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), path)
    spec = tmp_path / "two.vnnlib"
    spec.write_text("(declare-const X_0 Real)(declare-const X_1 Real)(declare-const Y_0 Real)"
                    "(declare-const Y_1 Real)(assert (>= X_0 0))(assert (<= X_0 1))(assert (>= X_1 0))"
                    "(assert (<= X_1 1))(assert (>= Y_0 Y_1))")
    assert_one_line_error(invoke("verify", path, spec), 3, "strange_node", "Hardmax")


@pytest.mark.parametrize("text, fragment", [
    ("(declare-const X_0 Real)\n(assert (<= X_0 1)", "1:"),
    ("(declare-const X_0 Real)\n(assert (<= X_7 1))", "X_7"),
    ("(declare-const X_0 Real)\n(assert (<= X_0 1.2.3))", "1.2.3"),
])
def test_malformed_vnnlib_gives_line_and_column(tmp_path, text, fragment):
    spec = tmp_path / "bad.vnnlib"
    spec.write_text(text)
    assert_one_line_error(invoke("verify", MLP, spec), 3, "bad.vnnlib", fragment)


def test_size_mismatch(tmp_path):
    assert_one_line_error(invoke("verify", MLP, TINY_SPEC), 3, "input")


def test_a_point_on_a_strict_boundary_is_never_reported_as_a_counterexample(tmp_path):
    """tiny_relu's output reaches 2 only at (1, 1), also in float32: sat for y >= 2, unsat for y > 2."""
    box = "(assert (>= X_0 0.0))(assert (<= X_0 1.0))(assert (>= X_1 0.0))(assert (<= X_1 1.0))"
    spec = tmp_path / "strict.vnnlib"
    spec.write_text("(declare-const X_0 Real)(declare-const X_1 Real)(declare-const Y_0 Real)" + box
                    + "(assert (> Y_0 2.0))")
    result = invoke("verify", MODELS / "tiny_relu.onnx", spec, "--timeout", 15, "--json")
    data = json.loads(result.stdout)
    assert data["verdict"] != "falsified" and result.exit_code in (0, 5), result.output
    assert any("strict" in note for note in data["spec"]["notes"])
    closed = tmp_path / "closed.vnnlib"
    closed.write_text(spec.read_text().replace("(> Y_0", "(>= Y_0"))
    summary = invoke("verify", MODELS / "tiny_relu.onnx", closed, "--timeout", 15)
    assert summary.exit_code == 1 and "FALSIFIED" in summary.stdout, summary.output
