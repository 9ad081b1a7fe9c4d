"""Branching heuristics: which input coordinate to bisect, which ReLU neuron to split.

Input coordinates (measured on ACAS Xu with benchmarks/bench_bab.py --set input_score=...): scoring by the gradient of
the bound w.r.t. the box faces needs 2-20x fewer boxes than bisecting the widest coordinate or scoring
|bound coefficient|·width; the "chained" approximation of that gradient needs about as few boxes as exact
autograd at under half the cost, so it is the default.
"""

from __future__ import annotations

import torch

from verikit.engines.bab.common import SpecRows
from verikit.engines.crown.optimise import lower_slopes
from verikit.engines.crown.propagate import ACTIVE, FREE, INACTIVE, LayerBounds, Relaxation, ReluMlp, spec_bounds
from verikit.engines.crown.refine import restrict

INPUT_SCORES = ("chained", "autograd", "width")


def _open_objective(lower_bounds: torch.Tensor, spec: SpecRows) -> torch.Tensor:
    """Σ over unrefuted disjuncts of their best row's lower bound (<= 0): what branching should raise."""
    per = spec.per_disjunct(lower_bounds)
    return torch.where(per > 0, torch.zeros_like(per), per).sum()


def autograd_face_gradients(lower_bounds: torch.Tensor, spec: SpecRows, lower: torch.Tensor,
                            upper: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact gradients (B, n) of the open objective w.r.t. the box faces, by autograd through every
    layer's bounds (`lower_bounds` must have been computed from `lower`, `upper` requiring grad)."""
    g_lower, g_upper = torch.autograd.grad(_open_objective(lower_bounds, spec), (lower, upper))
    return g_lower, g_upper


def chained_face_gradients(net: ReluMlp, bounds: LayerBounds, spec: SpecRows, lower: torch.Tensor,
                           upper: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Approximate face gradients (B, n) at a fraction of the cost of autograd through all layers.

    Autograd runs through the final spec bound only, giving ∂bound/∂(l, u) for every hidden neuron; each
    neuron's bounds are differentiated w.r.t. the faces through its forward linear bound a·x + c
    (∂ min/∂lower_i = max(a_i, 0), ∂ min/∂upper_i = min(a_i, 0), ...), ignoring how layers tighten
    one another. Needs `bounds.input_coefficients` (forward bounds on).
    """
    with torch.enable_grad():
        lows = [t.detach().requires_grad_(True) for t in bounds.lower]
        ups = [t.detach().requires_grad_(True) for t in bounds.upper]
        leaves = LayerBounds(lows, ups, bounds.magnitude, bounds.infeasible,
                             [Relaxation.of(lo, up, m) for lo, up, m in zip(lows, ups, bounds.magnitude)])
        x_lower = lower.detach().requires_grad_(True)
        x_upper = upper.detach().requires_grad_(True)
        final = spec_bounds(net, x_lower, x_upper, spec.C, spec.d, leaves)
        grads = torch.autograd.grad(_open_objective(final.lower, spec), [x_lower, x_upper, *lows, *ups],
                                    allow_unused=True)
    g_lower, g_upper = grads[0], grads[1]
    depth = len(lows)
    for k, (a_lo, a_up) in enumerate(bounds.input_coefficients):
        g_l, g_u = grads[2 + k], grads[2 + depth + k]
        if g_l is None or g_u is None:
            continue
        a_lo = a_lo.expand(g_l.shape[0], -1, -1)
        a_up = a_up.expand(g_l.shape[0], -1, -1)
        g_lower = (g_lower + torch.einsum("bn,bin->bi", g_l, a_lo.clamp(min=0))
                   + torch.einsum("bn,bin->bi", g_u, a_up.clamp(max=0)))
        g_upper = (g_upper + torch.einsum("bn,bin->bi", g_l, a_lo.clamp(max=0))
                   + torch.einsum("bn,bin->bi", g_u, a_up.clamp(min=0)))
    return g_lower, g_upper


def bisection_scores(g_lower: torch.Tensor, g_upper: torch.Tensor, width: torch.Tensor) -> torch.Tensor:
    """First-order gain (B, n) of bisecting each coordinate, weighted to the worse child.

    The left child moves the upper face down by width/2, the right child the lower face up.
    """
    gain_left = (-g_upper).clamp(min=0) * width / 2
    gain_right = g_lower.clamp(min=0) * width / 2
    return torch.minimum(gain_left, gain_right) + 0.1 * (gain_left + gain_right) + 1e-9 * width


def relu_scores(bounds: LayerBounds, record: dict[int, torch.Tensor], open_rows: torch.Tensor,
                splits: list[torch.Tensor]) -> torch.Tensor:
    """Score (B, N) of splitting each hidden neuron (layers concatenated); -inf where not splittable.

    Σ over open rows (B, R) of |negative coefficient on a_n| × chord intercept -u·l/(u-l): what the upper
    relaxation of neuron n costs the bound (a BaBSR-like score); ties broken by |coefficient|·min(u, -l).
    `record[i]` (R, B, n_i) are the coefficients on a_i of the final backward pass.
    """
    scores = []
    weight = open_rows.to(record[0].dtype).T.unsqueeze(-1)  # (R, B, 1)
    for i, relax in enumerate(bounds.relaxations):
        lam = record[i] * weight
        intercept_cost = (lam.clamp(max=0).abs() * relax.intercept_up.unsqueeze(0)).sum(dim=0)
        spread = torch.minimum(bounds.upper[i], -bounds.lower[i]).clamp(min=0)
        score = intercept_cost + 1e-3 * lam.abs().sum(dim=0) * spread
        splittable = relax.unstable & (splits[i] == FREE)
        scores.append(torch.where(splittable, score, torch.full_like(score, -torch.inf)))
    return torch.cat(scores, dim=1)


RELU_BRANCHINGS = ("babsr", "fsb")


def lookahead_choice(net: ReluMlp, box_lower: torch.Tensor, box_upper: torch.Tensor, spec: SpecRows,
                     bounds: LayerBounds, splits: list[torch.Tensor], alphas: list[torch.Tensor],
                     betas: list[torch.Tensor] | None, scores: torch.Tensor, candidates: int) -> torch.Tensor:
    """Filtered smart branching: the neuron (P,) among each domain's `candidates` best `scores` (P, N)
    whose two children leave the least below zero (Σ over both children of min(bound, 0)).

    Both children of every candidate are bounded in one batched CROWN pass on the parent's bounds
    (tightened by the child's split) with the parent's α and β (the new split's β at 0), no
    optimisation. A child proven empty leaves nothing. Ties go to the higher score.
    """
    count = min(candidates, scores.shape[1])
    top = scores.topk(count, dim=1)  # sorted, best score first
    parents, neurons = scores.shape[0], top.indices.reshape(-1)
    parent_of = torch.arange(parents, device=scores.device).repeat_interleave(2 * count)
    children = torch.cat(splits, dim=1)[parent_of]
    side = torch.tensor([INACTIVE, ACTIVE], dtype=children.dtype, device=children.device).repeat(parents * count)
    children[torch.arange(children.shape[0], device=children.device), neurons.repeat_interleave(2)] = side
    child_splits = list(children.split([s.shape[1] for s in splits], dim=1))
    child_bounds = restrict(bounds.select(parent_of), child_splits)
    child_alphas = [a[:, parent_of] for a in alphas]
    child_betas = None if betas is None else [b[:, parent_of] for b in betas]
    with torch.no_grad():
        result = spec_bounds(net, box_lower, box_upper, spec.C, spec.d, child_bounds, splits=child_splits,
                             slopes_lo=lower_slopes(child_bounds, child_alphas), betas=child_betas)
    worst_disjunct = spec.per_disjunct(result.lower).min(dim=1).values  # (P·K·2,)
    # both children's remaining gaps (bounds below 0) summed: on MNIST-FC 256x2 this closed with fewer
    # domains than the worse child alone (benchmarks/README.md, "ReLU branching")
    gap = worst_disjunct.clamp(max=0).reshape(parents, count, 2).sum(dim=2)
    gap = torch.where(torch.isfinite(top.values), gap, torch.full_like(gap, -torch.inf))
    pick = gap.argmax(dim=1)  # first maximum: the better-scored candidate on ties
    return top.indices[torch.arange(parents, device=pick.device), pick]
