"""Branch and bound by bisecting the input box (for low-dimensional inputs, e.g. ACAS Xu's 5).

Each batch pops the newest open boxes from a LIFO stack (children of the worst boxes come out first),
bounds them in one call (verikit.engines.crown.propagate), escalates to α-CROWN on the boxes still open once the
search has grown past `BabSettings.input_alpha_after` boxes, re-bounds in float64 the boxes that float32
proves only before its rounding allowance, and drops a box only when every disjunct has a row whose
proven lower bound is > 0. In the rest it tries cheap counterexample candidates (the minimiser of the
bound's linear function, the centre, a few PGD steps in the worst boxes; a candidate counts only after
onnxruntime replay) and bisects the coordinate with the best score (verikit.engines.bab.branching).
"""

from __future__ import annotations

import torch

from verikit.engines.bab import branching
from verikit.engines.bab.common import (
    BabSettings, SearchStats, SpecRows, Validator, minimising_corner, proven, root_disjunct_bounds, unknown,
)
from verikit.engines.attack.pgd import pgd, uniform_starts
from verikit.engines.crown.propagate import LayerBounds, ReluMlp, layer_bounds, round_outward, spec_bounds
from verikit.engines.crown.optimise import optimise_spec
from verikit.core.network import Network
from verikit.core.result import Budget, Falsified, Proven, Unknown
from verikit.core.property import Case


class BoxStack:
    """A LIFO of boxes (lower, upper: (n,)) with their depth, in growable tensors."""

    def __init__(self, n: int, dtype: torch.dtype, capacity: int = 4096, device: torch.device | str = "cpu"):
        self.lower = torch.empty(capacity, n, dtype=dtype, device=device)
        self.upper = torch.empty(capacity, n, dtype=dtype, device=device)
        self.depth = torch.empty(capacity, dtype=torch.int32, device=device)
        self.size = 0

    def __len__(self) -> int:
        return self.size

    def push(self, lower: torch.Tensor, upper: torch.Tensor, depth: torch.Tensor) -> None:
        count = lower.shape[0]
        if self.size + count > self.lower.shape[0]:
            capacity = max(2 * self.lower.shape[0], self.size + count)
            for name in ("lower", "upper", "depth"):
                old = getattr(self, name)
                new = torch.empty((capacity, *old.shape[1:]), dtype=old.dtype, device=old.device)
                new[: self.size] = old[: self.size]
                setattr(self, name, new)
        self.lower[self.size : self.size + count] = lower
        self.upper[self.size : self.size + count] = upper
        self.depth[self.size : self.size + count] = depth
        self.size += count

    def pop(self, count: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        start = max(0, self.size - count)
        taken = (self.lower[start : self.size].clone(), self.upper[start : self.size].clone(),
                 self.depth[start : self.size].clone())
        self.size = start
        return taken


def bisect(lower: torch.Tensor, upper: torch.Tensor, dims: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Children (2B, n) of boxes (B, n) bisected along dims (B,); the two children of a box adjacent."""
    rows = torch.arange(lower.shape[0], device=lower.device)
    return split_at(lower, upper, dims, (lower[rows, dims] + upper[rows, dims]) / 2)


def split_at(lower: torch.Tensor, upper: torch.Tensor, dims: torch.Tensor,
             point: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Children (2B, n) of boxes (B, n) cut along dims (B,) at `point` (B,); the two children of a box
    adjacent, the lower one first."""
    rows = torch.arange(lower.shape[0], device=lower.device)
    left_upper = upper.clone()
    left_upper[rows, dims] = point
    right_lower = lower.clone()
    right_lower[rows, dims] = point
    return (torch.stack([lower, right_lower], dim=1).reshape(-1, lower.shape[1]),
            torch.stack([left_upper, upper], dim=1).reshape(-1, upper.shape[1]))


def search(net: ReluMlp, net64: ReluMlp, network: Network, case: Case, spec: SpecRows, budget: Budget,
           settings: BabSettings, seed: int) -> Proven | Falsified | Unknown:
    """Input-splitting branch and bound on one case (finite box, at least one disjunct with rows).

    `net` computes in the working dtype, `net64` is the same network in float64.
    """
    if settings.input_score not in branching.INPUT_SCORES:
        return Unknown(f"unknown input_score {settings.input_score!r}; one of {branching.INPUT_SCORES}")
    dtype = settings.dtype
    generator = torch.Generator().manual_seed(seed)
    validator = Validator(network, case, settings.tolerances)
    stats = SearchStats()
    device = net.device
    stack = BoxStack(net.n_inputs, dtype, device=device)
    root_lower, root_upper = round_outward(torch.as_tensor(case.box.lower.copy(), device=device).unsqueeze(0),
                                           torch.as_tensor(case.box.upper.copy(), device=device).unsqueeze(0), dtype)
    stack.push(root_lower, root_upper, torch.zeros(1, dtype=torch.int32, device=device))
    root = ()
    autograd = settings.input_score == "autograd"
    while len(stack):
        if budget.expired():
            return unknown("time budget spent", stats.with_replays(validator), root, timed_out=True)
        lower, upper, depth = stack.pop(settings.batch_size)
        with torch.set_grad_enabled(autograd):
            lower.requires_grad_(autograd)
            upper.requires_grad_(autograd)
            layers = layer_bounds(net, lower, upper, refine=settings.refine)
            bounds = spec_bounds(net, lower, upper, spec.C, spec.d, layers)
        if not root:
            root = root_disjunct_bounds(bounds, spec, "crown")
        stats.count(lower.shape[0], int(depth.max()))
        lower_bounds = _proven_lower_bounds(net, net64, spec, lower.detach(), upper.detach(), layers, bounds,
                                            settings, stats)
        per = spec.per_disjunct(lower_bounds)
        still_open = ~(per > 0).all(dim=1)
        if not bool(still_open.any()):
            continue
        if autograd:
            g_lower, g_upper = branching.autograd_face_gradients(bounds.lower, spec, lower, upper)
        elif settings.input_score == "chained":
            g_lower, g_upper = branching.chained_face_gradients(net, layers, spec, lower, upper)
        lower, upper = lower.detach(), upper.detach()
        index = still_open.nonzero().squeeze(1)
        # the worst (lowest bound) boxes go on top of the stack
        index = index[torch.argsort(per[index].min(dim=1).values, descending=True, stable=True)]
        lower, upper, depth = lower[index], upper[index], depth[index]
        coeff, lower_bounds = bounds.coeff.detach()[index], lower_bounds[index]

        found = _falsify(net, spec, validator, lower, upper, coeff, lower_bounds, settings, stats, generator)
        if found is not None:
            return found

        width = upper - lower
        if settings.input_score == "width":
            scores = width
        else:
            scores = branching.bisection_scores(g_lower[index], g_upper[index], width)
        child_lower, child_upper = bisect(lower, upper, scores.argmax(dim=1))
        stack.push(child_lower, child_upper, (depth + 1).repeat_interleave(2))
        stats.max_queue = max(stats.max_queue, len(stack))
        if len(stack) > settings.max_domains:
            return unknown(f"domain limit reached ({settings.max_domains} open boxes)",
                           stats.with_replays(validator), root)
    return proven("bab-input", stats.with_replays(validator), dtype=str(dtype).replace("torch.", ""))


def _proven_lower_bounds(net: ReluMlp, net64: ReluMlp, spec: SpecRows, lower: torch.Tensor, upper: torch.Tensor,
                         layers: LayerBounds, bounds, settings: BabSettings, stats: SearchStats) -> torch.Tensor:
    """The best sound lower bounds (B, R) after the escalations: α-CROWN on open boxes (once the search
    is big), float64 for boxes that the working dtype proves only before its rounding allowance."""
    lower_bounds = bounds.lower.detach().clone()
    slack = bounds.slack.detach().clone()
    still_open = ~(spec.per_disjunct(lower_bounds) > 0).all(dim=1)
    if settings.input_alpha_steps > 0 and stats.domains > settings.input_alpha_after and bool(still_open.any()):
        index = still_open.nonzero().squeeze(1)
        better, _ = optimise_spec(net, lower[index], upper[index], spec.C, spec.d, layers.select(index),
                                  steps=settings.input_alpha_steps, lr=settings.input_alpha_lr)
        improved = better.lower > lower_bounds[index]
        lower_bounds[index] = torch.where(improved, better.lower, lower_bounds[index])
        slack[index] = torch.where(improved, better.slack, slack[index])
        still_open = ~(spec.per_disjunct(lower_bounds) > 0).all(dim=1)
    nearly = still_open & (spec.per_disjunct(lower_bounds + slack) > 0).all(dim=1)
    if bool(nearly.any()):
        index = nearly.nonzero().squeeze(1)
        lo, hi = lower[index].double(), upper[index].double()
        spec64 = spec.float64()
        with torch.no_grad():
            again = spec_bounds(net64, lo, hi, spec64.C, spec64.d, layer_bounds(net64, lo, hi))
        lower_bounds[index] = torch.maximum(lower_bounds[index], again.lower.to(lower_bounds.dtype))
        stats.rechecked += int(index.numel())
    return lower_bounds


def _falsify(net: ReluMlp, spec: SpecRows, validator: Validator, lower: torch.Tensor, upper: torch.Tensor,
             coeff: torch.Tensor, lower_bounds: torch.Tensor, settings: BabSettings, stats: SearchStats,
             generator: torch.Generator) -> Falsified | None:
    """Cheap candidates in every open box, PGD in the worst few; the first replayed counterexample."""
    with torch.no_grad():
        points = torch.cat([_bound_minimisers(spec, lower, upper, coeff, lower_bounds), (lower + upper) / 2])
        violation = spec.violation(net.forward(points))
    found = validator.first(points, violation)
    if found is not None or settings.attack_every <= 0 or stats.batches % settings.attack_every:
        return found
    worst = torch.arange(lower.shape[0] - 1, max(-1, lower.shape[0] - 1 - settings.attack_domains), -1,
                         device=lower.device)
    box_lo = lower[worst].repeat_interleave(settings.attack_restarts, dim=0)
    box_hi = upper[worst].repeat_interleave(settings.attack_restarts, dim=0)
    search = pgd(lambda x, rows: spec.violation(net.forward(x)), uniform_starts(box_lo, box_hi, generator),
                 box_lo, box_hi, steps=settings.attack_steps, fraction=0.25, scale=box_hi - box_lo)
    return validator.first(search.best_x, search.best_loss, best=2)


def _bound_minimisers(spec: SpecRows, lower: torch.Tensor, upper: torch.Tensor, coeff: torch.Tensor,
                      lower_bounds: torch.Tensor) -> torch.Tensor:
    """Per box (B, n): the corner minimising the best row of the disjunct closest to holding."""
    row = spec.best_row_of_worst_disjunct(lower_bounds)
    return minimising_corner(coeff[torch.arange(coeff.shape[0], device=coeff.device), row], lower, upper)
