"""auto_LiRPA bounds for verikit's own functions: the strict step (`verikit::Step`,
verikit.onnx.ops.step) and the reciprocal (`verikit::Reciprocal`, verikit.onnx.ops.reciprocal).

Both take the interval [l, u] of their input from auto_LiRPA's float32 bounds, so a side counts as
settled only with a margin (MARGIN, relative): near a jump (the step at 0) or a pole (1/t at 0) a float
error would otherwise move the output by much more than a rounding error.

step(t) is 1 where t > 0, else 0: over [l, u] it is 1 when l > 0, 0 when u <= 0, anywhere in [0, 1]
otherwise; the linear bounds are those constants (slope 0). An input at the jump (t = 0 possible) leaves
the step unsettled.

1/t over [l, u] of one sign lies in [1/u, 1/l]; on l > 0 it is convex (the tangent at the midpoint is
below, the chord above), on u < 0 concave (the chord below, the tangent above). A t that may reach 0
has no bound: auto_LiRPA's NotImplementedError, which the engine turns into `unknown` naming it.

t ** e (e constant, not whole) over [l, u] with l >= 0 (l > 0 when e < 0; elsewhere NotImplementedError)
lies between l ** e and u ** e; it is convex for e > 1 or e < 0 (tangent at the midpoint below, chord
above) and concave for 0 < e < 1 (chord below, tangent above).
"""

from __future__ import annotations

import torch

from verikit.engines.lirpa.compat import import_auto_lirpa
from verikit.onnx.ops.reciprocal import POWER_OP, RECIPROCAL_OP
from verikit.onnx.ops.step import STEP_OP

MARGIN = 1e-4
"""t counts as above 0 only when l > MARGIN * (1 + |l| + |u|) (and below 0 alike)."""


def _signs(lower: torch.Tensor, upper: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(t surely above 0, t surely below 0) over [lower, upper], as bool tensors."""
    margin = MARGIN * (1.0 + lower.abs() + upper.abs())
    return lower > margin, upper < -margin


def _step_bounds(lower: torch.Tensor, upper: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(the step's lower bound, its upper bound) over t in [lower, upper], as 0.0/1.0 tensors."""
    above, below = _signs(lower, upper)
    return above.to(lower.dtype), 1.0 - below.to(lower.dtype)


def _check_one_sign(lower: torch.Tensor, upper: torch.Tensor) -> None:
    above, below = _signs(lower, upper)
    if not bool((above | below).all()):
        raise NotImplementedError("1/t where t may reach 0 (a divisor not bounded away from 0) has no bound")


def _check_power_domain(lower: torch.Tensor, upper: torch.Tensor, exponent: float) -> None:
    above, _ = _signs(lower, upper)
    if not bool((above | (lower >= 0) if exponent > 0 else above).all()):
        raise NotImplementedError(f"t ** {exponent:g} where t may be negative{' or 0' if exponent < 0 else ''} "
                                  "has no bound here")


def _tangent_and_chord(lower: torch.Tensor, upper: torch.Tensor, function, derivative):
    """((slope, x0, y0) of the tangent at the midpoint, (slope, x0, y0) of the chord)."""
    middle = (lower + upper) / 2
    width = upper - lower
    chord = torch.where(width > 0, (function(upper) - function(lower)) / width.clamp(min=1e-30), derivative(middle))
    return (derivative(middle), middle, function(middle)), (chord, lower, function(lower))


def register_custom_ops() -> None:
    """Make auto_LiRPA bound `verikit::Step`, `verikit::Reciprocal` and `verikit::Power` nodes (idempotent)."""
    import_auto_lirpa()
    from auto_LiRPA import register_custom_op
    from auto_LiRPA.bound_op_map import bound_op_map
    from auto_LiRPA.operators.activation import BoundActivation

    if all(op in bound_op_map for op in (STEP_OP, RECIPROCAL_OP, POWER_OP)):
        return

    class BoundStep(BoundActivation):
        def forward(self, t: torch.Tensor) -> torch.Tensor:
            return (t > 0).to(t.dtype)

        def interval_propagate(self, *v):
            return _step_bounds(*v[0])

        def bound_relax(self, t):
            low, high = _step_bounds(t.lower, t.upper)
            zero = torch.zeros_like(low)
            self.add_linear_relaxation(mask=None, type="lower", k=zero, x0=zero, y0=low)
            self.add_linear_relaxation(mask=None, type="upper", k=zero, x0=zero, y0=high)

    class BoundSignedReciprocal(BoundActivation):
        def forward(self, t: torch.Tensor) -> torch.Tensor:
            return torch.reciprocal(t)

        def interval_propagate(self, *v):
            lower, upper = v[0]
            _check_one_sign(lower, upper)
            return torch.reciprocal(upper), torch.reciprocal(lower)

        def bound_relax(self, t):
            lower, upper = t.lower, t.upper
            _check_one_sign(lower, upper)
            middle = (lower + upper) / 2
            tangent_slope = -1.0 / (middle * middle)
            chord_slope = -1.0 / (lower * upper)
            positive = lower > 0
            # convex (t > 0): tangent below, chord above; concave (t < 0): chord below, tangent above
            self.add_linear_relaxation(mask=None, type="lower", k=torch.where(positive, tangent_slope, chord_slope),
                                       x0=torch.where(positive, middle, lower),
                                       y0=torch.where(positive, 1.0 / middle, 1.0 / lower))
            self.add_linear_relaxation(mask=None, type="upper", k=torch.where(positive, chord_slope, tangent_slope),
                                       x0=torch.where(positive, lower, middle),
                                       y0=torch.where(positive, 1.0 / lower, 1.0 / middle))

    class BoundConstantPower(BoundActivation):
        def __init__(self, attr, inputs, output_index, options):
            super().__init__(attr, inputs, output_index, options)
            self.exponent = float(attr["exponent"])

        def forward(self, t: torch.Tensor) -> torch.Tensor:
            return torch.pow(t, self.exponent)

        def interval_propagate(self, *v):
            lower, upper = v[0]
            _check_power_domain(lower, upper, self.exponent)
            ends = torch.pow(lower.clamp(min=0), self.exponent), torch.pow(upper, self.exponent)
            return ends if self.exponent > 0 else ends[::-1]

        def bound_relax(self, t):
            e = self.exponent
            _check_power_domain(t.lower, t.upper, e)
            lower = t.lower.clamp(min=0)
            tangent, chord = _tangent_and_chord(lower, t.upper, lambda x: torch.pow(x, e),
                                                lambda x: e * torch.pow(x, e - 1.0))
            below, above = (tangent, chord) if (e > 1 or e < 0) else (chord, tangent)
            self.add_linear_relaxation(mask=None, type="lower", k=below[0], x0=below[1], y0=below[2])
            self.add_linear_relaxation(mask=None, type="upper", k=above[0], x0=above[1], y0=above[2])

    register_custom_op(STEP_OP, BoundStep)
    register_custom_op(POWER_OP, BoundConstantPower)
    register_custom_op(RECIPROCAL_OP, BoundSignedReciprocal)
