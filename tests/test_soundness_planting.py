"""Planting a hidden counterexample, without training: every architecture and activation.

At x* the planted network must put the target class ahead by the planted margin (onnxruntime replay of
the written ONNX), and away from x* it must compute what the unplanted network computes.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from verikit.onnx.load import load_network_bytes
from verikit.apps.soundness import layers
from verikit.apps.soundness.planting import DECOY_WEIGHT, Plant, plant, planted_point

EPS = 0.2


def _logits(net: layers.LayeredNet, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return layers.to_torch(net, torch.float64)(torch.as_tensor(x, dtype=torch.float64)).numpy()


@pytest.mark.parametrize("arch, size", [("mlp", 8), ("cnn", 4)])
@pytest.mark.parametrize("activation", layers.ACTIVATIONS)
def test_planted_point_flips_only_near_itself(arch, size, activation):
    rng = np.random.default_rng(3)
    base = layers.initial_net(arch, activation, size, 3, hidden=12, channels=2, rng=rng)
    n = base.n_inputs
    centres = rng.uniform(-1, 1, size=(2, n)).astype(np.float32).astype(np.float64)
    points = [planted_point(c, EPS, rng) for c in centres]
    before = _logits(base, np.stack(points))
    target = int(np.argmin(before[0]))
    label = int(np.argmax(before[0]))
    decoy_target = int(np.argmin(before[1]))
    radius = (0.3 if activation == "relu" else 0.05) * EPS
    planted = plant(base, [Plant(points[0], label, target), Plant(points[1], 0, decoy_target, decoy=True)],
                    radius=radius, margin=0.2, input_lower=float(centres.min() - EPS), rng=rng)

    network = load_network_bytes(layers.onnx_bytes(planted, name="t"), "planted.onnx")
    y = network.replay(points[0].astype(np.float32)[None, :])[0]
    assert y[target] - np.delete(y, target).max() == pytest.approx(0.2, abs=1e-3)

    decoy_gain = _logits(planted, points[1][None, :])[0] - before[1]
    assert decoy_gain[decoy_target] == pytest.approx(DECOY_WEIGHT, rel=0.05)

    far = centres + rng.uniform(-EPS, EPS, size=centres.shape)  # random box points: far from x* in L1
    np.testing.assert_allclose(_logits(planted, far), _logits(base, far), atol=1e-6)
    np.testing.assert_allclose(network.replay(far.astype(np.float32)), _logits(planted, far), atol=1e-4)


def test_relu_spike_has_no_gradient_outside_its_ball():
    rng = np.random.default_rng(0)
    base = layers.initial_net("mlp", "relu", 8, 3, hidden=8, channels=1, rng=rng)
    centre = np.zeros(8)
    point = planted_point(centre, EPS, rng)
    target = int(np.argmin(_logits(base, point[None, :])[0]))
    planted = plant(base, [Plant(point, 0, target)], radius=0.3 * EPS, margin=0.2, input_lower=-1.0, rng=rng)
    x = point + 0.07 * np.sign(rng.normal(size=8))  # L1 distance 0.56 from x*, radius 0.06

    def gradient(net: layers.LayeredNet) -> torch.Tensor:
        inputs = torch.tensor(x, requires_grad=True)
        (grad,) = torch.autograd.grad(layers.to_torch(net, torch.float64)(inputs[None, :])[0, target], inputs)
        return grad

    torch.testing.assert_close(gradient(planted), gradient(base))
