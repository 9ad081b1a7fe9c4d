"""The strict step `step(t) = 1.0 where t > 0, else 0.0`, which comparisons and casts to BOOL are made of.

One autograd Function that exports as `verikit::Step`, so the bounds engine bounds it with its own sound
relaxation (verikit.engines.lirpa.custom). It jumps, so it is not piecewise linear (the complete engines
refuse it), and its gradient is zero (the attack moves by its random starts alone).
"""

from __future__ import annotations

import torch

STEP_OP = "verikit::Step"


def elementwise_node(g, name: str, t, **attributes):
    """The exported custom node `name` on t, typed like t (the exporter cannot infer a custom op's
    shape and dtype); shared by every elementwise custom op (step, reciprocal, power)."""
    out = g.op(name, t, **attributes)
    out.setType(t.type())
    return out


class _Step(torch.autograd.Function):
    @staticmethod
    def forward(ctx, t: torch.Tensor) -> torch.Tensor:
        return (t > 0).to(t.dtype)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        return torch.zeros_like(grad)

    @staticmethod
    def symbolic(g, t):
        return elementwise_node(g, STEP_OP, t)


def step(t: torch.Tensor) -> torch.Tensor:
    """1.0 where t > 0, else 0.0 (same dtype and shape as t)."""
    return _Step.apply(t)


def not_zero(x: torch.Tensor) -> torch.Tensor:
    """1.0 where x != 0 (a Cast to BOOL), else 0.0."""
    return step(x) + step(-x)
