"""ℓ2 balls as input sets: rigorous CROWN over ball ∩ box (chain and graph forms), never looser than the box."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.onnx_factory import mlp
from tests.test_graph_crown import residual_cnn, residual_mlp
from verikit.engines.crown.confirm import ChainForm, confirming_form
from verikit.engines.crown.graph import GraphForm
from verikit.engines.crown.input_set import InputBall, ball_linear_min
from verikit.onnx.load import load_network_bytes


def ball_points(rng: np.random.Generator, centre: np.ndarray, radius: float, count: int,
                lower: np.ndarray, upper: np.ndarray) -> np.ndarray:
    """Points of ball ∩ box: uniform in the ball, on its sphere (shrunk by 1e-12), clipped to the box
    (the box holds the centre, so clipping keeps a point in the ball)."""
    n = centre.size
    direction = rng.normal(size=(2 * count, n))
    direction /= np.linalg.norm(direction, axis=1, keepdims=True)
    length = radius * np.concatenate([rng.random(count) ** (1.0 / n), np.full(count, 1.0 - 1e-12)])
    return np.clip(centre + direction * length[:, None], lower, upper)


def test_ball_term_is_the_dual_norm_and_never_above_it():
    rng = np.random.default_rng(0)
    lam = torch.tensor(rng.normal(size=(50, 7)))
    centre, radius = rng.normal(size=7), 0.3
    ball = InputBall.of(centre, radius)
    found = ball_linear_min(lam, ball).numpy()
    exact = lam.numpy() @ centre - radius * np.linalg.norm(lam.numpy(), axis=1)
    assert np.all(found <= exact) and np.allclose(found, exact, rtol=1e-12, atol=1e-12)
    # the minimiser x = c - ρ λ/‖λ‖ reaches it (to rounding)
    x = centre - radius * lam.numpy() / np.linalg.norm(lam.numpy(), axis=1, keepdims=True)
    assert np.all(np.einsum("rn,rn->r", lam.numpy(), x) >= found)


def test_a_centre_that_float32_cannot_hold_is_refused():
    with pytest.raises(ValueError):
        InputBall.of(np.array([0.1]), 0.1, dtype=torch.float32)
    assert float(InputBall.of(np.array([0.5]), 0.1, dtype=torch.float32).radius[0]) >= 0.1


def _forms():
    chain = load_network_bytes(mlp((6, 12, 12, 4), seed=3), "mlp")
    yield "chain", chain, confirming_form(chain)
    for build in (residual_mlp, residual_cnn):
        network = load_network_bytes(build(1), "dag")
        yield build.__name__, network, GraphForm.build(network.module)


@pytest.mark.parametrize("which", [0, 1, 2])
def test_points_of_the_ball_stay_inside_its_bounds_and_ball_bounds_beat_the_box(which):
    name, network, form = list(_forms())[which]
    assert isinstance(form, (ChainForm, GraphForm)), form
    rng = np.random.default_rng(which)
    m, n = network.n_outputs, network.n_inputs
    C = np.vstack([np.eye(m), -np.eye(m), rng.normal(size=(3, m))])
    d = np.zeros(len(C))
    tighter = 0
    for trial in range(3):
        centre = rng.uniform(-0.5, 0.5, n)
        radius = rng.uniform(0.05, 0.6)
        lower, upper = centre - radius, centre + radius
        if trial == 2:  # a valid range cutting the ball
            lower = np.maximum(lower, centre - radius / 3)
        ball = InputBall.of(centre, radius)
        over_box = form.lower_bounds(lower, upper, C, d)[0]
        over_ball = form.lower_bounds(lower, upper, C, d, ball=ball)[0]
        assert np.all(over_ball >= over_box), name  # the larger of the two is taken
        tighter += int(np.sum(over_ball > over_box + 1e-9))
        points = ball_points(rng, centre, radius, 1500, lower, upper)
        assert np.all(np.linalg.norm(points - centre, axis=1) <= radius)
        values = network.replay(points.astype(np.float32)).astype(np.float64) @ C.T
        assert np.all(values >= over_ball[None, :] - 1e-4), (name, (values.min(axis=0) - over_ball).min())
        if isinstance(form, GraphForm):
            exact = form.evaluate(points) @ C.T
            assert np.all(exact >= over_ball[None, :])
    assert tighter > 0, f"{name}: the ball never beat its bounding box"


def test_batched_balls_match_one_at_a_time():
    network = load_network_bytes(mlp((5, 10, 10, 3), seed=7), "mlp")
    form = confirming_form(network)
    rng = np.random.default_rng(2)
    centres = rng.uniform(-0.5, 0.5, (4, 5))
    radii = rng.uniform(0.1, 0.5, 4)
    C, d = np.vstack([np.eye(3), -np.eye(3)]), np.zeros(6)
    together = form.lower_bounds(centres - radii[:, None], centres + radii[:, None], C, d,
                                 ball=InputBall.of(centres, radii))
    for b in range(4):
        alone = form.lower_bounds(centres[b] - radii[b], centres[b] + radii[b], C, d,
                                  ball=InputBall.of(centres[b], radii[b]))[0]
        assert np.allclose(together[b], alone, rtol=1e-9, atol=1e-9)
