"""Comparisons and Where: step functions of the input, held as float 0/1 tensors.

ONNX gives bool tensors; here a bool is a float 0.0/1.0 (a Cast to FLOAT of it is then the identity).
Every comparison is written with one strict step, `step(t) = 1 if t > 0 else 0`: a > b is step(a - b)
(for finite floats a - b > 0 exactly when a > b), a >= b is 1 - step(b - a), a == b is
1 - step(a - b) - step(b - a). The bounds engine gives `step` its own sound relaxation; it is not piecewise
linear (it jumps), so the complete engines refuse it (see verikit.onnx.ops.step).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from verikit.onnx.layout import to_stacked
from verikit.onnx.ops.base import Const, Dyn, NodeInfo, Op, Value, register
from verikit.onnx.ops.elementwise import _Binary, broadcast_operands
from verikit.onnx.ops.step import step

def _comparison(name: str, function):
    cls = type(name, (_Binary,), {"function": staticmethod(function), "affine_positions": (),
                                  "__doc__": f"ONNX {name}, a step of the difference (see the module doc)."})
    return register(name)(cls)


Greater = _comparison("Greater", lambda a, b: step(a - b))
Less = _comparison("Less", lambda a, b: step(b - a))
GreaterOrEqual = _comparison("GreaterOrEqual", lambda a, b: 1.0 - step(b - a))
LessOrEqual = _comparison("LessOrEqual", lambda a, b: 1.0 - step(a - b))
Equal = _comparison("Equal", lambda a, b: 1.0 - step(a - b) - step(b - a))


@register("Where")
class Where(Op):
    """Where(cond, a, b) = b + cond * (a - b) with cond 0/1 (exact: a where cond is 1, b where it is 0, up
    to the rounding of b + (a - b)); any of the three may be a constant, broadcasting as numpy does."""

    def __init__(self, node: NodeInfo, inputs: Sequence[Value]) -> None:
        super().__init__(node, inputs)
        self.rank, self.metas, self.merged_path = broadcast_operands(node, inputs, 3)
        self.out_merged = self.merged_path
        if isinstance(inputs[0], Const):
            raise node.unsupported("a constant condition with input-dependent branches")
        for position, value in enumerate(inputs):
            if isinstance(value, Const):
                array = np.asarray(value.value, dtype=np.float32)
                array = array.reshape((1,) * (self.rank - array.ndim) + array.shape)
                # held without a batch axis, as auto_LiRPA's Add and Sub expect (merged: ONNX axis 0 is it)
                self.add_constant(f"operand{position}", array[0] if self.merged_path else array)

    def forward(self, *xs: torch.Tensor) -> torch.Tensor:
        given = iter(xs)
        operands = []
        for position, meta in enumerate(self.metas):
            if meta is None:
                operands.append(getattr(self, f"operand{position}"))
            else:
                x = next(given)
                operands.append(x if self.merged_path else to_stacked(x, meta, self.rank))
        cond, a, b = operands
        return b + cond * (a - b)
