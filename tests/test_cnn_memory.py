"""CIFAR-sized convolutions: bounded on tensors, never densified; memory caps give unknown with the reason."""

import numpy as np
import pytest

from onnx_factory import GraphBuilder
from verikit.core.property import Box, Case, Conjunction, Property
from verikit.core.result import Budget, Unknown, Verdict
from verikit.engines.bab.engine import BabEngine
from verikit.engines.lirpa.engine import BoundsEngine, BoundsSettings
from verikit.engines.lirpa.memory import crown_matrix_bytes
from verikit.engines.problem import Problem
from verikit.onnx.load import load_network_bytes
from verikit.onnx.pwl import MAX_DENSE_ENTRIES
from verikit.portfolio.options import Options
from verikit.portfolio.runner import verify

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def cifar_cnn():
    """Conv 3->16 (3x3, pad 1) on 3x32x32, Relu, Gemm to 10: the conv alone is 3072 x 16384 dense."""
    g = GraphBuilder(seed=4)
    value = g.op("Conv", "x", g.weight(16, 3, 3, 3, scale=0.2), g.weight(16, scale=0.1), pads=[1, 1, 1, 1])
    value = g.op("Flatten", g.op("Relu", value), axis=1)
    value = g.op("Gemm", value, g.weight(10, 16 * 32 * 32, scale=0.02), g.weight(10), transB=1)
    return load_network_bytes(g.build((1, 3, 32, 32), value, output_shape=(1, 10)), "cifar_cnn")


def robustness_property(network, epsilon: float) -> Property:
    """The center's top class stays on top within an L-inf ball of `epsilon` around a seeded point."""
    center = np.random.default_rng(0).uniform(0.2, 0.8, network.n_inputs)
    top = int(np.argmax(network.replay(center[None].astype(np.float32))[0]))
    others = [k for k in range(network.n_outputs) if k != top]
    disjuncts = []
    for k in others:  # violated iff y_k >= y_top, i.e. y_top - y_k <= 0
        row = np.zeros((1, network.n_outputs))
        row[0, top], row[0, k] = 1.0, -1.0
        disjuncts.append(Conjunction(row, np.zeros(1)))
    box = Box(center - epsilon, center + epsilon)
    return Property((Case(box, tuple(disjuncts)),), network.n_inputs, network.n_outputs, "robustness", "")


def test_the_conv_is_too_large_to_densify(cifar_cnn):
    assert 3 * 32 * 32 * 16 * 32 * 32 > MAX_DENSE_ENTRIES
    problem = Problem(cifar_cnn)
    reason = problem.piecewise_linear_reason()
    assert reason is not None and "too many to hold densely" in reason
    assert "too many to hold densely" in BabEngine().supports(problem)


def test_float32_bounds_on_a_conv_too_large_to_densify_are_confirmed_on_its_own_graph(cifar_cnn):
    # too large to densify: no piecewise-linear chain form, so auto_LiRPA's float32 proof counts only once
    # the float64 graph form (verikit.engines.crown.graph) re-proves it with a derived allowance (issue 25)
    from verikit.engines.crown.graph import GraphForm

    assert isinstance(Problem(cifar_cnn).lirpa().pwl, GraphForm)
    prop = robustness_property(cifar_cnn, 1e-4)
    result = verify(cifar_cnn, prop, Options(timeout=120))
    assert result.verdict == Verdict.VERIFIED, result.reason
    case = prop.cases[0]
    points = np.random.default_rng(1).uniform(case.box.lower, case.box.upper, size=(64, cifar_cnn.n_inputs))
    ys = cifar_cnn.replay(points.astype(np.float32))
    assert all(not conjunction.holds(y) for y in ys for conjunction in case.disjuncts)


def test_crown_over_the_memory_cap_is_unknown_with_the_reason(cifar_cnn):
    problem = Problem(cifar_cnn)
    case = robustness_property(cifar_cnn, 1e-2).cases[0]
    needed = crown_matrix_bytes(problem.lirpa().module, "crown")
    assert needed >= 2 * 4 * 16 * 32 * 32 * 3 * 32 * 32  # the relu's 16384 inputs x the 3072 pixels
    capped = BoundsSettings(max_matrix_bytes=needed // 2)
    outcome = BoundsEngine("crown", capped).run(problem, case, Budget.seconds(60))
    assert isinstance(outcome, Unknown) and "memory cap" in outcome.reason
    assert "alpha-crown" in BoundsEngine("alpha-crown", capped).run(problem, case, Budget.seconds(60)).reason
    ibp = BoundsEngine("ibp", capped).run(problem, case, Budget.seconds(60))  # no matrices: runs under any cap
    assert "memory cap" not in getattr(ibp, "reason", "")


def test_a_capped_run_ends_unknown_not_out_of_memory(cifar_cnn):
    options = Options(timeout=60, engines=("bounds", "bab"), methods=("crown", "alpha-crown"),
                      bounds=BoundsSettings(max_matrix_bytes=1 << 20))
    result = verify(cifar_cnn, robustness_property(cifar_cnn, 1e-2), options)
    assert result.verdict == Verdict.UNKNOWN
    reasons = [attempt.get("reason", "") for case in result.cases for attempt in case.attempts]
    assert any("memory cap" in reason for reason in reasons)
    assert any("too many to hold densely" in reason for reason in reasons)
