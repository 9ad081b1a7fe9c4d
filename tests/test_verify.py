"""The portfolio: expected answers on the examples, the translation cross-check, budgets."""

import csv
import dataclasses
import time

import pytest
import torch

from tests.conftest import ROOT, SPECS
from verikit.onnx.load import load_network
from verikit.core.result import Falsified, Proven, Verdict
from verikit.spec.load import load_spec
from verikit.portfolio.options import Options
from verikit.portfolio.runner import verify
from verikit.run import run_instance


def expected_rows():
    with (SPECS / "expected.csv").open() as handle:
        return list(csv.DictReader(handle))


@pytest.mark.parametrize("row", expected_rows(), ids=lambda row: row["vnnlib"].split("/")[-1])
def test_examples_get_their_expected_answer(row):
    result = run_instance(ROOT / row["onnx"], ROOT / row["vnnlib"], Options(timeout=60))
    network = load_network(ROOT / row["onnx"])
    assert result.verdict.vnncomp == row["truth"], result.reason
    if result.verdict is Verdict.FALSIFIED:
        cex = result.counterexample
        case = load_spec(ROOT / row["vnnlib"]).cases[[c.index for c in result.cases
                                                      if isinstance(c.outcome, Falsified)][0]]
        assert case.box.contains(cex.x)
        assert case.disjuncts[cex.disjunct].holds(network.replay(cex.x[None, :])[0])
    else:
        assert all(isinstance(c.outcome, Proven) for c in result.cases)


def test_attack_alone_cannot_verify():
    row = next(r for r in expected_rows() if r["truth"] == "unsat")
    result = run_instance(ROOT / row["onnx"], ROOT / row["vnnlib"],
                          Options(timeout=2, engines=("attack",)))
    assert result.verdict in (Verdict.UNKNOWN, Verdict.TIMEOUT)
    assert result.seconds > 1.8  # alone, the attack searches for the whole budget, not just its portfolio share


def test_bounds_alone_cannot_falsify():
    row = next(r for r in expected_rows() if r["truth"] == "sat" and "digits" in r["onnx"])
    result = run_instance(ROOT / row["onnx"], ROOT / row["vnnlib"],
                          Options(timeout=10, engines=("bounds",)))
    assert result.verdict is Verdict.UNKNOWN


class _Shifted(torch.nn.Module):
    def __init__(self, inner):
        super().__init__()
        self.inner = inner

    def forward(self, x):
        return self.inner(x) + 0.5


def test_translation_mismatch_is_an_error_verdict_not_an_answer():
    row = next(r for r in expected_rows() if r["truth"] == "unsat")
    network = load_network(ROOT / row["onnx"])
    broken = dataclasses.replace(network, module=_Shifted(network.module))
    result = verify(broken, load_spec(ROOT / row["vnnlib"]), Options(timeout=10))
    assert result.verdict is Verdict.ERROR
    assert "onnxruntime" in result.reason


def test_timeout_is_honoured_within_ten_percent():
    row = next(r for r in expected_rows() if r["truth"] == "unsat" and "mlp" in r["onnx"])
    options = Options(timeout=3.0, engines=("attack",))
    started = time.monotonic()
    result = run_instance(ROOT / row["onnx"], ROOT / row["vnnlib"], options)
    assert result.verdict is Verdict.TIMEOUT
    assert time.monotonic() - started < 3.0 * 1.1 + 1.0  # + model and spec loading
    assert result.seconds < 3.0 * 1.1
