"""Hidden bounds tightened by branching on earlier neurons (verikit.engines.bab.tighten): they stay sound
(each neuron's exact range over the box, from a MILP, lies inside them), they are never looser than
α-CROWN's, and on deep random networks they are strictly tighter somewhere."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from onnx_factory import mlp

from verikit.core.property import Box, Case, Conjunction
from verikit.core.result import Budget, Proven
from verikit.engines.bab import engine as bab
from verikit.engines.bab.tighten import tighten_layers
from verikit.engines.crown.optimise import optimise_layer_bounds
from verikit.engines.crown.propagate import ReluMlp, layer_bounds
from verikit.onnx.load import load_network_bytes
from verikit.onnx.pwl import to_piecewise_linear

optimize = pytest.importorskip("scipy.optimize")
sparse = pytest.importorskip("scipy.sparse")

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _network(seed: int, sizes: list[int]):
    network = load_network_bytes(mlp(sizes, seed=seed), f"tighten-{seed}")
    return network, ReluMlp.from_pwl(to_piecewise_linear(network), torch.float64)


def _exact_range(net: ReluMlp, box: Box, layer: int, neuron: int) -> tuple[float, float]:
    """min and max of z_{layer, neuron} over the box: a big-M MILP on the exact network (bounds from
    interval arithmetic, loose but valid, so the MILP is exact)."""
    weights = [w.numpy() for w in net.weights]
    biases = [b.numpy() for b in net.biases]
    n = box.size
    low, high = box.lower.astype(float), box.upper.astype(float)
    # variables: x, then per layer < `layer`: a (post-activation) and δ (phase), n_i each
    sizes = [w.shape[0] for w in weights[:layer]]
    count = n + 2 * sum(sizes)
    lower_var = np.concatenate([low] + [np.zeros(2 * s) for s in sizes])
    upper_var = np.concatenate([high] + [np.ones(2 * s) for s in sizes])
    integrality = np.zeros(count)
    rows, row_low, row_high = [], [], []
    previous, previous_width, offset = 0, n, n
    a_low, a_high = low, high
    for i, size in enumerate(sizes):
        W, b = weights[i], biases[i]
        z_low = np.clip(W, 0, None) @ a_low + np.clip(W, None, 0) @ a_high + b
        z_high = np.clip(W, 0, None) @ a_high + np.clip(W, None, 0) @ a_low + b
        for k in range(size):
            a, d = offset + k, offset + size + k
            z = np.zeros(count)
            z[previous : previous + previous_width] = W[k]
            upper_var[a] = max(z_high[k], 0.0)
            integrality[d] = 1
            # a >= z;  a <= z - z_low (1 - δ);  a <= z_high δ
            rows.append(z.copy() * -1), row_low.append(b[k]), row_high.append(np.inf)
            rows[-1][a] = 1.0
            row = -z.copy()
            row[a], row[d] = 1.0, -z_low[k]
            rows.append(row), row_low.append(-np.inf), row_high.append(b[k] - z_low[k])
            row = np.zeros(count)
            row[a], row[d] = 1.0, -max(z_high[k], 0.0)
            rows.append(row), row_low.append(-np.inf), row_high.append(0.0)
        a_low, a_high = np.clip(z_low, 0, None), np.clip(z_high, 0, None)
        previous, previous_width, offset = offset, size, offset + 2 * size
    constraint = optimize.LinearConstraint(sparse.csr_matrix(np.array(rows)), row_low, row_high)
    objective = np.zeros(count)
    objective[previous : previous + previous_width] = weights[layer][neuron]
    ends = []
    for sign in (1.0, -1.0):
        result = optimize.milp(sign * objective, constraints=constraint, integrality=integrality,
                               bounds=optimize.Bounds(lower_var, upper_var))
        assert result.status == 0, result.message
        ends.append(sign * result.fun + biases[layer][neuron])
    return ends[0], ends[1]


def _alpha_root(net: ReluMlp):
    """The box [-1, 1]^3 and α-CROWN's hidden bounds on it (what the tightening starts from)."""
    x_lower = torch.full((1, 3), -1.0, dtype=torch.float64)
    x_upper = torch.full((1, 3), 1.0, dtype=torch.float64)
    return x_lower, x_upper, optimise_layer_bounds(net, x_lower, x_upper, layer_bounds(net, x_lower, x_upper),
                                                   steps=20, lr=0.1)


@pytest.mark.parametrize("seed", range(4))
def test_tightened_bounds_contain_each_neurons_exact_range_and_never_loosen(seed):
    network, net = _network(700 + seed, [3, 10, 10, 10, 2])
    x_lower, x_upper, alpha = _alpha_root(net)
    tight, stats = tighten_layers(net, x_lower, x_upper, alpha, Budget.seconds(30), leaves=64, max_leaves=64, max_bytes=1 << 28, steps=5, lr=0.1,
                                  alpha_steps=20)
    box = Box(np.full(3, -1.0), np.full(3, 1.0))
    for layer in range(1, net.depth):
        assert (tight.lower[layer] >= alpha.lower[layer]).all() and (tight.upper[layer] <= alpha.upper[layer]).all()
        for neuron in range(net.hidden_sizes[layer]):
            low, high = _exact_range(net, box, layer, neuron)
            assert float(tight.lower[layer][0, neuron]) <= low + 1e-7, (layer, neuron)
            assert float(tight.upper[layer][0, neuron]) >= high - 1e-7, (layer, neuron)
    assert stats.leaves > 0 and stats.unstable_after[0] == stats.unstable_before[0]


def test_tightening_goes_past_alpha_crown_on_deep_networks():
    gained = 0
    for seed in range(4):
        _, net = _network(700 + seed, [3, 10, 10, 10, 2])
        x_lower, x_upper, alpha = _alpha_root(net)
        tight, _ = tighten_layers(net, x_lower, x_upper, alpha, Budget.seconds(30), leaves=64, max_leaves=64, max_bytes=1 << 28, steps=5, lr=0.1,
                                  alpha_steps=20)
        width = sum(float((u - l).sum()) for l, u in zip(alpha.lower[1:], alpha.upper[1:]))
        narrowed = sum(float((u - l).sum()) for l, u in zip(tight.lower[1:], tight.upper[1:]))
        gained += narrowed < 0.95 * width
    assert gained >= 2


def test_relu_branching_reports_the_tightening_and_proves_with_it():
    network, net = _network(704, [4, 12, 12, 12, 1])
    box = Box(np.full(4, -0.5), np.full(4, 0.5))
    top = _exact_range(net, box, net.depth, 0)[1]
    # "y <= max + 0.05" holds; the violation region is y >= max + 0.05
    case = Case(box, (Conjunction(np.array([[-1.0]]), np.array([-(top + 0.05)])),))
    outcome = bab.run(to_piecewise_linear(network), network, case, Budget.seconds(60), branching="relu")
    assert isinstance(outcome, Proven), outcome
    assert "hidden bounds tightened" in outcome.certificate.detail["tightened"]


def test_a_small_memory_cap_searches_the_neurons_in_chunks_with_the_same_bounds():
    _, net = _network(702, [3, 10, 10, 10, 2])
    x_lower, x_upper, alpha = _alpha_root(net)
    runs = [tighten_layers(net, x_lower, x_upper, alpha, Budget.seconds(30), leaves=16, max_leaves=16,
                           max_bytes=max_bytes, steps=5, lr=0.1, alpha_steps=20)[0] for max_bytes in (1, 1 << 28)]
    for layer in range(net.depth):
        assert torch.allclose(runs[0].lower[layer], runs[1].lower[layer], rtol=0, atol=1e-12)
        assert torch.allclose(runs[0].upper[layer], runs[1].upper[layer], rtol=0, atol=1e-12)
