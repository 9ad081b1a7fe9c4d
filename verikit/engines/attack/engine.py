"""PGD falsification: search the box for an input whose output satisfies some disjunct.

The loss of a point is `min over disjuncts of max over rows of (C y - d)`: it is <= 0 exactly when some
conjunction holds. Restarts run as one batch; candidates become counterexamples only through
`verikit.witness.replay` (onnxruntime replay).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from verikit.core.network import Network
from verikit.core.result import Budget, Falsified, Unknown
from verikit.core.settings import settings_dict
from verikit.core.property import Case
from verikit.witness.replay import STRICT, Tolerances, validate_batch


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


def _spec_tensors(case: Case) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Stacked rows C (R, m), d (R,) and the disjunct id of each row (R,)."""
    rows = [(c.C, c.d, index) for index, c in enumerate(case.disjuncts)]
    C = torch.as_tensor(np.concatenate([r[0] for r in rows]), dtype=torch.float32)
    d = torch.as_tensor(np.concatenate([r[1] for r in rows]), dtype=torch.float32)
    owner = torch.as_tensor(np.concatenate([np.full(r[1].size, r[2]) for r in rows]), dtype=torch.long)
    return C, d, owner


def disjunction_loss(y: torch.Tensor, C: torch.Tensor, d: torch.Tensor, owner: torch.Tensor, count: int) -> torch.Tensor:
    """min_k max_{r in k} (C y - d)_r for outputs y (B, m) → (B,); <= 0 iff some disjunct holds."""
    margins = y @ C.T - d  # (B, R)
    per_disjunct = torch.full((y.shape[0], count), -math.inf, dtype=y.dtype)
    per_disjunct = per_disjunct.scatter_reduce(1, owner.expand_as(margins), margins, reduce="amax")
    return per_disjunct.min(dim=1).values


def run(
    network: Network,
    case: Case,
    budget: Budget,
    *,
    seed: int = 0,
    settings: AttackSettings = AttackSettings(),
    tolerances: Tolerances = STRICT,
) -> Falsified | Unknown:
    """PGD with random restarts inside `case.box` until a replayed counterexample or the budget ends."""
    box = case.box
    if any(conjunction.rows == 0 for conjunction in case.disjuncts):
        found = validate_batch(network, case, box.center[None, :], tolerances)
        if found is not None:
            return Falsified(found)
    if not case.disjuncts:
        return Unknown("case has no disjunct: nothing can violate it")
    C, d, owner = _spec_tensors(case)
    count = len(case.disjuncts)
    lower = torch.tensor(box.lower, dtype=torch.float32)
    upper = torch.tensor(box.upper, dtype=torch.float32)
    width = upper - lower
    generator = torch.Generator().manual_seed(seed)
    restarts = max(1, min(settings.restarts, settings.max_batch_elements // max(1, box.size)))
    best_loss = math.inf

    found = validate_batch(network, case, np.stack([box.center, box.lower, box.upper]), tolerances)
    if found is not None:
        return Falsified(found)

    for _ in range(settings.rounds):
        x = lower + width * torch.rand((restarts, box.size), generator=generator)
        for step in range(settings.steps):
            if budget.expired():
                return Unknown(f"attack found no counterexample (best loss {best_loss:.4g})", timed_out=True)
            x.requires_grad_(True)
            loss = disjunction_loss(network.module(x), C, d, owner, count)
            (gradient,) = torch.autograd.grad(loss.sum(), x)
            with torch.no_grad():
                best_loss = min(best_loss, float(loss.min()))
                if step % settings.check_every == 0 or step == settings.steps - 1:
                    order = torch.argsort(loss)[: settings.candidates_per_check]
                    promising = order[loss[order] <= 1e-4 * (1 + loss.abs()[order])]
                    if promising.numel():
                        found = validate_batch(network, case, x[promising].double().numpy(), tolerances)
                        if found is not None:
                            return Falsified(found)
                fraction = settings.step_fraction * 0.5 * (1 + math.cos(math.pi * step / settings.steps))
                x = torch.minimum(torch.maximum(x - fraction * width * gradient.sign(), lower), upper)
    return Unknown(f"attack found no counterexample (best loss {best_loss:.4g})")


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
                   tolerances=problem.tolerances)

    def settings_dict(self) -> dict:
        return settings_dict(self.settings)
