"""Branch and bound by splitting unstable ReLU neurons (for high-dimensional inputs, e.g. MNIST's 784).

The root's hidden bounds are computed once in float64 (forward + CROWN) and rounded outward to the
working dtype. A domain is a split assignment (ACTIVE / INACTIVE / FREE per hidden neuron); its bound is
α/β-CROWN (`crown_opt`) on the root bounds tightened by its splits. Rows refuted at the root are left
out of the search (a sub-domain inherits the root's refutation). A domain the working dtype nearly
proves (proven before its rounding allowance only) is re-bounded in float64 with the same α/β, which
are valid at any value. Branching picks, per domain, the free unstable neuron whose upper-relaxation
intercept costs the open rows the most (a BaBSR-like score).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from verikit.engines.bab.branching import relu_scores
from verikit.engines.bab.leaf import prune_with_lp, settle_leaf
from verikit.engines.bab.common import (
    BabSettings, SearchStats, SpecRows, Validator, minimising_corner, proven, root_disjunct_bounds, unknown,
)
from verikit.engines.crown.propagate import (
    ACTIVE, INACTIVE, LayerBounds, Relaxation, ReluMlp, layer_bounds, round_outward, spec_bounds,
)
from verikit.engines.crown.optimise import Multipliers, lower_slopes, optimise_layer_bounds, optimise_spec
from verikit.core.network import Network
from verikit.core.result import Budget, Falsified, Proven, Unknown
from verikit.core.property import Case

QUEUE_BYTES = 400_000_000  # memory allowed for open split assignments (int8 per hidden neuron)


def restrict(root: LayerBounds, splits: list[torch.Tensor]) -> LayerBounds:
    """The root's bounds (1, n_i) tightened by split assignments (B, n_i)."""
    lower, upper, magnitude, relaxations = [], [], [], []
    for lo, up, zabs, split in zip(root.lower, root.upper, root.magnitude, splits):
        lo = torch.where(split == ACTIVE, lo.clamp(min=0), lo)
        up = torch.where(split == INACTIVE, up.clamp(max=0), up)
        lower.append(lo)
        upper.append(up)
        magnitude.append(zabs.expand_as(lo))
        relaxations.append(Relaxation.of(lo, up, zabs))
    infeasible = torch.zeros(splits[0].shape[0], dtype=torch.bool, device=splits[0].device)
    for lo, up in zip(lower, upper):
        infeasible |= (lo > up).any(dim=1)
    return LayerBounds(lower, upper, magnitude, infeasible, relaxations)


def outward(bounds: LayerBounds, dtype: torch.dtype) -> LayerBounds:
    """The same bounds in `dtype`, lower rounded down and upper rounded up."""
    pairs = [round_outward(lo, up, dtype) for lo, up in zip(bounds.lower, bounds.upper)]
    magnitude = [round_outward(m, m, dtype)[1] for m in bounds.magnitude]
    lower, upper = [p[0] for p in pairs], [p[1] for p in pairs]
    relaxations = [Relaxation.of(lo, hi, m) for lo, hi, m in zip(lower, upper, magnitude)]
    return LayerBounds(lower, upper, magnitude, bounds.infeasible.clone(), relaxations)


@dataclass(eq=False)
class _Search:
    """What the per-disjunct searches share: networks, root bounds (float64 and working dtype), box."""

    net: ReluMlp
    net64: ReluMlp
    root64: LayerBounds
    root_work: LayerBounds
    x_lower: torch.Tensor  # (1, n) float64
    x_upper: torch.Tensor
    validator: Validator
    stats: SearchStats
    settings: BabSettings
    budget: Budget


def search(net: ReluMlp, net64: ReluMlp, network: Network, case: Case, spec: SpecRows, budget: Budget,
           settings: BabSettings, seed: int) -> Proven | Falsified | Unknown:
    """ReLU-splitting branch and bound on one case (finite box, at least one disjunct with rows).

    `net` computes in the working dtype, `net64` is the same network in float64. After the root, each
    disjunct open there gets its own search, most violated first: a disjunct's rows are all a domain
    needs to bound, and easy disjuncts close in shallow trees instead of riding along in the deepest one.
    """
    del seed  # the search is deterministic; kept for a uniform signature
    stats = SearchStats()
    validator = Validator(network, case, settings.tolerances)
    x_lower = torch.as_tensor(case.box.lower.copy(), dtype=torch.float64, device=net.device).unsqueeze(0)
    x_upper = torch.as_tensor(case.box.upper.copy(), dtype=torch.float64, device=net.device).unsqueeze(0)
    spec64 = spec.subset(torch.ones_like(spec.owner, dtype=torch.bool), torch.float64)

    root64 = optimise_layer_bounds(net64, x_lower, x_upper, layer_bounds(net64, x_lower, x_upper),
                                   steps=settings.relu_alpha_steps, lr=settings.relu_lr)
    root_bounds, root_params = optimise_spec(net64, x_lower, x_upper, spec64.C, spec64.d, root64,
                                             steps=settings.relu_alpha_steps, lr=settings.relu_lr)
    stats.count(1, 0)
    root = root_disjunct_bounds(root_bounds, spec64, "alpha-crown")
    found = _falsify(net64, spec64, validator, x_lower, x_upper, root_bounds.coeff, root_bounds.lower)
    if found is not None:
        return found
    per = spec64.per_disjunct(root_bounds.lower)[0]
    context = _Search(net, net64, root64, outward(root64, settings.dtype), x_lower, x_upper, validator, stats,
                      settings, budget)
    for k in torch.argsort(per).tolist():
        if per[k] > 0:
            continue
        keep = spec.owner == k
        alphas = [a[keep].to(settings.dtype) for a in root_params.alphas]
        outcome = _search_disjunct(context, spec.subset(keep), spec.subset(keep, torch.float64), alphas)
        if isinstance(outcome, Falsified):
            return outcome
        if outcome is not None:
            return unknown(f"disjunct {k}: {outcome}", stats.with_replays(validator), root,
                           timed_out=outcome == TIMED_OUT)
    return proven("bab-relu", stats.with_replays(validator), dtype=str(settings.dtype).replace("torch.", ""),
                  disjuncts_refuted_at_root=int((per > 0).sum()))


TIMED_OUT = "time budget spent"


def _search_disjunct(ctx: _Search, rows: SpecRows, rows64: SpecRows,
                     alphas: list[torch.Tensor]) -> Falsified | str | None:
    """Branch and bound on the rows of one disjunct: None when refuted everywhere, a counterexample, or
    the reason it stopped."""
    settings, stats, net = ctx.settings, ctx.stats, ctx.net
    box_lower, box_upper = round_outward(ctx.x_lower, ctx.x_upper, settings.dtype)
    sizes = list(net.hidden_sizes)
    capacity = max(2, min(settings.max_domains, QUEUE_BYTES // max(1, sum(sizes))))
    queue = torch.zeros(1, sum(sizes), dtype=torch.int8, device=net.device)
    queue_depth = torch.zeros(1, dtype=torch.int32, device=net.device)
    stuck = stats.stuck
    while queue.shape[0]:
        if ctx.budget.expired():
            return TIMED_OUT
        take = min(settings.relu_batch_size, queue.shape[0])
        assignment, depth = queue[-take:], queue_depth[-take:]
        queue, queue_depth = queue[:-take], queue_depth[:-take]
        splits = list(assignment.split(sizes, dim=1))
        bounds = restrict(ctx.root_work, splits)
        start = Multipliers([a.expand(-1, take, -1).clone() for a in alphas], None)
        result, params = optimise_spec(net, box_lower, box_upper, rows.C, rows.d, bounds, splits=splits,
                                       steps=settings.relu_beta_steps, lr=settings.relu_lr, start=start,
                                       stop=lambda lower: (rows.per_disjunct(lower) > 0).all())
        stats.count(take, int(depth.max()))
        per = rows.per_disjunct(result.lower)
        done = (per > 0).all(dim=1)
        nearly = ~done & (rows.per_disjunct(result.lower + result.slack) > 0).all(dim=1)
        if bool(nearly.any()):
            done = done | _recheck(ctx.net64, ctx.root64, rows64, ctx.x_lower, ctx.x_upper, splits, params, nearly)
            stats.rechecked += int(nearly.sum())
        open_index = (~done).nonzero().squeeze(1)
        if open_index.numel() == 0:
            continue
        found = _falsify(net, rows, ctx.validator, box_lower, box_upper, result.coeff[open_index],
                         result.lower[open_index])
        if found is not None:
            return found
        if settings.lp_max_unstable > 0:
            found, open_index = prune_with_lp(ctx, rows64, splits, open_index, restrict, bounds)
            if found is not None:
                return found
            if open_index.numel() == 0:
                continue
        record: dict[int, torch.Tensor] = {}
        with torch.no_grad():
            spec_bounds(net, box_lower, box_upper, rows.C, rows.d, bounds, splits=splits,
                        slopes_lo=lower_slopes(bounds, params.alphas), betas=params.betas, record=record)
        scores = relu_scores(bounds, record, result.lower <= 0, splits)[open_index]
        best = scores.max(dim=1)
        leaves = ~torch.isfinite(best.values)
        if bool(leaves.any()):
            found = _settle_leaves(ctx.net64, ctx.root64, rows64, ctx.validator, ctx.x_lower, ctx.x_upper,
                                   [s[open_index[leaves]] for s in splits], stats)
            if found is not None:
                return found
            open_index, best = open_index[~leaves], _select(best, ~leaves)
            if open_index.numel() == 0:
                continue
        # worst domains end on top of the stack
        order = torch.argsort(per[open_index].min(dim=1).values, descending=True, stable=True)
        parents = assignment[open_index][order]
        neuron = best.indices[order]
        children = parents.repeat_interleave(2, dim=0)
        children[torch.arange(children.shape[0], device=net.device), neuron.repeat_interleave(2)] = torch.tensor(
            [INACTIVE, ACTIVE], dtype=torch.int8, device=net.device).repeat(parents.shape[0])
        queue = torch.cat([queue, children])
        queue_depth = torch.cat([queue_depth, (depth[open_index][order] + 1).repeat_interleave(2)])
        stats.max_queue = max(stats.max_queue, queue.shape[0])
        if queue.shape[0] > capacity:
            return f"domain limit reached ({capacity} open split assignments)"
    if stats.stuck > stuck:
        return f"{stats.stuck - stuck} domains with every neuron fixed stayed undecided"
    return None


def _select(best, keep: torch.Tensor):
    return torch.return_types.max((best.values[keep], best.indices[keep]))


def _settle_leaves(net64: ReluMlp, root64: LayerBounds, rows64: SpecRows, validator: Validator,
                   x_lower: torch.Tensor, x_upper: torch.Tensor, leaf_splits: list[torch.Tensor],
                   stats: SearchStats) -> Falsified | None:
    """Decide open domains with every neuron fixed (bab_leaf): a replayed counterexample, or None after
    counting the leaves that stay undecided in `stats.stuck`."""
    for k in range(leaf_splits[0].shape[0]):
        splits = [s[k : k + 1] for s in leaf_splits]
        candidates, refuted = settle_leaf(net64, restrict(root64, splits), splits, rows64, x_lower, x_upper)
        if candidates:
            points = torch.tensor(np.stack(candidates))
            found = validator.first(points, torch.zeros(points.shape[0], dtype=points.dtype))
            if found is not None:
                return found
        if not refuted:
            stats.stuck += 1
    return None


def _recheck(net64: ReluMlp, root64: LayerBounds, rows64: SpecRows, x_lower: torch.Tensor,
             x_upper: torch.Tensor, splits: list[torch.Tensor], params: Multipliers,
             nearly: torch.Tensor) -> torch.Tensor:
    """Re-bound domains `nearly` (B,) in float64 with the same α/β; (B,) True where now proven."""
    index = nearly.nonzero().squeeze(1)
    sub_splits = [s[index] for s in splits]
    bounds = restrict(root64, sub_splits)
    alphas = [a[:, index].double() for a in params.alphas]
    betas = None if params.betas is None else [b[:, index].double() for b in params.betas]
    with torch.no_grad():
        again = spec_bounds(net64, x_lower, x_upper, rows64.C, rows64.d, bounds, splits=sub_splits,
                            slopes_lo=lower_slopes(bounds, alphas), betas=betas)
    proven_now = torch.zeros_like(nearly)
    proven_now[index] = (rows64.per_disjunct(again.lower) > 0).all(dim=1)
    return proven_now


def _falsify(net: ReluMlp, spec: SpecRows, validator: Validator, x_lower: torch.Tensor, x_upper: torch.Tensor,
             coeff: torch.Tensor, lower_bounds: torch.Tensor) -> Falsified | None:
    """The minimisers of each open domain's worst-disjunct best row, replayed when they violate."""
    row = spec.best_row_of_worst_disjunct(lower_bounds)
    direction = coeff[torch.arange(coeff.shape[0], device=coeff.device), row]
    points = minimising_corner(direction, x_lower.expand_as(direction), x_upper.expand_as(direction))
    with torch.no_grad():
        violation = spec.violation(net.forward(points.to(net.dtype)))
    return validator.first(points, violation)
