"""Interval bound propagation through the piecewise-linear IR, with outward rounding.

`affine_interval` is the one interval step: CROWN's intermediate bounds (verikit.engines.crown.propagate)
and the SMT engine's layer bounds (`interval_bounds` below, float64) both call it.

Rounding: a computed dot product of n terms differs from the exact one by at most γ_n = n·u times the
sum of the absolute values of its products (u = unit roundoff). `rounding_gamma` takes that for the
widest layer, doubled and padded for the centre/radius and bias arithmetic, and every bound moves
outward by γ·magnitude, where magnitude = |W|·max(|lower|, |upper|) + |b| bounds that sum.
"""

from __future__ import annotations

import numpy as np
import torch

from verikit.core.pwl import Affine, PiecewiseLinear, Relu
from verikit.core.property import Box

Interval = tuple[np.ndarray, np.ndarray]
"""Sound (lower, upper) bounds of one layer's output, float64 (width,) each."""


def rounding_gamma(widest: int, affine_layers: int, dtype: torch.dtype) -> float:
    """Relative rounding allowance of one bound of a network whose widest affine layer has `widest`
    inputs or outputs, with `affine_layers` affine layers, computed in `dtype`."""
    unit = torch.finfo(dtype).eps / 2
    # γ_n = n·u for a dot product of length n; ×2 for relaxation products and accumulation.
    return 2.0 * (widest + 2 * affine_layers + 8) * unit


def affine_interval(
    lower: torch.Tensor,
    upper: torch.Tensor,
    weight_t: torch.Tensor,
    abs_weight_t: torch.Tensor,
    bias: torch.Tensor,
    abs_bias: torch.Tensor,
    gamma: float,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Sound bounds of `x @ weight_t + bias` over the boxes [lower, upper] (B|1, n_in) → (B, n_out) each,
    and the magnitude |W|·max|x| + |b| (B, n_out) they were widened by (times gamma).

    An empty side (lower > upper) gives a box that is empty too; NaN (∞·0 on unbounded boxes) becomes ∓∞.
    """
    magnitude = torch.maximum(lower.abs(), upper.abs()) @ abs_weight_t + abs_bias
    mid = (lower + upper) / 2 @ weight_t + bias
    rad = (upper - lower) / 2 @ abs_weight_t
    low, high = mid - rad - gamma * magnitude, mid + rad + gamma * magnitude
    if not (bool(torch.isfinite(lower).all()) and bool(torch.isfinite(upper).all())):
        low = torch.where(torch.isnan(low), -torch.inf, low)
        high = torch.where(torch.isnan(high), torch.inf, high)
    return low, high, magnitude


def interval_bounds(pwl: PiecewiseLinear, box: Box,
                    phases: dict[int, tuple[np.ndarray, np.ndarray]] | None = None) -> list[Interval]:
    """Sound bounds of every layer's output of `pwl` over `box` (the box may be unbounded), float64.

    `phases` maps the index of a Relu layer to (active, inactive) masks of its inputs: a fixed phase
    clips the pre-activation bounds (which then replace the previous layer's entry).
    """
    phases = phases or {}
    affines = [layer for layer in pwl.layers if isinstance(layer, Affine)]
    widest = max((max(a.weight.shape) for a in affines), default=1)
    gamma = rounding_gamma(widest, len(affines), torch.float64)
    lower = torch.tensor(box.lower, dtype=torch.float64).reshape(1, -1)
    upper = torch.tensor(box.upper, dtype=torch.float64).reshape(1, -1)
    result: list[Interval] = []
    for index, layer in enumerate(pwl.layers):
        if isinstance(layer, Affine):
            weight_t = torch.as_tensor(layer.weight, dtype=torch.float64).T.contiguous()
            bias = torch.as_tensor(layer.bias, dtype=torch.float64)
            lower, upper, _ = affine_interval(lower, upper, weight_t, weight_t.abs(), bias, bias.abs(), gamma)
        elif isinstance(layer, Relu):
            if index in phases:
                active, inactive = (torch.as_tensor(np.asarray(mask, bool).reshape(1, -1)) for mask in phases[index])
                lower = torch.where(active, lower.clamp(min=0), lower)
                upper = torch.where(inactive, upper.clamp(max=0), upper)
                if result:  # the clipped pre-activations replace the previous layer's bounds
                    result[-1] = (lower[0].numpy().copy(), upper[0].numpy().copy())
            lower, upper = lower.clamp(min=0), upper.clamp(min=0)
        else:
            groups = torch.as_tensor(np.asarray(layer.groups), dtype=torch.long)
            lower, upper = lower[:, groups].amax(dim=2), upper[:, groups].amax(dim=2)
        result.append((lower[0].numpy().copy(), upper[0].numpy().copy()))
    return result
