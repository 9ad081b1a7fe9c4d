"""The input set a CROWN bound is concretised over: a box, or an ℓ2 ball intersected with its box.

CROWN ends every bound as a linear function `λ·x + k` of the input, to be minimised over the input set.
Over a box [c - r, c + r] the minimum is `λ·c - |λ|·r`; over the ball {‖x - c‖₂ <= ρ} it is
`λ·c - ρ‖λ‖₂` (the dual norm of ℓ2 is ℓ2). The set of a case with an `L2Ball` region is the ball ∩ box,
whose minimum is at least the larger of the two, so each row takes the larger (both are sound).

`ball_linear_min` is the one rigorous evaluation of the ball term, shared by the chain form
(verikit.engines.crown.propagate) and the graph form (verikit.engines.crown.graph): for the computed
coefficients λ taken as exact, it returns a value <= the real `min over the ball of λ·x`, in the
arithmetic of λ's dtype (float64 or float32), rounding every step outward:

- `λ·c` is within γ_n Σ|λ_i c_i| of its computed value (γ_n = n·u/(1 - n·u), any summation order);
- `Σ λ_i²` is within γ_n of the computed sum (every term >= 0), plus n·2^-1022 for squares that
  underflow; the square root is correctly rounded, then stepped up one ulp;
- ρ‖λ‖₂ and the final differences are stepped one ulp outward.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch


def _gamma(n: int, dtype: torch.dtype) -> float:
    unit = torch.finfo(dtype).eps / 2
    return 1.01 * (n + 2) * unit / (1.0 - (n + 2) * unit)


def _up(x: torch.Tensor) -> torch.Tensor:
    return torch.nextafter(x, torch.full_like(x, float("inf")))


def _down(x: torch.Tensor) -> torch.Tensor:
    return torch.nextafter(x, torch.full_like(x, float("-inf")))


@dataclass(frozen=True, eq=False)
class InputBall:
    """An ℓ2 ball: centre (B|1, n_inputs) and radius (B|1,) >= 0, in the network's input units."""

    center: torch.Tensor
    radius: torch.Tensor

    @classmethod
    def of(cls, center, radius, dtype: torch.dtype = torch.float64, device: torch.device | str = "cpu") -> "InputBall":
        """From numpy (or torch) centre(s) (n,) or (B, n) and radius/radii (scalar or (B,)). The radius is
        rounded up where the cast to `dtype` rounds it (the ball only grows); a centre that does not cast
        exactly to `dtype` is refused (ValueError): its rounding would move the ball."""
        center64 = torch.tensor(np.atleast_2d(np.array(center, dtype=np.float64)))
        radius64 = torch.tensor(np.atleast_1d(np.array(radius, dtype=np.float64)))
        center_t = center64.to(dtype)
        if not bool((center_t.double() == center64).all()):
            raise ValueError(f"the ball's centre is not exactly representable in {dtype}")
        radius_t = radius64.to(dtype)
        radius_t = torch.where(radius_t.double() < radius64, _up(radius_t), radius_t)
        return cls(center_t.to(device), radius_t.to(device))

    def select(self, index: torch.Tensor) -> "InputBall":
        if self.center.shape[0] == 1:
            return self
        return InputBall(self.center.index_select(0, index), self.radius.index_select(0, index))

    def to(self, device, dtype) -> "InputBall":
        if self.center.dtype == dtype and self.center.device == torch.device(device):
            return self
        return InputBall.of(self.center.double().cpu().numpy(), self.radius.double().cpu().numpy(), dtype, device)


def ball_linear_min(lam: torch.Tensor, ball: InputBall) -> torch.Tensor:
    """A rigorous lower bound of `min over ‖x - c‖₂ <= ρ of λ·x`, per row, for λ (..., B|1, n) or (R, n)
    with a single-ball batch; returns λ's shape without its last axis (see the module doc)."""
    n = lam.shape[-1]
    g = _gamma(n, lam.dtype)
    tiny = n * torch.finfo(lam.dtype).tiny
    center = ball.center if lam.dim() >= 3 else ball.center[0]
    radius = ball.radius if lam.dim() >= 3 else ball.radius[0]
    dot = (lam * center).sum(dim=-1)
    squares = (lam * lam).sum(dim=-1)
    core = dot - radius * torch.sqrt(squares.clamp(min=tiny))  # what α-CROWN differentiates
    with torch.no_grad():
        dot_error = _up(_up((lam.abs() * center.abs()).sum(dim=-1) * (1.0 + g)) * g + tiny)
        norm = _up(torch.sqrt(_up(_up(squares * (1.0 + g)) + tiny)))
        spread = _up(norm * radius)
        rigorous = _down(_down(dot - dot_error) - spread)
        excess = _up(core - rigorous)  # >= the real difference
    # real core - excess <= rigorous, and rounding is monotone, so the float result is <= rigorous too;
    # the gradient is the plain term's (nextafter has none)
    return core - excess


def box_or_ball_min(box_min: torch.Tensor, lam: torch.Tensor, ball: InputBall | None) -> torch.Tensor:
    """The larger of a box's lower bound `box_min` of λ·x and the ball's (both sound over ball ∩ box);
    `box_min` itself without a ball."""
    if ball is None:
        return box_min
    return torch.maximum(box_min, ball_linear_min(lam, ball))


def never_looser_than_the_box(bounds: Callable[[InputBall | None], np.ndarray], ball: InputBall | None) -> np.ndarray:
    """`bounds(None)` (over the box) and, with a ball, its elementwise max with `bounds(ball)`: tighter
    intermediate bounds change CROWN's relaxations, which is not monotone, so a ball bound alone may lose
    a row the box bound wins; both are sound over ball ∩ box."""
    over_box = bounds(None)
    if ball is None:
        return over_box
    return np.maximum(over_box, bounds(ball))
