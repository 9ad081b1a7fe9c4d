"""auto_LiRPA's bound for verikit's strict step (`verikit::Step`, see verikit.onnx.ops.step).

step(t) is 1 where t > 0, else 0. Over an interval [l, u] of t it is 1 when l > 0, 0 when u <= 0, and
anywhere in [0, 1] otherwise; both linear bounds are those constants (slope 0), which hold for every t
in [l, u]. The interval of t is auto_LiRPA's float32 bound, so a side counts as settled only with a
margin (STEP_MARGIN, relative): a float error near the jump would otherwise move the output by 1, not
by a rounding error. An input at the jump itself (t = 0 possible) leaves the step unsettled.
"""

from __future__ import annotations

import torch

from verikit.engines.lirpa.compat import import_auto_lirpa
from verikit.onnx.ops.step import STEP_OP

STEP_MARGIN = 1e-4
"""t counts as above 0 only when l > STEP_MARGIN * (1 + |l| + |u|) (and below 0 alike)."""


def _settled(lower: torch.Tensor, upper: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(the step's lower bound, its upper bound) over t in [lower, upper], as 0.0/1.0 tensors."""
    margin = STEP_MARGIN * (1.0 + lower.abs() + upper.abs())
    always_one = (lower > margin).to(lower.dtype)
    always_zero = (upper < -margin).to(lower.dtype)
    return always_one, 1.0 - always_zero


def register_step() -> None:
    """Make auto_LiRPA bound `verikit::Step` nodes (idempotent)."""
    import_auto_lirpa()
    from auto_LiRPA import register_custom_op
    from auto_LiRPA.bound_op_map import bound_op_map
    from auto_LiRPA.operators.activation import BoundActivation

    if STEP_OP in bound_op_map:
        return

    class BoundStep(BoundActivation):
        def forward(self, t: torch.Tensor) -> torch.Tensor:
            return (t > 0).to(t.dtype)

        def interval_propagate(self, *v):
            return _settled(*v[0])

        def bound_relax(self, t):
            low, high = _settled(t.lower, t.upper)
            zero = torch.zeros_like(low)
            self.add_linear_relaxation(mask=None, type="lower", k=zero, x0=zero, y0=low)
            self.add_linear_relaxation(mask=None, type="upper", k=zero, x0=zero, y0=high)

    register_custom_op(STEP_OP, BoundStep)
