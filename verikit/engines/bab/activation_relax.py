"""Sound linear bounds of monotone activations on pre-activation intervals [l, u], in float64.

For every z in [l, u]:  slope_lo·z + icpt_lo <= f(z) <= slope_up·z + icpt_up.

S-shaped f (sigmoid, tanh) is convex on (-inf, 0] and concave on [0, inf), and point-symmetric about
(0, f(0)): f(z) = c - f(-z) with c = 2 f(0) (1 for sigmoid, 0 for tanh). The lower line on [l, u] is

- u <= 0 (convex piece): the tangent at the midpoint (any tangent lies below a convex function);
- l >= 0 (concave piece): the chord (a chord lies below a concave function);
- l < 0 < u: the tangent at the largest t in [l, 0] whose tangent line passes below (u, f(u)) — below f on
  [l, 0] by convexity, and on [0, u] because it starts below f(0) and ends below f(u) while f is concave
  there; when even t = l's tangent passes above (u, f(u)), the chord, which then lies below that tangent
  on [l, 0] and below f on [0, u] by concavity.

The upper line is the lower line of [-u, -l] reflected through the symmetry. ReLU gets the usual chord
above and slope 0 or 1 below. A near-empty interval (width < MIN_WIDTH) gets constant bounds f(l), f(u).

Floating point: f and f' are evaluated in float64 (a few ulps each); the lines are moved outward by
ALLOWANCE·(1 + |l| + |u|), which exceeds their error (|slope| <= 1, |f| <= 1, so each line's error is a
few ulps times 1 + |z - t|) by a factor of about 1000.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

ALLOWANCE = 2.0 ** -36
MIN_WIDTH = 1e-9
_TANGENT_STEPS = 40  # bisection steps for the tangent point of a crossing interval


@dataclass(frozen=True, eq=False)
class Lines:
    """Lower and upper linear bounds of f on a batch of intervals, each (B, n) float64."""

    slope_lo: torch.Tensor
    icpt_lo: torch.Tensor
    slope_up: torch.Tensor
    icpt_up: torch.Tensor

    def gap(self, lower: torch.Tensor, upper: torch.Tensor) -> torch.Tensor:
        """The largest vertical distance between the two lines on [lower, upper] (B, n)."""
        at_lower = (self.slope_up - self.slope_lo) * lower + self.icpt_up - self.icpt_lo
        at_upper = (self.slope_up - self.slope_lo) * upper + self.icpt_up - self.icpt_lo
        return torch.maximum(at_lower, at_upper)


def value(kind: str, z: torch.Tensor) -> torch.Tensor:
    if kind == "sigmoid":
        return torch.sigmoid(z)
    if kind == "tanh":
        return torch.tanh(z)
    if kind == "relu":
        return z.clamp(min=0)
    raise ValueError(f"unknown activation kind {kind!r}")


def derivative(kind: str, z: torch.Tensor) -> torch.Tensor:
    if kind == "sigmoid":
        s = torch.sigmoid(z)
        return s * (1 - s)
    if kind == "tanh":
        return 1 - torch.tanh(z) ** 2
    raise ValueError(f"no derivative for {kind!r}")


def image(kind: str, lower: torch.Tensor, upper: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Sound bounds of f over [lower, upper] (monotone f: its values at the ends, moved outward)."""
    if kind == "relu":
        return lower.clamp(min=0), upper.clamp(min=0)
    pad = ALLOWANCE * (1 + lower.abs().nan_to_num(posinf=0) + upper.abs().nan_to_num(posinf=0))
    return value(kind, lower) - pad, value(kind, upper) + pad


@dataclass(frozen=True, eq=False)
class Tangents:
    """Where a lower line of S-shaped f on [l, u] (B, n) may touch f: any t in [start, stop] where `tangent`,
    else the chord. (The upper side uses the Tangents of the reflected intervals [-u, -l].)"""

    start: torch.Tensor
    stop: torch.Tensor
    tangent: torch.Tensor
    default: torch.Tensor  # θ of the fixed relaxation: 0.5 (midpoint) in the convex piece, 1 when crossing


def tangents(kind: str, lower: torch.Tensor, upper: torch.Tensor) -> Tangents:
    """The tangent points a lower line of f on [lower, upper] may use (see the module doc)."""
    f_upper = value(kind, upper)
    crossing = (lower < 0) & (upper > 0)
    lo_t = torch.where(crossing, lower, torch.zeros_like(lower))
    hi_t = torch.zeros_like(lower)

    def h(t: torch.Tensor) -> torch.Tensor:  # tangent at t minus f, at u; increasing in t <= 0
        return value(kind, t) + derivative(kind, t) * (upper - t) - f_upper

    tangent_ok = h(lo_t) <= 0
    for _ in range(_TANGENT_STEPS):  # largest t in [lower, 0] with h(t) <= 0 (h(lo_t) <= 0 throughout)
        mid = (lo_t + hi_t) / 2
        below = h(mid) <= 0
        lo_t = torch.where(below, mid, lo_t)
        hi_t = torch.where(below, hi_t, mid)
    tangent = ((upper <= 0) | (crossing & tangent_ok)) & ~(upper - lower < MIN_WIDTH)
    stop = torch.where(crossing, lo_t, upper)
    default = torch.where(crossing, torch.ones_like(lower), torch.full_like(lower, 0.5))
    return Tangents(lower, stop, tangent, default)


def relax(kind: str, lower: torch.Tensor, upper: torch.Tensor, sides: tuple[Tangents, Tangents] | None = None,
          theta_lo: torch.Tensor | None = None, theta_up: torch.Tensor | None = None) -> Lines:
    """Sound lines of activation `kind` on the intervals [lower, upper] (B, n) float64 (finite, lower <= upper).

    For S-shaped f, `theta_lo`, `theta_up` (broadcastable to (R, B, n), clamped to [0, 1]) pick the tangent
    points within their ranges `sides` (from `tangents`; computed when None) — the α of α-CROWN; the
    lines then have their shape. Without them: the fixed choice of the module doc.
    """
    if kind == "relu":
        return _relu(lower, upper)
    if sides is None:
        sides = (tangents(kind, lower, upper), tangents(kind, -upper, -lower))
    symmetry = 2 * float(value(kind, torch.zeros((), dtype=torch.float64)))
    slope_lo, icpt_lo = _s_lower(kind, lower, upper, sides[0], theta_lo)
    slope_up, reflected = _s_lower(kind, -upper, -lower, sides[1], theta_up)
    pad = ALLOWANCE * (1 + lower.abs() + upper.abs())
    return Lines(slope_lo, icpt_lo - pad, slope_up, symmetry - reflected + pad)


def _s_lower(kind: str, lower: torch.Tensor, upper: torch.Tensor, side: Tangents,
             theta: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    """(slope, intercept) of a line below the S-shaped f on [lower, upper], before the allowance."""
    f_lower, f_upper = value(kind, lower), value(kind, upper)
    width = upper - lower
    narrow = width < MIN_WIDTH
    chord = (f_upper - f_lower) / torch.where(narrow, torch.ones_like(width), width)
    theta = side.default if theta is None else theta.clamp(0, 1)
    t = side.start + theta * (side.stop - side.start)
    slope_t = derivative(kind, t)
    slope = torch.where(side.tangent, slope_t, chord)
    intercept = torch.where(side.tangent, value(kind, t) - slope_t * t, f_lower - chord * lower)
    slope = torch.where(narrow, torch.zeros_like(slope), slope)
    intercept = torch.where(narrow, f_lower, intercept)
    return slope, intercept


def _relu(lower: torch.Tensor, upper: torch.Tensor) -> Lines:
    active, inactive = lower >= 0, upper <= 0
    unstable = ~active & ~inactive
    width = torch.where(unstable, upper - lower, torch.ones_like(upper))
    chord = torch.where(unstable, upper / width, active.to(upper.dtype))
    pad = ALLOWANCE * (1 + lower.abs() + upper.abs())
    icpt_up = torch.where(unstable, -chord * lower + pad, torch.zeros_like(upper))
    slope_lo = torch.where(unstable, (upper > -lower).to(upper.dtype), active.to(upper.dtype))
    return Lines(slope_lo, torch.zeros_like(upper), chord, icpt_up)
