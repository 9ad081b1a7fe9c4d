"""ReLU-split branch and bound: look-ahead branching, warm starts, refined intermediate bounds, and the
open-domain stack capped by bytes."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from onnx_factory import mlp

from test_bab import _hard_case, tiny_instance
from verikit.engines.bab import engine as bab
from verikit.engines.bab.domains import DomainStack, Domains, bytes_per_domain
from verikit.engines.crown.propagate import ACTIVE, FREE, INACTIVE, InputBox, ReluMlp, layer_bounds
from verikit.engines.crown.refine import refine_after, restrict
from verikit.onnx.load import load_network_bytes
from verikit.onnx.pwl import to_piecewise_linear
from verikit.core.property import Box, Case, Conjunction
from verikit.core.result import Budget, Falsified, Proven, Unknown

pytestmark = pytest.mark.usefixtures("one_torch_thread")

VARIANTS = list(itertools.product(["babsr", "fsb"], [False, True], [False, True]))


@pytest.mark.parametrize("relu_branching,warm,refine", VARIANTS)
@pytest.mark.parametrize("seed", range(4))
def test_every_relu_variant_matches_the_exact_answer(seed, relu_branching, warm, refine):
    network, pwl, case, sat = tiny_instance(seed, 1 + seed % 2, 1 + (seed // 2) % 2)
    outcome = bab.run(pwl, network, case, Budget.seconds(30), branching="relu", relu_branching=relu_branching,
                      relu_warm_start=warm, relu_refine=refine)
    if sat:
        assert isinstance(outcome, Falsified), outcome
        assert case.disjuncts[outcome.counterexample.disjunct].holds(
            network.replay(outcome.counterexample.x[None])[0])
    else:
        assert isinstance(outcome, Proven), outcome


@pytest.mark.parametrize("relu_branching,warm,refine", VARIANTS)
def test_every_relu_variant_closes_a_case_that_needs_splits(relu_branching, warm, refine):
    network = load_network_bytes(mlp((4, 16, 16, 2), seed=3))
    pwl = to_piecewise_linear(network)
    box = Box(-np.ones(4), np.ones(4))
    y = pwl.evaluate(box.sample(20000, np.random.default_rng(0)))
    margin = y[:, 0] - y[:, 1]
    # a quarter of the sampled spread below the sampled minimum: unsat, but not at the root
    case = Case(box, (Conjunction(np.array([[1.0, -1.0]]), np.array([margin.min() - 0.25 * np.ptp(margin)])),))
    outcome = bab.run(pwl, network, case, Budget.seconds(60), branching="relu", relu_branching=relu_branching,
                      relu_warm_start=warm, relu_refine=refine)
    assert isinstance(outcome, Proven), outcome
    assert outcome.certificate.detail["domains"] > 1


def test_queue_byte_cap_gives_unknown_naming_the_setting():
    network, pwl, case = _hard_case()
    outcome = bab.run(pwl, network, case, Budget.seconds(30), branching="relu", relu_batch_size=4,
                      max_queue_bytes=2_000)
    assert isinstance(outcome, Unknown)
    assert "bab.max_queue_bytes=2000" in outcome.reason
    assert not outcome.timed_out


def test_unknown_relu_branching_is_an_unknown_with_the_choices():
    network, pwl, case = _hard_case()
    outcome = bab.run(pwl, network, case, Budget.seconds(30), branching="relu", relu_branching="widest")
    assert isinstance(outcome, Unknown) and "babsr, fsb" in outcome.reason


def test_domain_stack_is_last_in_first_out_and_counts_bytes():
    def batch(first: int, size: int) -> Domains:
        ids = torch.arange(first, first + size)
        return Domains(ids.to(torch.int8).unsqueeze(1).repeat(1, 5), ids.to(torch.int32), ids.to(torch.int16),
                       ids.double(), torch.zeros(size, 2, 5), torch.ones(size, 2, 5))

    stack = DomainStack(batch(0, 1))
    for first in (1, 4, 20):
        stack.push(batch(first, 3))
    assert len(stack) == 10
    assert stack.nbytes == 10 * bytes_per_domain(5, 2, True, 4)
    assert stack.lowest_bound() == 0.0
    top = stack.pop(4)
    assert top.depth.tolist() == [6, 20, 21, 22] and len(stack) == 6
    assert top.alpha.shape == (4, 2, 5) and bool((top.beta == 1).all())
    assert stack.pop(100).depth.tolist() == [0, 1, 2, 3, 4, 5] and len(stack) == 0


@pytest.mark.parametrize("seed", range(3))
def test_refined_bounds_are_sound_and_no_looser(seed):
    """Points of the box that respect a random split assignment stay inside the refined bounds."""
    network = load_network_bytes(mlp((3, 12, 12, 12, 2), seed=40 + seed))
    pwl = to_piecewise_linear(network)
    net = ReluMlp.from_pwl(pwl, torch.float64)
    lower, upper = -torch.ones(1, 3, dtype=torch.float64), torch.ones(1, 3, dtype=torch.float64)
    root = layer_bounds(net, lower, upper)
    rng = np.random.default_rng(seed)
    x = torch.as_tensor(rng.uniform(-1, 1, (20000, 3)))
    pre, values = [], x
    for i in range(net.depth):
        values = values @ net.weights_t[i] + net.biases[i]
        pre.append(values)
        values = values.clamp(min=0)
    # split each domain on two neurons of layer 0, phases taken from a sample point (so it is non-empty)
    splits = [torch.zeros(4, n, dtype=torch.int8) for n in net.hidden_sizes]
    for b in range(4):
        point = int(rng.integers(x.shape[0]))
        for j in rng.choice(12, 2, replace=False):
            splits[0][b, j] = ACTIVE if pre[0][point, j] >= 0 else INACTIVE
    base = restrict(root, splits)
    refined = refine_after(net, base, splits, InputBox(lower, upper), 0)
    tightened = 0
    for b in range(4):
        keep = torch.ones(x.shape[0], dtype=torch.bool)
        for j in range(12):
            if splits[0][b, j] == ACTIVE:
                keep &= pre[0][:, j] >= 0
            elif splits[0][b, j] == INACTIVE:
                keep &= pre[0][:, j] <= 0
        assert bool(keep.any())
        for i in range(net.depth):
            z = pre[i][keep]
            assert bool((z >= refined.lower[i][b] - 1e-9).all() and (z <= refined.upper[i][b] + 1e-9).all())
            assert bool((refined.lower[i][b] >= base.lower[i][b]).all())
            assert bool((refined.upper[i][b] <= base.upper[i][b]).all())
            tightened += int((refined.upper[i][b] < base.upper[i][b] - 1e-9).sum())
    assert not bool(refined.infeasible.any())
    assert tightened > 0
    assert all(bool((s == FREE).all()) for s in splits[1:])
