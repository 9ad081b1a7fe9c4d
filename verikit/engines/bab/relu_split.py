"""Branch and bound by splitting unstable ReLU neurons (for high-dimensional inputs, e.g. MNIST's 784).

The root's hidden bounds are computed once in float64 (forward + CROWN, α-CROWN, then tightened by
branching on earlier neurons, bab.tighten, `relu_tighten_leaves`) and rounded outward to the working
dtype. A domain is a split assignment (ACTIVE / INACTIVE / FREE per hidden neuron); its bound is
α/β-CROWN (`optimise_spec`) on the root bounds tightened by its splits (optionally re-bounded by CROWN
below its latest split, `relu_refine`), warm-started from its parent's α and β (`relu_warm_start`). Rows refuted at the root are left
out of the search (a sub-domain inherits the root's refutation). A domain the working dtype nearly
proves (proven before its rounding allowance only) is re-bounded in float64 with the same α/β, which
are valid at any value. Branching picks, per domain, the free unstable neuron whose upper-relaxation
intercept costs the open rows the most (a BaBSR-like score, "babsr"), or the best of the few top-scored
ones after bounding their children ("fsb", branching.lookahead_choice). Open domains live in a stack
(bab.domains) capped by count (`max_domains`) and bytes (`max_queue_bytes`). With `relu_attack_every` > 0
(off by default: measured in benchmarks/relu_attack_rounds.py), every that many batches one round of the
attack engine searches the whole box with a seed of its own.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from verikit.engines.attack.engine import AttackSettings
from verikit.engines.attack.engine import run as run_attack
from verikit.engines.bab.branching import RELU_BRANCHINGS, lookahead_choice, relu_scores
from verikit.engines.bab.domains import DomainStack, Domains, bytes_per_domain
from verikit.engines.bab.hull import RootHull
from verikit.engines.bab.leaf import prune_with_lp, settle_leaf
from verikit.engines.bab.tighten import TightenStats, tighten_layers
from verikit.engines.bab.common import (
    BabSettings, SearchStats, SpecRows, Validator, minimising_corner, proven, root_disjunct_bounds, unknown,
)
from verikit.engines.crown.propagate import (
    ACTIVE, INACTIVE, InputBox, LayerBounds, Relaxation, ReluMlp, SpecBounds, layer_bounds, round_outward,
    spec_bounds,
)
from verikit.engines.crown.refine import refine_after, restrict, tightest
from verikit.engines.crown.optimise import Multipliers, lower_slopes, optimise_layer_bounds, optimise_spec
from verikit.core.network import Network
from verikit.core.result import Budget, Falsified, Proven, Unknown
from verikit.core.property import Case

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
    seed: int  # the in-search attack's round k takes seed + k
    root_assignment: torch.Tensor | None = None  # (1, N) int8: the hidden pattern's phases, fixed at the root


def root_splits(net: ReluMlp, phases: dict | None) -> list[torch.Tensor] | None:
    """The case's hidden phases ({pwl Relu layer index: (active, inactive)}, verikit.engines.hidden) as split
    assignments (1, n_i) per hidden layer; None without any. Hidden layer h is Relu layer 2h+1."""
    if not phases:
        return None
    splits = []
    for hidden, width in enumerate(net.hidden_sizes):
        split = torch.zeros(1, width, dtype=torch.int8, device=net.device)
        if 2 * hidden + 1 in phases:
            active, inactive = (torch.as_tensor(np.asarray(m, bool)) for m in phases[2 * hidden + 1])
            split[0, active.to(net.device)] = ACTIVE
            split[0, inactive.to(net.device)] = INACTIVE
        splits.append(split)
    return splits


def search(net: ReluMlp, net64: ReluMlp, network: Network, case: Case, spec: SpecRows, budget: Budget,
           settings: BabSettings, seed: int, phases: dict | None = None) -> Proven | Falsified | Unknown:
    """ReLU-splitting branch and bound on one case (finite box, at least one disjunct with rows).

    `net` computes in the working dtype, `net64` is the same network in float64. After the root, each
    disjunct open there gets its own search, most violated first: a disjunct's rows are all a domain
    needs to bound, and easy disjuncts close in shallow trees instead of riding along in the deepest one.
    With `relu_tighten_leaves`, the root's hidden bounds are first tightened by one cheap pass; the search
    gets `relu_probe_share` of the budget on them, and only if it does not finish do later passes (more
    leaves) tighten them further before the search resumes with what is left (refuted disjuncts stay so).
    """
    stats = SearchStats()
    if settings.relu_branching not in RELU_BRANCHINGS:
        return Unknown(f"unknown bab.relu_branching {settings.relu_branching!r} (one of {', '.join(RELU_BRANCHINGS)})")
    validator = Validator(network, case, settings.tolerances)
    x_lower = torch.as_tensor(case.box.lower.copy(), dtype=torch.float64, device=net.device).unsqueeze(0)
    x_upper = torch.as_tensor(case.box.upper.copy(), dtype=torch.float64, device=net.device).unsqueeze(0)
    spec64 = spec.subset(torch.ones_like(spec.owner, dtype=torch.bool), torch.float64)

    fixed = root_splits(net64, phases)
    root64 = optimise_layer_bounds(net64, x_lower, x_upper, layer_bounds(net64, x_lower, x_upper, fixed),
                                   steps=settings.relu_alpha_steps, lr=settings.relu_lr)
    if fixed is not None:
        root64 = restrict(root64, fixed)
        if bool(root64.infeasible.all()):
            return proven("bab-relu", stats, hidden_pattern="infeasible: no input of the box follows it")
    roots = _Roots(net64, x_lower, x_upper, spec64, settings, stats)
    assignment = None if fixed is None else torch.cat(fixed, dim=1).to(net.device)
    decide = functools.partial(_decide, net, net64, spec, spec64, x_lower, x_upper, validator, stats, settings,
                               roots.root_spec, refuted=set(), assignment=assignment, seed=seed)
    leaves = settings.relu_tighten_leaves
    if leaves <= 0 or net64.depth < 2:
        return decide(root64, budget)
    # one cheap tightening pass, a short search on it; only if that search does not finish, more passes
    root64 = roots.tighten(root64, budget, leaves, leaves)
    if 4 * leaves <= settings.relu_tighten_max_leaves:
        outcome = decide(root64, budget.share(settings.relu_probe_share))
        if not (isinstance(outcome, Unknown) and outcome.timed_out) or budget.expired():
            return outcome
        root64 = roots.tighten(root64, budget, 4 * leaves, settings.relu_tighten_max_leaves)
    return decide(root64, budget)


@dataclass(eq=False)
class _Roots:
    """Tightens the root's hidden bounds (bab.tighten) and keeps the summary in the search's stats."""

    net64: ReluMlp
    x_lower: torch.Tensor
    x_upper: torch.Tensor
    spec64: SpecRows
    settings: BabSettings
    stats: SearchStats
    done: TightenStats | None = None
    last: tuple[LayerBounds, SpecBounds, Multipliers] | None = None

    def root_spec(self, bounds: LayerBounds) -> tuple[SpecBounds, Multipliers]:
        """α-CROWN's bounds of the spec rows at the root on hidden bounds `bounds`; the last ones are kept,
        so the check after a tightening pass and the search that follows share one computation."""
        if self.last is None or self.last[0] is not bounds:
            found, params = optimise_spec(self.net64, self.x_lower, self.x_upper, self.spec64.C, self.spec64.d,
                                          bounds, steps=self.settings.relu_alpha_steps, lr=self.settings.relu_lr)
            self.last = (bounds, found, params)
        return self.last[1], self.last[2]

    def settled(self, bounds: LayerBounds) -> bool:
        """Whether the root's bound on `bounds` already refutes every disjunct."""
        return bool((self.spec64.per_disjunct(self.root_spec(bounds)[0].lower) > 0).all())

    def tighten(self, root64: LayerBounds, budget: Budget, leaves: int, max_leaves: int) -> LayerBounds:
        settings = self.settings
        root64, now = tighten_layers(self.net64, self.x_lower, self.x_upper, root64,
                                     budget.share(settings.relu_tighten_share), leaves=leaves, max_leaves=max_leaves,
                                     steps=settings.relu_tighten_steps, lr=settings.relu_lr,
                                     alpha_steps=settings.relu_alpha_steps, max_bytes=settings.max_queue_bytes,
                                     settled=self.settled)
        self.done = now if self.done is None else self.done.then(now)
        self.stats.tightened = self.done.summary()
        return root64


def _decide(net: ReluMlp, net64: ReluMlp, spec: SpecRows, spec64: SpecRows, x_lower: torch.Tensor,
            x_upper: torch.Tensor, validator: Validator, stats: SearchStats, settings: BabSettings,
            root_spec: Callable[[LayerBounds], tuple[SpecBounds, Multipliers]], root64: LayerBounds,
            budget: Budget, *, refuted: set[int], seed: int,
            assignment: torch.Tensor | None = None) -> Proven | Falsified | Unknown:
    """α-CROWN at the root on hidden bounds `root64` (`root_spec`), then a search per disjunct still open,
    within `budget`. Disjuncts in `refuted` (refuted by an earlier call) are skipped; those refuted here are
    added."""
    if assignment is not None:  # a tightening pass may have dropped the pattern's clamps: re-apply them
        root64 = restrict(root64, list(assignment.split(list(net.hidden_sizes), dim=1)))
        if bool(root64.infeasible.all()):
            return proven("bab-relu", stats, hidden_pattern="infeasible: no input of the box follows it")
    root_bounds, root_params = root_spec(root64)
    stats.count(1, 0)
    root = root_disjunct_bounds(root_bounds, spec64, "alpha-crown")
    found = _falsify(net64, spec64, validator, x_lower, x_upper, root_bounds.coeff, root_bounds.lower)
    if found is not None:
        return found
    per = spec64.per_disjunct(root_bounds.lower)[0]
    context = _Search(net, net64, root64, outward(root64, settings.dtype), x_lower, x_upper, validator, stats,
                      settings, budget, seed, assignment)
    # one hidden layer: the input-space hull LP may refute a disjunct the triangle relaxation cannot
    hull = None if assignment is not None else RootHull.of(net64, root64, spec64, x_lower, x_upper, stats,
                                                           settings.relu_hull_max_nonzeros)
    for k in torch.argsort(per).tolist():
        if per[k] > 0 or k in refuted:
            continue
        if hull is not None:
            found, closed = hull.refute(k, budget.share(0.5), validator)
            if found is not None:
                return found
            if closed:
                refuted.add(k)
                continue
        keep = spec.owner == k
        alphas = [a[keep].to(settings.dtype) for a in root_params.alphas]
        outcome = _search_disjunct(context, spec.subset(keep), spec.subset(keep, torch.float64), alphas,
                                   float(per[k]))
        if isinstance(outcome, Falsified):
            return outcome
        if outcome is not None:
            return unknown(f"disjunct {k}: {outcome}", stats.with_replays(validator), root,
                           timed_out=outcome.startswith(TIMED_OUT))
        refuted.add(k)
    return proven("bab-relu", stats.with_replays(validator), dtype=str(settings.dtype).replace("torch.", ""),
                  disjuncts_refuted_at_root=int((per > 0).sum()))


TIMED_OUT = "time budget spent"


def _start(ctx: _Search, batch: Domains, alphas: list[torch.Tensor]) -> Multipliers:
    """The batch's first α/β: the parents' (warm start) or the root's α and β = 0."""
    sizes = list(ctx.net.hidden_sizes)
    if batch.alpha is None:
        return Multipliers([a.expand(-1, batch.size, -1).clone() for a in alphas], None)
    per_layer = [list(t.transpose(0, 1).split(sizes, dim=2)) for t in (batch.alpha, batch.beta)]
    return Multipliers(per_layer[0], per_layer[1])


def _stored(tensors: list[torch.Tensor] | None, index: torch.Tensor) -> torch.Tensor | None:
    """Per-layer multipliers (R, B, n_i) of domains `index`, as (K, R, N) to store with children."""
    if tensors is None:
        return None
    return torch.cat(tensors, dim=2)[:, index].transpose(0, 1)


def _search_disjunct(ctx: _Search, rows: SpecRows, rows64: SpecRows, alphas: list[torch.Tensor],
                     root_bound: float) -> Falsified | str | None:
    """Branch and bound on the rows of one disjunct (its root bound `root_bound`): None when refuted
    everywhere, a counterexample, or the reason it stopped."""
    settings, stats, net = ctx.settings, ctx.stats, ctx.net
    box_lower, box_upper = round_outward(ctx.x_lower, ctx.x_upper, settings.dtype)
    box = InputBox(box_lower, box_upper)
    sizes = list(net.hidden_sizes)
    device = net.device
    layer_ends = torch.tensor(sizes, device=net.device).cumsum(0)
    warm = settings.relu_warm_start
    per_domain = bytes_per_domain(sum(sizes), rows.C.shape[0], warm, torch.finfo(settings.dtype).bits // 8)
    start = torch.zeros(1, sum(sizes), dtype=torch.int8, device=device) if ctx.root_assignment is None \
        else ctx.root_assignment.clone()
    root = Domains(start,
                   torch.zeros(1, dtype=torch.int32, device=device),
                   torch.full((1,), -1, dtype=torch.int16, device=device),
                   torch.full((1,), root_bound, dtype=torch.float64, device=device),
                   _stored(alphas, torch.tensor([0], device=device)) if warm else None,
                   torch.zeros(1, rows.C.shape[0], sum(sizes), dtype=settings.dtype, device=device) if warm else None)
    stack = DomainStack(root)
    stuck = stats.stuck
    while len(stack):
        if ctx.budget.expired():
            return f"{TIMED_OUT}; open domains' lower bound {stack.lowest_bound():.4g}"
        batch = stack.pop(settings.relu_batch_size)
        take = batch.size
        splits = list(batch.assignment.split(sizes, dim=1))
        bounds = restrict(ctx.root_work, splits)
        split_layers = batch.layer[batch.layer >= 0]
        if settings.relu_refine and split_layers.numel():
            bounds = refine_after(net, bounds, splits, box, int(split_layers.min()))
        result, params = optimise_spec(net, box_lower, box_upper, rows.C, rows.d, bounds, splits=splits,
                                       steps=settings.relu_beta_steps, lr=settings.relu_lr,
                                       start=_start(ctx, batch, alphas), use_beta=True,
                                       stop=lambda lower: (rows.per_disjunct(lower) > 0).all())
        stats.count(take, int(batch.depth.max()))
        per = rows.per_disjunct(result.lower)
        done = (per > 0).all(dim=1)
        nearly = ~done & (rows.per_disjunct(result.lower + result.slack) > 0).all(dim=1)
        if bool(nearly.any()):
            base64 = restrict(ctx.root64, splits)
            if settings.relu_refine:
                base64 = tightest(base64, bounds)
            done = done | _recheck(ctx.net64, base64, rows64, ctx.x_lower, ctx.x_upper, splits, params, nearly)
            stats.rechecked += int(nearly.sum())
        open_index = (~done).nonzero().squeeze(1)
        if open_index.numel() == 0:
            continue
        found = _falsify(net, rows, ctx.validator, box_lower, box_upper, result.coeff[open_index],
                         result.lower[open_index])
        if found is None and settings.relu_attack_every > 0 and stats.batches % settings.relu_attack_every == 0:
            found = _attack_round(ctx)
        if found is not None:
            return found
        if settings.lp_max_unstable > 0:
            found, open_index = prune_with_lp(ctx, rows64, splits, open_index, restrict, bounds)
            if found is not None:
                return found
            if open_index.numel() == 0:
                continue
        record: dict[int, torch.Tensor] = {}
        slopes = lower_slopes(bounds, params.alphas)
        with torch.no_grad():
            spec_bounds(net, box_lower, box_upper, rows.C, rows.d, bounds, splits=splits,
                        slopes_lo=slopes, betas=params.betas, record=record)
        scores = relu_scores(bounds, record, result.lower <= 0, splits)[open_index]
        leaves = ~torch.isfinite(scores.max(dim=1).values)
        if bool(leaves.any()):
            found = _settle_leaves(ctx.net64, ctx.root64, rows64, ctx.validator, ctx.x_lower, ctx.x_upper,
                                   [s[open_index[leaves]] for s in splits], stats)
            if found is not None:
                return found
            open_index, scores = open_index[~leaves], scores[~leaves]
            if open_index.numel() == 0:
                continue
        if settings.relu_branching == "fsb":
            neuron = lookahead_choice(
                net, box_lower, box_upper, rows, bounds.select(open_index), [s[open_index] for s in splits],
                [a[:, open_index] for a in params.alphas],
                None if params.betas is None else [b[:, open_index] for b in params.betas],
                scores, settings.fsb_candidates)
        else:
            neuron = scores.argmax(dim=1)
        # worst domains end on top of the stack
        order = torch.argsort(per[open_index].min(dim=1).values, descending=True, stable=True)
        chosen, neuron = open_index[order], neuron[order]
        children = batch.assignment[chosen].repeat_interleave(2, dim=0)
        children[torch.arange(children.shape[0], device=device), neuron.repeat_interleave(2)] = torch.tensor(
            [INACTIVE, ACTIVE], dtype=torch.int8, device=device).repeat(chosen.numel())
        twice = torch.arange(chosen.numel(), device=device).repeat_interleave(2)
        stored = [_stored(params.alphas, chosen), _stored(params.betas, chosen)] if warm else [None, None]
        stored = [None if t is None else t[twice] for t in stored]
        stack.push(Domains(children, (batch.depth[chosen] + 1).repeat_interleave(2),
                           torch.bucketize(neuron, layer_ends, right=True).to(torch.int16).repeat_interleave(2),
                           per[chosen].min(dim=1).values.double().repeat_interleave(2), *stored))
        stats.max_queue = max(stats.max_queue, len(stack))
        if len(stack) > settings.max_domains:
            return f"domain limit reached ({settings.max_domains} open split assignments)"
        if len(stack) * per_domain > settings.max_queue_bytes:
            return (f"open-domain queue full: {len(stack)} domains of {per_domain} bytes exceed "
                    f"bab.max_queue_bytes={settings.max_queue_bytes}")
    if stats.stuck > stuck:
        return f"{stats.stuck - stuck} domains with every neuron fixed stayed undecided"
    return None


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


def _recheck(net64: ReluMlp, bounds64: LayerBounds, rows64: SpecRows, x_lower: torch.Tensor,
             x_upper: torch.Tensor, splits: list[torch.Tensor], params: Multipliers,
             nearly: torch.Tensor) -> torch.Tensor:
    """Re-bound domains `nearly` (B,) in float64 (their bounds `bounds64`, B domains) with the same α/β;
    (B,) True where now proven."""
    index = nearly.nonzero().squeeze(1)
    sub_splits = [s[index] for s in splits]
    bounds = bounds64.select(index)
    alphas = [a[:, index].double() for a in params.alphas]
    betas = None if params.betas is None else [b[:, index].double() for b in params.betas]
    with torch.no_grad():
        again = spec_bounds(net64, x_lower, x_upper, rows64.C, rows64.d, bounds, splits=sub_splits,
                            slopes_lo=lower_slopes(bounds, alphas), betas=betas)
    proven_now = torch.zeros_like(nearly)
    proven_now[index] = (rows64.per_disjunct(again.lower) > 0).all(dim=1)
    return proven_now


def _attack_round(ctx: _Search) -> Falsified | None:
    """One round of the attack engine on the whole box (`relu_attack_restarts` restarts of `relu_attack_steps`
    PGD steps from output-diversified starts, then its Adam polish; measured on rul_like joint_w0 at margin
    0.01: best losses 3e-5 to 8e-3 against 0.03 to 0.04 from uniform starts), each round with a seed of its
    own: a replayed counterexample or None."""
    settings, stats = ctx.settings, ctx.stats
    stats.attack_rounds += 1
    attack = AttackSettings(restarts=settings.relu_attack_restarts, steps=settings.relu_attack_steps, rounds=1,
                            polish_steps=settings.relu_attack_steps, quadattack="off")
    outcome = run_attack(ctx.validator.network, ctx.validator.case, ctx.budget, seed=ctx.seed + stats.attack_rounds,
                         settings=attack, tolerances=settings.tolerances)
    return outcome if isinstance(outcome, Falsified) else None


def _falsify(net: ReluMlp, spec: SpecRows, validator: Validator, x_lower: torch.Tensor, x_upper: torch.Tensor,
             coeff: torch.Tensor, lower_bounds: torch.Tensor) -> Falsified | None:
    """The minimisers of each open domain's worst-disjunct best row, replayed when they violate."""
    row = spec.best_row_of_worst_disjunct(lower_bounds)
    direction = coeff[torch.arange(coeff.shape[0], device=coeff.device), row]
    points = minimising_corner(direction, x_lower.expand_as(direction), x_upper.expand_as(direction))
    with torch.no_grad():
        violation = spec.violation(net.forward(points.to(net.dtype)))
    return validator.first(points, violation)
