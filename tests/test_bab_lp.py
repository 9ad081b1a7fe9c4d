"""LPs on small domains of ReLU branching (verikit.engines.bab.leaf): the triangle-relaxation LP's duals
become a sound float64 CROWN bound, and branch and bound with LP pruning keeps the exact answers."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.optimize import linprog
from onnx_factory import mlp
from test_bab import tiny_instance

from verikit.core.property import Box, Case, Conjunction
from verikit.core.result import Budget, Falsified, Proven
from verikit.engines.bab import engine as bab
from verikit.engines.bab.common import SpecRows
from verikit.engines.bab.leaf import domain_lp, settle_leaf
from verikit.engines.crown.propagate import ReluMlp, layer_bounds, spec_bounds
from verikit.onnx.load import load_network_bytes
from verikit.onnx.pwl import to_piecewise_linear

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SIZES = (2, 5, 4, 3)  # test_bab's exact reference enumerates activation patterns: keep them few


def _wide_instance(seed: int):
    """A random (3, 10, 10, 3) MLP, a box and one random output row (d = 0)."""
    network = load_network_bytes(mlp((3, 10, 10, 3), seed=seed))
    rng = np.random.default_rng(seed)
    lower = rng.uniform(-1, 0, 3)
    box = Box(lower, lower + rng.uniform(0.5, 1.5, 3))
    return network, to_piecewise_linear(network), Case(box, (Conjunction(rng.normal(size=(1, 3)), np.zeros(1)),))


def _root(pwl, case):
    net = ReluMlp.from_pwl(pwl, torch.float64)
    lower = torch.tensor(case.box.lower)[None]
    upper = torch.tensor(case.box.upper)[None]
    splits = [torch.zeros(1, n, dtype=torch.int8) for n in net.hidden_sizes]
    return net, lower, upper, layer_bounds(net, lower, upper), splits


def _lp_minimum(net, bounds, splits, case, row) -> float:
    """min over the domain's triangle relaxation of C[row] y - d[row] (one row, no t variable)."""
    lp = domain_lp(net, bounds, splits)
    C, d = case.disjuncts[0].C[row], case.disjuncts[0].d[row]
    m = lp.free_rows.shape[0]
    box = list(zip(case.box.lower, case.box.upper)) + [(None, None)] * m
    result = linprog(C @ lp.A, A_ub=lp.G, b_ub=lp.h, bounds=box, method="highs")
    assert result.status == 0
    return float(result.fun + C @ lp.c - d)


@pytest.mark.parametrize("seed", range(8))
def test_lp_duals_refute_just_above_the_lp_optimum_and_never_where_a_sample_violates(seed):
    network, pwl, case = _wide_instance(seed)
    net, lower, upper, bounds, splits = _root(pwl, case)
    assert int(bounds.unstable_count()[0]) > 0
    optimum = _lp_minimum(net, bounds, splits, case, 0)
    C = case.disjuncts[0].C
    for margin, refutable in ((1e-3, True), (-1e-3, False)):
        # shift d so that the relaxation's minimum is `margin`
        shifted = Case(case.box, (Conjunction(C, case.disjuncts[0].d + optimum - margin),))
        spec = SpecRows.of(shifted, torch.float64)
        candidates, refuted = settle_leaf(net, bounds, splits, spec, lower, upper)
        assert refuted == refutable, (margin, optimum)
        if refuted:  # sound: no point of the box violates (the relaxation's minimum is below the network's)
            samples = case.box.sample(4096, np.random.default_rng(seed))
            assert (pwl.evaluate(samples) @ C.T - shifted.disjuncts[0].d).min() > 0
        else:
            assert len(candidates) == 1 and np.all(candidates[0] >= case.box.lower - 1e-9)
    # the LP is at least as tight as CROWN with its default slopes on the same intermediate bounds
    plain = spec_bounds(net, lower, upper, torch.tensor(C), torch.tensor(case.disjuncts[0].d), bounds).lower
    assert float(plain[0, 0]) <= optimum + 1e-9


@pytest.mark.parametrize("seed", range(12))
def test_relu_branching_with_lp_pruning_keeps_the_exact_answer(seed):
    network, pwl, case, sat = tiny_instance(seed, 1 + seed % 2, 1 + (seed // 2) % 2, SIZES)
    outcome = bab.run(pwl, network, case, Budget.seconds(30), branching="relu", lp_max_unstable=8,
                      relu_beta_steps=0)
    if sat:
        assert isinstance(outcome, Falsified), outcome
        assert case.disjuncts[outcome.counterexample.disjunct].holds(network.replay(outcome.counterexample.x[None])[0])
    else:
        assert isinstance(outcome, Proven), outcome


def test_lp_pruning_refutes_domains_that_crown_leaves_open():
    refuted = 0
    for seed in range(0, 12, 2):  # the unsat instances
        network, pwl, case, _ = tiny_instance(seed, 1 + seed % 2, 1 + (seed // 2) % 2, SIZES)
        outcome = bab.run(pwl, network, case, Budget.seconds(30), branching="relu", lp_max_unstable=8,
                          relu_beta_steps=0)
        assert isinstance(outcome, Proven)
        refuted += outcome.certificate.detail["lp_refuted"]
    assert refuted > 0


def test_tighter_domain_bounds_given_to_the_lp_are_used_and_stay_sound():
    """prune_with_lp intersects the root's clipped bounds with the batch's own (here α-CROWN-tightened layer
    bounds, sound and tighter): a spec whose margin lies between the LP optimum on the root's bounds and
    on the tighter ones stays open without them and is refuted with them; no sampled point violates it."""
    from types import SimpleNamespace

    from verikit.engines.bab.common import BabSettings, SearchStats, Validator
    from verikit.engines.bab.leaf import prune_with_lp
    from verikit.engines.bab.relu_split import restrict
    from verikit.engines.crown.optimise import optimise_layer_bounds

    separated = 0
    for seed in range(8):
        network, pwl, case = _wide_instance(seed)
        net, lower, upper, bounds, splits = _root(pwl, case)
        tighter = optimise_layer_bounds(net, lower, upper, bounds, steps=30)
        loose, tight = (_lp_minimum(net, b, splits, case, 0) for b in (bounds, tighter))
        if tight - loose < 1e-2:
            continue
        separated += 1
        C = case.disjuncts[0].C
        shifted = Case(case.box, (Conjunction(C, case.disjuncts[0].d + (loose + tight) / 2),))
        spec = SpecRows.of(shifted, torch.float64)
        still_open = []
        for own in (None, tighter):
            ctx = SimpleNamespace(root64=bounds, net64=net, x_lower=lower, x_upper=upper, stats=SearchStats(),
                                  validator=Validator(network, shifted, BabSettings().tolerances),
                                  settings=BabSettings(lp_max_unstable=64), budget=Budget.seconds(30))
            found, open_index = prune_with_lp(ctx, spec, splits, torch.tensor([0]), restrict, own)
            assert found is None
            still_open.append(open_index.numel())
        assert still_open == [1, 0], (seed, loose, tight)
        samples = case.box.sample(4096, np.random.default_rng(seed))
        assert (pwl.evaluate(samples) @ C.T - shifted.disjuncts[0].d).min() > 0
    assert separated >= 2
