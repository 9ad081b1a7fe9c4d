"""VNN-LIB 1.0 writing: plain decimals and exact round trips through the reader."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from verikit.core.property import Box, Case, Conjunction, Property
from verikit.spec.vnnlib import format_number, parse_vnnlib, read_vnnlib, save_vnnlib, write_vnnlib

FLOATS = st.floats(allow_nan=False, allow_infinity=False, width=64)


@pytest.mark.parametrize(
    "value, text",
    [(0.5, "0.5"), (-0.5, "-0.5"), (3.0, "3.0"), (1e-05, "0.00001"), (1.5e16, "15000000000000000"),
     (-0.0, "-0.0"), (0.1, "0.1")],
)
def test_format_number_is_plain_decimal(value: float, text: str) -> None:
    assert format_number(value) == text


@given(FLOATS)
def test_format_number_round_trips_exactly(value: float) -> None:
    text = format_number(value)
    assert "e" not in text.lower()
    assert float(text) == value and np.signbit(float(text)) == np.signbit(value)


def test_format_number_refuses_non_finite() -> None:
    with pytest.raises(ValueError):
        format_number(float("inf"))


@st.composite
def properties(draw) -> Property:
    n_inputs = draw(st.integers(1, 4))
    n_outputs = draw(st.integers(1, 4))
    cases, seen = [], set()
    for _ in range(draw(st.integers(1, 3))):
        a = draw(arrays(np.float64, n_inputs, elements=FLOATS))
        b = draw(arrays(np.float64, n_inputs, elements=FLOATS))
        low, high = np.minimum(a, b), np.maximum(a, b)
        open_lower = draw(arrays(np.bool_, n_inputs)) & (low < high)
        open_upper = draw(arrays(np.bool_, n_inputs)) & (low < high)
        box = Box(low, high, open_lower, open_upper)
        key = box.lower.tobytes() + box.upper.tobytes() + open_lower.tobytes() + open_upper.tobytes()
        if key in seen:  # the reader groups terms by box: equal boxes would merge into one case
            continue
        seen.add(key)
        disjuncts = []
        for _ in range(draw(st.integers(1, 3))):
            rows = draw(st.integers(1, 3))
            entries = st.one_of(FLOATS, st.sampled_from([1.0, -1.0]))
            C = draw(arrays(np.float64, (rows, n_outputs), elements=entries))
            d = draw(arrays(np.float64, rows, elements=st.one_of(FLOATS, st.just(0.0))))
            disjuncts.append(Conjunction(C, d, draw(arrays(np.bool_, rows))))
        cases.append(Case(box, tuple(disjuncts)))
    return Property(tuple(cases), n_inputs, n_outputs, source="generated")


def assert_same(a: Property, b: Property) -> None:
    assert (a.n_inputs, a.n_outputs, len(a.cases)) == (b.n_inputs, b.n_outputs, len(b.cases))
    for case_a, case_b in zip(a.cases, b.cases):
        written = case_b.box.holding_float32()[0]  # as the reader widens bounds without a float32 between
        assert case_a.box.lower.tobytes() == written.lower.tobytes()
        assert case_a.box.upper.tobytes() == written.upper.tobytes()
        np.testing.assert_array_equal(case_a.box.open_lower, written.open_lower)
        np.testing.assert_array_equal(case_a.box.open_upper, written.open_upper)
        assert len(case_a.disjuncts) == len(case_b.disjuncts)
        for x, y in zip(case_a.disjuncts, case_b.disjuncts):
            np.testing.assert_array_equal(x.C, y.C)  # equal values (a -0.0 in C may come back as 0.0)
            np.testing.assert_array_equal(x.d, y.d)
            np.testing.assert_array_equal(x.strict, y.strict)


@settings(max_examples=200, deadline=None)
@given(properties())
def test_write_then_parse_gives_the_same_arrays(prop: Property) -> None:
    text = write_vnnlib(prop)
    assert re.search(r"[0-9.][eE][+-]?[0-9]", text) is None
    assert_same(parse_vnnlib(text), prop)


def box(n: int, low: float = 0.0, high: float = 1.0) -> Box:
    return Box(np.full(n, low), np.full(n, high))


def test_zero_row_disjuncts_round_trip() -> None:
    empty = Conjunction(np.zeros((0, 2)), np.zeros(0))
    row = Conjunction(np.array([[1.0, -1.0]]), np.zeros(1))
    single = Property((Case(box(2), (empty,)),), 2, 2)
    mixed = Property((Case(box(2), (row, empty)), Case(box(2, 1.0, 2.0), (row,))), 2, 2)
    for prop in (single, mixed):
        assert_same(parse_vnnlib(write_vnnlib(prop)), prop)


def test_zero_coefficient_row_round_trips() -> None:
    prop = Property((Case(box(1), (Conjunction(np.zeros((1, 2)), np.array([2.5])),)),), 1, 2)
    assert_same(parse_vnnlib(write_vnnlib(prop)), prop)


def test_cases_without_disjuncts_are_left_out() -> None:
    row = Conjunction(np.array([[1.0]]), np.array([0.0]))
    prop = Property((Case(box(1), ()), Case(box(1, 2.0, 3.0), (row,))), 1, 1)
    back = parse_vnnlib(write_vnnlib(prop))
    assert len(back.cases) == 1 and back.cases[0].box.lower[0] == 2.0
    nothing = parse_vnnlib(write_vnnlib(Property((Case(box(3), ()),), 3, 1)))
    assert nothing.cases == () and nothing.n_inputs == 3


def test_header_and_readable_rows() -> None:
    C = np.array([[1.0, 0.0], [0.0, -1.0], [1.0, -1.0], [2.0, 0.5]])
    rows = Conjunction(C, np.array([1.0, -2.0, 0.0, 3.0]))
    prop = Property((Case(box(1), (rows,)),), 1, 2, source="a\nb.vnnlib", sha256="ab" * 32)
    text = write_vnnlib(prop)
    assert text.startswith("; VNN-LIB 1.0 written by verikit")
    assert "; source: a b.vnnlib" in text
    for line in ("(assert (<= Y_0 1.0))", "(assert (>= Y_1 2.0))", "(assert (<= Y_0 Y_1))",
                 "(assert (<= (+ (* 2.0 Y_0) (* 0.5 Y_1)) 3.0))"):
        assert line in text


def test_save_and_read_back(tmp_path: Path) -> None:
    prop = Property((Case(box(2, -0.25, 0.75), (Conjunction(np.array([[0.0, 1.0]]), np.array([1e-7])),)),), 2, 2)
    path = tmp_path / "out.vnnlib"
    save_vnnlib(prop, path)
    back = read_vnnlib(path)
    assert_same(back, prop)
    assert back.source == str(path)


BENCHMARKS = Path(__file__).resolve().parents[2] / "shared" / "benchmarks"


@pytest.mark.skipif(not BENCHMARKS.exists(), reason="no shared benchmarks")
@pytest.mark.parametrize("name", ["acasxu/prop_6.vnnlib", "acasxu/prop_7.vnnlib", "mnistfc/prop_1_0.05.vnnlib"])
def test_benchmark_files_round_trip(name: str) -> None:
    prop = read_vnnlib(BENCHMARKS / name)
    assert_same(parse_vnnlib(write_vnnlib(prop)), prop)
