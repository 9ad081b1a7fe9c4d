"""The convex hull of every ReLU of a one-hidden-layer network over the input box, as one LP.

CROWN and the triangle LP relax relu(z) through z = a·x + b alone: from above by the chord over [l, u].
Over the box B of its inputs the graph {(x, relu(a·x + b)) : x in B} has a much tighter convex hull,
the union of its two linear pieces (Balas): copies x¹ and λ with

    λ·L <= x¹ <= λ·U,   (1-λ)·L <= x - x¹ <= (1-λ)·U,   a·x¹ + bλ >= 0 >= a·(x - x¹) + b(1-λ),

and relu = a·x¹ + bλ, where x¹ and L, U run over the neuron's own inputs only (the coordinates its
weight row touches). On a network with one hidden ReLU layer (a convolution, then pooling and dense
layers: affine after the ReLUs) whose neurons see few inputs each, this LP is close to the exact minimum
where the triangle relaxation, and α-CROWN, which reaches it on one layer, are not: on verivital's
avg-pool net at ε = 0.04 the worst disjunct's triangle bound is -0.44, the hull's +0.50 (exact, by a
MILP: +0.51).

Soundness: HiGHS supplies numbers only. Its duals, the disjunct's row weights w >= 0 and the hull
constraints' multipliers μ >= 0, enter the Lagrangian bound

    w·(C y(v) - d) >= min over the variables' box of (g + Gᵀμ)·v + g0 - μ·h,

which holds for any w, μ >= 0 because every variable is bounded (Neumaier and Shcherbina, 2004). It is
computed in float64 midpoint-radius interval arithmetic (`_Interval`), from the network's weights and
the box as they are: every constraint's data is a copy of those numbers, never a product of them. When
it comes out > 0, some row of the disjunct is > 0 everywhere in the box: the disjunct is refuted. When
the LP's minimum is <= 0, the x of its minimiser is a counterexample candidate, replayed like any other.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np
import torch

from verikit.engines.bab.common import SearchStats, SpecRows, Validator
from verikit.engines.crown.propagate import LayerBounds, ReluMlp
from verikit.core.result import Budget, Falsified

UNIT = 2.0 ** -53  # float64 unit roundoff


def _gamma(terms: int) -> float:
    """γ_k = k·u / (1 - k·u): the relative error of a float64 sum of k products."""
    k = terms * UNIT
    return k / (1.0 - k)


@dataclass(frozen=True)
class _Interval:
    """Reals known to lie in [mid - rad, mid + rad] (float64 arrays of one shape; rad >= 0)."""

    mid: np.ndarray
    rad: np.ndarray

    @classmethod
    def exact(cls, values: np.ndarray) -> "_Interval":
        values = np.asarray(values, dtype=np.float64)
        return cls(values, np.zeros_like(values))

    def times(self, matrix) -> "_Interval":
        """matrix (exact numbers, dense or scipy sparse, (p, q)) applied to this (q,) vector: (p,)."""
        import scipy.sparse as sparse

        absolute = abs(matrix)
        if sparse.issparse(matrix):
            terms = int(np.diff(sparse.csr_matrix(matrix).indptr).max(initial=0)) + 1
        else:
            terms = matrix.shape[1] + 1
        mid = np.asarray(matrix @ self.mid, dtype=np.float64).ravel()
        rad = np.asarray(absolute @ self.rad + _gamma(terms) * (absolute @ np.abs(self.mid)),
                         dtype=np.float64).ravel()
        return _Interval(mid, _inflate(rad, terms))

    def plus(self, other: "_Interval") -> "_Interval":
        mid = self.mid + other.mid
        return _Interval(mid, _inflate(self.rad + other.rad + UNIT * np.abs(mid), 3))

    def dot(self, values: np.ndarray) -> "_Interval":
        """Σ this · values (exact numbers) as a scalar interval."""
        return self.times(np.asarray(values, dtype=np.float64)[None, :])

    def lower_end(self) -> float:
        """A number <= every sum of the entries' reals."""
        low = float(np.sum(self.mid - self.rad))
        return _round_down(low, self.mid.size + 2, float(np.sum(np.abs(self.mid) + self.rad)))


def _inflate(rad: np.ndarray, terms: int) -> np.ndarray:
    """A radius computed in float64 (k operations per entry), made an upper bound of the exact one."""
    return rad * (1.0 + 2.0 * _gamma(terms + 2)) + terms * np.finfo(np.float64).tiny


def _round_down(value: float, terms: int, magnitude: float) -> float:
    """A number <= the exact sum that `value` (k terms of total magnitude `magnitude`) approximates."""
    return value - 2.0 * _gamma(terms + 2) * magnitude - terms * np.finfo(np.float64).tiny


def box_minimum(coefficients: _Interval, lower: np.ndarray, upper: np.ndarray) -> float:
    """A number <= min over v in [lower, upper] of c·v, for every c in `coefficients`."""
    low, high = coefficients.mid - coefficients.rad, coefficients.mid + coefficients.rad
    low = np.nextafter(low, -np.inf)
    high = np.nextafter(high, np.inf)
    terms = np.minimum(np.minimum(low * lower, low * upper), np.minimum(high * lower, high * upper))
    # each product is within one rounding of its exact value: count it as a term of the sum
    return _round_down(float(terms.sum()), 2 * terms.size, float(np.abs(terms).sum()))


@dataclass(frozen=True)
class HullLp:
    """The LP of one hidden layer over variables v = (x, x¹ per unstable neuron, λ per unstable neuron).

    The hidden post-activations are h(v) = H v + h0 (active neurons: their affine function of x;
    unstable ones: a·x¹ + bλ; inactive ones: 0), the outputs y = W h(v) + b; the hull constraints are
    G v <= h with v in [v_lower, v_upper]. G, h, H and h0 hold copies of the weights and box bounds."""

    H: "scipy.sparse.csr_matrix"
    h0: np.ndarray
    W: np.ndarray
    b: np.ndarray
    G: "scipy.sparse.csr_matrix"
    h: np.ndarray
    v_lower: np.ndarray
    v_upper: np.ndarray
    n_inputs: int
    unstable: int


def hull_size(net64: ReluMlp, bounds64: LayerBounds) -> int:
    """Nonzeros of G that `hull_lp` would build (about 10 per weight of an unstable neuron)."""
    weight = net64.weights[0]
    unstable = ((bounds64.lower[0][0] < 0) & (bounds64.upper[0][0] > 0)).cpu()
    return int(10 * (weight.detach().cpu()[unstable] != 0).sum() + 4 * int(unstable.sum()))


def hull_lp(net64: ReluMlp, bounds64: LayerBounds, x_lower: np.ndarray, x_upper: np.ndarray) -> HullLp:
    """The hull LP of a one-hidden-layer ReluMlp (float64) on the box, with the root's sound bounds
    `bounds64` (batch 1) deciding which neurons are active, inactive or unstable."""
    import scipy.sparse as sparse  # scipy loads only for runs that reach a hull LP

    if net64.depth != 1:
        raise ValueError("the hull LP takes one hidden ReLU layer")
    A = net64.weights[0].detach().double().cpu().numpy()
    a0 = net64.biases[0].detach().double().cpu().numpy()
    lower = bounds64.lower[0][0].double().cpu().numpy()
    upper = bounds64.upper[0][0].double().cpu().numpy()
    n = A.shape[1]
    active = lower >= 0
    unstable = np.flatnonzero((lower < 0) & (upper > 0))
    supports = [np.flatnonzero(A[j]) for j in unstable]
    sizes = np.array([s.size for s in supports], dtype=np.int64)
    x1_start = n + np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)
    lam = n + int(sizes.sum()) + np.arange(unstable.size)
    variables = n + int(sizes.sum()) + unstable.size

    H_rows, H_cols, H_vals = [], [], []
    for j in np.flatnonzero(active):
        cols = np.flatnonzero(A[j])
        H_rows.append(np.full(cols.size, j))
        H_cols.append(cols)
        H_vals.append(A[j, cols])
    h0 = np.where(active, a0, 0.0)
    rows, cols, vals, rhs = [], [], [], []
    count = 0

    def add(row_cols: list[np.ndarray], row_vals: list[np.ndarray], bound: np.ndarray) -> None:
        """Constraints `len(bound)` at once: row i has entries (row_cols[t][i], row_vals[t][i])."""
        nonlocal count
        k = bound.size
        for c, v in zip(row_cols, row_vals):
            rows.append(count + np.arange(k))
            cols.append(np.broadcast_to(c, (k,)))
            vals.append(np.broadcast_to(v, (k,)))
        rhs.append(bound)
        count += k

    for t, j in enumerate(unstable):
        s = supports[t]
        x1 = x1_start[t] + np.arange(s.size)
        lt = lam[t]
        a, bias = A[j, s], a0[j]
        L, U = x_lower[s], x_upper[s]
        one, zero = np.ones(s.size), np.zeros(s.size)
        add([x1, lt], [one, -U], zero)  # x¹ <= λU
        add([x1, lt], [-one, L], zero)  # x¹ >= λL
        add([s, x1, lt], [one, -one, U], U)  # x - x¹ <= (1-λ)U
        add([s, x1, lt], [-one, one, -L], -L)  # x - x¹ >= (1-λ)L
        rows.append(np.full(s.size + 1, count))
        cols.append(np.concatenate([x1, [lt]]))
        vals.append(np.concatenate([-a, [-bias]]))
        rhs.append(np.zeros(1))
        count += 1  # a·x¹ + bλ >= 0
        rows.append(np.full(2 * s.size + 1, count))
        cols.append(np.concatenate([s, x1, [lt]]))
        vals.append(np.concatenate([a, -a, [-bias]]))
        rhs.append(np.array([-bias]))
        count += 1  # a·(x - x¹) + b(1-λ) <= 0
        H_rows.append(np.full(s.size + 1, j))
        H_cols.append(np.concatenate([x1, [lt]]))
        H_vals.append(np.concatenate([a, [bias]]))

    def stack(parts: list[np.ndarray], dtype) -> np.ndarray:
        return np.concatenate(parts).astype(dtype) if parts else np.zeros(0, dtype=dtype)

    G = sparse.csr_matrix((stack(vals, np.float64), (stack(rows, np.int64), stack(cols, np.int64))),
                          shape=(count, variables))
    H = sparse.csr_matrix((stack(H_vals, np.float64), (stack(H_rows, np.int64), stack(H_cols, np.int64))),
                          shape=(A.shape[0], variables))
    # x¹ of an unstable neuron lies in λ·[L, U] with λ in [0, 1]: inside [min(0, L), max(0, U)]
    x1_lower = np.concatenate([np.minimum(0.0, x_lower[s]) for s in supports]) if supports else np.zeros(0)
    x1_upper = np.concatenate([np.maximum(0.0, x_upper[s]) for s in supports]) if supports else np.zeros(0)
    v_lower = np.concatenate([x_lower, x1_lower, np.zeros(unstable.size)])
    v_upper = np.concatenate([x_upper, x1_upper, np.ones(unstable.size)])
    W = net64.weights[1].detach().double().cpu().numpy()
    b = net64.biases[1].detach().double().cpu().numpy()
    return HullLp(H, h0, W, b, G, stack(rhs, np.float64), v_lower, v_upper, n, int(unstable.size))


def lagrangian_bound(lp: HullLp, C: np.ndarray, d: np.ndarray, weights: np.ndarray, mu: np.ndarray) -> float:
    """A number <= min over the LP's feasible set of weights·(C y(v) - d), for any weights, mu >= 0
    (rigorous: float64 interval arithmetic on exact data)."""
    weights, mu = np.maximum(weights, 0.0), np.maximum(mu, 0.0)
    e = _Interval.exact(weights).times(np.ascontiguousarray(C.T))  # Cᵀw (n_out,)
    q = e.times(np.ascontiguousarray(lp.W.T))  # Wᵀe (n_hidden,)
    g = q.times(lp.H.T.tocsr())  # Hᵀq (variables,)
    r = g.plus(_Interval.exact(mu).times(lp.G.T.tocsr()))
    constant = q.dot(lp.h0).plus(e.dot(lp.b)).plus(_Interval.exact(-weights).dot(d)).plus(
        _Interval.exact(-mu).dot(lp.h))
    linear = box_minimum(r, lp.v_lower, lp.v_upper)
    const = constant.lower_end()
    return _round_down(linear + const, 2, abs(linear) + abs(const))


@dataclass(frozen=True)
class HullOutcome:
    """One disjunct's hull LP: `lower` a sound lower bound of its rows' maximum (None: no bound; see
    `reason`), the LP's own value, a counterexample candidate x (when the LP's minimum is <= 0), seconds."""

    lower: float | None
    value: float | None
    candidate: np.ndarray | None
    seconds: float
    reason: str = ""

    @property
    def refuted(self) -> bool:
        return self.lower is not None and self.lower > 0


def refute_disjunct(lp: HullLp, C: np.ndarray, d: np.ndarray, budget: Budget) -> HullOutcome:
    """min t s.t. C y(v) - d <= t, G v <= h, v in its box (HiGHS); its duals then give the sound bound."""
    import scipy.sparse as sparse
    from scipy.optimize import linprog  # 0.15-0.3 s to import: only runs that reach a hull LP pay it

    started = time.perf_counter()
    M = sparse.csr_matrix(C @ lp.W) @ lp.H  # rows of C y(v) in v (numbers for HiGHS only)
    offset = C @ (lp.W @ lp.h0 + lp.b) - d
    rows = C.shape[0]
    ub = sparse.vstack([sparse.hstack([M, -np.ones((rows, 1))]),
                        sparse.hstack([lp.G, sparse.csr_matrix((lp.G.shape[0], 1))])]).tocsr()
    rhs = np.concatenate([-offset, lp.h])
    cost = np.zeros(ub.shape[1])
    cost[-1] = 1.0
    bounds = np.stack([np.append(lp.v_lower, -np.inf), np.append(lp.v_upper, np.inf)], axis=1)
    remaining = budget.remaining()
    options = {"time_limit": max(0.01, remaining)} if math.isfinite(remaining) else {}
    result = linprog(cost, A_ub=ub, b_ub=rhs, bounds=bounds, method="highs", options=options)
    if result.status != 0:
        return HullOutcome(None, None, None, time.perf_counter() - started, f"HiGHS: {result.message}")
    duals = -result.ineqlin.marginals
    lower = lagrangian_bound(lp, C, d, duals[:rows], duals[rows:])
    candidate = result.x[: lp.n_inputs].copy() if result.fun <= 0 else None
    return HullOutcome(lower, float(result.fun), candidate, time.perf_counter() - started)


def applicable(net64: ReluMlp, bounds64: LayerBounds, max_nonzeros: int) -> str | None:
    """Why the hull LP does not apply to this network and root (None: it does)."""
    if max_nonzeros <= 0:
        return "off (bab.relu_hull_max_nonzeros=0)"
    if net64.depth != 1:
        return f"{net64.depth} hidden ReLU layers (the hull LP takes one)"
    size = hull_size(net64, bounds64)
    if size > max_nonzeros:
        return f"{size} constraint nonzeros exceed bab.relu_hull_max_nonzeros={max_nonzeros}"
    return None


@dataclass(eq=False)
class RootHull:
    """The hull LP of a ReLU search's root: checked (`applicable`) and built on first use, tried on each
    disjunct the root's α-CROWN bound leaves open (`refute`); a root that refutes every disjunct pays
    for neither. `why_not` says why it does not apply (then it is never built)."""

    net64: ReluMlp
    root64: LayerBounds
    spec64: SpecRows
    x_lower: np.ndarray
    x_upper: np.ndarray
    stats: SearchStats
    max_nonzeros: int
    why_not: str | None = None
    lp: HullLp | None = None

    @classmethod
    def of(cls, net64: ReluMlp, root64: LayerBounds, spec64: SpecRows, x_lower, x_upper, stats: SearchStats,
           max_nonzeros: int) -> "RootHull":
        lower = x_lower[0].double().cpu().numpy()
        upper = x_upper[0].double().cpu().numpy()
        return cls(net64, root64, spec64, lower, upper, stats, max_nonzeros)

    def refute(self, k: int, budget: Budget, validator: Validator) -> tuple[Falsified | None, bool]:
        """A replayed counterexample from the LP's minimiser, or None; and whether disjunct k is refuted."""
        if self.lp is None and self.why_not is None:
            self.why_not = applicable(self.net64, self.root64, self.max_nonzeros)
        if self.why_not is not None or budget.expired():
            return None, False
        started = time.perf_counter()
        if self.lp is None:
            self.lp = hull_lp(self.net64, self.root64, self.x_lower, self.x_upper)
        rows = (self.spec64.owner == k).cpu().numpy()
        C, d = self.spec64.C64.numpy()[rows], self.spec64.d64.numpy()[rows]
        outcome = refute_disjunct(self.lp, C, d, budget)
        self.stats.hull_lps += 1
        self.stats.hull_refuted += int(outcome.refuted)
        self.stats.hull_seconds += time.perf_counter() - started
        if outcome.candidate is None:
            return None, outcome.refuted
        point = torch.tensor(np.clip(outcome.candidate, self.x_lower, self.x_upper)[None], dtype=torch.float64,
                             device=self.net64.device)
        with torch.no_grad():
            violation = self.spec64.violation(self.net64.forward(point))
        return validator.first(point.cpu(), violation.cpu(), best=1), outcome.refuted
