"""1 / t for an input-dependent t, as one autograd Function exporting as `verikit::Reciprocal`.

auto_LiRPA 0.3's own Div and Reciprocal bound only a positive divisor correctly (its interval for x / y
is x_l / y_u .. x_u / y_l, wrong for a negative numerator), so a Div by an input-dependent tensor is
x * reciprocal(y): auto_LiRPA bounds the product (McCormick), verikit.engines.lirpa.custom the
reciprocal (either sign; a divisor that may reach 0 is unbounded, so it is refused by name).
"""

from __future__ import annotations

import torch

RECIPROCAL_OP = "verikit::Reciprocal"


class _Reciprocal(torch.autograd.Function):
    @staticmethod
    def forward(ctx, t: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(t)
        return torch.reciprocal(t)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        (t,) = ctx.saved_tensors
        return -grad / (t * t)

    @staticmethod
    def symbolic(g, t):
        out = g.op(RECIPROCAL_OP, t)
        out.setType(t.type())  # same shape and dtype (the exporter cannot infer a custom op's)
        return out


def reciprocal(t: torch.Tensor) -> torch.Tensor:
    """1 / t elementwise (inf at 0, as torch and onnxruntime)."""
    return _Reciprocal.apply(t)
