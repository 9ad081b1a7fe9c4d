"""Float-safety gaps of issue 13, each pinned by a case that today's code once got wrong:
float64 re-checks with float32-rounded spec constants, an unchecked piecewise-linear translation,
crossed bounds without splits counted as proof."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from onnx_factory import GraphBuilder

from verikit.core.errors import InternalError
from verikit.core.property import Box, Case, Conjunction, Property
from verikit.core.pwl import Affine, Relu
from verikit.core.result import Budget, Falsified, Proven, Unknown, Verdict
from verikit.engines.bab import engine as bab
from verikit.engines.crown.propagate import ReluMlp, spec_bounds
from verikit.onnx.load import load_network_bytes
from verikit.onnx.ops.elementwise import ReluOp
from verikit.onnx.pwl import to_piecewise_linear
from verikit.portfolio.options import Options
from verikit.portfolio.runner import verify

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _relu_plus(bias: float):
    """y = relu(x) + bias, one input, one output."""
    g = GraphBuilder()
    y = g.op("Add", g.op("Relu", "x"), g.const(np.array([bias])))
    return load_network_bytes(g.build((1, 1), y))


@pytest.mark.parametrize("branching", ["input", "relu"])
def test_float64_recheck_uses_the_cases_own_constants(branching):
    # y = relu(x) + 2^20 on x in [1.05, 2]; the case asks for y <= 2^20 + 1.06, which x = 1.05 satisfies
    # (y = 2^20 + 1.05 in real arithmetic; 2^20 + 1 in float32). d rounds to 2^20 + 1 in float32, where
    # the margin would be +0.05: a float64 re-check with that rounded d "proved" the case.
    network = _relu_plus(2.0**20)
    low = float(np.float32(1.05))
    case = Case(Box(np.array([low]), np.array([2.0])), (Conjunction(np.array([[1.0]]), np.array([2**20 + 1.06])),))
    outcome = bab.run(to_piecewise_linear(network), network, case, Budget.seconds(30), branching=branching)
    assert not isinstance(outcome, Proven)
    assert isinstance(outcome, Falsified)


def test_a_wrong_piecewise_linear_op_is_caught_before_an_engine_uses_it(monkeypatch):
    # A Relu translated as 0.5·relu(x) would let branch and bound prove y >= 0.75 impossible on [0, 1].
    monkeypatch.setattr(ReluOp, "pwl_layers", lambda self, size: (Relu(), Affine(0.5 * np.eye(size), np.zeros(size))))
    network = _relu_plus(0.0)
    case = Case(Box(np.array([0.0]), np.array([1.0])), (Conjunction(np.array([[-1.0]]), np.array([-0.75])),))
    for engines in (("bab",), ("smt",)):
        result = verify(network, Property((case,), 1, 1), Options(engines=engines, timeout=30))
        assert result.verdict is not Verdict.VERIFIED
        assert "piecewise-linear form disagrees with onnxruntime" in result.cases[0].outcome.reason


def test_crossed_layer_bounds_without_splits_are_an_internal_error():
    # A negative error allowance makes a point box's bounds cross: a bug, which must not become a proof.
    g = GraphBuilder()
    h = g.op("Relu", g.op("MatMul", "x", g.const(np.array([[1.0, -1.0]]))))
    network = load_network_bytes(g.build((1, 1), g.op("MatMul", h, g.const(np.array([[1.0], [1.0]])))))
    net = ReluMlp.from_pwl(to_piecewise_linear(network), torch.float64)
    broken = dataclasses.replace(net, gamma=-1e-3)
    x = torch.tensor([[0.5]], dtype=torch.float64)
    with pytest.raises(InternalError, match="without splits"):
        spec_bounds(broken, x, x, torch.tensor([[1.0]], dtype=torch.float64), torch.tensor([-10.0], dtype=torch.float64))


def _sigmoid_net():
    g = GraphBuilder(seed=3)
    h = g.op("Sigmoid", g.op("Gemm", "x", g.weight(4, 2), g.weight(4), transB=1))
    return load_network_bytes(g.build((1, 2), g.op("Gemm", h, g.weight(1, 4), g.weight(1), transB=1)))


def test_an_auto_lirpa_refutation_the_rigorous_crown_cannot_confirm_is_not_proof(monkeypatch):
    # auto_LiRPA's float32 error is covered by an estimated slack only; simulate it being too small by
    # raising its raw bounds: on a ReLU MLP verikit's float64 CROWN must refuse the "proof".
    from verikit.engines.lirpa import driver
    from verikit.engines.lirpa import engine as lirpa

    network = _relu_plus(0.0)
    case = Case(Box(np.array([0.0]), np.array([1.0])), (Conjunction(np.array([[-1.0]]), np.array([-0.75])),))
    honest = driver._raw_lower_bounds
    monkeypatch.setattr(driver, "_raw_lower_bounds", lambda *a, **k: honest(*a, **k) + 1.0)
    bounded = lirpa.prepare(network)
    outcome = lirpa.run(bounded, case, Budget.seconds(30), method="crown")
    assert not isinstance(outcome, Proven)
    assert "do not confirm" in outcome.reason
    # on a network with no piecewise-linear form nothing can confirm it: unknown, saying why
    sigmoid = _sigmoid_net()
    case = Case(Box(np.array([0.0, 0.0]), np.array([0.01, 0.01])), (Conjunction(np.array([[1.0]]), np.array([-100.0])),))
    outcome = lirpa.run(lirpa.prepare(sigmoid), case, Budget.seconds(30), method="crown")
    assert isinstance(outcome, Unknown) and "not a proof" in outcome.reason and "not piecewise linear" in outcome.reason


def test_every_proven_case_states_its_arithmetic_and_supports_lists_the_same_values():
    from click.testing import CliRunner

    from verikit.cli.vnnlib_solver import main as solver
    from verikit.core.result import ARITHMETIC
    from verikit.report.json import to_dict

    listed = CliRunner().invoke(solver, ["supports", "--proof-arithmetic"]).stdout.split()
    assert listed == list(ARITHMETIC)
    network = _relu_plus(0.0)
    case = Case(Box(np.array([0.0]), np.array([1.0])), (Conjunction(np.array([[-1.0]]), np.array([-2.0])),))
    seen = {}
    for engines in (("bounds",), ("bab",), ("smt",)):
        report = to_dict(verify(network, Property((case,), 1, 1), Options(engines=engines, timeout=30)))
        assert report["verdict"] == "verified", (engines, report)
        seen[engines[0]] = report["cases"][0]["arithmetic"]
    sigmoid = _sigmoid_net()
    wide = Case(Box(np.array([0.0, 0.0]), np.array([0.01, 0.01])), (Conjunction(np.array([[1.0]]), np.array([-100.0])),))
    report = to_dict(verify(sigmoid, Property((wide,), 2, 1), Options(engines=("bounds",), timeout=30)))
    assert report["verdict"] == "unknown" and "cannot prove" in report["reason"], report  # float32 only: no proof
    report = to_dict(verify(sigmoid, Property((wide,), 2, 1), Options(engines=("bab",), timeout=30)))
    seen["sigmoid"] = report["cases"][0]["arithmetic"]  # verikit's own branch and bound: derived allowance
    assert seen == {"bounds": "real", "bab": "real", "smt": "exact-rational", "sigmoid": "real"}
    assert set(seen.values()) <= set(listed)


def _cancelling_branches(big: float) -> object:
    """y = x0 @ [big] + x0 @ [-big] + x1: two branches added (not a chain), exactly y = x1 in reals."""
    g = GraphBuilder()
    first = g.op("MatMul", "x", g.const(np.array([[big], [0.0]], dtype=np.float32)))
    second = g.op("MatMul", "x", g.const(np.array([[-big], [0.0]], dtype=np.float32)))
    third = g.op("MatMul", "x", g.const(np.array([[0.0], [1.0]], dtype=np.float32)))
    return load_network_bytes(g.build((1, 2), g.op("Add", g.op("Add", first, second), third)))


@pytest.mark.parametrize("engines", [("bounds",), None])
def test_a_branching_network_is_never_verified_on_float32_bounds_alone(engines):
    # y = x1 exactly; the violation y <= 0.5 holds at x1 = 0.5, the box's lower corner. Whatever the
    # float32 bounds say, the answer must be falsified or unknown, and the bounds engine must say why.
    network = _cancelling_branches(2.0**22)
    box = Box(np.array([0.25, 0.5]), np.array([0.75, 0.5 + 2.0**-20]))
    prop = Property((Case(box, (Conjunction(np.array([[-1.0]]), np.array([-0.5])),)),), 2, 1)
    options = Options(timeout=30) if engines is None else Options(engines=engines, timeout=30)
    result = verify(network, prop, options)
    assert result.verdict in (Verdict.FALSIFIED, Verdict.UNKNOWN, Verdict.TIMEOUT), result
    if engines == ("bounds",):  # the graph form bounds it in real arithmetic: nothing is refuted
        assert "proven" not in result.reason, result.reason


def test_rigorous_interval_bounds_hold_on_max_groups_and_affine_only_chains():
    # the interval confirmation covers what CROWN's ReLU-MLP form does not: MaxGroups and no-ReLU chains
    from verikit.core.pwl import MaxGroups, PiecewiseLinear
    from verikit.engines.crown.confirm import interval_lower_bounds

    rng = np.random.default_rng(0)
    W1, b1, W2 = rng.normal(size=(6, 3)), rng.normal(size=6), rng.normal(size=(2, 3))
    pwl = PiecewiseLinear((Affine(W1, b1), Relu(), MaxGroups(np.array([[0, 1], [2, 3], [4, 5]])),
                           Affine(W2, np.zeros(2))), 3, 2)
    lower, upper = -np.ones(3), np.ones(3)
    C, d = np.array([[1.0, -1.0], [0.0, 1.0]]), np.array([0.1, -0.2])
    bound = interval_lower_bounds(pwl, lower[None], upper[None], C, d)[0]
    samples = rng.uniform(lower, upper, size=(5000, 3))
    observed = (pwl.evaluate(samples) @ C.T - d).min(axis=0)
    assert np.all(bound <= observed)
    affine = PiecewiseLinear((Affine(np.array([[2.0**30, -(2.0**30) + 1.0]]), np.array([0.5])),), 2, 1)
    exact_min = 0.5 + 2.0**30 * 0.0 + (-(2.0**30) + 1.0) * 1.0  # at x = (0, 1) on [0, 1]^2
    got = interval_lower_bounds(affine, np.zeros((1, 2)), np.ones((1, 2)), np.eye(1), np.zeros(1))[0, 0]
    assert got <= exact_min and got > exact_min - 1e-3 * 2.0**30 * 1e-3


def _open_rows(seed: int):
    """A deep random ReLU MLP on [-1, 1]^3 and all output differences as rows, d = 0 (open rows)."""
    from onnx_factory import mlp

    net = ReluMlp.from_pwl(to_piecewise_linear(load_network_bytes(mlp([3, 12, 12, 12, 3], seed=seed), "deep")),
                           torch.float64)
    C = np.array([[1.0, -1.0, 0.0], [0.0, 1.0, -1.0], [-1.0, 0.0, 1.0]])
    return net, np.full((1, 3), -1.0), np.full((1, 3), 1.0), C, np.zeros(3)


@pytest.mark.parametrize("seed", range(3))
def test_the_confirmation_tightens_hidden_bounds_on_rows_alpha_leaves_open_and_stays_sound(seed):
    # the oval21-like regression: α on the spec over plain-CROWN hidden bounds failed to confirm what
    # auto_LiRPA's α-CROWN (hidden layers optimised too) refuted; the hidden layers now get their own α
    from verikit.engines.crown.confirm import confirmed_lower_bounds

    net, lower, upper, C, d = _open_rows(900 + seed)
    spec_only = confirmed_lower_bounds(net, lower, upper, C, d, hidden_steps=0)
    tightened = confirmed_lower_bounds(net, lower, upper, C, d)
    assert (spec_only <= 0).any()  # rows stay open, so the tightening runs
    assert (tightened >= spec_only - 1e-12).all() and (tightened > spec_only + 1e-6).any()
    points = np.random.default_rng(seed).uniform(-1.0, 1.0, size=(20000, 3))
    with torch.no_grad():
        outputs = net.forward(torch.tensor(points)).numpy()
    assert (outputs @ C.T - d >= tightened - 1e-9).all()


def test_the_confirmations_tightening_ends_when_told_to_stop():
    from verikit.engines.crown.confirm import confirmed_lower_bounds

    net, lower, upper, C, d = _open_rows(900)
    crown = confirmed_lower_bounds(net, lower, upper, C, d, alpha_steps=0, hidden_steps=0)
    stopped = confirmed_lower_bounds(net, lower, upper, C, d, stop=lambda: True)
    np.testing.assert_array_equal(stopped, crown)  # plain CROWN: no α, no tightening
