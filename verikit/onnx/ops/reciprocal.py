"""1 / t and t ** e (e constant, not whole) as autograd Functions exporting as `verikit::Reciprocal` and
`verikit::Power`, which verikit.engines.lirpa.custom bounds.

auto_LiRPA 0.3's own Div and Reciprocal bound only a positive divisor correctly (its interval for x / y
is x_l / y_u .. x_u / y_l, wrong for a negative numerator), so a Div by an input-dependent tensor is
x * reciprocal(y): auto_LiRPA bounds the product (McCormick), verikit.engines.lirpa.custom the
reciprocal (either sign; a divisor that may reach 0 is unbounded, so it is refused by name). Its Pow
bounds whole exponents only; t ** e for another constant e is bounded here where t >= 0 (t > 0 for e < 0).
"""

from __future__ import annotations

import torch

from verikit.onnx.ops.step import elementwise_node

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
        return elementwise_node(g, RECIPROCAL_OP, t)


def reciprocal(t: torch.Tensor) -> torch.Tensor:
    """1 / t elementwise (inf at 0, as torch and onnxruntime)."""
    return _Reciprocal.apply(t)


POWER_OP = "verikit::Power"


class _Power(torch.autograd.Function):
    """t ** exponent for a constant exponent that is not whole (NaN for t < 0, as onnxruntime)."""

    @staticmethod
    def forward(ctx, t: torch.Tensor, exponent: float) -> torch.Tensor:
        ctx.save_for_backward(t)
        ctx.exponent = exponent
        return torch.pow(t, exponent)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        (t,) = ctx.saved_tensors
        return grad * ctx.exponent * torch.pow(t, ctx.exponent - 1.0), None

    @staticmethod
    def symbolic(g, t, exponent: float):
        return elementwise_node(g, POWER_OP, t, exponent_f=exponent)


def power(t: torch.Tensor, exponent: float) -> torch.Tensor:
    """t ** exponent elementwise, bounded by verikit.engines.lirpa.custom (t >= 0 only)."""
    return _Power.apply(t, exponent)
