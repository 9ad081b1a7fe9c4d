"""The three parts of a case — input set (box, L2 ball, manipulated image), hidden-neuron patterns and the
output DNF — and the one witness check that every engine's counterexample goes through."""

from __future__ import annotations

import numpy as np
import onnx
import pytest

from tests.onnx_factory import mlp
from verikit.core.property import Box, Case, Conjunction, L2Ball, Manipulated, NeuronPattern
from verikit.onnx.load import load_network_bytes
from verikit.witness.replay import validate, validate_batch


def _any_output_below(n_outputs: int, bound: float) -> tuple[Conjunction, ...]:
    """Disjuncts `y_j <= bound`, one per output: violated by nearly every point when bound is large."""
    return tuple(Conjunction(np.eye(n_outputs)[[j]], [bound]) for j in range(n_outputs))


class Shift:
    """A one-parameter transform for tests: x = base + theta (every pixel shifted alike)."""

    name = "shift"
    n_params = 1

    def __init__(self, base: np.ndarray) -> None:
        self.base = np.asarray(base, dtype=np.float64)

    def apply(self, theta: np.ndarray) -> np.ndarray:
        return self.base + float(theta[0])

    def enclose(self, params: Box) -> Box:
        return Box(self.base + params.lower[0], self.base + params.upper[0])

    def onnx_prefix(self):
        return None

    def describe(self) -> dict:
        return {"name": self.name}


@pytest.fixture(scope="module")
def network():
    return load_network_bytes(mlp((3, 6, 2), seed=3), "mlp")


def _relu_input(network) -> str:
    model = onnx.load_model_from_string(network.onnx_bytes)
    return next(node.input[0] for node in model.graph.node if node.op_type == "Relu")


def test_l2_ball_membership_and_enclosing_box():
    ball = L2Ball(np.zeros(2), 1.0)
    assert ball.contains(np.array([0.6, 0.8]) * (1 - 1e-12))
    assert not ball.contains(np.array([0.8, 0.8]))
    # on the sphere up to float64 rounding: the distance cannot be placed inside, so it is refused
    assert not ball.contains(np.array([0.6, 0.8]) * (1 + 1e-16))
    box = ball.enclosing_box(-0.5, 2.0)
    assert box.lower.tolist() == [-0.5, -0.5] and box.upper.tolist() == [1.0, 1.0]
    with pytest.raises(ValueError):
        L2Ball(np.zeros(2), -1.0)


def test_counterexample_outside_the_ball_is_rejected(network):
    box = Box(-np.ones(3), np.ones(3))
    case = Case(box, _any_output_below(2, 1e6), region=L2Ball(np.zeros(3), 0.5))
    assert validate(network, case, np.array([0.2, 0.1, 0.0])) is not None
    corner = np.array([0.9, 0.9, 0.9])  # in the box, outside the ball
    assert validate(network, case, corner) is None
    assert validate_batch(network, case, np.stack([corner, -corner])) is None


def test_hidden_pattern_is_checked_on_onnxruntime_values(network):
    tensor = _relu_input(network)
    box = Box(-np.ones(3), np.ones(3))
    rng = np.random.default_rng(0)
    points = rng.uniform(-1, 1, size=(200, 3))
    values = network.replay_hidden(points, (tensor,))[tensor]
    assert values.shape == (200, 6)
    point, z = points[0], values[0]
    follows = NeuronPattern(tensor, np.flatnonzero(z > 0), np.flatnonzero(z <= 0))
    breaks = NeuronPattern(tensor, np.flatnonzero(z <= 0)[:1], [])
    assert follows.misses(z) == 0 and breaks.misses(z) == 1
    disjuncts = _any_output_below(2, 1e6)
    assert validate(network, Case(box, disjuncts, hidden=(follows,)), point) is not None
    assert validate(network, Case(box, disjuncts, hidden=(breaks,)), point) is None
    with pytest.raises(ValueError):
        NeuronPattern(tensor, [1], [1])


def test_manipulated_member_is_recomputed_from_theta(network):
    base = np.array([0.1, 0.2, 0.3])
    region = Manipulated(Shift(base), Box([-0.2], [0.2]))
    case = Case(region.enclosing_box(0.0, 1.0), _any_output_below(2, 1e6), region=region)
    found = validate(network, case, np.zeros(3), params=np.array([0.1]))
    assert found is not None
    assert np.allclose(found.x, base + 0.1, atol=1e-7) and found.params.tolist() == [0.1]
    assert validate(network, case, base + 0.1) is None  # named by x alone: no membership shown
    assert validate(network, case, np.zeros(3), params=np.array([0.3])) is None  # theta outside its box
    assert case.describe()["input_set"] == "manipulated"


def test_manipulated_with_eps_accepts_only_points_near_the_image(network):
    base = np.array([0.4, 0.4, 0.4])
    region = Manipulated(Shift(base), Box([0.0], [0.3]), eps=0.05)
    case = Case(region.enclosing_box(0.0, 1.0), _any_output_below(2, 1e6), region=region)
    assert validate(network, case, base + 0.14, params=np.array([0.1])) is not None
    assert validate(network, case, base + 0.2, params=np.array([0.0])) is None  # in the box, 0.2 from T(0)


class ShiftWithPrefix(Shift):
    """Shift with its exact ONNX prefix (theta (1, 1) -> base + theta), so the runner lifts it."""

    def onnx_prefix(self):
        from onnx import TensorProto, helper, numpy_helper

        ones = numpy_helper.from_array(np.ones((1, self.base.size), np.float32), "ones")
        base = numpy_helper.from_array(self.base.astype(np.float32).reshape(1, -1), "base")
        graph = helper.make_graph(
            [helper.make_node("MatMul", ["theta", "ones"], ["spread"]),
             helper.make_node("Add", ["spread", "base"], ["image"])], "shift",
            [helper.make_tensor_value_info("theta", TensorProto.FLOAT, [1, 1])],
            [helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, self.base.size])],
            initializer=[ones, base])
        return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])


def _grid_outputs(network, base: np.ndarray, thetas: np.ndarray) -> np.ndarray:
    return network.replay(np.stack([base + t for t in thetas]))


@pytest.mark.parametrize("eps", [0.0, 0.02])
def test_lifted_manipulation_agrees_with_a_dense_grid(network, eps):
    from verikit.portfolio.options import Options
    from verikit.portfolio.runner import verify
    from verikit.core.property import Property
    from verikit.core.result import Falsified, Proven, Verdict

    base = np.array([0.3, -0.2, 0.5])
    thetas = np.linspace(-0.4, 0.4, 2001)
    highest = float(_grid_outputs(network, base, thetas)[:, 0].max())
    region = Manipulated(ShiftWithPrefix(base), Box([-0.4], [0.4]), eps=eps)
    box = region.enclosing_box(-2.0, 2.0)
    # with eps > 0 the composed graph branches (theta and delta both read the parameter input): no chain
    # form, so auto_LiRPA's float32 proof is re-proven on the float64 graph form (engines/crown/graph.py)
    proven = Verdict.VERIFIED
    for threshold, expected in ((highest + 0.5, proven), (highest - 0.05, Verdict.FALSIFIED)):
        reaches = Conjunction(np.array([[-1.0, 0.0]]), [-threshold])  # violated iff y0 >= threshold
        prop = Property((Case(box, (reaches,), region=region),), 3, 2)
        result = verify(network, prop, Options(timeout=20))
        assert result.verdict is expected, result.reason
        if expected is Verdict.UNKNOWN:
            assert "branches" in result.reason and "not a proof" in result.reason
            continue
        outcome = result.cases[0].outcome
        if expected is Verdict.FALSIFIED:
            found = outcome.counterexample
            assert isinstance(outcome, Falsified) and found.params is not None
            assert region.contains(found.x, params=found.params) and found.y[0] >= threshold
        else:
            assert isinstance(outcome, Proven) and outcome.certificate.detail["lifted"]["params"] == 1 + 3 * (eps > 0)


def test_a_prefix_that_differs_from_its_reference_is_refused(network):
    from verikit.core.errors import ModelError
    from verikit.engines.problem import Problem
    from verikit.portfolio.lifting import lift

    class Wrong(ShiftWithPrefix):
        def apply(self, theta):
            return self.base + 2.0 * float(theta[0])

    base = np.array([0.3, -0.2, 0.5])
    region = Manipulated(Wrong(base), Box([-0.4], [0.4]))
    case = Case(region.enclosing_box(-2.0, 2.0), _any_output_below(2, 0.0), region=region)
    with pytest.raises(ModelError, match="differs from its numpy reference"):
        lift(Problem(network), case)


def test_the_report_names_the_input_set_and_the_parameters(network):
    from verikit.core.property import Property
    from verikit.portfolio.options import Options
    from verikit.portfolio.runner import verify
    from verikit.report.json import to_dict

    base = np.array([0.3, -0.2, 0.5])
    region = Manipulated(ShiftWithPrefix(base), Box([-0.4], [0.4]))
    prop = Property((Case(region.enclosing_box(-2.0, 2.0), _any_output_below(2, 1e6), region=region),), 3, 2,
                    kind="perturbation", details={"manipulation": "shift"})
    report = to_dict(verify(network, prop, Options(timeout=20)))
    assert report["spec"]["kind"] == "perturbation" and report["spec"]["details"] == {"manipulation": "shift"}
    assert report["cases"][0]["input"]["input_set"] == "manipulated"
    assert len(report["counterexample"]["params"]) == 1
