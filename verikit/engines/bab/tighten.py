"""Hidden-layer bounds tightened by branching on earlier neurons (at the root of ReLU branching).

An unstable neuron's triangle relaxation loosens every bound after it, and α-CROWN stops at the triangle
LP's optimum. Splitting earlier unstable neurons goes past it: for each unstable neuron j of layer L and
each side (s = +1 for its lower bound, -1 for its upper bound), a small best-first branch and bound over
split assignments of layers < L bounds s·z_{L,j} on every leaf by α/β-CROWN (`substitute` with β on the
split constraints, in float64 with its rounding allowance). The leaves cover the box, so the smallest leaf
bound is a sound bound of s·z_{L,j} over the whole box. Layers go in order; after each, α-CROWN re-bounds
the later layers on the tighter relaxations. Passes repeat with four times the leaves while the budget
lasts and the bounds do not yet settle the property. This is what MILP-refined hidden bounds give α,β-CROWN on deep
MLPs, with every bound coming from a CROWN pass instead of a MILP solver's word.

All (neuron, side) pairs of a layer are searched together: one batched pass bounds the children of every
pair's worst leaf. A pair stops when its bound reaches 0 (the neuron is stable on that side), when it has
`leaves` leaves, or when its worst leaf has no neuron left to split.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from verikit.engines.bab.branching import relu_scores
from verikit.engines.crown.optimise import optimise_layer_bounds
from verikit.engines.crown.propagate import ACTIVE, INACTIVE, InputBox, LayerBounds, Relaxation, ReluMlp, substitute
from verikit.engines.crown.refine import restrict
from verikit.core.result import Budget


@dataclass
class TightenStats:
    """What the tightening did: per layer, unstable neurons before and after, and leaves bounded."""

    unstable_before: list[int]
    unstable_after: list[int]
    leaves: int = 0
    passes: int = 0
    seconds: float = 0.0

    def then(self, later: "TightenStats") -> "TightenStats":
        """This run followed by `later` (which started from this one's bounds)."""
        return TightenStats(self.unstable_before, later.unstable_after, self.leaves + later.leaves,
                            self.passes + later.passes, self.seconds + later.seconds)

    def summary(self) -> str:
        return (f"hidden bounds tightened ({self.passes} passes, {self.leaves} leaves): unstable neurons "
                f"per layer {self.unstable_before} -> {self.unstable_after}")


@dataclass(eq=False)
class _Leaves:
    """The open leaves of every pair of one layer: split assignments over the layers before it (D, N),
    owning pair (D,), lower bound of s·z (D,), the neuron to split next (D,; -1: none), α and β (D, N)."""

    assignment: torch.Tensor
    owner: torch.Tensor
    bound: torch.Tensor
    next_split: torch.Tensor
    alpha: torch.Tensor
    beta: torch.Tensor

    def keep(self, mask: torch.Tensor) -> "_Leaves":
        return _Leaves(*(t[mask] for t in (self.assignment, self.owner, self.bound, self.next_split,
                                           self.alpha, self.beta)))

    def extend(self, other: "_Leaves") -> "_Leaves":
        return _Leaves(*(torch.cat([a, b]) for a, b in zip(
            (self.assignment, self.owner, self.bound, self.next_split, self.alpha, self.beta),
            (other.assignment, other.owner, other.bound, other.next_split, other.alpha, other.beta))))


def tighten_layers(net: ReluMlp, x_lower: torch.Tensor, x_upper: torch.Tensor, root: LayerBounds, budget: Budget,
                   *, leaves: int, max_leaves: int, steps: int, lr: float, alpha_steps: int, max_bytes: int,
                   settled: Callable[[LayerBounds], bool] | None = None) -> tuple[LayerBounds, TightenStats]:
    """`root` (one domain, net's dtype) with layers 1.. tightened by branching, within `budget`.

    Passes over the layers with `leaves` leaves per pair, then four times as many, up to `max_leaves`,
    each pass starting from the bounds the last one left; it stops early when `settled(bounds)` says
    the bounds are good enough (e.g. they prove the property). In a pass each layer gets an equal share
    of what is left of the budget, and α-CROWN (`alpha_steps`) re-bounds the later layers after it.
    The leaves held at once (split assignments, α and β) stay within `max_bytes`.
    Returns the tightened bounds and what it did.
    """
    start = budget.remaining()
    box = InputBox(x_lower.to(net.device, net.dtype), x_upper.to(net.device, net.dtype))
    bounds = root
    before = [int(r.unstable.sum()) for r in root.relaxations]
    stats = TightenStats(before, list(before))
    cap = leaves
    while not budget.expired():
        for layer in range(1, net.depth):
            if budget.expired():
                break
            share = budget.share(1.0 / (net.depth - layer))
            lower, upper, count = _tighten_layer(net, box, bounds, layer, share, cap, steps, lr, max_bytes)
            stats.leaves += count
            bounds = _with_layer(bounds, layer, lower, upper)
            if layer + 1 < net.depth and alpha_steps > 0:
                bounds = optimise_layer_bounds(net, box.lower, box.upper, bounds, steps=alpha_steps, lr=lr,
                                               first=layer + 1)
        stats.passes += 1
        if cap * 4 > max_leaves or (settled is not None and settled(bounds)):
            break
        cap *= 4
    stats.unstable_after = [int(r.unstable.sum()) for r in bounds.relaxations]
    stats.seconds = start - budget.remaining()
    return bounds, stats


def _with_layer(bounds: LayerBounds, layer: int, lower: torch.Tensor, upper: torch.Tensor) -> LayerBounds:
    """`bounds` with layer `layer`'s bounds intersected with (lower, upper) (1, n) and its relaxation rebuilt."""
    lowers, uppers, relaxations = list(bounds.lower), list(bounds.upper), list(bounds.relaxations)
    lowers[layer] = torch.maximum(lowers[layer], lower)
    uppers[layer] = torch.minimum(uppers[layer], upper)
    relaxations[layer] = Relaxation.of(lowers[layer], uppers[layer], bounds.magnitude[layer])
    return LayerBounds(lowers, uppers, list(bounds.magnitude), bounds.infeasible.clone(), relaxations,
                       list(bounds.input_coefficients))


def _tighten_layer(net: ReluMlp, box: InputBox, bounds: LayerBounds, layer: int, budget: Budget, leaves: int,
                   steps: int, lr: float, max_bytes: int) -> tuple[torch.Tensor, torch.Tensor, int]:
    """New (lower, upper) (1, n_layer) of layer `layer` and the number of leaves bounded.

    The unstable neurons go in chunks whose leaves fit `max_bytes`, those nearest to stable (the smaller
    of -l and u, relative to u - l) first, so a budget that runs out leaves the hopeless ones untried.
    """
    lower, upper = bounds.lower[layer].clone(), bounds.upper[layer].clone()
    neurons = bounds.relaxations[layer].unstable[0].nonzero().squeeze(1)
    low, high = lower[0, neurons], upper[0, neurons]
    neurons = neurons[torch.argsort(torch.minimum(-low, high) / (high - low), stable=True)]
    width = sum(int(s) for s in net.hidden_sizes[:layer])
    per_leaf = width * (1 + 2 * torch.finfo(net.dtype).bits // 8) + 64
    chunk = max(1, max_bytes // (2 * leaves * per_leaf))
    bounded = 0
    for start in range(0, neurons.numel(), chunk):
        if budget.expired():
            break
        part = neurons[start : start + chunk]
        found_lower, found_upper, count = _search_pairs(net, box, bounds, layer, part, budget, leaves, steps, lr)
        lower[0, part], upper[0, part] = found_lower, found_upper
        bounded += count
    return lower, upper, bounded


def _search_pairs(net: ReluMlp, box: InputBox, bounds: LayerBounds, layer: int, neurons: torch.Tensor,
                  budget: Budget, leaves: int, steps: int, lr: float) -> tuple[torch.Tensor, torch.Tensor, int]:
    """The split search on both sides of `neurons` of layer `layer`: their new lower and upper bounds
    (never looser than `bounds`') and the number of leaves bounded."""
    lower, upper = bounds.lower[layer].clone(), bounds.upper[layer].clone()
    sizes = [int(s) for s in net.hidden_sizes[:layer]]
    width, device, dtype = sum(sizes), net.device, net.dtype
    pair_neuron = neurons.repeat(2)
    pair_sign = torch.cat([torch.ones_like(neurons), -torch.ones_like(neurons)]).to(dtype)
    pairs = pair_neuron.numel()
    pair_magnitude = bounds.magnitude[layer][0, pair_neuron]
    sibling = torch.arange(pairs, device=device).roll(pairs // 2)
    prefix = LayerBounds(bounds.lower[:layer], bounds.upper[:layer], bounds.magnitude[:layer], bounds.infeasible,
                         bounds.relaxations[:layer])
    start_bound = torch.cat([lower[0, neurons], -upper[0, neurons]])
    alpha0 = torch.cat([r.slope_lo for r in prefix.relaxations], dim=1)
    state = _Leaves(torch.zeros(pairs, width, dtype=torch.int8, device=device),
                    torch.arange(pairs, device=device), start_bound,
                    torch.full((pairs,), -1, dtype=torch.long, device=device),
                    alpha0.expand(pairs, -1).clone(), torch.zeros(pairs, width, dtype=dtype, device=device))
    # the root leaf of every pair: one pass (no optimisation) picks its first split
    state.next_split = _bound(net, box, prefix, layer, pair_neuron, pair_sign, pair_magnitude, state, 0, lr)[1]
    bounded = 0
    while not budget.expired():
        count = torch.bincount(state.owner, minlength=pairs)
        worst = torch.full((pairs,), torch.inf, dtype=dtype, device=device).scatter_reduce(
            0, state.owner, state.bound, reduce="amin")
        # a neuron proven stable on one side needs nothing more on the other
        active = (worst < 0) & (worst[sibling] < 0) & (count < leaves)
        candidate = active[state.owner] & (state.bound == worst[state.owner]) & (state.next_split >= 0)
        # one leaf per pair: the first worst one
        index = torch.arange(state.owner.numel(), device=device)
        pick = torch.full((pairs,), state.owner.numel(), device=device).scatter_reduce(
            0, state.owner[candidate], index[candidate], reduce="amin")
        chosen = pick[pick < state.owner.numel()]
        if chosen.numel() == 0:
            break
        parents = state.keep(chosen)
        children = parents.keep(torch.arange(chosen.numel(), device=device).repeat_interleave(2))
        rows = torch.arange(children.owner.numel(), device=device)
        children.assignment[rows, children.next_split] = torch.tensor(
            [INACTIVE, ACTIVE], dtype=torch.int8, device=device).repeat(chosen.numel())
        value, split_next, alpha, beta = _bound(net, box, prefix, layer, pair_neuron, pair_sign, pair_magnitude,
                                                children, steps, lr)
        children.bound = torch.maximum(children.bound, value)
        children.next_split, children.alpha, children.beta = split_next, alpha, beta
        stay = torch.ones(state.owner.numel(), dtype=torch.bool, device=device)
        stay[chosen] = False
        state = state.keep(stay).extend(children)
        bounded += children.owner.numel()
    worst = torch.full((pairs,), torch.inf, dtype=dtype, device=device).scatter_reduce(
        0, state.owner, state.bound, reduce="amin")
    half = neurons.numel()
    found_lower, found_upper = worst[:half], -worst[half:]
    # a pair whose every leaf is empty would mean an empty box: keep the old bound rather than cross
    lower[0, neurons] = torch.where(torch.isfinite(found_lower), torch.maximum(lower[0, neurons], found_lower),
                                    lower[0, neurons])
    upper[0, neurons] = torch.where(torch.isfinite(found_upper), torch.minimum(upper[0, neurons], found_upper),
                                    upper[0, neurons])
    crossed = lower > upper
    lower, upper = torch.where(crossed, bounds.lower[layer], lower), torch.where(crossed, bounds.upper[layer], upper)
    return lower[0, neurons], upper[0, neurons], bounded


def _bound(net: ReluMlp, box: InputBox, prefix: LayerBounds, layer: int, pair_neuron: torch.Tensor,
           pair_sign: torch.Tensor, pair_magnitude: torch.Tensor, leaves: _Leaves, steps: int, lr: float
           ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Lower bounds (D,) of s·z_{layer,j} on each leaf (+inf where its splits contradict), the neuron each
    leaf should split next (D,; -1 when none is left), and the best α and β (D, N)."""
    sizes = [int(s) for s in net.hidden_sizes[:layer]]
    splits = list(leaves.assignment.split(sizes, dim=1))
    leaf_bounds = restrict(prefix, splits)
    packed = [r.packed for r in leaf_bounds.relaxations]
    neuron, sign = pair_neuron[leaves.owner], pair_sign[leaves.owner]
    lam = (net.weights[layer][neuron] * sign.unsqueeze(1)).unsqueeze(0)
    const = (net.biases[layer][neuron] * sign).unsqueeze(0)
    magnitude = pair_magnitude[leaves.owner].unsqueeze(0)
    alpha = leaves.alpha.clone().unsqueeze(0)
    beta = leaves.beta.clone().unsqueeze(0)

    def evaluate(record: dict | None = None) -> torch.Tensor:
        slopes = [torch.where(r.unstable.unsqueeze(0), a.clamp(0.0, 1.0), r.slope_lo.unsqueeze(0))
                  for r, a in zip(leaf_bounds.relaxations, alpha.split(sizes, dim=2))]
        value, _, _, _ = substitute(net, lam, const, magnitude, layer - 1, packed, box, slopes_lo=slopes,
                                    betas=list(beta.split(sizes, dim=2)), splits=splits, record=record)
        return value[0]

    best = torch.full((leaves.owner.numel(),), -torch.inf, dtype=net.dtype, device=net.device)
    best_alpha, best_beta = alpha.detach()[0].clone(), beta.detach()[0].clone()
    if steps > 0:
        alpha.requires_grad_(True)
        beta.requires_grad_(True)
        optimiser = torch.optim.Adam([alpha, beta], lr=lr)
        with torch.enable_grad():
            for _ in range(steps):
                value = evaluate()
                with torch.no_grad():
                    better = value > best
                    best = torch.where(better, value.detach(), best)
                    best_alpha[better], best_beta[better] = alpha[0, better], beta[0, better].clamp(min=0)
                optimiser.zero_grad(set_to_none=True)
                (-value[torch.isfinite(value)].sum()).backward()
                optimiser.step()
                with torch.no_grad():
                    beta.clamp_(min=0)
        alpha = best_alpha.unsqueeze(0).clone()
        beta = best_beta.unsqueeze(0).clone()
    record: dict[int, torch.Tensor] = {}
    with torch.no_grad():
        best = torch.maximum(best, evaluate(record))
    best = torch.where(leaf_bounds.infeasible, torch.full_like(best, torch.inf), best)
    scores = relu_scores(leaf_bounds, record, torch.ones(best.numel(), 1, dtype=torch.bool, device=best.device),
                         splits)
    top = scores.max(dim=1)
    next_split = torch.where(torch.isfinite(top.values), top.indices, torch.full_like(top.indices, -1))
    return best, next_split, alpha[0], beta[0]

