"""The one PGD loop (`pgd`), and its batched use on labelled samples (`pgd_batch`, the dataset audit).

`pgd` minimises a loss of the network output from a batch of start points, each row inside its own box
(and, optionally, its own L2 ball): signed-gradient steps in a box, normalised-gradient steps in a ball,
on a cosine schedule. The attack engine (the spec's disjunction loss, verikit.engines.spec_rows), branch
and bound (the same loss inside open boxes) and `pgd_batch` (the classification margin) call it; each
keeps only its own setup and its early-exit check. Whatever it finds is only a candidate: callers
replay it through onnxruntime (verikit.witness.replay) before calling it a counterexample.

`pgd_batch` runs in raw units (the model sees `(x - mean) / std`). Each sample gets `restarts` starts
(the first at the clean point, the rest random), all advanced together. The loss is the margin
`y_label - max_{j != label} y_j`; a sample is broken (in torch) once it is < 0, and then stops moving.
"""

from __future__ import annotations

import math
from collections.abc import Callable
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


@dataclass(eq=False)
class PGDState:
    """What an early-exit check sees after each evaluation (step 0..steps): the current points x (N, n)
    and their loss (N,) (+inf on rows not searched), the best point (N, n) and loss (N,) per row so far,
    and the rows still searched, `active` (N,) bool."""

    step: int
    x: torch.Tensor
    loss: torch.Tensor
    best_x: torch.Tensor
    best_loss: torch.Tensor
    active: torch.Tensor

    def keep(self, rows: torch.Tensor) -> None:
        """Search from now on only the active rows that `rows` (N,) bool marks."""
        self.active = self.active & rows


@dataclass(frozen=True, eq=False)
class Search:
    """The best point (N, n) and loss (N,) per row, the step that first reached it (N,) (steps + 1 where
    none did); whether the budget ran out or the check stopped the search."""

    best_x: torch.Tensor
    best_loss: torch.Tensor
    best_step: torch.Tensor
    timed_out: bool = False
    stopped: bool = False


Loss = Callable[[torch.Tensor, "torch.Tensor | None"], torch.Tensor]
"""(points (M, n), their row indices (M,) or None for all rows) -> loss (M,) to minimise."""


def uniform_starts(lower: torch.Tensor, upper: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Points drawn uniformly in the boxes [lower, upper] (N, n), one per row."""
    # drawn on the generator's device (a CPU generator keeps runs reproducible across devices)
    noise = torch.rand(lower.shape, generator=generator, dtype=lower.dtype, device=generator.device)
    return lower + (upper - lower) * noise.to(lower.device)


def diversified_starts(forward: Callable[[torch.Tensor], torch.Tensor], starts: torch.Tensor, lower: torch.Tensor,
                       upper: torch.Tensor, *, steps: int, size: torch.Tensor | float,
                       generator: torch.Generator) -> torch.Tensor:
    """Starts (N, n) moved by `steps` sign-gradient steps of `size` (scalar or (N, n)) that each push the
    output along its own random direction (output-diversified sampling, Tashiro et al. 2020), kept in
    the boxes: PGD from uniform starts in a high-dimensional box tends to end in the same few optima,
    these spread out over the outputs first."""
    x = starts.detach().clone()
    direction = None
    for _ in range(steps):
        with torch.enable_grad():
            xs = x.detach().requires_grad_(True)
            y = forward(xs)
            if direction is None:
                direction = (2 * torch.rand(y.shape, generator=generator, dtype=y.dtype,
                                            device=generator.device) - 1).to(y.device)
            gradient = torch.autograd.grad((direction * y).sum(), xs)[0]
        with torch.no_grad():
            x = project(xs + size * gradient.sign(), lower, upper, None)
    return x


def pgd(
    loss_of: Loss,
    starts: torch.Tensor,
    lower: torch.Tensor,
    upper: torch.Tensor,
    *,
    steps: int,
    fraction: float,
    scale: torch.Tensor | float = 1.0,
    horizon: int | None = None,
    ball: tuple[torch.Tensor, float] | None = None,
    budget: Budget | None = None,
    check: Callable[[PGDState], bool] | None = None,
    rule: str = "sign",
) -> Search:
    """Minimise `loss_of` from starts (N, n), each row kept in its box [lower, upper] (N, n).

    The loss is evaluated at steps 0..steps, with `steps` moves between: step t moves by
    `fraction * ½(1 + cos(π t / horizon)) * scale` (horizon defaults to steps; scale is a scalar or per
    coordinate (N, n)) along a direction, then projects into the ball ∩ box. The direction is
    -sign(gradient) (`rule` "sign") or Adam's bias-corrected -m / sqrt(v) ("adam": about ±1 per coordinate
    too, but it averages the gradient over steps, so on a max of rows it settles where the rows balance
    instead of zigzagging between them); with `ball` = (centres (N, n), radius) it is normalised to unit
    length. Stops early when the budget runs out (timed_out), when `check` returns True (stopped), or when
    `check` kept no row (PGDState.keep).
    """
    if rule not in ("sign", "adam"):
        raise ValueError(f"unknown PGD rule {rule!r}")
    x = starts.detach().clone()
    rows_total = x.shape[0]
    best_x = x.clone()
    best = torch.full((rows_total,), math.inf, dtype=x.dtype, device=x.device)
    best_step = torch.full((rows_total,), steps + 1, dtype=torch.long, device=x.device)
    active, all_active = torch.ones(rows_total, dtype=torch.bool, device=x.device), True
    horizon = steps if horizon is None else horizon
    if rule == "adam":
        first_moment, second_moment = torch.zeros_like(x), torch.zeros_like(x)
    for step in range(steps + 1):
        if budget is not None and budget.expired():
            return Search(best_x, best, best_step, timed_out=True)
        rows = None if all_active else active.nonzero()[:, 0]
        if rows is not None and rows.numel() == 0:
            break
        with torch.enable_grad():
            xs = (x if rows is None else x[rows]).detach().requires_grad_(step < steps)
            loss = loss_of(xs, rows)
            gradient = torch.autograd.grad(loss.sum(), xs)[0] if step < steps else None
        with torch.no_grad():
            loss = loss.detach()
            if rows is not None:
                loss = torch.full((rows_total,), math.inf, dtype=loss.dtype, device=loss.device).index_copy(0, rows, loss)
            better = loss < best
            best_x = torch.where(better.unsqueeze(1), x, best_x)
            best = torch.where(better, loss, best)
            best_step = torch.where(better, step, best_step)
            if check is not None:
                state = PGDState(step, x, loss, best_x, best, active)
                if check(state):
                    return Search(best_x, best, best_step, stopped=True)
                if state.active is not active:
                    active, all_active = state.active, bool(state.active.all())
            if gradient is None:
                break
            size = fraction * 0.5 * (1 + math.cos(math.pi * step / horizon))
            if rule == "adam":
                direction = _adam_direction(first_moment, second_moment, gradient, rows, step + 1)
            else:
                direction = gradient.sign() if ball is None else gradient
            if ball is None:
                moved = xs.detach() - size * scale * direction
            else:
                length = torch.clamp(direction.norm(dim=1, keepdim=True), min=1e-30)
                moved = xs.detach() - size * scale * direction / length
            if rows is None:
                x = project(moved, lower, upper, ball)
            else:
                x[rows] = project(moved, lower[rows], upper[rows],
                                   None if ball is None else (ball[0][rows], ball[1]))
    return Search(best_x, best, best_step)


def _adam_direction(first: torch.Tensor, second: torch.Tensor, gradient: torch.Tensor, rows: torch.Tensor | None,
                    count: int, betas: tuple[float, float] = (0.9, 0.999)) -> torch.Tensor:
    """Adam's bias-corrected m / (sqrt(v) + tiny) for the searched rows, updating the moments (N, n) in place."""
    index = slice(None) if rows is None else rows
    m = betas[0] * first[index] + (1 - betas[0]) * gradient
    v = betas[1] * second[index] + (1 - betas[1]) * gradient * gradient
    first[index], second[index] = m, v
    return (m / (1 - betas[0] ** count)) / (torch.sqrt(v / (1 - betas[1] ** count)) + 1e-12)


def _margins(logits: torch.Tensor, labels: torch.Tensor, k: int = 1) -> torch.Tensor:
    """y_label - (the k-th largest y_j, j != label) for logits (B, K) → (B,); < 0 breaks top-k."""
    own = logits.gather(1, labels[:, None])[:, 0]
    others = logits.scatter(1, labels[:, None], -math.inf)
    if k == 1:
        return own - others.max(dim=1).values
    return own - others.topk(k, dim=1).values[:, -1]


def project(x: torch.Tensor, lower: torch.Tensor, upper: torch.Tensor,
             ball: tuple[torch.Tensor, float] | None) -> torch.Tensor:
    """Into the box [lower, upper], after the L2 ball (centres, radius) when given."""
    if ball is not None:
        center, radius = ball
        delta = x - center
        length = delta.norm(dim=1, keepdim=True)
        x = center + delta * torch.clamp(radius / torch.clamp(length, min=1e-30), max=1.0)
    # the centre lies in [lower, upper], so clipping moves every coordinate towards it: still in the ball
    return torch.minimum(torch.maximum(x, lower), upper)


def _starts(x0: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor, eps: float, restarts: int,
            ball: bool, generator: torch.Generator) -> torch.Tensor:
    """(B * restarts, n): restart 0 at the clean point x0 (B, n), the others uniform in the box / ball;
    lo, hi are the boxes already repeated per restart (B * restarts, n)."""
    batch, n = x0.shape
    x = x0.repeat_interleave(restarts, dim=0)
    if not ball:
        start = uniform_starts(lo, hi, generator)
    else:
        direction = torch.randn(x.shape, generator=generator, dtype=x.dtype)
        direction = direction / torch.clamp(direction.norm(dim=1, keepdim=True), min=1e-30)
        radius = eps * torch.rand((x.shape[0], 1), generator=generator, dtype=x.dtype) ** (1.0 / n)
        start = project(x + direction * radius, lo, hi, (x, eps * (1.0 - L2_SHRINK)))
    first = torch.arange(batch) * restarts
    start[first] = x0
    return start


def _chunk(module: torch.nn.Module, x0: np.ndarray, labels: np.ndarray, low: np.ndarray, high: np.ndarray,
           mean: torch.Tensor, std: torch.Tensor, norm: str, eps: float, settings: PGDSettings,
           generator: torch.Generator, budget: Budget | None, top_k: int = 1) -> Candidates:
    restarts = settings.restarts
    base = torch.as_tensor(x0, dtype=torch.float32)
    lo = torch.as_tensor(low, dtype=torch.float32).repeat_interleave(restarts, 0)
    hi = torch.as_tensor(high, dtype=torch.float32).repeat_interleave(restarts, 0)
    rows_label = torch.as_tensor(labels, dtype=torch.long).repeat_interleave(restarts, 0)
    ball = (base.repeat_interleave(restarts, 0), eps * (1.0 - L2_SHRINK)) if norm == "2" else None
    starts = _starts(base, lo, hi, eps, restarts, ball is not None, generator)

    def margins(x: torch.Tensor, rows: torch.Tensor | None) -> torch.Tensor:
        return _margins(module((x - mean) / std), rows_label if rows is None else rows_label[rows], top_k)

    def stop_broken_samples(state: PGDState) -> bool:
        if state.step % settings.check_every == settings.check_every - 1:
            per_sample = state.best_loss.reshape(-1, restarts).amin(dim=1)
            state.keep((per_sample >= 0).repeat_interleave(restarts))  # broken in torch: stop searching
        return False

    search = pgd(margins, starts, lo, hi, steps=settings.steps, fraction=settings.step_fraction * 2.0 * eps,
                 ball=ball, budget=budget, check=stop_broken_samples)
    # per sample the lowest margin; on a tie the earliest step, then the first restart
    loss = search.best_loss.reshape(-1, restarts)
    margin = loss.min(dim=1).values
    tied = loss == margin.unsqueeze(1)
    which = torch.where(tied, search.best_step.reshape(-1, restarts), settings.steps + 2).argmin(dim=1)
    best_x = search.best_x.reshape(-1, restarts, base.shape[1])[torch.arange(base.shape[0]), which]
    return Candidates(best_x.double().numpy(), margin.double().numpy(), search.timed_out)


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
    top_k: int = 1,
) -> Candidates:
    """Search each sample's region for a misclassified point (`top_k` > 1: one whose label falls out of
    the k highest outputs); x0, low, high are raw units (B, n).

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
                            mean_t, std_t, norm, eps, settings, generator, budget, top_k))
    if not parts:
        return Candidates(np.zeros((0, n)), np.zeros(0))
    return Candidates(np.concatenate([p.x for p in parts]), np.concatenate([p.margin for p in parts]),
                      any(p.timed_out for p in parts))
