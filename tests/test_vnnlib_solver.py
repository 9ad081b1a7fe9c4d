"""`verikit-vnnlib`, the VNN-LIB standard solver command line: --name/--version, `supports`, and `verify`'s
first line, assignment block, serialised assignments, and error convention."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from onnx import numpy_helper

import verikit
from tests.conftest import MODELS, SPECS
from verikit.spec.load import load_spec
from verikit.cli.vnnlib_solver import main

vnnlib = pytest.importorskip("vnnlib")

from verikit.spec.vnnlib2 import parse_vnnlib2  # noqa: E402
from verikit.spec.vnnlib2_writer import write_vnnlib2  # noqa: E402

TINY = MODELS / "tiny_relu.onnx"
BOX = "(assert (and (>= X[0,0] 0.0) (<= X[0,0] 1.0) (>= X[0,1] 0.0) (<= X[0,1] 1.0)))\n"
HEADER = ("(vnnlib-version <2.0>)\n(declare-network N\n  (declare-input X float32 [1,2])\n"
          "  (declare-output Y float32 [1])\n)\n")


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def tiny_query(tmp_path: Path, spec: str) -> Path:
    path = tmp_path / "q.vnnlib"
    path.write_text(write_vnnlib2(load_spec(SPECS / spec), input_shape=(1, 2)))
    return path


def test_name_and_bare_version():
    assert invoke("--name").stdout == "verikit\n"
    result = invoke("--version")
    assert result.exit_code == 0 and result.stdout == verikit.__version__ + "\n"


@pytest.mark.parametrize("flag, allowed", [
    ("--hidden-node-theories", {"NH", "H"}),
    ("--multiple-input-output-theories", {"SIO", "MIO"}),
    ("--multiple-network-theories", {"SNET", "MNET", "MENET", "MINET"}),
    ("--multiple-node-comparison-theories", {"SNC", "MNC"}),
    ("--arithmetic-complexity-theories", {"BND", "OUTC", "LIN", "POLY"}),
    ("--onnx-element-types", {"float32", "real"}),
])
def test_supports_lists_one_known_value_a_line(flag, allowed):
    result = invoke("supports", flag)
    assert result.exit_code == 0 and result.stdout.endswith("\n")
    lines = result.stdout.splitlines()
    assert lines and set(lines) <= allowed


def test_supports_versions_booleans_and_operators():
    assert invoke("supports", "--vnnlib-versions").stdout == "1.0\n2.0\n"
    low, high = map(int, invoke("supports", "--onnx-opset-versions").stdout.split())
    assert 1 <= low <= 13 <= high
    assert invoke("supports", "--serialise-assignments").stdout == "true\n"
    assert invoke("supports", "--optimised-disjunctive-reasoning").stdout == "false\n"
    assert invoke("supports", "--unsat-proofs").stdout == "false\n"
    operators = invoke("supports", "--onnx-operators").stdout.splitlines()
    assert {"Gemm", "Relu", "MatMul", "Add"} <= set(operators) and "Cast" not in operators
    assert all(" " not in line for line in operators)


@pytest.mark.parametrize("flag", ["--bogus", "--onnx-operators-unsat-proofs"])
def test_supports_exits_non_zero_for_what_verikit_lacks(flag):
    result = invoke("supports", flag)
    assert result.exit_code == 1 and result.stdout == "" and result.stderr.startswith("verikit-vnnlib: error:")


def test_sat_prints_the_verdict_then_a_replayable_assignment(tmp_path):
    query = tiny_query(tmp_path, "tiny_relu_max_below_1.5_sat.vnnlib")
    result = invoke("verify", query, "--network", f"N={TINY}", "--timeout", "60.5")
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "sat" and lines[1] == "X float32 [1,2]" and lines[4] == "Y float32 [1]" and len(lines) == 6
    x = np.array([float(v) for v in lines[2:4]], dtype=np.float32)
    y = np.array([float(lines[5])], dtype=np.float32)
    from verikit.onnx.load import load_network

    assert np.array_equal(load_network(TINY).replay(x[None, :])[0], y)  # the printed values are exact
    assert parse_vnnlib2(query.read_text()).holds(x, y)


def test_unsat_prints_one_line(tmp_path):
    query = tiny_query(tmp_path, "tiny_relu_min_above_neg0.75_unsat.vnnlib")
    result = invoke("verify", query, "--network", f"N={TINY}")
    assert result.exit_code == 0 and result.stdout == "unsat\n", result.stderr


def test_serialised_assignments_are_tensor_protos(tmp_path):
    query = tiny_query(tmp_path, "tiny_relu_max_below_1.5_sat.vnnlib")
    result = invoke("verify", query, "--network", f"N={TINY}", "--serialise-assignments", tmp_path / "out")
    assert result.exit_code == 0 and result.stdout == "sat\n", result.stderr
    x = numpy_helper.to_array(onnx.load_tensor(str(tmp_path / "out" / "X.pb")))
    y = numpy_helper.to_array(onnx.load_tensor(str(tmp_path / "out" / "Y.pb")))
    assert x.shape == (1, 2) and x.dtype == np.float32 and y.shape == (1,) and y[0] >= 1.5


def test_a_witness_of_the_non_strict_reading_only_is_not_sat(tmp_path):
    query = tmp_path / "strict.vnnlib"  # y <= 2 on the box, reached at (1, 1): y > 2 is unsat, y >= 2 is sat
    query.write_text(HEADER + BOX + "(assert (> Y[0] 2.0))\n")
    result = invoke("verify", query, "--network", f"N={TINY}", "--timeout", 20)
    assert result.exit_code == 0 and result.stdout in ("unknown\n", "unsat\n", "timed-out\n"), result.stdout


def test_unknown_and_timed_out(tmp_path):
    hidden = tmp_path / "hidden.vnnlib"
    hidden.write_text(HEADER.replace("  (declare-output", '  (declare-hidden H float32 [1] "h")\n  (declare-output')
                      + BOX + "(assert (<= H[0] 1.0))\n")
    result = invoke("verify", hidden, "--network", f"N={TINY}")
    assert result.exit_code == 0 and result.stdout == "unknown\n" and "hidden nodes" in result.stderr
    query = tiny_query(tmp_path, "tiny_relu_min_above_neg0.25_unsat.vnnlib")
    result = invoke("verify", query, "--network", f"N={TINY}", "--timeout", "1e-9")
    assert result.exit_code == 0 and result.stdout == "timed-out\n"


def test_unbounded_inputs_get_a_sat_only_search(tmp_path):
    query = tmp_path / "open.vnnlib"  # X[0,1] has no bounds; y(1, 1) = 2
    query.write_text(HEADER + "(assert (and (>= X[0,0] 0.0) (<= X[0,0] 1.0)))\n(assert (>= Y[0] 1.5))\n")
    result = invoke("verify", query, "--network", f"N={TINY}", "--timeout", 30)
    assert result.exit_code == 0 and result.stdout.splitlines()[0] == "sat", result.stderr
    # y -> -inf as X[0,1] -> -inf, so this is sat too; the [-1, 1] sub-region holds no witness: unknown, never unsat
    query.write_text(HEADER + "(assert (and (>= X[0,0] 0.0) (<= X[0,0] 1.0)))\n(assert (<= Y[0] -100.0))\n")
    result = invoke("verify", query, "--network", f"N={TINY}", "--timeout", 30)
    assert result.exit_code == 0 and result.stdout == "unknown\n" and "sub-region" in result.stderr


def test_a_1_0_query_is_answered_too():
    result = invoke("verify", SPECS / "tiny_relu_max_below_1.5_sat.vnnlib", "--network", f"anything={TINY}")
    assert result.exit_code == 0 and result.stdout.splitlines()[:2] == ["sat", "X real [2]"], result.stderr


@pytest.mark.parametrize("text, networks, fragment", [
    (HEADER + BOX + "(assert (<= Y[0] 1.0)", ["N={tiny}"], "q.vnnlib:7:21: VNN-LIB 2.0 syntax error"),
    (HEADER + BOX + "(assert (<= Y[0] 1.0))", ["M={tiny}"], "missing --network for N; no network named M"),
    (HEADER + BOX + "(assert (<= Y[0] 1.0))", ["N={tiny}", "M={tiny}"], "no network named M"),
    (HEADER.replace("float32", "float16") + BOX + "(assert (<= Y[0] 1.0))", ["N={tiny}"], "element type float16"),
    (HEADER + BOX + "(assert (<= Y[0] 1.0))", ["N={missing}"], "model file not found"),
])
def test_bad_input_exits_3_with_one_line_on_stderr(tmp_path, text, networks, fragment):
    query = tmp_path / "q.vnnlib"
    query.write_text(text)
    args = [arg for n in networks for arg in ("--network", n.format(tiny=TINY, missing=tmp_path / "no.onnx"))]
    result = invoke("verify", query, *args)
    assert result.exit_code == 3 and result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("verikit-vnnlib: error:") and fragment in lines[0], lines


def test_the_installed_command_keeps_stdout_to_the_answer(tmp_path):
    script = Path(sys.executable).with_name("verikit-vnnlib")
    if not script.exists():
        pytest.skip("the verikit-vnnlib entry point is not installed (pip install -e .)")
    query = tiny_query(tmp_path, "tiny_relu_min_above_neg0.75_unsat.vnnlib")
    done = subprocess.run([str(script), "verify", str(query), "--network", f"N={TINY}", "--timeout", "60"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and done.stdout == "unsat\n", done.stderr[-2000:]
    assert subprocess.run([str(script), "--version"], capture_output=True, text=True).stdout == verikit.__version__ + "\n"
