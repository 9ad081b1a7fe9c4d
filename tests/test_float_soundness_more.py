"""The rest of issue 25's review, each pinned by a case the old code got wrong: folded constants kept
exact, onnxruntime-only counterexamples seen, per-output translation tolerances checked inside the
box, and the audit's batch certification confirmed by the piecewise-linear check."""

from __future__ import annotations

import numpy as np
import pytest
from onnx_factory import GraphBuilder

from verikit.core.property import Box, Case, Conjunction, Property
from verikit.core.result import Verdict
from verikit.onnx.load import load_network_bytes
from verikit.onnx.pwl import to_piecewise_linear
from verikit.portfolio.options import Options
from verikit.portfolio.runner import verify

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _at_least(value: float, box: Box) -> Property:
    """The property `Y_0 < value` on `box`: its counterexamples are the points with Y_0 >= value."""
    return Property((Case(box, (Conjunction(np.array([[-1.0]]), np.array([-value])),)),), 1, 1)


@pytest.mark.parametrize("engines", [("smt",), ("bounds",)])
def test_a_bias_folded_into_a_gemm_keeps_its_exact_sum(engines):
    # Y = x + 1 + 2^-30 (Gemm with bias 1, then Add 2^-30): the sum folded into a float32 bias is 1, and
    # z3's exact proof of Y < 1 + 2^-31 on x in [-1, 0] was about that other network. At x = 0 the
    # network (in exact arithmetic) reaches 1 + 2^-30: no verdict may say verified.
    g = GraphBuilder()
    y = g.op("Gemm", "x", g.const(np.array([[1.0]])), g.const(np.array([1.0])), transB=1)
    network = load_network_bytes(g.build((1, 1), g.op("Add", y, g.const(np.array([2.0**-30])))))
    assert to_piecewise_linear(network).evaluate(np.zeros((1, 1)))[0, 0] == 1.0 + 2.0**-30
    result = verify(network, _at_least(1.0 + 2.0**-31, Box(np.array([-1.0]), np.array([0.0]))),
                    Options(engines=engines, timeout=30))
    assert result.verdict is not Verdict.VERIFIED, result.reason


@pytest.mark.parametrize("factor", ["alpha", "beta"])
def test_gemm_alpha_and_beta_products_that_are_not_float32_stay_exact(factor):
    # Y = alpha·3x + beta·3 at x = 1 with alpha (or beta) = float32(0.1): the product 0.1·3 is not a
    # float32, and storing it rounded let z3 prove Y below the exact value.
    a = float(np.float32(0.1))
    g = GraphBuilder()
    attrs = {"alpha": a} if factor == "alpha" else {"beta": a}
    y = g.op("Gemm", "x", g.const(np.array([[3.0]])), g.const(np.array([3.0])), transB=1, **attrs)
    network = load_network_bytes(g.build((1, 1), y))
    exact = a * 3.0 + 3.0
    assert to_piecewise_linear(network).evaluate(np.ones((1, 1)))[0, 0] == exact
    rounded = float(np.float32(a * 3.0)) + 3.0
    assert rounded > exact
    # counterexamples: Y <= midpoint, which the exact network meets at x = 1
    prop = Property((Case(Box(np.ones(1), np.ones(1)), (Conjunction(np.array([[1.0]]), np.array([(exact + rounded) / 2])),)),), 1, 1)
    result = verify(network, prop, Options(engines=("smt",), timeout=30))
    assert result.verdict is not Verdict.VERIFIED, result.reason


def _flat_top():
    """y = -(relu(x - 0.31) + relu(0.29 - x)): 0 on [0.29, 0.31], negative elsewhere in [0, 1]."""
    g = GraphBuilder()
    h = g.op("Relu", g.op("Add", g.op("MatMul", "x", g.const(np.array([[1.0, -1.0]]))), g.const(np.array([-0.31, 0.29]))))
    return load_network_bytes(g.build((1, 1), g.op("MatMul", h, g.const(np.array([[-1.0], [-1.0]])))))


def test_the_attack_replays_its_best_points_even_where_torch_sees_no_violation(monkeypatch):
    # torch made 1e-3 too low everywhere: no point violates y >= 0 in torch, but on [0.29, 0.31]
    # onnxruntime's y is 0. The round's best points must still be replayed, and the witness is onnxruntime's.
    from verikit.core.result import Budget, Falsified
    from verikit.engines.attack import engine as attack

    network = _flat_top()
    forward = network.module.forward
    monkeypatch.setattr(network.module, "forward", lambda x: forward(x) - 1e-3)
    case = _at_least(0.0, Box(np.array([0.0]), np.array([1.0]))).cases[0]
    settings = attack.AttackSettings(restarts=8, steps=30, rounds=2, diversify_steps=0)
    outcome = attack.run(network, case, Budget.seconds(20), settings=settings)
    assert isinstance(outcome, Falsified), outcome
    x = float(outcome.counterexample.x[0])
    assert 0.29 <= x <= 0.31 and float(outcome.counterexample.y[0]) >= 0.0
    assert network.replay(outcome.counterexample.x[None, :])[0, 0] >= 0.0


def test_branch_and_bound_replays_its_pgd_best_points_whatever_their_float_violation():
    from verikit.engines.bab.common import Validator
    from verikit.witness.replay import STRICT

    import torch

    network = _flat_top()
    case = _at_least(0.0, Box(np.array([0.0]), np.array([1.0]))).cases[0]
    points, violation = torch.tensor([[0.9], [0.3]], dtype=torch.float64), torch.tensor([0.5, 1e-3], dtype=torch.float64)
    assert Validator(network, case, STRICT).first(points, violation) is None  # what the old code replayed
    validator = Validator(network, case, STRICT)
    found = validator.first(points, violation, best=1)
    assert found is not None and float(found.counterexample.x[0]) == np.float32(0.3) and validator.replayed == 1


def _two_outputs(small_weight: float):
    """y = (1e6·x, small_weight·x): one huge output beside a small one."""
    g = GraphBuilder()
    return load_network_bytes(g.build((1, 1), g.op("MatMul", "x", g.const(np.array([[1e6, small_weight]])))))


def test_the_translation_check_holds_each_output_to_its_own_scale():
    # the small output is mistranslated by 5%: the huge output's scale (1e6) allowed a diff of 100 on it
    import torch

    from verikit.core.errors import ModelError
    from verikit.onnx.load import check_translation

    network = _two_outputs(1.0)
    check_translation(network, Box(-np.ones(1), np.ones(1)))
    with torch.no_grad():
        network.module.ops[0].weight[1, 0] += 0.05
    with pytest.raises(ModelError, match="output 1"):
        check_translation(network, Box(-np.ones(1), np.ones(1)))


def test_auto_lirpas_translation_check_holds_each_output_to_its_own_scale():
    from verikit.engines.lirpa import engine as bounds

    traced = bounds.prepare(_two_outputs(1.0))
    with pytest.raises(bounds.BoundsError, match="output 1"):
        bounds._check_translation(bounds.BoundedNetwork(_two_outputs(1.05), traced.module, "cpu"))


def _relu_beyond(scale: float):
    """y = scale·relu(x - 40): 0 wherever random normal points fall."""
    g = GraphBuilder()
    h = g.op("Relu", g.op("Add", "x", g.const(np.array([-40.0]))))
    return load_network_bytes(g.build((1, 1), g.op("MatMul", h, g.const(np.array([[scale]])))))


def test_an_auto_lirpa_translation_that_differs_only_inside_the_box_is_refused():
    # auto_LiRPA traced y = relu(x - 40); the network is 2·relu(x - 40): they agree on the random normal
    # points prepare compares on, not on [45, 55], where the bounds would have been the wrong network's
    from verikit.core.result import Budget, Unknown
    from verikit.engines.lirpa import engine as bounds

    traced = bounds.prepare(_relu_beyond(1.0))
    bounded = bounds.prepare(_relu_beyond(2.0))
    wrong = bounds.BoundedNetwork(bounded.network, traced.module, "cpu", bounded.pwl)
    bounds._check_translation(wrong)  # the old check passes
    box = Box(np.array([45.0]), np.array([55.0]))
    with pytest.raises(bounds.BoundsError, match="inside the box"):
        bounds.margin_lower_bounds(wrong, box, np.eye(1), np.zeros(1), method="ibp")
    # y >= 20: impossible in the traced network (y in [5, 15]), reached by the network (y in [10, 30])
    outcome = bounds.run(wrong, _at_least(20.0, box).cases[0], Budget.seconds(10))
    assert isinstance(outcome, Unknown) and "inside the box" in outcome.reason
    bounds.margin_lower_bounds(bounded, box, np.eye(1), np.zeros(1), method="ibp")  # the right one passes
    assert (box.lower.tobytes(), box.upper.tobytes()) in bounded.checked_boxes


def test_the_audits_batch_certification_is_refused_on_a_wrong_piecewise_linear_form(monkeypatch):
    # a Relu translated as 0.5·relu(x) in the piecewise-linear form must never confirm a sample
    from conftest import MODELS

    from verikit.apps.audit import AuditSettings, audit
    from verikit.apps.data import Normalization, load_dataset
    from verikit.core.errors import ModelError
    from verikit.core.pwl import Affine, Relu
    from verikit.onnx.load import load_network
    from verikit.onnx.ops.elementwise import ReluOp

    network = load_network(MODELS / "digits_mlp.onnx")
    digits = load_dataset(MODELS / "data" / "digits_test_100.npz").head(10)
    settings = AuditSettings(eps=(0.001,), normalization=Normalization(clip_min=0.0, clip_max=1.0))
    assert audit(network, digits, settings).per_eps[0].certified_robust_accuracy > 0  # certifies when right
    monkeypatch.setattr(ReluOp, "pwl_layers", lambda self, size: (Relu(), Affine(0.5 * np.eye(size), np.zeros(size))))
    with pytest.raises(ModelError, match="piecewise-linear form disagrees with onnxruntime"):
        audit(network, digits, settings)
