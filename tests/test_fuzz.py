"""Hostile input (issue 14), fast part: the corpus's `fast` cases through every command as subprocesses,
and hypothesis-generated text and bytes through every reader in process. `make fuzz` runs the whole
corpus plus seeded mutations (benchmarks/fuzz.py)."""

from __future__ import annotations

import json
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import hostile
from verikit.core import limits
from verikit.core.errors import VerikitError


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> list[hostile.Case]:
    return hostile.build_cases(tmp_path_factory.mktemp("hostile"))


def test_fast_corpus_exits_cleanly_with_one_line_errors(corpus):
    """Every command meets hostile files and options: exit 0/1/2/3/5 as expected, no traceback, one error line
    naming the file, no hang (each run is killed past its timeout + 1 s + the measured start-up)."""
    fast = [case for case in corpus if case.fast]
    slack = 2.0 * hostile.startup_seconds()
    with ThreadPoolExecutor(max_workers=2) as pool:
        outcomes = list(pool.map(lambda case: hostile.run_case(case, slack=slack), fast))
    found = {case.name: hostile.problems(case, outcome, slack=slack) for case, outcome in zip(fast, outcomes)}
    assert {name: problem for name, problem in found.items() if problem} == {}
    commands = {(case.program, case.args[0]) for case in fast}
    assert commands >= {("verikit", "verify"), ("verikit", "witness"), ("verikit", "audit"), ("verikit", "gate"),
                        ("verikit", "bench"), ("verikit", "run-instance"), ("verikit-vnnlib", "verify")}
    kinds = Counter(case.kind for case in fast)
    assert set(kinds) == {"onnx", "vnnlib1", "vnnlib2", "json", "witness", "csv", "npz", "toml", "option", "output"}


def test_corpus_covers_every_found_item(corpus):
    names = {case.name for case in corpus}
    assert {"toml/baseline-deep-json", "onnx/dev-zero", "onnx/1e9-inputs", "json/num-classes-1e12", "npz/zip-bomb",
            "vnnlib1/bound-1e308", "vnnlib2/400-digits", "csv/audit-not-utf8", "csv/bench-not-utf8",
            "csv/ground-truth-not-utf8", "option/audit--eps-nan", "option/audit--mean-text",
            "option/verify--seed-99999999999999999999999", "output/report-unwritable",
            "output/serialise-unwritable", "onnx/fifo", "vnnlib1/gzip-bomb", "option/formula-tolerance-1e9",
            "option/verify--timeout-nan", "witness/complex-npy", "toml/required-garbage-baseline",
            "onnx/nan-weight", "vnnlib1/product-overflow", "onnx/opset-999"} <= names


def _only_verikit_errors(read, *args) -> None:
    try:
        read(*args)
    except VerikitError as error:
        assert "\n" not in str(error)


FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
SPEC_TEXT = st.lists(st.sampled_from(list("()XY_0123456789.-+e ;\n") + ["assert", "declare-const", "Real", "<=",
                                                                       ">=", "and", "or", "*", "1e999"])).map("".join)


@FUZZ
@given(SPEC_TEXT)
def test_vnnlib_reader_raises_only_spec_errors(text):
    from verikit.spec.vnnlib import parse_vnnlib

    _only_verikit_errors(parse_vnnlib, "(declare-const X_0 Real)(declare-const Y_0 Real)" + text)


@FUZZ
@given(st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5),
                    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
                    max_leaves=20))
def test_json_readers_raise_only_verikit_errors(value):
    from verikit.spec.robustness import robustness_from_dict
    from verikit.witness.formats import parse_json

    text = json.dumps(value)
    _only_verikit_errors(parse_json, text)
    _only_verikit_errors(lambda: robustness_from_dict(limits.load_json(text, "spec", hostile_error(), "s.json")))
    spec = {"format": "verikit-robustness/1", "input": [0.5], "label": 0, "epsilon": 0.1, "num_classes": 2}
    if isinstance(value, dict):
        spec.update(value)
    _only_verikit_errors(robustness_from_dict, spec)


@FUZZ
@given(st.lists(st.sampled_from(list('[]{}="\'#\n .,-x0123456789') + ["version", "nan", "inf", "true"])).map("".join))
def test_policy_reader_raises_only_policy_errors(text):
    from verikit.apps.gate.policy import parse_policy

    _only_verikit_errors(parse_policy, "version = 1\n" + text, Path("p.toml"))


@FUZZ
@given(st.binary(max_size=300))
def test_byte_readers_raise_only_verikit_errors(data):
    from verikit.onnx.load import load_network_bytes
    from verikit.witness.formats import parse_npy, parse_vnncomp

    _only_verikit_errors(limits.load_npy, b"\x93NUMPY\x01\x00" + data, "data", hostile_error(), "x.npy")
    _only_verikit_errors(limits.load_npz, b"PK\x03\x04" + data, ("x", "y"), "data", hostile_error(), "d.npz")
    _only_verikit_errors(limits.gunzip, b"\x1f\x8b" + data, "spec", hostile_error(), "s.gz")
    _only_verikit_errors(load_network_bytes, data, "m.onnx")
    _only_verikit_errors(parse_npy, data, "w.npy")
    _only_verikit_errors(parse_vnncomp, data.decode("latin-1"), "w.txt")


def hostile_error():
    from verikit.core.errors import DataError

    return DataError
