"""The input-space hull LP of one-hidden-layer networks (verikit.engines.bab.hull): its bound is sound
for any multipliers, never looser than the triangle relaxation, and refutes at the root what the
triangle relaxation leaves to branching."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from onnx_factory import mlp
from test_bab import exact_minimum
from test_bab_lp import _lp_minimum

from verikit.core.property import Box, Case, Conjunction
from verikit.core.result import Budget, Proven
from verikit.engines.bab import engine as bab
from verikit.engines.bab.hull import applicable, hull_lp, lagrangian_bound, refute_disjunct
from verikit.engines.crown.propagate import ReluMlp, layer_bounds
from verikit.onnx.load import load_network_bytes
from verikit.onnx.pwl import to_piecewise_linear

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _instance(seed: int, sizes=(4, 24, 2)):
    """A random one-hidden-layer MLP, its float64 ReluMlp, a box, and the root's bounds."""
    network = load_network_bytes(mlp(sizes, seed=seed))
    pwl = to_piecewise_linear(network)
    rng = np.random.default_rng(seed)
    lower = rng.uniform(-1, 0, sizes[0])
    box = Box(lower, lower + rng.uniform(0.5, 1.5, sizes[0]))
    net = ReluMlp.from_pwl(pwl, torch.float64)
    bounds = layer_bounds(net, torch.tensor(box.lower)[None], torch.tensor(box.upper)[None])
    return network, pwl, net, box, bounds


def _sampled_minimum(pwl, box: Box, C: np.ndarray, d: np.ndarray) -> float:
    """min over 20,000 samples and the box's corners of max over rows of C y - d."""
    corners = np.array(np.meshgrid(*zip(box.lower, box.upper))).reshape(box.size, -1).T
    x = np.concatenate([box.sample(20000, np.random.default_rng(1)), corners])
    return float((pwl.evaluate(x) @ C.T - d).max(axis=1).min())


@pytest.mark.parametrize("seed", range(6))
def test_hull_bound_holds_at_every_sample_and_is_no_looser_than_the_triangle_lp(seed):
    network, pwl, net, box, bounds = _instance(seed)
    lp = hull_lp(net, bounds, box.lower, box.upper)
    assert lp.unstable > 0
    C, d = np.random.default_rng(seed).normal(size=(1, 2)), np.zeros(1)
    outcome = refute_disjunct(lp, C, d, Budget.seconds(30))
    assert outcome.lower is not None, outcome.reason
    assert outcome.lower <= _sampled_minimum(pwl, box, C, d)
    case = Case(box, (Conjunction(C, d),))
    splits = [torch.zeros(1, n, dtype=torch.int8) for n in net.hidden_sizes]
    assert outcome.lower >= _lp_minimum(net, bounds, splits, case, 0) - 1e-7


@pytest.mark.parametrize("seed", range(4))
def test_hull_bound_is_within_the_exact_minimum(seed):
    """On nets small enough for the exact minimum (activation patterns enumerated)."""
    network, pwl, net, box, bounds = _instance(seed, sizes=(3, 8, 2))
    C, d = np.random.default_rng(seed).normal(size=(2, 2)), np.zeros(2)
    case = Case(box, (Conjunction(C, d),))
    outcome = refute_disjunct(hull_lp(net, bounds, box.lower, box.upper), C, d, Budget.seconds(30))
    assert outcome.lower <= exact_minimum(pwl, case) + 1e-9


@pytest.mark.parametrize("seed", range(4))
def test_lagrangian_bound_is_sound_for_any_multipliers(seed):
    """The bound must not depend on HiGHS being right: random nonnegative multipliers give a (loose)
    bound that still holds at every sample."""
    network, pwl, net, box, bounds = _instance(seed)
    lp = hull_lp(net, bounds, box.lower, box.upper)
    rng = np.random.default_rng(seed)
    C, d = rng.normal(size=(2, 2)), rng.normal(size=2)
    sampled = _sampled_minimum(pwl, box, C, d)
    for scale in (1e-3, 1.0, 1e3):
        weights = rng.uniform(0, 1, 2)
        weights /= weights.sum()
        mu = scale * rng.exponential(size=lp.G.shape[0]) * (rng.uniform(size=lp.G.shape[0]) < 0.3)
        assert lagrangian_bound(lp, C, d, weights, mu) <= sampled


def test_hull_is_strictly_tighter_somewhere():
    gains = []
    for seed in range(6):
        network, pwl, net, box, bounds = _instance(seed)
        C, d = np.random.default_rng(seed).normal(size=(1, 2)), np.zeros(1)
        case = Case(box, (Conjunction(C, d),))
        splits = [torch.zeros(1, n, dtype=torch.int8) for n in net.hidden_sizes]
        hull = refute_disjunct(hull_lp(net, bounds, box.lower, box.upper), C, d, Budget.seconds(30)).lower
        gains.append(hull - _lp_minimum(net, bounds, splits, case, 0))
    assert max(gains) > 1e-2, gains


def _between_case():
    """A one-hidden-layer case whose d lies between the triangle LP's minimum and the hull's: the hull
    refutes it at the root, the triangle relaxation does not."""
    for seed in range(12):
        network, pwl, net, box, bounds = _instance(seed)
        C = np.array([[1.0, -1.0]])
        zero = Case(box, (Conjunction(C, np.zeros(1)),))
        splits = [torch.zeros(1, n, dtype=torch.int8) for n in net.hidden_sizes]
        triangle = _lp_minimum(net, bounds, splits, zero, 0)
        hull = refute_disjunct(hull_lp(net, bounds, box.lower, box.upper), C, np.zeros(1), Budget.seconds(30)).lower
        if hull - triangle > 0.05:
            d = np.array([hull - 0.1 * (hull - triangle)])
            return network, pwl, Case(box, (Conjunction(C, d),))
    raise AssertionError("no seed puts the hull 0.05 above the triangle LP")


def test_search_refutes_at_the_root_with_the_hull_and_needs_splits_without():
    network, pwl, case = _between_case()
    outcome = bab.run(pwl, network, case, Budget.seconds(60), branching="relu", attack_every=0)
    assert isinstance(outcome, Proven), outcome
    assert outcome.certificate.detail["hull_refuted"] == 1
    assert outcome.certificate.detail["domains"] == 1
    off = bab.run(pwl, network, case, Budget.seconds(60), branching="relu", attack_every=0,
                  relu_hull_max_nonzeros=0)
    assert "hull_lps" not in getattr(getattr(off, "certificate", None), "detail", {})
    assert not (isinstance(off, Proven) and off.certificate.detail["domains"] == 1), off


def test_applicable_names_why_not():
    network, pwl, net, box, bounds = _instance(0)
    assert applicable(net, bounds, 5_000_000) is None
    assert "relu_hull_max_nonzeros=0" in applicable(net, bounds, 0)
    assert "exceed" in applicable(net, bounds, 5)
    deep = ReluMlp.from_pwl(to_piecewise_linear(load_network_bytes(mlp((4, 8, 8, 2), seed=0))), torch.float64)
    deep_bounds = layer_bounds(deep, torch.tensor(box.lower)[None], torch.tensor(box.upper)[None])
    assert "2 hidden ReLU layers" in applicable(deep, deep_bounds, 5_000_000)
