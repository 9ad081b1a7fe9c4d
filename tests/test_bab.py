"""Branch and bound (verikit.engines.bab.engine) against exact answers on tiny networks, and its contracts:
determinism, the domain cap, the time budget, replayed counterexamples."""

from __future__ import annotations

import functools
import itertools

import numpy as np
import pytest
import torch
from onnx_factory import mlp
from scipy.optimize import linprog

from verikit.engines.bab import engine as bab
from verikit.engines.crown.propagate import ReluMlp, layer_bounds
from verikit.core.pwl import Affine, PiecewiseLinear
from verikit.onnx.load import load_network_bytes
from verikit.onnx.pwl import to_piecewise_linear
from verikit.core.result import Budget, Falsified, Proven, Unknown
from verikit.core.property import Box, Case, Conjunction


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def exact_minimum(pwl: PiecewiseLinear, case: Case) -> float:
    """min over the box of min over disjuncts of max over rows of C y - d: enumerate activation patterns,
    one LP per pattern and disjunct (the network is affine on each pattern's polytope)."""
    affines = [layer for layer in pwl.layers if isinstance(layer, Affine)]
    widths = [a.out_features for a in affines[:-1]]
    n = pwl.n_inputs
    # neurons stable over the whole box (sound float64 bounds) keep their state; enumerate the rest
    net = ReluMlp.from_pwl(pwl, torch.float64)
    layers = layer_bounds(net, torch.tensor(case.box.lower)[None], torch.tensor(case.box.upper)[None])
    lower = torch.cat(layers.lower, dim=1)[0].numpy()
    upper = torch.cat(layers.upper, dim=1)[0].numpy()
    free = np.flatnonzero((lower < 0) & (upper > 0))
    best = np.inf
    for choice in itertools.product((0, 1), repeat=free.size):
        pattern = (lower >= 0).astype(int)
        pattern[free] = choice
        A, c = np.eye(n), np.zeros(n)  # current layer's values as A x + c
        rows_ub, rhs_ub = [], []
        offset = 0
        for layer, width in zip(affines[:-1], widths):
            A, c = layer.weight @ A, layer.weight @ c + layer.bias
            on = np.array(pattern[offset : offset + width], dtype=bool)
            offset += width
            # active: z >= 0  ⇔  -A x <= c;  inactive: z <= 0  ⇔  A x <= -c
            rows_ub.append(np.where(on[:, None], -A, A))
            rhs_ub.append(np.where(on, c, -c))
            A, c = A * on[:, None], c * on
        A, c = affines[-1].weight @ A, affines[-1].weight @ c + affines[-1].bias
        for conjunction in case.disjuncts:
            # min t  s.t.  C (A x + c) - d <= t,  pattern constraints,  x in box
            G = conjunction.C @ A
            ub = np.vstack([np.hstack([G, -np.ones((G.shape[0], 1))])]
                           + [np.hstack([r, np.zeros((r.shape[0], 1))]) for r in rows_ub])
            rhs = np.concatenate([conjunction.d - conjunction.C @ c, *rhs_ub])
            objective = np.zeros(n + 1)
            objective[-1] = 1.0
            bounds = list(zip(case.box.lower, case.box.upper)) + [(None, None)]
            result = linprog(objective, A_ub=ub, b_ub=rhs, bounds=bounds, method="highs")
            if result.status == 0:
                best = min(best, float(result.fun))
    return best


@functools.lru_cache(maxsize=None)
def tiny_instance(seed: int, rows: int = 1, disjuncts: int = 1, sizes=(2, 5, 4, 3)):
    """A random ONNX MLP, its PiecewiseLinear, and a case whose exact minimum margin is ±0.05·scale."""
    network = load_network_bytes(mlp(sizes, seed=seed))
    pwl = to_piecewise_linear(network)
    rng = np.random.default_rng(seed)
    lower = rng.uniform(-1, 0, sizes[0])
    box = Box(lower, lower + rng.uniform(0.5, 1.5, sizes[0]))
    conjunctions = [Conjunction(rng.normal(size=(rows, sizes[-1])), np.zeros(rows)) for _ in range(disjuncts)]
    case = Case(box, tuple(conjunctions))
    minimum = exact_minimum(pwl, case)
    scale = np.abs(pwl.evaluate(box.sample(64, rng))).max() + 1e-3
    shift = 0.05 * scale * (1 if seed % 2 else -1)  # odd seeds: sat by a margin, even: unsat by one
    shifted = tuple(Conjunction(c.C, c.d + minimum + shift) for c in conjunctions)
    return network, pwl, Case(box, shifted), shift > 0


@pytest.mark.parametrize("branching", ["input", "relu"])
@pytest.mark.parametrize("seed,rows,disjuncts", [(s, 1 + s % 2, 1 + (s // 2) % 2) for s in range(8)])
def test_matches_the_exact_answer(seed, rows, disjuncts, branching):
    network, pwl, case, sat = tiny_instance(seed, rows, disjuncts)
    outcome = bab.run(pwl, network, case, Budget.seconds(30), branching=branching)
    if sat:
        assert isinstance(outcome, Falsified), outcome
        counterexample = outcome.counterexample
        assert case.box.contains(counterexample.x)
        assert case.disjuncts[counterexample.disjunct].holds(network.replay(counterexample.x[None])[0])
    else:
        assert isinstance(outcome, Proven), outcome
        assert outcome.certificate.method == f"bab-{branching}"


def test_never_proven_when_sampling_finds_a_violation():
    rng = np.random.default_rng(5)
    for seed in range(6):
        network = load_network_bytes(mlp((3, 8, 8, 2), seed=100 + seed))
        pwl = to_piecewise_linear(network)
        box = Box(-np.ones(3), np.ones(3))
        samples = box.sample(2000, rng)
        y = pwl.evaluate(samples)
        threshold = np.quantile(y[:, 0] - y[:, 1], 0.01)  # 1% of samples violate y0 - y1 <= threshold
        case = Case(box, (Conjunction(np.array([[1.0, -1.0]]), np.array([threshold])),))
        outcome = bab.run(pwl, network, case, Budget.seconds(20))
        assert not isinstance(outcome, Proven)
        assert isinstance(outcome, Falsified)


@pytest.mark.parametrize("branching", ["input", "relu"])
def test_same_seed_same_outcome_and_search(branching):
    network = load_network_bytes(mlp((3, 16, 16, 2), seed=21))
    pwl = to_piecewise_linear(network)
    box = Box(-np.ones(3), np.ones(3))
    case = Case(box, (Conjunction(np.array([[1.0, -1.0]]), np.array([exact_minimum_by_sampling(pwl, box) - 0.05])),))
    runs = [bab.run(pwl, network, case, Budget.seconds(30), seed=7, batch_size=16, branching=branching)
            for _ in range(2)]
    assert type(runs[0]) is type(runs[1])
    if isinstance(runs[0], Proven):
        assert runs[0].certificate.detail == runs[1].certificate.detail
        assert runs[0].certificate.detail["domains"] > 1


def _hard_case():
    network = load_network_bytes(mlp((4, 32, 32, 32, 2), seed=3))
    pwl = to_piecewise_linear(network)
    box = Box(-np.ones(4), np.ones(4))
    minimum = exact_minimum_by_sampling(pwl, box)
    return network, pwl, Case(box, (Conjunction(np.array([[1.0, -1.0]]), np.array([minimum - 1e-3])),))


def exact_minimum_by_sampling(pwl: PiecewiseLinear, box: Box) -> float:
    """min of y0 - y1 over 20,000 samples and every corner of the box (minima of ReLU networks often
    sit on the box's faces)."""
    corners = np.array(list(itertools.product(*zip(box.lower, box.upper))))
    y = pwl.evaluate(np.concatenate([box.sample(20000, np.random.default_rng(0)), corners]))
    return float((y[:, 0] - y[:, 1]).min())


@pytest.mark.parametrize("branching", ["input", "relu"])
def test_domain_limit_gives_unknown(branching):
    network, pwl, case = _hard_case()
    outcome = bab.run(pwl, network, case, Budget.seconds(30), branching=branching, max_domains=4,
                      batch_size=4, relu_batch_size=4, attack_every=0, relu_attack_every=0)
    # (both searches' attacks off: the case is sat below the sampled minimum, and the ReLU search's attack
    # rounds find its counterexample before the limit)
    assert isinstance(outcome, Unknown)
    assert "domain limit" in outcome.reason
    assert not outcome.timed_out


@pytest.mark.parametrize("branching", ["input", "relu"])
def test_spent_budget_gives_timed_out_unknown(branching):
    network, pwl, case = _hard_case()
    outcome = bab.run(pwl, network, case, Budget.seconds(0.0), branching=branching)
    assert isinstance(outcome, Unknown) and outcome.timed_out


def test_trivial_cases():
    network = load_network_bytes(mlp((2, 4, 2), seed=0))
    pwl = to_piecewise_linear(network)
    box = Box(np.zeros(2), np.ones(2))
    assert isinstance(bab.run(pwl, network, Case(box, ()), Budget.seconds(5)), Proven)
    empty_box = Box(np.ones(2), np.zeros(2))
    assert isinstance(bab.run(pwl, network, Case(empty_box, (Conjunction(np.ones((1, 2)), [0.0]),)),
                              Budget.seconds(5)), Proven)
    always = Case(box, (Conjunction(np.zeros((0, 2)), np.zeros(0)),))
    assert isinstance(bab.run(pwl, network, always, Budget.seconds(5)), Falsified)
    unbounded = Case(Box(np.full(2, -np.inf), np.ones(2)), (Conjunction(np.ones((1, 2)), [0.0]),))
    assert isinstance(bab.run(pwl, network, unbounded, Budget.seconds(5)), Unknown)


@pytest.mark.parametrize("input_score", ["chained", "autograd", "width"])
def test_every_input_branching_score_decides(input_score):
    network, pwl, case, sat = tiny_instance(4, rows=2, sizes=(3, 5, 4, 3))
    outcome = bab.run(pwl, network, case, Budget.seconds(30), input_score=input_score)
    assert isinstance(outcome, Falsified if sat else Proven)


def test_float64_working_dtype_decides_too():
    network, pwl, case, sat = tiny_instance(6, rows=2)
    outcome = bab.run(pwl, network, case, Budget.seconds(30), dtype=torch.float64)
    assert isinstance(outcome, Falsified if sat else Proven)


def test_an_affine_network_is_unknown_to_bab_and_decided_by_the_portfolio():
    from verikit.core.property import Property
    from verikit.portfolio.options import Options
    from verikit.portfolio.runner import verify

    network = load_network_bytes(mlp((3, 2), seed=1, batch="dynamic"))  # no hidden layer
    box = Box(np.zeros(3), np.ones(3))
    impossible = Case(box, (Conjunction([[1.0, -1.0]], [-100.0]),))
    outcome = bab.run(to_piecewise_linear(network), network, impossible, Budget.seconds(5))
    assert isinstance(outcome, Unknown) and "affine" in outcome.reason
    prop = Property((impossible,), 3, 2)
    assert verify(network, prop, Options(timeout=20)).verdict.value == "verified"
    always = Property((Case(box, (Conjunction([[1.0, -1.0]], [100.0]),)),), 3, 2)
    assert verify(network, always, Options(timeout=20)).verdict.value == "falsified"


def test_relu_search_attacks_the_whole_box_between_batches(monkeypatch):
    """With the bound minimisers silenced, the counterexample of a sat case comes from the attack rounds the
    ReLU search runs every `relu_attack_every` batches; with the rounds off, none ever runs."""
    from verikit.engines.bab import relu_split

    network = load_network_bytes(mlp((3, 32, 32, 2), seed=104))
    pwl = to_piecewise_linear(network)
    box = Box(-np.ones(3), np.ones(3))
    y = pwl.evaluate(box.sample(4000, np.random.default_rng(0)))
    threshold = float(np.quantile(y[:, 0] - y[:, 1], 0.02))
    case = Case(box, (Conjunction(np.array([[1.0, -1.0]]), np.array([threshold])),))
    rounds, original = [], relu_split.run_attack

    def counted(*args, **kwargs):
        rounds.append(original(*args, **kwargs))
        return rounds[-1]

    monkeypatch.setattr(relu_split, "run_attack", counted)
    monkeypatch.setattr(relu_split, "_falsify", lambda *args: None)
    outcome = bab.run(pwl, network, case, Budget.seconds(20), branching="relu", relu_attack_every=1,
                      relu_batch_size=1, relu_tighten_leaves=0)
    assert isinstance(outcome, Falsified), outcome
    assert rounds and rounds[-1] is outcome
    assert case.disjuncts[0].holds(network.replay(outcome.counterexample.x[None])[0])
    rounds.clear()
    bab.run(pwl, network, case, Budget.seconds(2), branching="relu", relu_attack_every=0, relu_batch_size=1,
            relu_tighten_leaves=0)
    assert rounds == []
