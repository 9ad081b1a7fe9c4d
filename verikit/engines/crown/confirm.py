"""Re-prove auto_LiRPA's refutations with this package's CROWN in float64, whose rounding allowance is
derived (see `verikit.engines.crown.propagate`), before they count as proof.

auto_LiRPA bounds in float32 and verikit widens them by a relative slack that is an estimate, not a
derivation. On a piecewise-linear ReLU MLP the same box can be bounded here soundly: CROWN, then α-CROWN
on the rows still open, in float64 over the exact float64 spec constants.
"""

from __future__ import annotations

import numpy as np
import torch

from verikit.core.pwl import PiecewiseLinear
from verikit.engines.crown.optimise import optimise_spec
from verikit.engines.crown.propagate import ReluMlp, layer_bounds, spec_bounds

CONFIRM_ALPHA_STEPS = 30
CONFIRM_ALPHA_LR = 0.5


def exact_mlp(pwl: PiecewiseLinear) -> ReluMlp | None:
    """The float64 ReLU MLP of `pwl`, or None when it is not of the shape Affine (Relu Affine)+."""
    if not pwl.is_relu_mlp or len(pwl.layers) < 3:
        return None
    return ReluMlp.from_pwl(pwl, torch.float64)


def confirmed_lower_bounds(net: ReluMlp, lower: np.ndarray, upper: np.ndarray, C: np.ndarray, d: np.ndarray,
                           *, alpha_steps: int = CONFIRM_ALPHA_STEPS) -> np.ndarray:
    """Sound float64 lower bounds (B, R) of `C @ y - d` over boxes lower, upper (B, n_inputs).

    C (R, n_outputs), d (R,) are float64 (the case's own values). α-CROWN runs only on the boxes that
    plain CROWN leaves with a row <= 0.
    """
    x_lower = torch.tensor(np.atleast_2d(lower), dtype=torch.float64)
    x_upper = torch.tensor(np.atleast_2d(upper), dtype=torch.float64)
    C_t = torch.tensor(np.asarray(C), dtype=torch.float64)
    d_t = torch.tensor(np.asarray(d), dtype=torch.float64)
    with torch.no_grad():
        layers = layer_bounds(net, x_lower, x_upper)
        best = spec_bounds(net, x_lower, x_upper, C_t, d_t, layers).lower
    open_ = (best <= 0).any(dim=1)
    if alpha_steps > 0 and bool(open_.any()):
        index = open_.nonzero().squeeze(1)
        better, _ = optimise_spec(net, x_lower[index], x_upper[index], C_t, d_t, layers.select(index),
                                  steps=alpha_steps, lr=CONFIRM_ALPHA_LR)
        best[index] = torch.maximum(best[index], better.lower.detach())
    return best.numpy()
