"""Branch and bound that splits pre-activation intervals, for MLPs with S-shaped activations (sigmoid, tanh;
ReLU layers may be mixed in).

A domain is an input box plus interval constraints on the hidden pre-activations
(verikit.engines.bab.activation_bounds); the root is the case's box with no constraint. Each batch pops
the newest domains (children of the worst come out first), bounds them in float64, drops those where
every disjunct has a row with a proven lower bound > 0 (or whose constraints leave no point), replays
cheap candidates of the rest through onnxruntime, and splits one interval of each:

- which: the one costing the bound most — for a neuron, the relaxation gap (upper line - lower line on
  its interval) times |coefficient| of its output in the bound of the row that keeps the worst disjunct
  open (a BaBSR-like estimate); for an input coordinate (only with at most
  `BabSettings.input_split_max_dims` inputs), |coefficient| times the box's width along it;
- where (`BabSettings.activation_split`): "midpoint" (default) halves the interval, so both children
  shrink and the chord/tangent gap (which grows with the square of the width) falls to about a quarter;
  "inflection" splits at 0 when 0 lies in the middle half (each side is then convex or concave) and at the
  midpoint otherwise. ReLU neurons are always split at 0 (both sides are then exact), input coordinates
  at the midpoint. Measured in benchmarks/README.md (benchmarks/bench_activation_bab.py).

Bounds are α/β-optimised (verikit.engines.bab.activation_optimise) on the domains plain bounds leave open,
warm-started from the parent's parameters.

The two children together cover the parent (they share the split point), so the union of the open
domains always covers the box. The queue is capped by count (`max_domains`) and by bytes
(`activation_queue_bytes`); either ends the search with Unknown and the reason.
"""

from __future__ import annotations

import torch

from verikit.core.activations import ActivationChain
from verikit.core.network import Network
from verikit.core.property import Case
from verikit.core.result import Budget, DisjunctBounds, Falsified, Proven, Unknown
from verikit.engines.attack.pgd import pgd, uniform_starts
from verikit.engines.bab.activation_bounds import ActivationNet, RowBounds, domain_bounds, row_bounds, select
from verikit.engines.bab.activation_optimise import optimised_rows
from verikit.engines.bab.activation_relax import MIN_WIDTH
from verikit.engines.bab.common import BabSettings, SearchStats, Validator, minimising_corner, proven, unknown
from verikit.engines.bab.input_split import split_at
from verikit.engines.spec_rows import SpecRows

SPLITS = ("inflection", "midpoint")
METHOD = "bab-activation"


class DomainStack:
    """A LIFO of domains: per-neuron constraint intervals (lower, upper: (S,), S = all hidden neurons), the
    depth, and (optionally) the β each domain's parent ended with, (R, 2·S), for warm starts."""

    def __init__(self, size: int, beta_shape: tuple[int, ...] | None, capacity: int = 1024):
        self.fields = {"lower": torch.empty(capacity, size, dtype=torch.float64),
                       "upper": torch.empty(capacity, size, dtype=torch.float64),
                       "depth": torch.empty(capacity, dtype=torch.int32)}
        if beta_shape is not None:
            self.fields["beta"] = torch.empty(capacity, *beta_shape, dtype=torch.float64)
        self.size = 0

    def __len__(self) -> int:
        return self.size

    @property
    def bytes(self) -> int:
        """Bytes the open domains take (not the allocation, which may be up to twice that)."""
        return self.size * sum(t[0].numel() * t.element_size() for t in self.fields.values())

    def push(self, **values: torch.Tensor) -> None:
        count = values["lower"].shape[0]
        capacity = self.fields["lower"].shape[0]
        if self.size + count > capacity:
            capacity = max(2 * capacity, self.size + count)
            for name, old in self.fields.items():
                new = torch.empty((capacity, *old.shape[1:]), dtype=old.dtype)
                new[: self.size] = old[: self.size]
                self.fields[name] = new
        for name, tensor in self.fields.items():
            tensor[self.size : self.size + count] = values[name]
        self.size += count

    def pop(self, count: int) -> dict[str, torch.Tensor]:
        start = max(0, self.size - count)
        taken = {name: tensor[start : self.size].clone() for name, tensor in self.fields.items()}
        self.size = start
        return taken


def search(chain: ActivationChain, network: Network, case: Case, budget: Budget, settings: BabSettings,
           seed: int) -> Proven | Falsified | Unknown:
    """Decide `case` (finite box, at least one disjunct with rows) on `chain`, the translation of `network`."""
    if settings.activation_split not in SPLITS:
        return Unknown(f"unknown activation_split {settings.activation_split!r}; one of {SPLITS}")
    net = ActivationNet.from_chain(chain)
    spec = SpecRows.of(case, torch.float64)
    box_lower = torch.tensor(case.box.lower, dtype=torch.float64).reshape(1, -1)
    box_upper = torch.tensor(case.box.upper, dtype=torch.float64).reshape(1, -1)
    validator = Validator(network, case, settings.tolerances)
    stats = SearchStats()
    generator = torch.Generator().manual_seed(seed)
    found = _attack(net, spec, validator, box_lower, box_upper, None, settings, generator, rounds=4)
    if found is not None:
        return found
    sizes = net.hidden_sizes
    n = net.n_inputs
    # a domain is one flat vector of intervals: the input box's n coordinates, then every hidden neuron
    is_relu = torch.cat([torch.zeros(n, dtype=torch.bool)]
                        + [torch.full((width,), kind == "relu") for width, kind in zip(sizes, net.kinds)])
    is_input = torch.arange(n + sum(sizes)) < n
    split_inputs = n <= settings.input_split_max_dims
    optimise = settings.activation_beta_steps > 0
    stack = DomainStack(n + sum(sizes), (spec.C.shape[0], 4 * sum(sizes)) if optimise else None)
    root_values = {"lower": torch.cat([box_lower, torch.full((1, sum(sizes)), -torch.inf, dtype=torch.float64)], 1),
                   "upper": torch.cat([box_upper, torch.full((1, sum(sizes)), torch.inf, dtype=torch.float64)], 1),
                   "depth": torch.zeros(1, dtype=torch.int32)}
    if optimise:
        root_values["beta"] = torch.cat([torch.zeros(1, spec.C.shape[0], 2 * sum(sizes), dtype=torch.float64),
                                         torch.full((1, spec.C.shape[0], 2 * sum(sizes)), torch.nan,
                                                    dtype=torch.float64)], dim=2)
    stack.push(**root_values)
    root: tuple[DisjunctBounds, ...] = ()
    input_splits = 0
    while len(stack):
        if budget.expired():
            return unknown("time budget spent", stats.with_replays(validator), root, timed_out=True)
        popped = stack.pop(settings.activation_batch_size)
        depth = popped["depth"]
        x_lower, x_upper = popped["lower"][:, :n], popped["upper"][:, :n]
        bounds = domain_bounds(net, x_lower, x_upper, list(popped["lower"][:, n:].split(sizes, dim=1)),
                               list(popped["upper"][:, n:].split(sizes, dim=1)))
        with torch.no_grad():
            rows = row_bounds(net, x_lower, x_upper, bounds, spec.C, spec.d)
        if not root:
            root = _root_bounds(rows.lower, spec)
        stats.count(depth.shape[0], int(depth.max()))
        still_open = ~(spec.per_disjunct(rows.lower) > 0).all(dim=1)
        betas = None
        if optimise and bool(still_open.any()):
            index = still_open.nonzero().squeeze(1)
            better, betas = optimised_rows(net, x_lower[index], x_upper[index], select(bounds, index), spec.C,
                                           spec.d, steps=settings.activation_beta_steps, lr=settings.activation_lr,
                                           start=popped["beta"][index])
            rows = _merged(rows, better, index)
            full = torch.zeros_like(popped["beta"])
            full[index] = betas
            betas = full
        per = spec.per_disjunct(rows.lower)
        still_open = ~(per > 0).all(dim=1)
        if not bool(still_open.any()):
            continue
        index = still_open.nonzero().squeeze(1)
        index = index[torch.argsort(per[index].min(dim=1).values, descending=True, stable=True)]
        row = spec.best_row_of_worst_disjunct(rows.lower[index])
        coeff = rows.coeff[row, index]  # (K, n)
        candidates = minimising_corner(coeff, x_lower[index], x_upper[index])
        found = _attack(net, spec, validator, box_lower, box_upper, candidates, settings, generator,
                        rounds=1 if settings.attack_every and stats.batches % settings.attack_every == 0 else 0)
        if found is not None:
            return found
        lower = torch.cat([x_lower, *bounds.lower], dim=1)[index]
        upper = torch.cat([x_upper, *bounds.upper], dim=1)[index]
        # what each interval costs the bound: the linear bound's spread over an input coordinate, and the
        # relaxation gap of a neuron times its coefficient
        input_cost = coeff.abs() * (upper[:, :n] - lower[:, :n]) if split_inputs else torch.zeros_like(coeff)
        gap = torch.cat([lines.gap(lo, up) for lines, lo, up in zip(bounds.lines, bounds.lower, bounds.upper)],
                        dim=1)[index]
        weight = torch.cat([lam[row, index].abs() for lam in rows.on_layers], dim=1)
        score = torch.cat([input_cost, gap * weight], dim=1)
        score = torch.where(upper - lower > MIN_WIDTH * (1 + lower.abs() + upper.abs()), score,
                            torch.zeros_like(score))
        best = score.max(dim=1)
        splittable = best.values > 0
        stats.stuck += int((~splittable).sum())
        if not bool(splittable.all()):
            return unknown("a domain is left open with no interval worth splitting (its relaxation is exact up to "
                           "rounding, or the coefficients vanish)", stats.with_replays(validator), root)
        input_splits += int(is_input[best.indices].sum())
        child_lower, child_upper = _split(lower, upper, best.indices, is_relu, is_input, settings.activation_split)
        children = {"lower": child_lower, "upper": child_upper, "depth": (depth[index] + 1).repeat_interleave(2)}
        if optimise:  # both children start from the multipliers their parent ended with
            children["beta"] = betas[index].repeat_interleave(2, dim=0)
        stack.push(**children)
        stats.max_queue = max(stats.max_queue, len(stack))
        if len(stack) > settings.max_domains:
            return unknown(f"domain limit reached ({settings.max_domains} open domains)",
                           stats.with_replays(validator), root)
        if stack.bytes > settings.activation_queue_bytes:
            return unknown(f"open-domain queue over its memory cap ({stack.bytes} > "
                           f"{settings.activation_queue_bytes} bytes, {len(stack)} domains)",
                           stats.with_replays(validator), root)
    return proven(METHOD, stats.with_replays(validator), dtype="float64", split=settings.activation_split,
                  input_splits=input_splits)


def _split(lower: torch.Tensor, upper: torch.Tensor, neuron: torch.Tensor, is_relu: torch.Tensor,
           is_input: torch.Tensor, how: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Children (2K, n+S) of domains (K, n+S) split at one interval each (input coordinates at the
    midpoint); the two children of one adjacent."""
    rows = torch.arange(lower.shape[0])
    lo, up = lower[rows, neuron], upper[rows, neuron]
    point = (lo + up) / 2
    quarter = (up - lo) / 4
    at_zero = (lo < 0) & (up > 0)
    if how == "inflection":
        at_zero = at_zero & ((lo + quarter <= 0) & (up - quarter >= 0) | is_relu[neuron])
    else:
        at_zero = at_zero & is_relu[neuron]
    point = torch.where(at_zero & ~is_input[neuron], torch.zeros_like(point), point)
    return split_at(lower, upper, neuron, point)


def _attack(net: ActivationNet, spec: SpecRows, validator: Validator, box_lower: torch.Tensor,
            box_upper: torch.Tensor, candidates: torch.Tensor | None, settings: BabSettings,
            generator: torch.Generator, rounds: int) -> Falsified | None:
    """Replay the candidates (K, n) and the best points of `rounds` rounds of PGD in the box."""
    starts = [box_lower + (box_upper - box_lower) / 2] if candidates is None else [candidates]
    with torch.no_grad():
        points = torch.cat(starts)
        found = validator.first(points, spec.violation(net.forward(points)))
    if found is not None or rounds <= 0:
        return found
    restarts = max(1, settings.attack_restarts) * 8
    lo, hi = box_lower.expand(restarts, -1), box_upper.expand(restarts, -1)
    for _ in range(rounds):
        starts = uniform_starts(lo, hi, generator)
        if candidates is not None:
            starts[: min(restarts // 2, candidates.shape[0])] = candidates[: restarts // 2]
        result = pgd(lambda x, _rows: spec.violation(net.forward(x)), starts, lo, hi,
                     steps=4 * settings.attack_steps, fraction=0.25, scale=hi - lo)
        found = validator.first(result.best_x, result.best_loss, best=2)
        if found is not None:
            return found
    return None


def _merged(rows: RowBounds, better: RowBounds, index: torch.Tensor) -> RowBounds:
    """`rows` with the domains `index` replaced by `better` (bounds of those domains only)."""
    lower, coeff = rows.lower.clone(), rows.coeff.clone()
    lower[index] = torch.maximum(lower[index], better.lower)
    coeff[:, index] = better.coeff
    on_layers = []
    for full, part in zip(rows.on_layers, better.on_layers):
        full = full.clone()
        full[:, index] = part.expand(-1, index.shape[0], -1)
        on_layers.append(full)
    return RowBounds(lower, coeff, on_layers)


def _root_bounds(lower: torch.Tensor, spec: SpecRows) -> tuple[DisjunctBounds, ...]:
    values = lower[0].numpy()
    owner = spec.owner.numpy()
    return tuple(DisjunctBounds(values[owner == k].copy(), METHOD) for k in range(spec.count))
