"""Linear programs on small domains of ReLU branching (scipy's HiGHS).

A domain is a split assignment; on its polytope {x in box : split constraints} the network is affine
except at the few neurons its bounds leave unstable. One LP per open disjunct over variables (x, a_j for
each free unstable neuron j, t) — the exact network where neurons are fixed, the triangle relaxation
(a_j >= 0, a_j >= z_j, a_j <= chord) where they are not — minimises t subject to C_k y - d_k <= t:

- t* > 0: its duals give row weights λ, split multipliers β and, per free neuron, the share of its two
  lower faces (α); a float64 CROWN pass with exactly those multipliers (its own rounding allowance)
  must come out > 0 before the disjunct counts as refuted. The LP's own word never proves anything.
- t* <= 0: the x part of its minimiser is a counterexample candidate (exact when no neuron is free),
  still replayed through onnxruntime before it counts.

With no free neuron (a leaf) this decides the domain; with a few (<= BabSettings.lp_max_unstable) it
may refute a domain that α/β-CROWN's few gradient steps leave open, saving the subtree below it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from verikit.engines.bab.common import SpecRows, Validator
from verikit.engines.crown.propagate import ACTIVE, INACTIVE, LayerBounds, Relaxation, ReluMlp, spec_bounds
from verikit.core.result import Budget, Falsified


@dataclass(frozen=True)
class DomainLp:
    """One domain's pieces over variables v = (x, a_free), float64: the output y = A v + c, and the
    constraints G v <= h, whose rows are the split constraints (`split_rows`, in layer then neuron
    order) and three per free neuron (`free_rows` (m, 3): a >= 0, a >= z, a <= chord)."""

    A: np.ndarray
    c: np.ndarray
    G: np.ndarray
    h: np.ndarray
    split_rows: np.ndarray
    free_rows: np.ndarray
    free: list[np.ndarray]  # per hidden layer, bool (n_i,): the free unstable neurons
    n_inputs: int


def domain_lp(net: ReluMlp, bounds: LayerBounds, splits: list[torch.Tensor]) -> DomainLp:
    """The LP pieces of one domain (batch 1; bounds already tightened by its splits)."""
    free = [((lo[0] < 0) & (up[0] > 0) & (s[0] == 0)).cpu().numpy()
            for lo, up, s in zip(bounds.lower, bounds.upper, splits)]
    n, m = net.n_inputs, int(sum(f.sum() for f in free))
    A, c = np.hstack([np.eye(n), np.zeros((n, m))]), np.zeros(n)
    split_G, split_h, free_G, free_h = [], [], [], []
    column = n
    for i in range(net.depth):
        W = net.weights[i].detach().double().cpu().numpy()
        A, c = W @ A, W @ c + net.biases[i].detach().double().cpu().numpy()
        split = splits[i][0].cpu().numpy()
        lower = bounds.lower[i][0].double().cpu().numpy()
        upper = bounds.upper[i][0].double().cpu().numpy()
        constrained = split != 0
        # active: z >= 0  ⇔  -A v <= c;  inactive: z <= 0  ⇔  A v <= -c
        sign = np.where(split == ACTIVE, -1.0, 1.0)[constrained]
        split_G.append(sign[:, None] * A[constrained])
        split_h.append(-sign * c[constrained])
        post_A, post_c = np.zeros_like(A), np.zeros_like(c)
        active = (split == ACTIVE) | ((split != INACTIVE) & (lower >= 0) & ~free[i])
        post_A[active], post_c[active] = A[active], c[active]
        for j in np.flatnonzero(free[i]):
            unit = np.zeros(A.shape[1])
            unit[column] = 1.0
            chord = upper[j] / (upper[j] - lower[j])
            free_G.extend([-unit, A[j] - unit, unit - chord * A[j]])
            free_h.extend([0.0, -c[j], chord * (c[j] - lower[j])])
            post_A[j] = unit
            column += 1
        A, c = post_A, post_c
    W = net.weights[-1].detach().double().cpu().numpy()
    A, c = W @ A, W @ c + net.biases[-1].detach().double().cpu().numpy()
    G_split = np.vstack(split_G) if split_G else np.zeros((0, n + m))
    G = np.vstack([G_split, np.array(free_G).reshape(-1, n + m)])
    h = np.concatenate([np.concatenate(split_h) if split_h else np.zeros(0), np.array(free_h)])
    s = G_split.shape[0]
    return DomainLp(A, c, G, h, np.arange(s), np.arange(s, s + 3 * m).reshape(m, 3), free, n)


def settle_leaf(net64: ReluMlp, bounds64: LayerBounds, splits: list[torch.Tensor], spec64: SpecRows,
                x_lower: torch.Tensor, x_upper: torch.Tensor,
                time_limit: float | None = None) -> tuple[list[np.ndarray], bool]:
    """One domain (batch 1, float64 bounds): counterexample candidates and whether it is refuted (sound).

    Per disjunct k, the LP  min t  s.t.  C_k y(v) - d_k <= t, G v <= h, x in box. When t* <= 0 its
    minimiser's x is a candidate. Otherwise its duals give row weights λ (summing to 1), multipliers β
    of the split constraints and α of the free neurons; max over rows >= the λ-combination, so a float64
    CROWN pass on the combined row with those multipliers that comes out > 0 refutes the disjunct.
    `time_limit` (s) caps each LP (HiGHS stops; the disjunct then stays open).
    """
    from scipy.optimize import linprog  # scipy.optimize takes 0.15-0.3 s to import; most runs need no LP

    lo, hi = x_lower[0].double().cpu().numpy(), x_upper[0].double().cpu().numpy()
    lp = domain_lp(net64, bounds64, splits)
    m = lp.free_rows.shape[0]
    C, d, owner = spec64.C.cpu().numpy(), spec64.d.cpu().numpy(), spec64.owner.cpu().numpy()
    variables = lp.A.shape[1]
    box = list(zip(lo, hi)) + [(None, None)] * m + [(None, None)]
    candidates, refuted = [], True
    for k in range(spec64.count):
        rows = owner == k
        M = C[rows] @ lp.A
        ub = np.vstack([np.hstack([M, -np.ones((M.shape[0], 1))]), np.hstack([lp.G, np.zeros((lp.G.shape[0], 1))])])
        rhs = np.concatenate([d[rows] - C[rows] @ lp.c, lp.h])
        cost = np.zeros(variables + 1)
        cost[-1] = 1.0
        options = {} if time_limit is None or not np.isfinite(time_limit) else {"time_limit": max(0.01, time_limit)}
        result = linprog(cost, A_ub=ub, b_ub=rhs, bounds=box, method="highs", options=options)
        if result.status == 2 and m == 0:  # the polytope is empty: refute with a multiple of its Farkas weights
            refuted = refuted and _refute_empty(net64, bounds64, splits, spec64, k, lp.G, lp.h, x_lower, x_upper)
            continue
        if result.status != 0:
            refuted = False
            continue
        if result.fun <= 0:
            candidates.append(result.x[: lp.n_inputs])
            refuted = False
            continue
        duals = np.maximum(-result.ineqlin.marginals, 0.0)
        weights, constraint_duals = duals[: M.shape[0]], duals[M.shape[0]:]
        combined_C = torch.tensor(weights @ C[rows], device=net64.device).unsqueeze(0)
        combined_d = torch.tensor([weights @ d[rows]], device=net64.device)
        with torch.no_grad():
            bound = spec_bounds(net64, x_lower.double(), x_upper.double(), combined_C, combined_d, bounds64,
                                splits=splits, betas=_per_layer(constraint_duals[lp.split_rows], splits),
                                slopes_lo=_free_slopes(bounds64, lp, constraint_duals))
        refuted = refuted and bool(bound.lower[0, 0] > 0)
    return candidates, refuted


def _free_slopes(bounds64: LayerBounds, lp: DomainLp, duals: np.ndarray) -> list[torch.Tensor] | None:
    """Lower slopes (1, 1, n_i) per layer: on free neurons the LP's share μ(a >= z) / (μ(a >= 0) + μ(a >= z))
    of its two lower faces (a Lagrangian reading of the triangle relaxation), elsewhere CROWN's own."""
    if lp.free_rows.shape[0] == 0:
        return None
    faces = duals[lp.free_rows]  # (m, 3)
    total = faces[:, 0] + faces[:, 1]
    alpha = np.where(total > 0, faces[:, 1] / np.where(total > 0, total, 1.0), 0.0)
    slopes, start = [], 0
    for relax, free in zip(bounds64.relaxations, lp.free):
        slope = relax.slope_lo[0].clone()
        count = int(free.sum())
        slope[torch.as_tensor(free, device=slope.device)] = torch.tensor(alpha[start : start + count],
                                                                         dtype=slope.dtype, device=slope.device)
        start += count
        slopes.append(slope.reshape(1, 1, -1))
    return slopes


def _refute_empty(net64: ReluMlp, bounds64: LayerBounds, splits: list[torch.Tensor], spec64: SpecRows, k: int,
                  G: np.ndarray, h: np.ndarray, x_lower: torch.Tensor, x_upper: torch.Tensor) -> bool:
    """Disjunct k on an empty leaf: min over the box of max_j (G x - h)_j = s* > 0 has dual weights μ
    (Σμ = 1) with μ·(G x - h) >= s* on the box, so row + M·μ·(split constraints) is positive for M large;
    a float64 CROWN pass with β = M·μ checks that soundly."""
    from scipy.optimize import linprog

    lo, hi = x_lower[0].double().cpu().numpy(), x_upper[0].double().cpu().numpy()
    n = G.shape[1]
    cost = np.zeros(n + 1)
    cost[-1] = 1.0
    phase = linprog(cost, A_ub=np.hstack([G, -np.ones((G.shape[0], 1))]), b_ub=h,
                    bounds=list(zip(lo, hi)) + [(None, None)], method="highs")
    if phase.status != 0 or phase.fun <= 0:
        return False
    weights = np.maximum(-phase.ineqlin.marginals, 0.0)
    row = int((spec64.owner.cpu() == k).nonzero()[0, 0])
    C, d = spec64.C[row : row + 1], spec64.d[row : row + 1]
    with torch.no_grad():
        plain = spec_bounds(net64, x_lower.double(), x_upper.double(), C, d, bounds64).lower[0, 0]
        scale = 2.0 * (1.0 + abs(float(plain))) / phase.fun
        bound = spec_bounds(net64, x_lower.double(), x_upper.double(), C, d, bounds64, splits=splits,
                            betas=_per_layer(scale * weights, splits))
    return bool(bound.lower[0, 0] > 0)


def _per_layer(multipliers: np.ndarray, splits: list[torch.Tensor]) -> list[torch.Tensor]:
    """Split-constraint multipliers (in DomainLp order) as β tensors (1, 1, n_i) per layer."""
    betas, start = [], 0
    for split in splits:
        constrained = (split[0] != 0).cpu().numpy()
        beta = np.zeros(constrained.size)
        beta[constrained] = multipliers[start : start + int(constrained.sum())]
        start += int(constrained.sum())
        betas.append(torch.tensor(beta, device=split.device).reshape(1, 1, -1))
    return betas


def settle_small(net64: ReluMlp, bounds64: LayerBounds, splits: list[torch.Tensor], spec64: SpecRows,
                 validator: Validator, x_lower: torch.Tensor, x_upper: torch.Tensor, limit: int,
                 budget: Budget) -> tuple[Falsified | None, torch.Tensor, int]:
    """LPs on the domains (B, float64 bounds) with 1..`limit` free unstable neurons: a replayed
    counterexample or None, the domains refuted (B,) bool, and how many LPs ran. Stops when the budget
    is spent (the rest stay open)."""
    free = sum(((lo < 0) & (up > 0) & (s == 0)).sum(dim=1) for lo, up, s in zip(bounds64.lower, bounds64.upper, splits))
    refuted = torch.zeros(free.shape[0], dtype=torch.bool)
    small = ((free >= 1) & (free <= limit) & ~bounds64.infeasible.cpu()).nonzero().squeeze(1).tolist()
    solved = 0
    for b in small:
        if budget.expired():
            break
        index = torch.tensor([b], device=bounds64.lower[0].device)
        one = [s[b : b + 1] for s in splits]
        candidates, refuted_b = settle_leaf(net64, bounds64.select(index), one, spec64, x_lower, x_upper,
                                            time_limit=budget.remaining())
        solved += 1
        refuted[b] = refuted_b
        if candidates:
            points = torch.tensor(np.stack(candidates), dtype=torch.float64, device=x_lower.device)
            with torch.no_grad():
                violation = spec64.violation(net64.forward(points))
            found = validator.first(points.cpu(), violation.cpu())
            if found is not None:
                return found, refuted, solved
    return None, refuted, solved


def prune_with_lp(ctx, rows64: SpecRows, splits: list[torch.Tensor], open_index: torch.Tensor, restrict,
                  bounds: LayerBounds | None = None) -> tuple[Falsified | None, torch.Tensor]:
    """The call site of relu_split's search (`ctx` its _Search): LPs on the open domains `open_index` with
    at most `settings.lp_max_unstable` free neurons; a counterexample, or the domains still open.
    `restrict(root, splits)` tightens the root's bounds by splits (relu_split.restrict); `bounds`, the
    batch's own sound bounds (any dtype, e.g. refined after the splits), tighten them further."""
    # a split only clamps its own neuron's bounds, so the free neurons are counted on the root's bounds
    # (and the batch's own) without building a LayerBounds per domain
    root = ctx.root64
    lowers, uppers = list(root.lower), list(root.upper)
    if bounds is not None:
        lowers = [torch.maximum(lo, b[open_index].double()) for lo, b in zip(lowers, bounds.lower)]
        uppers = [torch.minimum(up, b[open_index].double()) for up, b in zip(uppers, bounds.upper)]
    free = sum(((lo < 0) & (up > 0) & (s[open_index] == 0)).sum(dim=1)
               for lo, up, s in zip(lowers, uppers, splits))
    small = (free <= ctx.settings.lp_max_unstable).nonzero().squeeze(1)
    if small.numel() == 0:
        return None, open_index
    chosen = open_index[small]
    chosen_splits = [s[chosen] for s in splits]
    clipped = restrict(root, chosen_splits)
    if bounds is not None:
        clipped = _tightened(clipped, [lo[small] for lo in lowers], [up[small] for up in uppers])
    found, refuted, solved = settle_small(ctx.net64, clipped, chosen_splits, rows64, ctx.validator, ctx.x_lower,
                                          ctx.x_upper, ctx.settings.lp_max_unstable, ctx.budget)
    ctx.stats.lp_domains += solved
    ctx.stats.lp_refuted += int(refuted.sum())
    keep = torch.ones(open_index.shape[0], dtype=torch.bool, device=open_index.device)
    keep[small[refuted.to(small.device)]] = False
    return found, open_index[keep]


def _tightened(bounds: LayerBounds, lowers: list[torch.Tensor], uppers: list[torch.Tensor]) -> LayerBounds:
    """`bounds` (float64, B domains) intersected with other sound bounds (B, n_i) of the same domains."""
    lower = [torch.maximum(lo, other) for lo, other in zip(bounds.lower, lowers)]
    upper = [torch.minimum(up, other) for up, other in zip(bounds.upper, uppers)]
    infeasible = bounds.infeasible.clone()
    for lo, up in zip(lower, upper):
        infeasible |= (lo > up).any(dim=1)
    relaxations = [Relaxation.of(lo, up, m) for lo, up, m in zip(lower, upper, bounds.magnitude)]
    return LayerBounds(lower, upper, list(bounds.magnitude), infeasible, relaxations)
