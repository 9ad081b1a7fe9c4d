"""VNN-LIB 2.0 input: the same property in 1.0 and 2.0 gives the same cases and verdict; exact semantics
(==, !=, strict, C-order flattening); located errors with exit code 3; deep nesting cannot crash us;
queries verikit cannot answer are unknown with a reason."""

import subprocess
import sys
import textwrap

import numpy as np
import pytest
from click.testing import CliRunner

from tests.conftest import MODELS, ROOT, SPECS
from verikit.cli import main
from verikit.core.errors import ExitCode, SpecError
from verikit.spec.load import load_spec, spec_format
from verikit.spec.vnnlib import parse_vnnlib
from verikit.portfolio.options import Options
from verikit.run import run_instance

vnnlib = pytest.importorskip("vnnlib")

from verikit.spec.vnnlib2 import UnsupportedQuery, parse_vnnlib2  # noqa: E402
from verikit.spec.vnnlib2_writer import write_vnnlib2  # noqa: E402

TINY = MODELS / "tiny_relu.onnx"
MLP = MODELS / "digits_mlp.onnx"
HEADER = "(vnnlib-version <2.0>)\n(declare-network N\n  (declare-input X {t} [{x}])\n  (declare-output Y {t} [{y}])\n)\n"


def query(body: str, x: str = "2", y: str = "3", element_type: str = "float32") -> str:
    return HEADER.format(t=element_type, x=x, y=y) + textwrap.dedent(body)


def same_cases(a, b) -> bool:
    return (a.n_inputs, a.n_outputs, len(a.cases)) == (b.n_inputs, b.n_outputs, len(b.cases)) and all(
        ca.box.same_as(cb.box) and len(ca.disjuncts) == len(cb.disjuncts)
        and all(np.array_equal(p.C, q.C) and np.array_equal(p.d, q.d) for p, q in zip(ca.disjuncts, cb.disjuncts))
        for ca, cb in zip(a.cases, b.cases))


# ----- the same property in 1.0 and 2.0 -----

V1 = """(declare-const X_0 Real)(declare-const X_1 Real)
(declare-const Y_0 Real)(declare-const Y_1 Real)(declare-const Y_2 Real)
(assert (and (>= X_0 -0.5) (<= X_0 0.5)))
(assert (or (and (>= X_1 0.1) (<= X_1 0.3)) (and (>= X_1 0.6) (<= X_1 0.7))))
(assert (or (>= Y_1 Y_0) (and (>= Y_2 Y_0) (<= Y_2 1.5)) (= Y_1 2.0) (<= (+ Y_0 (* 2 Y_2)) -1.25)))
"""
V2 = query("""
(assert (and (>= X[0] -0.5) (<= X[0] 0.5)))
(assert (or (and (>= X[1] 0.1) (<= X[1] 0.3)) (and (>= X[1] 0.6) (<= X[1] 0.7))))
(assert (or (>= Y[1] Y[0]) (and (>= Y[2] Y[0]) (<= Y[2] 1.5)) (== Y[1] 2.0) (<= (+ Y[0] (* 2.0 Y[2])) -1.25)))
""")


def test_hand_written_pair_gives_the_same_cases():
    one, two = parse_vnnlib(V1), parse_vnnlib2(V2).to_property()
    assert same_cases(one, two)
    assert len(two.cases) == 2 and len(two.cases[0].disjuncts) == 4
    np.testing.assert_array_equal(two.cases[0].disjuncts[2].C, [[0, 1, 0], [0, -1, 0]])  # == is two rows
    np.testing.assert_array_equal(two.cases[0].disjuncts[2].d, [2.0, -2.0])


@pytest.mark.parametrize("spec", sorted(SPECS.glob("*.vnnlib")), ids=lambda p: p.name)
def test_every_example_spec_reads_the_same_in_2_0(spec, tmp_path):
    one = load_spec(spec)
    shape = (1, 1, 8, 8) if "digits_cnn" in spec.name else None  # the CNNs take an 8x8 image: X[0,0,i,j]
    path = tmp_path / "q.vnnlib"
    path.write_text(write_vnnlib2(one, input_shape=shape))
    assert spec_format(path) == "vnnlib2"
    assert same_cases(one, load_spec(path))


@pytest.mark.parametrize("spec", ["tiny_relu_max_below_1.5_sat.vnnlib", "tiny_relu_min_above_neg0.75_unsat.vnnlib",
                                  "digits_mlp_robust_eps0.01_idx1_unsat.vnnlib"])
def test_same_verdict_in_1_0_and_2_0(spec, tmp_path):
    model = TINY if spec.startswith("tiny") else MLP
    path = tmp_path / "q.vnnlib"
    path.write_text(write_vnnlib2(load_spec(SPECS / spec), input_shape=(1, 2) if model == TINY else (1, 64)))
    options = Options(timeout=60, seed=0)
    first = run_instance(model, SPECS / spec, options)
    second = run_instance(model, path, options)
    assert first.verdict == second.verdict
    assert first.verdict.vnncomp == spec.rsplit("_", 1)[1].removesuffix(".vnnlib")


# ----- semantics -----

def test_tensors_flatten_in_c_order():
    text = query("(assert (>= X[1,2] 0.5))\n(assert (<= X[1,2] 0.75))\n" + "".join(
        f"(assert (>= X[{i},{j}] 0.0))(assert (<= X[{i},{j}] 1.0))" for i in range(2) for j in range(3)
        if (i, j) != (1, 2)) + "\n(assert (<= Y[0,1] 0.0))", x="2,3", y="1,2")
    prop = parse_vnnlib2(text).to_property()
    assert prop.n_inputs == 6 and prop.n_outputs == 2
    assert prop.cases[0].box.lower[5] == 0.5 and prop.cases[0].box.upper[5] == 0.75
    np.testing.assert_array_equal(prop.cases[0].disjuncts[0].C, [[0.0, 1.0]])


def test_strict_and_not_equal_are_relaxed_for_search_and_exact_for_witnesses():
    q = parse_vnnlib2(query("(assert (and (>= X[0] 0.0) (<= X[0] 1.0) (>= X[1] 0.0) (<= X[1] 1.0)))\n"
                            "(assert (or (< Y[0] 1.0) (!= Y[1] Y[2])))"))
    prop = q.to_property()
    assert len(prop.cases[0].disjuncts) == 3  # <, and != as (<) or (>)
    assert all(conjunction.strict.tolist() == [True] for conjunction in prop.cases[0].disjuncts)
    assert prop.cases[0].satisfied_disjunct(np.array([1.0, 2.0, 2.0])) is None  # the Property is strict too
    assert any("strict" in note for note in prop.notes)
    x = np.array([0.5, 0.5], np.float32)
    assert not q.holds(x, np.array([1.0, 2.0, 2.0], np.float32))  # on the boundary: only non-strict holds
    assert q.holds(x, np.array([np.nextafter(np.float32(1), np.float32(0)), 2.0, 2.0], np.float32))
    assert q.holds(x, np.array([1.0, 2.0, 3.0], np.float32))
    assert not q.holds(x, np.array([np.nan, 2.0, 2.0], np.float32))
    assert not q.holds(np.array([1.5, 0.5], np.float32), np.array([0.0, 2.0, 3.0], np.float32))  # outside


def test_constants_are_read_exactly():
    q = parse_vnnlib2(query("(assert (and (>= X[0] 0.0) (<= X[0] 1.0) (>= X[1] 0.0) (<= X[1] 1.0)))\n"
                            "(assert (>= Y[0] 0.1))", y="1"))
    y = np.array([0.1], np.float64)  # float64(0.1) is just above 1/10, so it satisfies Y >= 0.1 exactly
    assert q.holds(np.zeros(2), y) and not q.holds(np.zeros(2), np.nextafter(y, 0))


def test_constraints_outside_the_normal_form_are_unsupported_unless_relaxed():
    q = parse_vnnlib2(query("(assert (and (>= X[0] 0.0) (<= X[0] 2.0) (>= X[1] 0.0) (<= X[1] 2.0)))\n"
                            "(assert (>= (+ (* 0.5 X[0]) (* 0.75 X[1])) 2.5))\n(assert (<= (* Y[0] Y[1]) X[0]))"))
    with pytest.raises(UnsupportedQuery, match="2 constraint") as info:
        q.to_property()
    assert info.value.kind == "constraints" and info.value.exit_code == ExitCode.UNKNOWN
    relaxed = q.to_property(relax=True)
    assert relaxed.cases[0].disjuncts[0].rows == 0 and any("left out" in n for n in relaxed.notes)
    assert q.holds(np.array([2.0, 2.0]), np.array([1.0, 1.0, 0.0])) and not q.holds(np.ones(2), np.zeros(3))


@pytest.mark.parametrize("text, kind", [
    (query("(assert (<= Y[0] 1.0))", element_type="float16"), "element-type"),
    (HEADER.format(t="float32", x="1", y="1") + "(declare-network M\n  (declare-input A float32 [1])\n"
     "  (declare-output B float32 [1])\n)\n(assert (<= B[0] Y[0]))", "networks"),
    ("(vnnlib-version <2.0>)\n(declare-network N\n  (declare-input X float32 [1])\n  (declare-hidden H float32 [1] "
     "\"h\")\n  (declare-output Y float32 [1])\n)\n(assert (<= H[0] 1.0))", "hidden"),
    ("(vnnlib-version <2.0>)\n(declare-network N\n  (declare-input X float32 [1])\n  (declare-input Z float32 [1])\n"
     "  (declare-output Y float32 [1])\n)\n(assert (<= Y[0] 1.0))", "inputs-outputs"),
    (query("(assert (<= X[0] 1.0))\n(assert (<= Y[0] 1.0))", y="1"), "unbounded-input"),
])
def test_queries_verikit_cannot_answer_are_unknown_with_a_reason(text, kind, tmp_path):
    with pytest.raises(UnsupportedQuery) as info:
        parse_vnnlib2(text, source="q.vnnlib").to_property()
    assert info.value.kind == kind and str(info.value).startswith("q.vnnlib")
    path = tmp_path / "q.vnnlib"
    path.write_text(text)
    result = CliRunner().invoke(main, ["verify", str(TINY), str(path)])
    assert result.exit_code == ExitCode.UNKNOWN, result.output
    assert "error" not in result.output.lower() and "UNKNOWN" in result.output.upper()
    answer = run_instance(TINY, path)
    assert answer.verdict.value == "unknown" and answer.reason.startswith(str(path))


def test_verify_checks_a_2_0_query_against_the_network(tmp_path):
    path = tmp_path / "named.vnnlib"
    path.write_text("(vnnlib-version <2.0>)\n(declare-network N\n  (declare-input X float32 [2])\n"
                    "  (declare-output Y float32 [3])\n)\n"
                    "(assert (and (>= X[0] 0.0) (<= X[0] 1.0) (>= X[1] 0.0) (<= X[1] 1.0)))\n(assert (<= Y[0] 1.0))")
    result = CliRunner().invoke(main, ["verify", str(TINY), str(path)])
    assert result.exit_code == ExitCode.BAD_INPUT, result.output
    assert "output Y has 3 elements" in result.output


def test_the_network_must_fit_the_declaration(tmp_path):
    from verikit.onnx.load import load_network

    network = load_network(TINY)
    q = parse_vnnlib2(query("(assert (and (>= X[0,0] 0.0) (<= X[0,0] 1.0) (>= X[0,1] 0.0) (<= X[0,1] 1.0)))\n"
                            "(assert (<= Y[0] 1.0))", x="1,2", y="1"), source="q.vnnlib")
    q.check_network(network)
    with pytest.raises(SpecError, match=r"q.vnnlib:4:3: output Y has 3 elements"):
        parse_vnnlib2(query("(assert (<= Y[0] 1.0))"), source="q.vnnlib").check_network(network)
    q.networks[0].tensors[0].onnx_name = "image"
    with pytest.raises(SpecError, match="names ONNX node image but the model's input is 'input'"):
        q.check_network(network)


# ----- malformed input: exit code 3, one line with line and column -----

@pytest.mark.parametrize("body, place, fragment", [
    ("(assert (<= Y[0] 1.0)", "6:21", "unexpected end of the text"),
    ("(assert (<= Y[0] 1.0 2.0))", "6:22", "unexpected '2.0'"),
    ("(assert (<= Y[5] 1.0))", "6:13", "Index out of bounds"),
    ("(assert (<= Z[0] 1.0))", "6:13", "Undeclared variable 'Z'"),
    ("(assert (<= Y[0] 1))", "6:18", "Type mismatch"),
])
def test_malformed_2_0_exits_3_with_one_located_line(body, place, fragment, tmp_path):
    path = tmp_path / "bad.vnnlib"
    path.write_text(query(body))
    with pytest.raises(SpecError, match=f"bad.vnnlib:{place}: .*{fragment}"):
        load_spec(path)
    result = CliRunner().invoke(main, ["verify", str(TINY), str(path)])
    assert result.exit_code == 3
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith(f"verikit: error: {path}:{place}: "), result.stderr


def test_missing_version_line_is_explained():
    with pytest.raises(SpecError, match=r"3:1: .*starts with \(vnnlib-version <2.0>\)"):
        parse_vnnlib2("; no version\n\n(declare-network N (declare-input X real [1]) (declare-output Y real [1]))")


def test_deep_nesting_is_refused_without_crashing_the_process(tmp_path):
    depth = 50_000  # the package's C++ parser overflows its stack around 40,000 levels
    path = tmp_path / "deep.vnnlib"
    path.write_text(query("(assert " + "(and (<= Y[0] 1.0) " * depth + "(<= Y[1] 1.0)" + ")" * (depth + 1)))
    code = ("import sys\nfrom verikit.core.errors import SpecError\nfrom verikit.spec.load import load_spec\n"
            "try:\n    load_spec(sys.argv[1])\nexcept SpecError as error:\n    print(error)\n")
    done = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, timeout=120,
                          cwd=ROOT)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "deep.vnnlib:6:" in done.stdout and "nested more than 200 levels deep" in done.stdout
