"""The strict step `step(t) = 1.0 where t > 0, else 0.0`, which comparisons and casts to BOOL are made of.

One autograd Function that exports as `verikit::Step`, so the bounds engine bounds it with its own sound
relaxation (verikit.engines.lirpa.custom). It jumps, so it is not piecewise linear (the complete engines
refuse it), and its gradient is zero (the attack moves by its random starts alone).
"""

from __future__ import annotations

import torch

STEP_OP = "verikit::Step"


class _Step(torch.autograd.Function):
    @staticmethod
    def forward(ctx, t: torch.Tensor) -> torch.Tensor:
        return (t > 0).to(t.dtype)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        return torch.zeros_like(grad)

    @staticmethod
    def symbolic(g, t):
        out = g.op(STEP_OP, t)
        out.setType(t.type())  # same shape and dtype (the exporter cannot infer a custom op's)
        return out


def step(t: torch.Tensor) -> torch.Tensor:
    """1.0 where t > 0, else 0.0 (same dtype and shape as t)."""
    return _Step.apply(t)


def not_zero(x: torch.Tensor) -> torch.Tensor:
    """1.0 where x != 0 (a Cast to BOOL), else 0.0."""
    return step(x) + step(-x)
