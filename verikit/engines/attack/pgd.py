"""Batched PGD on many labelled samples at once, under an L∞ box or an L2 ball (raw input units).

The search runs in raw units: the model sees `(x - mean) / std`. Each sample gets `restarts` starts
(the first at the clean point, the rest random), all advanced together in one batch. The loss is the
classification margin `y_label - max_{j != label} y_j`; a sample is broken (in torch) once it is < 0,
and then stops moving. The result is only a candidate per sample: callers must replay it through
onnxruntime (verikit.witness.replay) before counting it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from verikit.core.result import Budget

NORMS = ("inf", "2")
L2_SHRINK = 1e-3
"""L2 candidates stay within (1 - L2_SHRINK) * eps, so float32 rounding keeps them inside the ball."""


@dataclass(frozen=True)
class PGDSettings:
    """`restarts` starts per sample, `steps` steps each; the step starts at `step_fraction` * 2ε."""

    restarts: int = 8
    steps: int = 40
    step_fraction: float = 0.25
    check_every: int = 5
    max_batch_elements: int = 4_000_000  # rows x inputs per forward pass, keeps memory bounded


@dataclass(frozen=True, eq=False)
class Candidates:
    """Best point found per sample (raw units, float64 (B, n)) and its torch margin (B,)."""

    x: np.ndarray
    margin: np.ndarray
    timed_out: bool = False


def _margins(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """y_label - max_{j != label} y_j for logits (B, K) → (B,)."""
    own = logits.gather(1, labels[:, None])[:, 0]
    others = logits.scatter(1, labels[:, None], -math.inf)
    return own - others.max(dim=1).values


def _project(x: torch.Tensor, x0: torch.Tensor, low: torch.Tensor, high: torch.Tensor, norm: str,
             eps: float) -> torch.Tensor:
    """Into the L∞ box [low, high] (already ∩ ball), or the L2 ball of radius ε around x0 ∩ [low, high]."""
    if norm == "2":
        delta = x - x0
        length = delta.norm(dim=1, keepdim=True)
        radius = eps * (1.0 - L2_SHRINK)
        x = x0 + delta * torch.clamp(radius / torch.clamp(length, min=1e-30), max=1.0)
    # x0 lies in [low, high], so clipping moves every coordinate towards x0: still inside the ball
    return torch.minimum(torch.maximum(x, low), high)


def _starts(x0: torch.Tensor, low: torch.Tensor, high: torch.Tensor, norm: str, eps: float,
            restarts: int, generator: torch.Generator) -> torch.Tensor:
    """(B * restarts, n): restart 0 at the clean point, the others uniform in the box / ball."""
    batch, n = x0.shape
    x = x0.repeat_interleave(restarts, dim=0)
    lo, hi = low.repeat_interleave(restarts, dim=0), high.repeat_interleave(restarts, dim=0)
    if norm == "inf":
        start = lo + (hi - lo) * torch.rand(x.shape, generator=generator, dtype=x.dtype)
    else:
        direction = torch.randn(x.shape, generator=generator, dtype=x.dtype)
        direction = direction / torch.clamp(direction.norm(dim=1, keepdim=True), min=1e-30)
        radius = eps * torch.rand((x.shape[0], 1), generator=generator, dtype=x.dtype) ** (1.0 / n)
        start = _project(x + direction * radius, x, lo, hi, norm, eps)
    first = torch.arange(batch) * restarts
    start[first] = x0
    return start


def _chunk(module: torch.nn.Module, x0: np.ndarray, labels: np.ndarray, low: np.ndarray, high: np.ndarray,
           mean: torch.Tensor, std: torch.Tensor, norm: str, eps: float, settings: PGDSettings,
           generator: torch.Generator, budget: Budget | None) -> Candidates:
    restarts = settings.restarts
    base = torch.as_tensor(x0, dtype=torch.float32)
    lab = torch.as_tensor(labels, dtype=torch.long)
    lo, hi = torch.as_tensor(low, dtype=torch.float32), torch.as_tensor(high, dtype=torch.float32)
    x = _starts(base, lo, hi, norm, eps, restarts, generator)
    rows_x0, rows_lab = base.repeat_interleave(restarts, 0), lab.repeat_interleave(restarts, 0)
    rows_lo, rows_hi = lo.repeat_interleave(restarts, 0), hi.repeat_interleave(restarts, 0)
    owner = torch.arange(base.shape[0]).repeat_interleave(restarts)
    best_x, best_margin = base.clone(), torch.full((base.shape[0],), math.inf)
    active = torch.ones(x.shape[0], dtype=torch.bool)
    timed_out = False
    for step in range(settings.steps + 1):
        if budget is not None and budget.expired():
            timed_out = True
            break
        rows = active.nonzero()[:, 0]
        if rows.numel() == 0:
            break
        xs = x[rows].clone().requires_grad_(step < settings.steps)
        margin = _margins(module((xs - mean) / std), rows_lab[rows])
        with torch.no_grad():
            # samples are active or not as a whole, so the active rows form blocks of `restarts`
            samples = owner[rows[::restarts]]
            lowest, which = margin.reshape(-1, restarts).min(dim=1)
            better = lowest < best_margin[samples]
            picked = xs.detach().reshape(-1, restarts, xs.shape[1])[torch.arange(samples.numel()), which]
            best_margin[samples[better]] = lowest[better]
            best_x[samples[better]] = picked[better]
        if step == settings.steps:
            break
        (gradient,) = torch.autograd.grad(margin.sum(), xs)
        with torch.no_grad():
            size = settings.step_fraction * 2.0 * eps * 0.5 * (1 + math.cos(math.pi * step / settings.steps))
            if norm == "inf":
                moved = xs - size * gradient.sign()
            else:
                length = torch.clamp(gradient.norm(dim=1, keepdim=True), min=1e-30)
                moved = xs - size * gradient / length
            x[rows] = _project(moved, rows_x0[rows], rows_lo[rows], rows_hi[rows], norm, eps)
            if step % settings.check_every == settings.check_every - 1:
                active &= best_margin[owner] >= 0  # a sample broken in torch stops searching
    return Candidates(best_x.double().numpy(), best_margin.double().numpy(), timed_out)


def pgd_batch(
    module: torch.nn.Module,
    x0: np.ndarray,
    labels: np.ndarray,
    low: np.ndarray,
    high: np.ndarray,
    *,
    mean: np.ndarray,
    std: np.ndarray,
    norm: str,
    eps: float,
    settings: PGDSettings = PGDSettings(),
    seed: int = 0,
    budget: Budget | None = None,
) -> Candidates:
    """Search each sample's region for a misclassified point; x0, low, high are raw units (B, n).

    Norm "inf": the region is the box [low, high] (the ε-box already intersected with the valid range).
    Norm "2": the ball ||x - x0||_2 <= ε intersected with [low, high] (the valid range).
    `module` maps model inputs (B, n) float32 to logits (B, K).
    """
    if norm not in NORMS:
        raise ValueError(f"unknown norm {norm!r}; choose one of {', '.join(NORMS)}")
    x0 = np.asarray(x0, dtype=np.float64)
    batch, n = x0.shape
    generator = torch.Generator().manual_seed(int(seed))
    mean_t = torch.as_tensor(mean, dtype=torch.float32)
    std_t = torch.as_tensor(std, dtype=torch.float32)
    per_chunk = max(1, settings.max_batch_elements // max(1, n * settings.restarts))
    parts = []
    for start in range(0, batch, per_chunk):
        stop = start + per_chunk
        parts.append(_chunk(module, x0[start:stop], labels[start:stop], low[start:stop], high[start:stop],
                            mean_t, std_t, norm, eps, settings, generator, budget))
    if not parts:
        return Candidates(np.zeros((0, n)), np.zeros(0))
    return Candidates(np.concatenate([p.x for p in parts]), np.concatenate([p.margin for p in parts]),
                      any(p.timed_out for p in parts))
