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
    assert ball.contains(np.array([0.6, 0.8]))
    assert not ball.contains(np.array([0.8, 0.8]))
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
