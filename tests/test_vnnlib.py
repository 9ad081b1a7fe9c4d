"""VNN-LIB 1.0 reading: the real benchmark files, the syntax they use, the normal form, and errors."""

from __future__ import annotations

import gzip
import hashlib
import re
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from verikit.core.errors import SpecError
from verikit.spec.vnnlib import parse_vnnlib, read_vnnlib

BENCHMARKS = Path(__file__).resolve().parents[2] / "shared" / "benchmarks"
BENCHMARK_FILES = sorted(
    path for folder in ("test", "acasxu", "mnistfc") for path in (BENCHMARKS / folder).glob("*.vnnlib")
)
needs_benchmarks = pytest.mark.skipif(not BENCHMARK_FILES, reason=f"no benchmarks under {BENCHMARKS}")

DECLARE_1_1 = "(declare-const X_0 Real)\n(declare-const Y_0 Real)\n"


def declarations(n_inputs: int, n_outputs: int) -> str:
    return "".join(f"(declare-const X_{i} Real)\n" for i in range(n_inputs)) + "".join(
        f"(declare-const Y_{j} Real)\n" for j in range(n_outputs)
    )


# ----- the real files -----


@needs_benchmarks
@pytest.mark.parametrize("path", BENCHMARK_FILES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_every_benchmark_file_parses(path: Path) -> None:
    prop = read_vnnlib(path)
    expected = {"acasxu": (5, 5), "mnistfc": (784, 10)}.get(path.parent.name)
    if expected:
        assert (prop.n_inputs, prop.n_outputs) == expected
    assert prop.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert prop.source == str(path)
    assert prop.cases
    for case in prop.cases:
        assert np.isfinite(case.box.lower).all() and np.isfinite(case.box.upper).all()
        assert not case.box.is_empty
        assert case.disjuncts and all(c.rows >= 1 for c in case.disjuncts)


def bench(relative: str):
    path = BENCHMARKS / relative
    if not path.exists():
        pytest.skip(f"{path} is absent")
    return read_vnnlib(path)


def test_acasxu_prop_1_is_one_row_on_y0() -> None:
    prop = bench("acasxu/prop_1.vnnlib")
    assert len(prop.cases) == 1 and len(prop.cases[0].disjuncts) == 1
    (conjunction,) = prop.cases[0].disjuncts
    np.testing.assert_array_equal(conjunction.C, [[-1.0, 0, 0, 0, 0]])  # Y_0 >= 3.99... as -Y_0 <= -3.99...
    np.testing.assert_array_equal(conjunction.d, [-3.991125645861615])
    np.testing.assert_array_equal(prop.cases[0].box.lower, [0.6, -0.5, -0.5, 0.45, -0.5])
    np.testing.assert_array_equal(prop.cases[0].box.upper, [0.679857769, 0.5, 0.5, 0.5, -0.45])


def test_acasxu_prop_2_is_four_rows_in_one_conjunction() -> None:
    prop = bench("acasxu/prop_2.vnnlib")
    (case,) = prop.cases
    (conjunction,) = case.disjuncts
    expected = np.zeros((4, 5))
    for row, j in enumerate(range(1, 5)):  # (<= Y_j Y_0): Y_j - Y_0 <= 0
        expected[row, j], expected[row, 0] = 1.0, -1.0
    np.testing.assert_array_equal(conjunction.C, expected)
    np.testing.assert_array_equal(conjunction.d, np.zeros(4))


def test_acasxu_prop_6_has_two_boxes() -> None:
    prop = bench("acasxu/prop_6.vnnlib")
    assert len(prop.cases) == 2
    first, second = prop.cases
    assert [len(c.disjuncts) for c in prop.cases] == [4, 4]
    assert first.box.lower[1] == 0.11140846 and first.box.upper[1] == 0.499999896
    assert second.box.lower[1] == -0.499999896 and second.box.upper[1] == -0.11140846
    for a, b in zip(first.disjuncts, second.disjuncts):
        np.testing.assert_array_equal(a.C, b.C)


def test_acasxu_prop_7_has_two_disjuncts_of_three_rows() -> None:
    prop = bench("acasxu/prop_7.vnnlib")
    (case,) = prop.cases
    assert [c.rows for c in case.disjuncts] == [3, 3]


def test_test_tiny_mixes_inputs_and_outputs_in_one_disjunct() -> None:
    prop = bench("test/test_tiny.vnnlib")
    (case,) = prop.cases
    np.testing.assert_array_equal(case.box.lower, [-1.0])
    np.testing.assert_array_equal(case.box.upper, [1.0])
    (conjunction,) = case.disjuncts
    np.testing.assert_array_equal(conjunction.C, [[-1.0]])
    np.testing.assert_array_equal(conjunction.d, [-100.0])


def test_mnistfc_prop_is_nine_single_row_disjuncts() -> None:
    prop = bench("mnistfc/prop_0_0.03.vnnlib")  # label 8
    (case,) = prop.cases
    assert len(case.disjuncts) == 9
    others = [j for j in range(10) if j != 8]
    for conjunction, j in zip(case.disjuncts, others):  # (>= Y_j Y_8): Y_8 - Y_j <= 0
        expected = np.zeros((1, 10))
        expected[0, 8], expected[0, j] = 1.0, -1.0
        np.testing.assert_array_equal(conjunction.C, expected)
        np.testing.assert_array_equal(conjunction.d, [0.0])
    assert (case.box.lower >= 0).all() and (case.box.upper <= 1).all()


# ----- syntax -----


def test_syntax_variants() -> None:
    text = """; leading comment
(declare-const X_0 Real) (declare-const X_1 Real)   ; two on a line
(declare-fun Y_0 () Real)
(declare-const Y_1 Real)
(set-logic QF_LRA)
(assert (and (<= X_0 1)(>= X_0 -0.5)))
(assert (>= X_1 (- 0.5)))
(assert
    (<=
        X_1
        2.5e-1))
(assert (or (and (<= (+ Y_0 (* 2 Y_1)) 1E2)) (and (>= (- Y_0 Y_1) (- 3)))))
(check-sat)
"""
    prop = parse_vnnlib(text)
    (case,) = prop.cases
    np.testing.assert_array_equal(case.box.lower, [-0.5, -0.5])
    np.testing.assert_array_equal(case.box.upper, [1.0, 0.25])
    first, second = case.disjuncts
    np.testing.assert_array_equal(first.C, [[1.0, 2.0]])
    np.testing.assert_array_equal(first.d, [100.0])
    np.testing.assert_array_equal(second.C, [[-1.0, 1.0]])  # Y_0 - Y_1 >= -3  <=>  -Y_0 + Y_1 <= 3
    np.testing.assert_array_equal(second.d, [3.0])
    assert prop.notes == ()


def test_strict_comparisons_keep_their_strictness_and_are_noted() -> None:
    prop = parse_vnnlib(DECLARE_1_1 + "(assert (> X_0 0))(assert (<= X_0 1))(assert (< Y_0 5))")
    (case,) = prop.cases
    assert case.box.lower[0] == 0.0 and case.box.upper[0] == 1.0  # the engines search the closed box
    assert case.box.open_lower.tolist() == [True] and case.box.open_upper.tolist() == [False]
    assert not case.box.contains(np.array([0.0])) and case.box.contains(np.array([1.0]))
    (conjunction,) = case.disjuncts
    assert conjunction.strict.tolist() == [True]
    assert case.satisfied_disjunct(np.array([5.0])) is None  # y = 5 does not satisfy y < 5
    assert case.satisfied_disjunct(np.array([4.5])) == 0
    assert any("strict" in note for note in prop.notes)


def test_a_strict_bound_wins_over_an_equal_non_strict_one() -> None:
    prop = parse_vnnlib(DECLARE_1_1 + "(assert (<= X_0 1))(assert (< X_0 1))(assert (>= X_0 0))(assert (<= Y_0 5))")
    assert prop.cases[0].box.open_upper.tolist() == [True]


def test_strict_bounds_that_meet_leave_an_empty_box() -> None:
    prop = parse_vnnlib(DECLARE_1_1 + "(assert (>= X_0 1))(assert (< X_0 1))(assert (<= Y_0 5))")
    assert prop.cases == ()
    assert any("empty input box" in note for note in prop.notes)


def test_a_false_strict_constant_comparison_drops_the_term() -> None:
    prop = parse_vnnlib(DECLARE_1_1 + "(assert (<= 0 X_0 1))(assert (or (< 1 1) (<= Y_0 5)))")
    (case,) = prop.cases
    assert len(case.disjuncts) == 1 and case.disjuncts[0].rows == 1


def test_equality_chains_and_tighter_bounds() -> None:
    prop = parse_vnnlib(
        declarations(2, 2)
        + "(assert (<= -1 X_0 0.5))(assert (<= X_0 2))(assert (= X_1 0.25))(assert (= Y_0 Y_1))(assert (<= 0 1))"
    )
    (case,) = prop.cases
    np.testing.assert_array_equal(case.box.lower, [-1.0, 0.25])
    np.testing.assert_array_equal(case.box.upper, [0.5, 0.25])
    np.testing.assert_array_equal(case.disjuncts[0].C, [[1.0, -1.0], [-1.0, 1.0]])


def test_linear_input_bound_with_a_coefficient() -> None:
    prop = parse_vnnlib(DECLARE_1_1 + "(assert (<= (* 2 X_0) 1))(assert (>= (- X_0) -3))(assert (>= X_0 0))")
    np.testing.assert_array_equal(prop.cases[0].box.upper, [0.5])


def test_term_without_outputs_is_a_zero_row_conjunction() -> None:
    prop = parse_vnnlib(DECLARE_1_1 + "(assert (>= X_0 0))(assert (<= X_0 1))")
    (case,) = prop.cases
    (conjunction,) = case.disjuncts
    assert conjunction.C.shape == (0, 1) and conjunction.rows == 0
    assert case.satisfied_disjunct(np.array([123.0])) == 0  # always holds


def test_terms_with_the_same_box_form_one_case_in_order() -> None:
    box_a = "(>= X_0 0) (<= X_0 1)"
    box_b = "(>= X_0 2) (<= X_0 3)"
    text = DECLARE_1_1 + (
        f"(assert (or (and {box_a} (<= Y_0 1)) (and {box_b} (<= Y_0 2)) (and (<= X_0 1) (>= X_0 0) (<= Y_0 3))))"
    )
    prop = parse_vnnlib(text)
    assert [case.box.lower[0] for case in prop.cases] == [0.0, 2.0]
    assert [c.d[0] for c in prop.cases[0].disjuncts] == [1.0, 3.0]
    assert [c.d[0] for c in prop.cases[1].disjuncts] == [2.0]


def test_empty_boxes_are_dropped_and_noted() -> None:
    text = DECLARE_1_1 + "(assert (or (and (>= X_0 2) (<= X_0 1)) (and (>= X_0 0) (<= X_0 1) (<= Y_0 0))))"
    prop = parse_vnnlib(text)
    assert len(prop.cases) == 1 and prop.cases[0].box.upper[0] == 1.0
    assert any("empty input box" in note for note in prop.notes)
    never = parse_vnnlib(DECLARE_1_1 + "(assert (>= X_0 2))(assert (<= X_0 1))")
    assert never.cases == () and any("never be violated" in note for note in never.notes)


def test_false_constant_comparison_drops_the_term() -> None:
    prop = parse_vnnlib(DECLARE_1_1 + "(assert (>= X_0 0))(assert (<= X_0 1))(assert (or (<= 2 1) (<= Y_0 0)))")
    assert len(prop.cases[0].disjuncts) == 1


def test_gzip_file_and_hash(tmp_path: Path) -> None:
    text = DECLARE_1_1 + "(assert (>= X_0 0))(assert (<= X_0 1))(assert (<= Y_0 0))"
    path = tmp_path / "spec.vnnlib.gz"
    path.write_bytes(gzip.compress(text.encode()))
    prop = read_vnnlib(path)
    assert prop.sha256 == hashlib.sha256(text.encode()).hexdigest()
    assert prop.source == str(path)


def test_large_cifar_like_box_parses() -> None:
    n = 3072
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 1, n)
    body = "".join(
        f"(assert (<= X_{i} {float(high)!r}))\n(assert (>= X_{i} {float(low)!r}))\n"
        for i, (low, high) in enumerate(zip(x - 0.01, x + 0.01))
    )
    outputs = " ".join(f"(and (>= Y_{j} Y_3))" for j in range(10) if j != 3)
    prop = parse_vnnlib(declarations(n, 10) + body + f"(assert (or {outputs}))")
    (case,) = prop.cases
    np.testing.assert_array_equal(case.box.upper, x + 0.01)
    assert len(case.disjuncts) == 9


# ----- errors -----

ERRORS = [
    ("unbalanced open", DECLARE_1_1 + "(assert (<= X_0 1)\n", "3:1", "never closed"),
    ("unbalanced close", DECLARE_1_1 + "(assert (<= X_0 1)))", "3:20", "unexpected ')'"),
    ("undeclared", DECLARE_1_1 + "(assert (<= X_1 1))", "3:13", "undeclared variable 'X_1'"),
    ("bad number", DECLARE_1_1 + "(assert (<= X_0 1.2.3))", "3:17", "bad number '1.2.3'"),
    ("overflow", DECLARE_1_1 + "(assert (<= X_0 1e999))", "3:17", "out of the float64 range"),
    ("unknown symbol", DECLARE_1_1 + "(assert (<= X_0 pi))", "3:17", "unknown symbol 'pi'"),
    ("unknown operator", DECLARE_1_1 + "\n  (assert (not (<= X_0 1)))", "4:11", "unknown operator 'not'"),
    ("unknown command", DECLARE_1_1 + "(define-fun f () Real 1)", "3:1", "unknown command"),
    ("declare type", "(declare-const X_0 Int)", "1:20", "must be declared Real"),
    ("declare shape", "(declare-const X_0)", "1:1", "malformed declare-const"),
    ("declare twice", DECLARE_1_1 + "(declare-const X_0 Real)", "3:1", "declared twice"),
    ("prefix", "(declare-const Z_0 Real)", "1:16", "unknown variable prefix 'Z'"),
    ("name", "(declare-const input Real)", "1:16", "cannot read variable name"),
    ("gap", declarations(1, 1) + "(declare-const X_2 Real)", "3:1", "X_1 is not"),
    ("empty", "", "1:1", "empty"),
    ("only comments", "; nothing\n", "1:1", "empty"),
    ("input constraint", declarations(2, 1) + "(assert (<= (+ X_0 X_1) 1))", "4:9", "unsupported input"),
    ("mixed", DECLARE_1_1 + "(assert (<= X_0 Y_0))", "3:9", "mixes inputs"),
    ("nonlinear", declarations(1, 2) + "(assert (<= (* Y_0 Y_1) 1))", "4:13", "nonlinear"),
    ("assert arity", DECLARE_1_1 + "(assert (<= X_0 1) (>= X_0 0))", "3:1", "exactly one formula"),
    ("vnnlib 2", "(vnnlib-version <2.0>)\n(declare-network N)", "1:1", "VNN-LIB 2.0 is not supported"),
    ("vnnlib 2 input", "(declare-input X Real [1])", "1:1", "VNN-LIB 2.0 is not supported"),
    ("missing bound", DECLARE_1_1 + "(assert (<= X_0 1))", "1:1", "X_0 (declared here) has no lower bound"),
    ("no outputs", "(declare-const X_0 Real)(assert (<= X_0 1))", None, "declares no outputs"),
    ("top-level atom", DECLARE_1_1 + "assert", "3:1", "expected a command"),
]


@pytest.mark.parametrize("text, line_col, fragment", [e[1:] for e in ERRORS], ids=[e[0] for e in ERRORS])
def test_errors_name_the_place(text: str, line_col: str | None, fragment: str) -> None:
    with pytest.raises(SpecError) as info:
        parse_vnnlib(text, source="spec.vnnlib")
    message = str(info.value)
    assert fragment in message
    assert message.startswith("spec.vnnlib")
    if line_col is not None:
        assert message.startswith(f"spec.vnnlib:{line_col}: "), message


def test_dnf_blow_up_is_refused() -> None:
    disjunction = "(assert (or " + " ".join(f"(<= Y_0 {k})" for k in range(10)) + "))\n"
    text = DECLARE_1_1 + "(assert (>= X_0 0))(assert (<= X_0 1))\n" + disjunction * 6
    with pytest.raises(SpecError, match=r"spec.vnnlib:9:1: the formula expands to 1,000,000 terms"):
        parse_vnnlib(text, source="spec.vnnlib")
    smaller = DECLARE_1_1 + "(assert (>= X_0 0))(assert (<= X_0 1))\n" + disjunction * 3
    with pytest.raises(SpecError, match="more than the limit of 100"):
        parse_vnnlib(smaller, max_terms=100)
    assert len(parse_vnnlib(smaller, max_terms=1000).cases[0].disjuncts) == 1000


def test_missing_file_is_a_spec_error(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="not found"):
        read_vnnlib(tmp_path / "nope.vnnlib")


# ----- semantics: the normal form agrees with evaluating the formula directly -----


def _read_tree(text: str):
    """An independent mini reader: nested Python lists of strings."""
    tokens = re.findall(r"[()]|[^\s()]+", re.sub(r";[^\n]*", "", text))
    stack: list[list] = [[]]
    for token in tokens:
        if token == "(":
            stack.append([])
        elif token == ")":
            done = stack.pop()
            stack[-1].append(done)
        else:
            stack[-1].append(token)
    return stack[0]


def _value(node, env: dict) -> float:
    if isinstance(node, str):
        return env[node] if node in env else float(node)
    op, args = node[0], [_value(arg, env) for arg in node[1:]]
    if op == "+":
        return sum(args)
    if op == "-":
        return -args[0] if len(args) == 1 else args[0] - sum(args[1:])
    assert op == "*"
    return float(np.prod(args))


def _holds(node, env: dict) -> bool:
    op, args = node[0], node[1:]
    if op == "and":
        return all(_holds(arg, env) for arg in args)
    if op == "or":
        return any(_holds(arg, env) for arg in args)
    values = [_value(arg, env) for arg in args]
    compare = {"<=": lambda a, b: a <= b, ">=": lambda a, b: a >= b, "=": lambda a, b: a == b}[op]
    return all(compare(a, b) for a, b in zip(values, values[1:]))


GRID = [-1.0, -0.5, 0.0, 0.5, 1.0]


@st.composite
def formulas(draw, n_inputs: int, n_outputs: int) -> str:
    op = st.sampled_from(["<=", ">="])
    constant = st.sampled_from(GRID).map(repr)
    x = st.integers(0, n_inputs - 1).map(lambda i: f"X_{i}")
    y = st.integers(0, n_outputs - 1).map(lambda j: f"Y_{j}")
    y_term = st.one_of(
        y, y.map(lambda v: f"(- {v})"), st.tuples(y, y).map(lambda p: f"(+ {p[0]} {p[1]})"),
        y.map(lambda v: f"(* 2 {v})"),
    )
    x_atom = st.tuples(op, x, constant).map(lambda t: f"({t[0]} {t[1]} {t[2]})")
    y_atom = st.one_of(
        st.tuples(op, y_term, constant).map(lambda t: f"({t[0]} {t[1]} {t[2]})"),
        st.tuples(st.sampled_from(["<=", ">=", "="]), y, y).map(lambda t: f"({t[0]} {t[1]} {t[2]})"),
    )
    tree = st.recursive(
        st.one_of(x_atom, y_atom),
        lambda children: st.tuples(st.sampled_from(["and", "or"]), st.lists(children, min_size=1, max_size=3))
        .map(lambda t: f"({t[0]} {' '.join(t[1])})"),
        max_leaves=12,
    )
    return draw(tree)


@settings(max_examples=150, deadline=None)
@given(st.data())
def test_normal_form_agrees_with_direct_evaluation(data) -> None:
    n_inputs = data.draw(st.integers(1, 3))
    n_outputs = data.draw(st.integers(1, 3))
    asserts = data.draw(st.lists(formulas(n_inputs, n_outputs), min_size=1, max_size=3))
    bounds = " ".join(f"(>= X_{i} -1.5) (<= X_{i} 1.5)" for i in range(n_inputs))
    text = declarations(n_inputs, n_outputs) + f"(assert (and {bounds}))\n" + "".join(
        f"(assert {a})\n" for a in asserts
    )
    prop = parse_vnnlib(text)
    formula = ["and"] + [node[1] for node in _read_tree(text) if node[0] == "assert"]
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    points = np.arange(-2.0, 2.01, 0.25)
    for _ in range(40):
        x, y = rng.choice(points, n_inputs), rng.choice(points, n_outputs)
        env = {f"X_{i}": x[i] for i in range(n_inputs)} | {f"Y_{j}": y[j] for j in range(n_outputs)}
        direct = _holds(formula, env)
        normal = any(case.box.contains(x) and case.satisfied_disjunct(y) is not None for case in prop.cases)
        assert direct == normal, (text, x, y)


def test_benchmark_script_runs(tmp_path: Path) -> None:
    import importlib.util

    script = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_vnnlib_parse.py"
    spec = importlib.util.spec_from_file_location("bench_vnnlib_parse", script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    out = tmp_path / "vnnlib_parse.json"
    report = module.main(["--sizes", "20", "--repeats", "1", "--no-real", "--out", str(out)])
    (row,) = report["results"]
    assert row["n_inputs"] == 20 and row["disjuncts"] == 9 and row["parse_s_median"] > 0
    assert out.exists()
