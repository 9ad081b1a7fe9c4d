"""Bounds in float64 that hold in real arithmetic: every result is widened by an a-priori bound on the
rounding error of the operations that produced it, and rounded outward.

Rounding model (IEEE 754 binary64, round to nearest): a sum of n products computed in any order is
within γ_n·Σ|a_i b_i| of the exact one, γ_n = n·u / (1 - n·u), u = 2^-53 (Higham, Accuracy and
Stability of Numerical Algorithms, §3.1); underflow adds at most n·2^-1074. A single operation is
within half an ulp, so stepping one ulp outward (`np.nextafter`) covers it.

CROWN here follows the textbook description (Zhang et al., 2018; α slopes: Xu et al., 2021; β
multipliers of split constraints: Wang et al., 2021), written for this checker alone.
"""

from __future__ import annotations

import numpy as np

from verikit.checker.network import AffineOp, Chain

U = 2.0**-53
TINY = 2.0**-1074


def gamma(n: int) -> float:
    """An upper bound of γ_n (with room for the rounding of γ itself)."""
    return 1.01 * (n + 2) * U / (1.0 - (n + 2) * U)


def up(x: np.ndarray) -> np.ndarray:
    return np.nextafter(x, np.inf)


def down(x: np.ndarray) -> np.ndarray:
    return np.nextafter(x, -np.inf)


def upper_product(M: np.ndarray, v: np.ndarray) -> np.ndarray:
    """An upper bound of the exact M @ v for M, v >= 0 (matrix @ vector or matrix @ matrix)."""
    n = M.shape[-1]
    return up(up(M @ v) * (1.0 + gamma(n)) + n * TINY)


def center_radius(lower: np.ndarray, upper: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """c, r with [lower, upper] inside [c - r, c + r] exactly."""
    c = lower / 2 + upper / 2
    return c, up(np.maximum(up(upper - c), up(c - lower)))


def affine_interval(op: AffineOp, lower: np.ndarray, upper: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Bounds (..., n_out) of A x + b over the boxes [lower, upper] (..., n_in), exact real arithmetic."""
    if op.A is None:
        lo, hi = lower, upper
    else:
        c, r = center_radius(lower, upper)
        absA = np.abs(op.A)
        mid = c @ op.A.T
        spread = up(upper_product(np.abs(c), absA.T) * gamma(op.n_in) + upper_product(r, absA.T))
        lo, hi = down(mid - spread), up(mid + spread)
    if op.b is not None:
        lo, hi = down(lo + op.b), up(hi + op.b)
    return lo, hi


class Backward:
    """Lower bounds of rows of linear functions of a quantity, pushed back towards the input.

    Holds λ (R, n) on the current quantity, a constant k (R,) and err (R,) >= the neglected rounding,
    so that for every input of the domain: function >= λ·current + k - err (exact real arithmetic).
    """

    def __init__(self, lam: np.ndarray, const: np.ndarray):
        self.lam = np.array(lam, dtype=np.float64)
        self.k = np.array(const, dtype=np.float64)
        self.err = np.zeros_like(self.k)

    def _add_const(self, value: np.ndarray, error: np.ndarray) -> None:
        self.k = self.k + value
        self.err = up(up(self.err + error) + up(np.abs(self.k) * U) + TINY)

    def through_affine(self, op: AffineOp, magnitude_in: np.ndarray) -> None:
        """From λ on A x + b to λ on x, where |x| <= magnitude_in (n_in,) on the domain."""
        absolute = np.abs(self.lam)
        if op.b is not None:
            self._add_const(self.lam @ op.b, upper_product(absolute, np.abs(op.b)) * gamma(op.n_out))
        if op.A is not None:
            self.lam = self.lam @ op.A
            weight = upper_product(absolute, np.abs(op.A))  # |λ||A| (R, n_in)
            self.err = up(self.err + upper_product(weight, magnitude_in) * gamma(op.n_out))

    def through_relu(self, lower: np.ndarray, upper: np.ndarray, alpha: np.ndarray | None,
                     beta: np.ndarray | None, phase: np.ndarray) -> None:
        """From λ on relu(z) to λ on z, for bounds lower <= z <= upper (n,) on the domain (split
        constraints already applied); α (R, n) lower slopes in [0, 1] of unstable neurons (None: the
        adaptive choice), β (R, n) >= 0 multipliers of the split constraints phase (n,) in {-1, 0, 1}."""
        unstable = (lower < 0) & (upper > 0)
        active = lower >= 0
        width = np.where(unstable, upper - lower, 1.0)
        slope = np.where(unstable, upper / width, 0.0)
        slope = np.clip(slope, 0.0, 1.0)
        # the chord's intercept, rounded up until the line lies above relu at both ends of [lower, upper]
        intercept = np.where(unstable, np.maximum(up(-slope * lower), up(upper * up(1.0 - slope))), 0.0)
        intercept = up(intercept)
        if alpha is None:
            alpha = np.broadcast_to((upper > -lower).astype(np.float64), self.lam.shape)
        positive, negative = np.maximum(self.lam, 0.0), np.minimum(self.lam, 0.0)
        magnitude = np.maximum(np.abs(lower), np.abs(upper))
        relaxed = positive * alpha + negative * slope
        new = np.where(active, self.lam, np.where(unstable, relaxed, 0.0))
        self._add_const(np.where(unstable, negative, 0.0) @ intercept,
                        upper_product(np.abs(np.where(unstable, negative, 0.0)), intercept) * gamma(lower.size))
        if beta is not None:
            # on {z >= 0} f >= f - β z; on {z <= 0} f >= f + β z
            new = new - beta * phase
        bound = np.abs(self.lam) + (np.abs(beta) if beta is not None else 0.0)
        self.err = up(self.err + upper_product(bound, magnitude) * 4 * U)
        self.lam = new

    def at_input(self, lower: np.ndarray, upper: np.ndarray) -> np.ndarray:
        """The lower bound (R,) over the box [lower, upper] (n,)."""
        c, r = center_radius(lower, upper)
        absolute = np.abs(self.lam)
        value = self.lam @ c
        loss = up(up(upper_product(absolute, r) + upper_product(absolute, np.abs(c)) * gamma(c.size)) + self.err)
        total = down(self.k + value)
        total = down(total - up(np.abs(total) * U + TINY))  # the sum k + value above was rounded
        return down(total - loss)


def relu_magnitudes(lower: np.ndarray, upper: np.ndarray) -> np.ndarray:
    """max |relu(z)| for z in [lower, upper]."""
    return np.maximum(upper, 0.0)


def segment_magnitudes(segment: tuple[AffineOp, ...], lower: np.ndarray, upper: np.ndarray) -> list[np.ndarray]:
    """For each op of a segment, max |input| over the domain, from interval bounds of the segment's input."""
    found = []
    for op in segment:
        found.append(np.maximum(np.abs(lower), np.abs(upper)))
        lower, upper = affine_interval(op, lower, upper)
    return found


def backward_bound(chain: Chain, start: int, lam: np.ndarray, const: np.ndarray, box: tuple[np.ndarray, np.ndarray],
                   bounds: list[tuple[np.ndarray, np.ndarray]], phases: list[np.ndarray],
                   alphas: list[np.ndarray | None] | None = None, betas: list[np.ndarray | None] | None = None,
                   ) -> np.ndarray:
    """Lower bounds (R,) of λ·z_start + const (z_start: the output of segment `start`) over the domain.

    bounds[i] = (lower, upper) of z_i, already tightened by phases[i]; alphas/betas per hidden layer.
    """
    walk = Backward(lam, const)
    for i in range(start, -1, -1):
        inputs = box if i == 0 else (np.maximum(bounds[i - 1][0], 0.0), np.maximum(bounds[i - 1][1], 0.0))
        for op, magnitude in reversed(list(zip(chain.segments[i], segment_magnitudes(chain.segments[i], *inputs)))):
            walk.through_affine(op, magnitude)
        if i > 0:
            alpha = None if alphas is None else alphas[i - 1]
            beta = None if betas is None else betas[i - 1]
            walk.through_relu(*bounds[i - 1], alpha, beta, phases[i - 1])
    return walk.at_input(*box)


def layer_bounds(chain: Chain, box: tuple[np.ndarray, np.ndarray],
                 phases: list[np.ndarray]) -> list[tuple[np.ndarray, np.ndarray]] | None:
    """Bounds of every z_i over {x in box, split constraints}: intervals, then CROWN for the neurons
    still unstable, each layer tightened by its phases; None when some lower bound exceeds its upper
    bound (the split constraints contradict each other: the domain is empty)."""
    bounds: list[tuple[np.ndarray, np.ndarray]] = []
    for i in range(len(chain.hidden_sizes)):
        lo, hi = box if i == 0 else (np.maximum(bounds[i - 1][0], 0.0), np.maximum(bounds[i - 1][1], 0.0))
        for op in chain.segments[i]:
            lo, hi = affine_interval(op, lo, hi)
        phase = phases[i]
        lo = np.where(phase > 0, np.maximum(lo, 0.0), lo)
        hi = np.where(phase < 0, np.minimum(hi, 0.0), hi)
        if i > 0:
            open_ = np.flatnonzero((lo < 0) & (hi > 0))
            if open_.size:
                n = lo.size
                rows = np.zeros((2 * open_.size, n))
                rows[np.arange(open_.size), open_] = 1.0
                rows[open_.size + np.arange(open_.size), open_] = -1.0
                found = backward_bound(chain, i, rows, np.zeros(2 * open_.size), box, bounds, phases)
                lo[open_] = np.maximum(lo[open_], found[: open_.size])
                hi[open_] = np.minimum(hi[open_], -found[open_.size :])
        if np.any(lo > hi):
            return None
        bounds.append((lo, hi))
    return bounds
