"""PGD falsification: search the box for an input whose output satisfies some disjunct.

The loss of a point is `min over disjuncts of max over rows of (C y - d)` (SpecRows.violation): it is
<= 0 exactly when some conjunction holds. Each round runs its restarts as one batch through the PGD loop
(verikit.engines.attack.pgd.pgd), every other round from output-diversified starts (pgd.diversified_starts:
each restart first pushes the output along its own random direction); candidates become counterexamples
only through `verikit.witness.replay` (onnxruntime replay). Besides the points torch calls violating,
each round's few best points are replayed whatever torch says (onnxruntime may disagree at the boundary).
After each round, Adam polishes every restart's best point for `polish_steps` steps with a tenth of the
first step: signed steps on a conjunction's max of rows zigzag between its rows, Adam's averaged steps
settle where they balance (benchmarks/rul_like.py, two-output conjunctions).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from verikit.core.network import Network
from verikit.core.result import Budget, Falsified, Unknown
from verikit.core.settings import settings_dict
from verikit.core.property import Case, L2Ball, Manipulated
from verikit.engines.attack.pgd import L2_SHRINK, PGDState, Search, diversified_starts, pgd, project, uniform_starts
from verikit.engines.spec_rows import SpecRows
from verikit.witness.replay import STRICT, Tolerances, validate_batch, validate_members


@dataclass(frozen=True)
class AttackSettings:
    """PGD knobs: `restarts` parallel starts, `steps` per round, `rounds` of fresh restarts at most."""

    restarts: int = 64
    steps: int = 100
    rounds: int = 1000
    step_fraction: float = 0.1  # initial step as a fraction of each coordinate's box width
    check_every: int = 10
    candidates_per_check: int = 4
    max_batch_elements: int = 4_000_000  # restarts x n_inputs cap, keeps memory bounded
    diversify_steps: int = 10  # every other round starts with this many output-diversified steps (0: never)
    polish_steps: int = 100  # then Adam steps from each restart's best point (0: never), see `run`
    polish_fraction: float = 0.1  # the polish's first step, as a fraction of the round's first step
    quadattack: str = "auto"  # QuadAttack first (engines/attack/quadattack): "auto" (a disjunct of >= 2 rows:
    # top-k, targeted order), "on" (every box case) or "off"
    quadattack_share: float = 0.3  # of the attack's budget


def run(
    network: Network,
    case: Case,
    budget: Budget,
    *,
    seed: int = 0,
    settings: AttackSettings = AttackSettings(),
    tolerances: Tolerances = STRICT,
    penalty=None,
) -> Falsified | Unknown:
    """PGD with random restarts inside `case.box` until a replayed counterexample or the budget ends; a
    Manipulated case (one left on its enclosing box: no exact prefix) is searched over its parameters.
    `penalty` (x (B, n) -> (B,) >= 0), when given, is added to the loss: the hidden pattern's violation
    (verikit.engines.attack.pattern); candidates are replayed and checked against the pattern all the same."""
    box = case.box
    if isinstance(case.region, Manipulated):
        return search_parameters(network, case, budget, seed=seed, tolerances=tolerances)
    if any(conjunction.rows == 0 for conjunction in case.disjuncts):
        found = validate_batch(network, case, box.center[None, :], tolerances)
        if found is not None:
            return Falsified(found)
    if not case.disjuncts:
        return Unknown("case has no disjunct: nothing can violate it")
    if _quadattack_wanted(case, settings):
        from verikit.engines.attack import quadattack

        quad = quadattack.run(network, case, budget.share(settings.quadattack_share), seed=seed, tolerances=tolerances)
        if isinstance(quad, Falsified):
            return quad
    spec = SpecRows.of(case, torch.float32)
    generator = torch.Generator().manual_seed(seed)
    restarts = max(1, min(settings.restarts, settings.max_batch_elements // max(1, box.size)))
    lower = torch.tensor(box.lower, dtype=torch.float32).expand(restarts, -1)
    upper = torch.tensor(box.upper, dtype=torch.float32).expand(restarts, -1)
    width = upper - lower
    best_loss = math.inf
    ball = _ball_of(case, restarts)
    scale = width if ball is None else 2.0 * ball[1]

    firsts = [case.region.center] if isinstance(case.region, L2Ball) else [box.center, box.lower, box.upper]
    found = validate_batch(network, case, np.stack(firsts), tolerances)
    if found is not None:
        return Falsified(found)
    if np.array_equal(box.lower, box.upper):
        return Unknown("the box is one point, and it violates no disjunct")  # nothing for PGD to search

    def violation(x: torch.Tensor, rows: torch.Tensor | None) -> torch.Tensor:
        loss = spec.violation(network.module(x))
        return loss if penalty is None else loss + penalty(x)

    def replay_promising(state: PGDState) -> bool:
        """Every `check_every` steps and at the last, replay the few best points that violate in torch."""
        nonlocal found
        if state.step % settings.check_every and state.step != settings.steps - 1:
            return False
        order = torch.argsort(state.loss)[: settings.candidates_per_check]
        promising = order[state.loss[order] <= 1e-4 * (1 + state.loss.abs()[order])]
        if promising.numel():
            found = validate_batch(network, case, state.x[promising].double().numpy(), tolerances)
        return found is not None

    for round_ in range(settings.rounds):
        starts = uniform_starts(lower, upper, generator)
        if settings.diversify_steps > 0 and round_ % 2 == 0:
            starts = diversified_starts(network.module, starts, lower, upper, steps=settings.diversify_steps,
                                        size=settings.step_fraction * width, generator=generator)
        if ball is not None:  # uniform in the box, then into the ball ∩ box
            starts = project(starts, lower, upper, ball)
        # `steps` moves of which the last is never evaluated, so the loop evaluates steps - 1 of them
        search = pgd(violation, starts, lower, upper, steps=settings.steps - 1,
                     horizon=settings.steps, fraction=settings.step_fraction, scale=scale, ball=ball,
                     budget=budget, check=replay_promising)
        if found is None and not search.timed_out and settings.polish_steps > 0:
            polished = pgd(violation, search.best_x, lower, upper, steps=settings.polish_steps - 1,
                           horizon=settings.polish_steps, fraction=settings.step_fraction * settings.polish_fraction,
                           scale=scale, ball=ball, budget=budget, check=replay_promising, rule="adam")
            better = polished.best_loss < search.best_loss
            search = Search(torch.where(better[:, None], polished.best_x, search.best_x),
                            torch.where(better, polished.best_loss, search.best_loss), search.best_step,
                            timed_out=polished.timed_out)
        if search.best_loss.numel():
            best_loss = min(best_loss, float(search.best_loss.min()))
        if found is None:
            found = _replay_best(network, case, search.best_x, search.best_loss, settings.candidates_per_check,
                                 tolerances)
        if found is not None:
            return Falsified(found)
        if search.timed_out:
            return Unknown(f"attack found no counterexample (best loss {best_loss:.4g})", timed_out=True)
    return Unknown(f"attack found no counterexample (best loss {best_loss:.4g})")


def _ball_of(case: Case, restarts: int) -> tuple[torch.Tensor, float] | None:
    """PGD's ball (centres (restarts, n), radius) for an ℓ2-ball case, shrunk by L2_SHRINK so that the
    float32 rounding of a candidate keeps it inside; None for other cases."""
    if not isinstance(case.region, L2Ball):
        return None
    centre = torch.tensor(case.region.center, dtype=torch.float32).expand(restarts, -1)
    return centre, case.region.radius * (1.0 - L2_SHRINK)


def _quadattack_wanted(case: Case, settings: AttackSettings) -> bool:
    """QuadAttack runs first when asked and osqp is installed (else PGD alone, as without it)."""
    if settings.quadattack not in ("auto", "on") or case.region is not None:
        return False
    if settings.quadattack == "auto" and not any(conjunction.rows >= 2 for conjunction in case.disjuncts):
        return False
    from verikit.engines.attack.quadattack import osqp_available

    return osqp_available() is None


def _replay_best(network: Network, case: Case, x: torch.Tensor, loss: torch.Tensor, count: int,
                 tolerances: Tolerances):
    """Replay the round's `count` best points by torch loss, violating in torch or not: torch and
    onnxruntime round differently, and a point may violate the property only in onnxruntime."""
    finite = torch.isfinite(loss)
    if count <= 0 or not bool(finite.any()):
        return None
    order = torch.argsort(torch.where(finite, loss, torch.full_like(loss, math.inf)))
    order = order[: min(count, int(finite.sum()))]
    return validate_batch(network, case, x[order].double().numpy(), tolerances)


def parameter_points(params, seed: int, grid: int = 33, random: int = 512) -> list[np.ndarray]:
    """Batches of theta (each (k, n_params)) in the box `params`: corners and centre, grids of growing
    density (up to `grid` points an axis, fewer in more dimensions), then `random` uniform points."""
    n = params.size
    batches = [np.stack([params.center, params.lower, params.upper])]
    per_axis = 3
    most = max(3, int(round(grid ** (1.0 / max(1, n)))) if n > 1 else grid)
    while per_axis <= most:
        axes = [np.linspace(lo, hi, per_axis) for lo, hi in zip(params.lower, params.upper)]
        batches.append(np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, n))
        per_axis = 2 * per_axis - 1
    batches.append(params.sample(random, np.random.default_rng(seed)))
    return batches


def search_parameters(network: Network, case: Case, budget: Budget, *, seed: int = 0,
                      tolerances: Tolerances = STRICT) -> Falsified | Unknown:
    """Members of a Manipulated region, named by theta, recomputed in numpy and replayed (witness.replay)."""
    region = case.region
    tried = 0
    for thetas in parameter_points(region.params, seed):
        if budget.expired():
            return Unknown(f"parameter search of {region.transform.name}: {tried} members tried", timed_out=True)
        found = validate_members(network, case, thetas, tolerances)
        tried += len(thetas)
        if found is not None:
            return Falsified(found)
    return Unknown(f"parameter search of {region.transform.name}: none of {tried} members violates")


def _pattern_penalty(problem, case: Case):
    """The hidden pattern's penalty on the piecewise-linear form; None without a pattern or without a
    form the pattern can be placed on (the search then goes on without it: replay still checks it)."""
    from verikit.core.errors import EngineLimitation
    from verikit.engines.attack.pattern import pattern_penalty

    if not case.hidden:
        return None
    try:
        phases = problem.hidden_phases(case)
        return pattern_penalty(problem.checked_piecewise_linear(case), phases) if phases else None
    except EngineLimitation:
        return None


@dataclass(frozen=True)
class AttackEngine:
    """PGD falsification behind the Engine protocol (verikit.engines.base)."""

    settings: AttackSettings = AttackSettings()
    name = "attack"
    method = "pgd"

    def supports(self, problem) -> str | None:
        return None

    def run(self, problem, case: Case, budget: Budget) -> Falsified | Unknown:
        return run(problem.network, case, budget, seed=problem.seed, settings=self.settings,
                   tolerances=problem.tolerances, penalty=_pattern_penalty(problem, case))

    def settings_dict(self) -> dict:
        return settings_dict(self.settings)
