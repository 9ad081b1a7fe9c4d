"""Branch and bound on sigmoid/tanh MLPs (verikit.engines.bab.activation_split): answers checked against a
brute-force grid, bounds checked against sampled points of every domain, replayed counterexamples, and the
refusals (unsupported activations, the queue cap) as Unknown with the reason."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from onnx_factory import GraphBuilder

from verikit.core.activations import ActivationChain
from verikit.core.property import Box, Case, Conjunction, Property
from verikit.core.result import Budget, Falsified, Proven, Unknown, Verdict
from verikit.engines.bab import engine as bab
from verikit.engines.bab.activation_bounds import ActivationNet, domain_bounds, row_bounds
from verikit.engines.bab.activation_optimise import optimised_rows
from verikit.engines.bab.activation_relax import relax
from verikit.engines.bab.common import BabSettings
from verikit.engines.bab.engine import BabEngine
from verikit.engines.lirpa.engine import BoundsEngine
from verikit.engines.problem import Problem
from verikit.onnx.activation_chain import to_activation_chain
from verikit.onnx.load import load_network_bytes
from verikit.portfolio.options import Options
from verikit.portfolio.runner import verify

pytestmark = pytest.mark.usefixtures("one_torch_thread")

BOX = Box(np.full(2, -1.0), np.full(2, 1.0))
GRID = 1001  # points per axis of the brute-force grid on BOX


def mlp_bytes(activation: str | tuple[str, ...], seed: int, *, sizes=(2, 8, 8, 1), head: str | None = None) -> bytes:
    """Gemm layers with `activation` (one, or one per hidden layer) between them (weights N(0, 1)),
    optionally a `head` op at the end."""
    g = GraphBuilder(seed)
    value = "x"
    activations = (activation,) * (len(sizes) - 2) if isinstance(activation, str) else activation
    for index, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        value = g.op("Gemm", value, g.weight(n_out, n_in, scale=1.0), g.weight(n_out, scale=0.5), transB=1)
        if index < len(sizes) - 2:
            value = g.op(activations[index], value)
    if head:
        value = g.op(head, value, axis=1)
    return g.build((1, sizes[0]), value)


def below(d: float) -> Case:
    """The case "y <= d" on BOX (sat iff the network reaches d)."""
    return Case(BOX, (Conjunction(np.array([[1.0]]), np.array([d])),))


def grid_minimum(chain: ActivationChain) -> tuple[float, float]:
    """(min of y on the grid, Lipschitz error: how far below it the minimum over BOX can lie)."""
    axis = np.linspace(-1.0, 1.0, GRID)
    points = np.stack(np.meshgrid(axis, axis), -1).reshape(-1, 2)
    slope = {"sigmoid": 0.25, "tanh": 1.0}
    gain = np.abs(chain.affines[0].weight)
    for affine, kind in zip(chain.affines[1:], chain.kinds):
        gain = np.abs(affine.weight) @ (slope[kind] * gain)
    # every point of BOX lies within half a grid step of a grid point in each coordinate
    return float(chain.evaluate(points).min()), float(gain.sum() * (2.0 / (GRID - 1)) / 2)


def alpha_crown_lower(problem: Problem) -> float:
    outcome = BoundsEngine("alpha-crown").run(problem, below(0.0), Budget.seconds(60))
    bounds = outcome.certificate.disjuncts if isinstance(outcome, Proven) else outcome.bounds
    return float(bounds[0].lower[0])


@pytest.mark.parametrize("activation", ["Sigmoid", "Tanh"])
@pytest.mark.parametrize("inputs_too", [False, True], ids=["neuron-splits", "neuron-and-input-splits"])
def test_branch_and_bound_proves_what_bounds_alone_leave_open(activation, inputs_too):
    network = load_network_bytes(mlp_bytes(activation, seed=1))
    problem = Problem(network)
    chain = to_activation_chain(network)
    minimum, lipschitz_error = grid_minimum(chain)
    alpha = alpha_crown_lower(problem)
    threshold = minimum - 0.5 * (minimum - alpha)  # halfway between α-CROWN's bound and the grid minimum
    case = below(threshold)
    # the property holds: y > threshold everywhere on the box (grid minimum beyond the grid's error)
    assert minimum - lipschitz_error > threshold
    for method in ("crown", "alpha-crown"):
        assert isinstance(BoundsEngine(method).run(problem, case, Budget.seconds(60)), Unknown)
    # input_split_max_dims=0: only pre-activation intervals are split
    settings = BabSettings(input_split_max_dims=16 if inputs_too else 0)
    outcome = BabEngine(settings).run(problem, case, Budget.seconds(60))
    assert isinstance(outcome, Proven), outcome
    assert outcome.certificate.method == "bab-activation"
    assert outcome.certificate.detail["domains"] > 1  # the root bound alone did not decide it
    if not inputs_too:
        assert outcome.certificate.detail["input_splits"] == 0


@pytest.mark.parametrize("activation", ["Sigmoid", "Tanh"])
def test_sat_case_returns_a_replayed_counterexample(activation):
    network = load_network_bytes(mlp_bytes(activation, seed=2))
    chain = to_activation_chain(network)
    minimum, _ = grid_minimum(chain)
    case = below(minimum + 1e-3)
    outcome = BabEngine().run(Problem(network), case, Budget.seconds(30))
    assert isinstance(outcome, Falsified), outcome
    x = np.asarray(outcome.counterexample.x, dtype=np.float32).reshape(1, -1)
    assert np.all(x >= BOX.lower) and np.all(x <= BOX.upper)
    assert float(network.replay(x)[0, 0]) <= minimum + 1e-3


def random_domains(net: ActivationNet, generator: torch.Generator, splits: int, pre: list[torch.Tensor]):
    """Constraint intervals (per layer (1, n_i)) after each of `splits` random interval splits, with the
    domain's bounds; each split keeps the side holding a random sample (pre: its pre-activations), so
    the domains keep some samples."""
    sizes = net.hidden_sizes
    lower = [torch.full((1, n), -torch.inf, dtype=torch.float64) for n in sizes]
    upper = [torch.full((1, n), torch.inf, dtype=torch.float64) for n in sizes]
    box_lo, box_hi = torch.tensor(BOX.lower).reshape(1, -1), torch.tensor(BOX.upper).reshape(1, -1)
    bounds = domain_bounds(net, box_lo, box_hi, lower, upper)
    for _ in range(splits):
        lower, upper = [t.clone() for t in bounds.lower], [t.clone() for t in bounds.upper]
        inside = torch.ones(pre[0].shape[0], dtype=torch.bool)
        for z, lo, hi in zip(pre, lower, upper):
            inside &= ((z >= lo) & (z <= hi)).all(dim=1)
        candidates = inside.nonzero().squeeze(1)
        if candidates.numel() == 0:
            return
        sample = int(candidates[torch.randint(candidates.numel(), (1,), generator=generator)])
        layer = int(torch.randint(len(sizes), (1,), generator=generator))
        neuron = int(torch.randint(sizes[layer], (1,), generator=generator))
        lo, hi = float(lower[layer][0, neuron]), float(upper[layer][0, neuron])
        point = lo + (hi - lo) * float(torch.rand(1, generator=generator))
        if float(pre[layer][sample, neuron]) <= point:
            upper[layer][0, neuron] = point
        else:
            lower[layer][0, neuron] = point
        bounds = domain_bounds(net, box_lo, box_hi, lower, upper)
        yield lower, upper, bounds


FUNCTIONS = {"sigmoid": torch.sigmoid, "tanh": torch.tanh, "relu": torch.relu}


@pytest.mark.parametrize("activation,seed", [("Sigmoid", 0), ("Tanh", 1), ("Sigmoid", 3), ("Tanh", 4),
                                             (("Relu", "Sigmoid", "Tanh"), 5)])
def test_sampled_points_of_every_domain_lie_within_its_bounds(activation, seed):
    sizes = (2, 8, 8, 1) if isinstance(activation, str) else (2, 8, 8, 8, 1)
    chain = to_activation_chain(load_network_bytes(mlp_bytes(activation, seed=seed, sizes=sizes)))
    net = ActivationNet.from_chain(chain)
    generator = torch.Generator().manual_seed(seed)
    x = torch.rand(20000, 2, generator=generator, dtype=torch.float64) * 2 - 1
    # pre-activations of every sample, layer by layer
    pre, values = [], x
    for i in range(net.depth):
        z = values @ net.weights_t[i] + net.biases[i]
        pre.append(z)
        values = FUNCTIONS[net.kinds[i]](z)
    y = values @ net.weights_t[-1] + net.biases[-1]
    C = torch.tensor([[1.0], [-1.0]], dtype=torch.float64)
    d = torch.tensor([0.0, 0.0], dtype=torch.float64)
    box_lo, box_hi = torch.tensor(BOX.lower).reshape(1, -1), torch.tensor(BOX.upper).reshape(1, -1)
    checked = 0
    for lower, upper, bounds in random_domains(net, generator, 12, pre):
        inside = torch.ones(x.shape[0], dtype=torch.bool)
        for z, lo, hi in zip(pre, lower, upper):
            inside &= ((z >= lo) & (z <= hi)).all(dim=1)
        if not bool(inside.any()):
            continue
        assert not bool(bounds.infeasible.any())  # a domain with points is never called empty
        for z, lo, hi, lines, kind in zip(pre, bounds.lower, bounds.upper, bounds.lines, net.kinds):
            zin = z[inside]
            assert bool(((zin >= lo) & (zin <= hi)).all())
            kind_values = FUNCTIONS[kind](zin)
            assert bool((lines.slope_lo * zin + lines.icpt_lo <= kind_values).all())
            assert bool((kind_values <= lines.slope_up * zin + lines.icpt_up).all())
        plain = row_bounds(net, box_lo, box_hi, bounds, C, d).lower[0]
        tuned, _ = optimised_rows(net, box_lo, box_hi, bounds, C, d, steps=10, lr=0.1)
        outputs = y[inside] @ C.T - d
        for row_lower in (plain, tuned.lower[0]):
            assert bool((outputs >= row_lower).all())
        checked += 1
    assert checked >= 10


@pytest.mark.parametrize("kind", ["sigmoid", "tanh", "relu"])
def test_relaxation_lines_enclose_the_activation(kind):
    generator = torch.Generator().manual_seed(7)
    lower = torch.randn(4000, 1, generator=generator, dtype=torch.float64) * 4
    width = torch.exp(torch.randn(4000, 1, generator=generator, dtype=torch.float64) * 2)
    upper = lower + width
    theta = torch.rand(3, 4000, 1, generator=generator, dtype=torch.float64)  # α: any tangent point allowed
    f = FUNCTIONS[kind]
    z = lower + torch.rand(4000, 64, generator=generator, dtype=torch.float64) * width
    for lines in (relax(kind, lower, upper), relax(kind, lower, upper, None, theta, theta.flip(0))):
        assert bool((lines.slope_lo * z + lines.icpt_lo <= f(z)).all())
        assert bool((f(z) <= lines.slope_up * z + lines.icpt_up).all())


def test_unsupported_activation_is_unknown_with_the_reason():
    network = load_network_bytes(mlp_bytes("Sigmoid", seed=0, sizes=(2, 4, 3), head="Softmax"))
    reason = BabEngine().supports(Problem(network))
    assert reason is not None and "Softmax" in reason and "no sound relaxation" in reason
    prop = Property((Case(BOX, (Conjunction(np.array([[1.0, -1.0, 0.0]]), np.array([-2.0])),)),), 2, 3)
    result = verify(network, prop, Options(timeout=10, engines=("bab",)))
    assert result.verdict is Verdict.UNKNOWN
    assert "Softmax" in result.cases[0].outcome.reason


def test_portfolio_runs_bounds_then_branch_and_bound_on_sigmoid():
    network = load_network_bytes(mlp_bytes("Sigmoid", seed=1))
    problem = Problem(network)
    minimum, _ = grid_minimum(to_activation_chain(network))
    threshold = minimum - 0.5 * (minimum - alpha_crown_lower(problem))
    prop = Property((below(threshold),), 2, 1)
    result = verify(network, prop, Options(timeout=60))
    assert result.verdict is Verdict.VERIFIED
    stages = [stage["stage"] for stage in result.schedule]
    assert stages.index("bab/crown") > stages.index("bounds/alpha-crown")
    assert result.cases[0].engine == "bab"


def test_queue_cap_and_bad_split_are_unknown_with_the_reason():
    network = load_network_bytes(mlp_bytes("Tanh", seed=1))
    chain = to_activation_chain(network)
    minimum, _ = grid_minimum(chain)
    case = below(minimum - 1e-4)
    capped = bab.run_activation(chain, network, case, Budget.seconds(30), activation_queue_bytes=1000)
    assert isinstance(capped, Unknown) and "memory cap" in capped.reason
    counted = bab.run_activation(chain, network, case, Budget.seconds(30), max_domains=1)
    assert isinstance(counted, Unknown) and "domain limit" in counted.reason
    bad = bab.run_activation(chain, network, case, Budget.seconds(30), activation_split="golden")
    assert isinstance(bad, Unknown) and "activation_split" in bad.reason


def test_same_seed_same_outcome():
    network = load_network_bytes(mlp_bytes("Tanh", seed=1))
    chain = to_activation_chain(network)
    minimum, _ = grid_minimum(chain)
    first, second = (bab.run_activation(chain, network, below(minimum - 0.05), Budget.seconds(30), seed=3)
                     for _ in range(2))
    assert isinstance(first, Proven) and first.certificate.detail == second.certificate.detail


def test_engines_that_cannot_prove_on_a_sigmoid_net_each_say_why():
    network = load_network_bytes(mlp_bytes("Sigmoid", seed=0, sizes=(2, 4, 3)))
    # the violation y0 - y1 <= 100 holds everywhere, but the plan has no attack. auto_LiRPA's float32
    # bounds cannot be re-proven rigorously on a sigmoid net, so the bounds engine declines (issue 25),
    # and z3 refuses it too: unknown, with both refusals kept in the attempts
    prop = Property((Case(BOX, (Conjunction(np.array([[1.0, -1.0, 0.0]]), np.array([100.0])),)),), 2, 3)
    result = verify(network, prop, Options(timeout=10, engines=("bounds", "smt"), methods=("ibp",)))
    assert result.verdict is Verdict.UNKNOWN
    attempts = result.cases[0].attempts
    assert [a["engine"] for a in attempts] == ["bounds", "smt"] and all("reason" in a for a in attempts)
    assert "rigorous" in attempts[0]["reason"] and "Sigmoid" in attempts[0]["reason"]
    assert "piecewise-linear" in attempts[1]["reason"]
