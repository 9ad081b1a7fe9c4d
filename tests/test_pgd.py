"""The one PGD loop (verikit.engines.attack.pgd.pgd) and the one interval propagator
(verikit.engines.crown.interval): what every caller relies on."""

import numpy as np
import pytest
import torch

from verikit.core.property import Box
from verikit.core.pwl import Affine, MaxGroups, PiecewiseLinear, Relu
from verikit.core.result import Budget
from verikit.engines.attack.pgd import pgd, uniform_starts
from verikit.engines.crown.interval import interval_bounds
from verikit.engines.crown.propagate import ReluMlp, layer_bounds


def _boxes(rows: int = 6, n: int = 3, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    lower = torch.rand(rows, n, generator=generator) * 4 - 2
    return lower, lower + torch.rand(rows, n, generator=generator) + 0.1


def test_every_row_reaches_the_minimising_corner_of_its_own_box():
    lower, upper = _boxes()
    starts = uniform_starts(lower, upper, torch.Generator().manual_seed(1))
    weights = torch.tensor([1.0, -2.0, 0.5])
    search = pgd(lambda x, rows: x @ weights, starts, lower, upper, steps=12, fraction=0.25, scale=upper - lower)
    corner = torch.where(weights > 0, lower, upper)
    assert torch.equal(search.best_x, corner)
    assert torch.allclose(search.best_loss, corner @ weights)
    assert not search.timed_out and not search.stopped


def test_l2_steps_stay_inside_the_ball_and_the_box():
    lower, upper = _boxes(n=4)
    centers = (lower + upper) / 2
    radius = 0.2
    seen = []

    def check(state) -> bool:
        seen.append(state.x.clone())
        return False

    pgd(lambda x, rows: -x.sum(dim=1), centers, lower, upper, steps=10, fraction=0.5, ball=(centers, radius),
        check=check)
    points = torch.stack(seen)
    assert ((points - centers).norm(dim=2) <= radius * (1 + 1e-6)).all()
    assert ((points >= lower) & (points <= upper)).all()
    # the loss pushes outward, so the search ends on the sphere (or a box face), not at the centre
    assert ((seen[-1] - centers).norm(dim=1) > radius / 2).all()


def test_check_stops_the_search_or_narrows_it_to_the_rows_it_keeps():
    lower, upper = _boxes()
    stopped = pgd(lambda x, rows: x.sum(dim=1), lower, lower, upper, steps=20, fraction=0.1, scale=1.0,
                  check=lambda state: state.step == 3)
    assert stopped.stopped and int(stopped.best_step.max()) <= 3

    evaluated = []

    def loss(x: torch.Tensor, rows: torch.Tensor | None) -> torch.Tensor:
        evaluated.append(x.shape[0] if rows is None else rows.tolist())
        return x.sum(dim=1)

    def keep_first(state) -> bool:
        state.keep(torch.arange(state.x.shape[0]) == 0)
        return False

    pgd(loss, upper, lower, upper, steps=3, fraction=0.1, check=keep_first)
    assert evaluated == [lower.shape[0], [0], [0], [0]]


def test_an_expired_budget_evaluates_nothing():
    lower, upper = _boxes()
    calls = []
    search = pgd(lambda x, rows: calls.append(1) or x.sum(dim=1), lower, lower, upper, steps=5, fraction=0.1,
                 budget=Budget.seconds(0.0))
    assert search.timed_out and not calls
    assert torch.isinf(search.best_loss).all() and torch.equal(search.best_x, lower)


def _random_pwl(seed: int, max_groups: bool = False) -> PiecewiseLinear:
    rng = np.random.default_rng(seed)
    layers = [Affine(rng.standard_normal((8, 3)), rng.standard_normal(8)), Relu(),
              Affine(rng.standard_normal((6, 8)), rng.standard_normal(6))]
    if max_groups:
        layers.append(MaxGroups(np.array([[0, 1, 2], [3, 4, 5]])))
    else:
        layers += [Relu(), Affine(rng.standard_normal((2, 6)), rng.standard_normal(2))]
    return PiecewiseLinear(tuple(layers), 3, 2)


@pytest.mark.parametrize("max_groups", [False, True])
@pytest.mark.parametrize("seed", range(4))
def test_interval_bounds_contain_every_layer_output(seed, max_groups):
    pwl = _random_pwl(seed, max_groups)
    rng = np.random.default_rng(100 + seed)
    lower = rng.uniform(-1, 0, 3)
    box = Box(lower, lower + rng.uniform(0.1, 1, 3))
    bounds = interval_bounds(pwl, box)
    values = rng.uniform(box.lower, box.upper, (500, 3))
    for layer, (low, high) in zip(pwl.layers, bounds):
        values = PiecewiseLinear((layer,), values.shape[1], low.size).evaluate(values)
        assert (values >= low).all() and (values <= high).all()


def test_an_unbounded_side_gives_infinite_bounds_not_huge_finite_ones():
    pwl = _random_pwl(0)
    low, high = interval_bounds(pwl, Box([-np.inf, 0, 0], [0, 1, 1]))[0]
    assert np.isinf(low).any() and not (np.isfinite(low) & (np.abs(low) > 1e300)).any()
    assert not (np.isfinite(high) & (np.abs(high) > 1e300)).any()


def test_crown_without_its_refinements_is_the_interval_propagator():
    """CROWN's intermediate bounds start from the same interval step: with forward bounds and CROWN
    refinement off, they are exactly the SMT engine's interval bounds (float64)."""
    pwl = _random_pwl(1)
    box = Box([-1.0, -0.5, 0.0], [0.5, 0.5, 1.0])
    net = ReluMlp.from_pwl(pwl, torch.float64)
    crown = layer_bounds(net, torch.tensor(box.lower)[None], torch.tensor(box.upper)[None], refine=False,
                         forward=False)
    interval = interval_bounds(pwl, box)
    for hidden in range(net.depth):
        assert np.array_equal(crown.lower[hidden][0].numpy(), interval[2 * hidden][0])
        assert np.array_equal(crown.upper[hidden][0].numpy(), interval[2 * hidden][1])


def test_the_adam_rule_stays_in_each_box_and_reaches_an_interior_minimum():
    lower, upper = _boxes()
    target = lower + 0.3 * (upper - lower)
    starts = uniform_starts(lower, upper, torch.Generator().manual_seed(2))
    search = pgd(lambda x, rows: ((x - target) ** 2 * torch.tensor([1.0, 30.0, 0.2])).sum(dim=1), starts, lower,
                 upper, steps=200, fraction=0.05, scale=upper - lower, rule="adam")
    assert bool(((search.best_x >= lower) & (search.best_x <= upper)).all())
    assert torch.allclose(search.best_x, target, atol=2e-3 * float((upper - lower).max()))


def test_an_unknown_rule_is_refused():
    lower, upper = _boxes()
    with pytest.raises(ValueError, match="unknown PGD rule"):
        pgd(lambda x, rows: x.sum(dim=1), lower, lower, upper, steps=1, fraction=0.1, rule="newton")
