"""Pieces shared by the branch-and-bound loops: settings, the stacked spec, in-domain search for
counterexamples, and the bookkeeping that turns a finished search into an Outcome."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch

from verikit.engines.crown.propagate import SpecBounds
from verikit.core.network import Network
from verikit.core.result import Certificate, DisjunctBounds, Falsified, Proven, Unknown
from verikit.core.property import Case
from verikit.witness.replay import STRICT, Tolerances, validate_batch


@dataclass(frozen=True)
class BabSettings:
    """Knobs of branch and bound, with measured defaults (benchmarks/bench_bab.py).

    `branching`: "input" (bisect input coordinates), "relu" (split unstable neurons) or "auto" (input
    when n_inputs <= `input_split_max_dims`). `max_domains` caps the open-domain queue (memory).
    """

    branching: str = "auto"
    input_split_max_dims: int = 16
    dtype: torch.dtype = torch.float32  # working dtype; float64 re-checks near-proofs either way
    max_domains: int = 1_000_000
    # input branching
    batch_size: int = 1024  # boxes bounded per call
    input_score: str = "chained"  # "chained", "autograd" or "width" (verikit.engines.bab.branching)
    refine: bool = True  # CROWN on the neurons that forward/interval bounds leave unstable
    input_alpha_steps: int = 5  # α-CROWN iterations on boxes CROWN leaves open...
    input_alpha_lr: float = 0.5
    input_alpha_after: int = 2000  # ...once this many boxes were bounded (easy cases never pay for it)
    attack_every: int = 1  # in-box PGD every this many batches (0: never)
    attack_domains: int = 32  # worst open boxes attacked per round
    attack_restarts: int = 4
    attack_steps: int = 8
    # relu branching
    relu_batch_size: int = 64  # split assignments bounded per call
    relu_alpha_steps: int = 20  # α-CROWN iterations at the root
    relu_beta_steps: int = 10  # α/β-CROWN iterations per batch of split assignments
    relu_lr: float = 0.1
    tolerances: Tolerances = field(default=STRICT)


@dataclass(eq=False)
class SpecRows:
    """The disjuncts of a case stacked: C (R, n_out), d (R,), owner (R,) = disjunct index of each row.

    `C64`, `d64` keep the case's own float64 values: float64 re-checks must use them, not C and d
    widened back from the working dtype (float32 rounding of d, ~6e-8 relative, is far beyond what a
    float64 bound's error allowance covers).
    """

    C: torch.Tensor
    d: torch.Tensor
    owner: torch.Tensor
    count: int
    C64: torch.Tensor | None = None
    d64: torch.Tensor | None = None

    @classmethod
    def of(cls, case: Case, dtype: torch.dtype) -> "SpecRows":
        C = np.concatenate([c.C for c in case.disjuncts]).astype(np.float64)
        d = np.concatenate([c.d for c in case.disjuncts]).astype(np.float64)
        owner = np.concatenate([np.full(c.rows, k) for k, c in enumerate(case.disjuncts)])
        C64, d64 = torch.as_tensor(C), torch.as_tensor(d)
        return cls(C64.to(dtype), d64.to(dtype), torch.as_tensor(owner, dtype=torch.long), len(case.disjuncts),
                   C64, d64)

    def subset(self, keep: torch.Tensor, dtype: torch.dtype | None = None) -> "SpecRows":
        """The rows `keep` (R,) bool, disjunct ids renumbered from 0; in float64 from the case's own values."""
        owner = torch.unique(self.owner[keep], sorted=True, return_inverse=True)[1]
        dtype = dtype or self.C.dtype
        C64 = None if self.C64 is None else self.C64[keep]
        d64 = None if self.d64 is None else self.d64[keep]
        if dtype == torch.float64 and C64 is not None:
            C, d = C64, d64
        else:
            C, d = self.C[keep].to(dtype), self.d[keep].to(dtype)
        return SpecRows(C, d, owner, int(owner.max()) + 1 if owner.numel() else 0, C64, d64)

    def float64(self) -> "SpecRows":
        """All rows in float64, from the case's own values."""
        return self.subset(torch.ones_like(self.owner, dtype=torch.bool), torch.float64)

    def per_disjunct(self, rows: torch.Tensor, reduce: str = "amax") -> torch.Tensor:
        """Reduce row values (B, R) to one value per disjunct (B, K) (max or min over its rows)."""
        fill = -math.inf if reduce == "amax" else math.inf
        out = torch.full((rows.shape[0], self.count), fill, dtype=rows.dtype)
        return out.scatter_reduce(1, self.owner.expand_as(rows), rows, reduce=reduce)

    def violation(self, y: torch.Tensor) -> torch.Tensor:
        """min over disjuncts of max over its rows of C y - d, for outputs (B, n_out) → (B,); <= 0 iff
        some disjunct holds."""
        return self.per_disjunct(y @ self.C.T - self.d).min(dim=1).values

    def best_row_of_worst_disjunct(self, lower_bounds: torch.Tensor) -> torch.Tensor:
        """Per domain (B,): the row with the highest bound within the disjunct with the lowest such bound
        (the disjunct closest to holding, and the row that keeps it from holding)."""
        worst = self.per_disjunct(lower_bounds).argmin(dim=1)
        in_worst = self.owner.unsqueeze(0) == worst.unsqueeze(1)
        return torch.where(in_worst, lower_bounds, torch.full_like(lower_bounds, -math.inf)).argmax(dim=1)


def minimising_corner(coeff: torch.Tensor, lower: torch.Tensor, upper: torch.Tensor) -> torch.Tensor:
    """Corner of each box (B, n) minimising the linear functions coeff (B, n)."""
    return torch.where(coeff > 0, lower, upper)


def pgd_in_boxes(net, spec: SpecRows, lower: torch.Tensor, upper: torch.Tensor, starts: torch.Tensor,
                 steps: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A few signed-gradient steps on `spec.violation(net.forward(x))` from starts (B, n) inside boxes
    (B, n). Returns the best point seen per start (B, n) and its violation (B,)."""
    x = starts.clone()
    width = upper - lower
    best_x, best = x.clone(), torch.full((x.shape[0],), math.inf, dtype=x.dtype)
    for step in range(steps + 1):
        with torch.enable_grad():
            x.requires_grad_(True)
            loss = spec.violation(net.forward(x))
            gradient = torch.autograd.grad(loss.sum(), x)[0] if step < steps else None
        with torch.no_grad():
            better = loss < best
            best_x[better] = x[better]
            best = torch.minimum(best, loss)
            if gradient is None:
                break
            size = 0.25 * 0.5 * (1 + math.cos(math.pi * step / steps))
            x = torch.minimum(torch.maximum(x - size * width * gradient.sign(), lower), upper)
    return best_x.detach(), best.detach()


@dataclass
class Validator:
    """Replays promising candidates through onnxruntime (verikit.witness.replay), at most `limit` per call."""

    network: Network
    case: Case
    tolerances: Tolerances
    limit: int = 8
    replayed: int = 0

    def first(self, x: torch.Tensor, violation: torch.Tensor) -> Falsified | None:
        """A replayed counterexample among candidates x (B, n) whose float violation (B,) is <= ~0."""
        promising = violation <= 1e-6 * (1 + violation.abs())
        if not bool(promising.any()):
            return None
        chosen = torch.argsort(torch.where(promising, violation, torch.full_like(violation, math.inf)))
        chosen = chosen[: min(self.limit, int(promising.sum()))]
        self.replayed += int(chosen.numel())
        found = validate_batch(self.network, self.case, x[chosen].double().numpy(), self.tolerances)
        return Falsified(found) if found is not None else None


@dataclass
class SearchStats:
    """Counters reported in a certificate's detail or an Unknown's reason."""

    domains: int = 0  # domains bounded
    batches: int = 0
    max_depth: int = 0
    max_queue: int = 0
    rechecked: int = 0  # near-proofs re-bounded in float64
    replayed: int = 0  # candidates replayed through onnxruntime
    stuck: int = 0  # leaves of relu branching left undecided

    def count(self, domains: int, depth: int) -> None:
        self.domains += domains
        self.batches += 1
        self.max_depth = max(self.max_depth, depth)

    def with_replays(self, validator: Validator) -> "SearchStats":
        self.replayed = validator.replayed
        return self

    def detail(self, **extra) -> dict:
        return {"domains": self.domains, "batches": self.batches, "max_depth": self.max_depth,
                "max_queue": self.max_queue, "float64_rechecks": self.rechecked,
                "replayed_candidates": self.replayed, **extra}


def root_disjunct_bounds(bounds: SpecBounds, spec: SpecRows, method: str) -> tuple[DisjunctBounds, ...]:
    """Per-disjunct DisjunctBounds of the first domain of `bounds` (the root)."""
    lower = bounds.lower[0].detach().double().numpy()
    owner = spec.owner.numpy()
    return tuple(DisjunctBounds(lower[owner == k].copy(), method) for k in range(spec.count))


def proven(method: str, stats: SearchStats, **extra) -> Proven:
    return Proven(Certificate(method=method, detail=stats.detail(**extra)))


def unknown(reason: str, stats: SearchStats, root: tuple[DisjunctBounds, ...], *, timed_out: bool = False) -> Unknown:
    return Unknown(f"{reason} ({stats.domains} domains bounded, depth {stats.max_depth})", root, timed_out)
