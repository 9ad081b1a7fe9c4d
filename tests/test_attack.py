"""PGD attack: finds planted violations, replays every counterexample, respects budgets and seeds."""

import numpy as np
import torch

from tests.conftest import MODELS
from verikit.engines.attack import engine as attack
from verikit.onnx.load import load_network
from verikit.core.result import Budget, Falsified, Unknown
from verikit.core.property import Box, Case, Conjunction
from verikit.spec.robustness import robustness_property


def _mlp():
    return load_network(MODELS / "digits_mlp.onnx")


def test_attack_finds_a_misclassification_at_large_eps_and_it_replays():
    network = _mlp()
    x = np.full(network.n_inputs, 0.5)
    label = int(np.argmax(network.replay(x[None, :])[0]))
    prop = robustness_property(x, label, 0.5, num_classes=network.n_outputs, lower=0.0, upper=1.0)
    outcome = attack.run(network, prop.cases[0], Budget.seconds(20), seed=0)
    assert isinstance(outcome, Falsified)
    cex = outcome.counterexample
    assert prop.cases[0].box.contains(cex.x)
    y = network.replay(cex.x[None, :])[0]
    assert int(np.argmax(y)) != label or y[label] <= np.max(np.delete(y, label))


def test_attack_never_claims_an_impossible_violation():
    network = _mlp()
    box = Box(np.zeros(network.n_inputs), np.ones(network.n_inputs))
    impossible = Case(box, (Conjunction(np.eye(network.n_outputs)[:1], [-1e9]),))
    outcome = attack.run(network, impossible, Budget.seconds(2), seed=0,
                         settings=attack.AttackSettings(restarts=8, steps=20, rounds=2))
    assert isinstance(outcome, Unknown)


def test_attack_is_deterministic_for_a_seed():
    network = _mlp()
    x = np.full(network.n_inputs, 0.5)
    label = int(np.argmax(network.replay(x[None, :])[0]))
    case = robustness_property(x, label, 0.5, num_classes=network.n_outputs, lower=0.0, upper=1.0).cases[0]
    first = attack.run(network, case, Budget.seconds(20), seed=3)
    second = attack.run(network, case, Budget.seconds(20), seed=3)
    np.testing.assert_array_equal(first.counterexample.x, second.counterexample.x)


def test_zero_row_disjunct_is_violated_by_any_point():
    network = _mlp()
    case = Case(Box(np.zeros(network.n_inputs), np.ones(network.n_inputs)),
                (Conjunction(np.zeros((0, network.n_outputs)), []),))
    assert isinstance(attack.run(network, case, Budget.seconds(5)), Falsified)


def test_expired_budget_gives_unknown_timed_out():
    network = _mlp()
    case = Case(Box(np.zeros(network.n_inputs), np.ones(network.n_inputs)),
                (Conjunction(np.eye(network.n_outputs)[:1], [-1e9]),))
    outcome = attack.run(network, case, Budget.seconds(0.0))
    assert isinstance(outcome, Unknown) and outcome.timed_out


def test_diversified_starts_stay_in_the_box_and_push_each_output_along_its_own_direction():
    import torch

    from verikit.engines.attack.pgd import diversified_starts

    torch.manual_seed(0)
    layer = torch.nn.Sequential(torch.nn.Linear(6, 16), torch.nn.ReLU(), torch.nn.Linear(16, 4)).double()
    lower, upper = -torch.ones(32, 6, dtype=torch.float64), torch.ones(32, 6, dtype=torch.float64)
    starts = torch.zeros(32, 6, dtype=torch.float64)
    runs = [diversified_starts(layer, starts, lower, upper, steps=5, size=0.2,
                               generator=torch.Generator().manual_seed(3)) for _ in range(2)]
    assert torch.equal(runs[0], runs[1])  # the directions come from the generator
    moved = runs[0]
    assert ((moved >= lower) & (moved <= upper)).all() and not torch.equal(moved, starts)
    direction = 2 * torch.rand(32, 4, generator=torch.Generator().manual_seed(3), dtype=torch.float64) - 1
    with torch.no_grad():
        gain = ((layer(moved) - layer(starts)) * direction).sum(dim=1)
    assert (gain >= -1e-12).all() and (gain > 0).float().mean() > 0.9
    # the starts spread out: distinct restarts end in distinct points
    assert torch.unique(moved, dim=0).shape[0] > 16


def _two_row_conjunction_near_its_best_point(network, seed: int, give: float) -> Case:
    """y0 <= a and y1 >= b in a box of radius 0.1, with a, b just past the outputs at the best point of
    Adam on y0 - 0.7 y1 (256 starts, 300 steps): sat, and only near the trade-off the rows balance on."""
    n = network.n_inputs
    generator = torch.Generator().manual_seed(seed)
    centre = torch.rand(n, generator=generator) * 0.6 + 0.2
    lower, upper = centre - 0.1, centre + 0.1
    x = (lower + (upper - lower) * torch.rand(256, n, generator=generator)).requires_grad_(True)
    optimiser = torch.optim.Adam([x], lr=0.005)
    for _ in range(300):
        optimiser.zero_grad()
        y = network.module(x)
        (y[:, 0] - 0.7 * y[:, 1]).sum().backward()
        optimiser.step()
        with torch.no_grad():
            x.copy_(torch.maximum(torch.minimum(x, upper), lower))
    with torch.no_grad():
        y = network.module(x)
        best = y[int((y[:, 0] - 0.7 * y[:, 1]).argmin())].double().numpy()
    margin = give * abs(best[0])
    C = np.zeros((2, network.n_outputs))
    C[0, 0], C[1, 1] = 1.0, -1.0
    return Case(Box(lower.double().numpy(), upper.double().numpy()),
                (Conjunction(C, np.array([best[0] + margin, -(best[1] - margin)])),))


def test_the_adam_polish_finds_a_two_row_conjunction_signed_steps_alone_miss():
    network = _mlp()
    case = _two_row_conjunction_near_its_best_point(network, seed=0, give=0.02)
    signed_only = attack.run(network, case, Budget.seconds(30), seed=0,
                             settings=attack.AttackSettings(rounds=2, polish_steps=0))
    polished = attack.run(network, case, Budget.seconds(30), seed=0, settings=attack.AttackSettings(rounds=2))
    assert isinstance(signed_only, Unknown) and not signed_only.timed_out
    assert isinstance(polished, Falsified)
    y = network.replay(polished.counterexample.x[None, :])[0]
    assert case.disjuncts[0].holds(y) and case.box.contains(polished.counterexample.x)
