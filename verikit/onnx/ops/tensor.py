"""Expand (broadcast to a constant shape), Split (one op per used output) and ConstantOfShape (folded)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from verikit.onnx.layout import normalize_axis, preferred, to_stacked
from verikit.onnx.ops.base import Dyn, NodeInfo, Op, Value, constant, optional_constant, register


@register("Expand")
class Expand(Op):
    """Broadcast to a constant shape: adding zeros of the output shape (an exact, bound-friendly copy)."""

    pwl_role = "affine"

    def __init__(self, node: NodeInfo, inputs: Sequence[Value]) -> None:
        super().__init__(node, inputs)
        if not isinstance(inputs[0], Dyn) or len(self.in_metas) != 1:
            raise node.unsupported("input-dependent shape")
        meta = self.in_metas[0]
        requested = tuple(int(d) for d in np.asarray(constant(node, inputs, 1, "shape")).reshape(-1))
        try:
            out_shape = tuple(int(d) for d in np.broadcast_shapes(meta.shape, requested))
        except ValueError as error:
            raise node.invalid(f"cannot expand shape {meta.shape} to {requested}") from error
        self.meta, self.rank = meta, len(out_shape)
        target = preferred(out_shape)
        self.out_merged = target.merged
        self.target = target.torch_shape
        self.copy = out_shape != meta.shape
        # held without a batch dim, as auto_LiRPA's Add wants a constant operand
        self.add_constant("zeros", np.zeros(out_shape, np.float32) if self.copy else None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.copy:
            return x.reshape(-1, *self.target)
        return (to_stacked(x, self.meta, self.rank) + self.zeros).reshape(-1, *self.target)


@register("Split")
class Split(Op):
    """Part `part` of a Split: a selection of consecutive indices along its axis. The graph builder makes
    one op per output the model uses, each reading the same input."""

    attributes = frozenset({"axis", "split", "num_outputs"})
    pwl_role = "affine"
    per_output = True

    def __init__(self, node: NodeInfo, inputs: Sequence[Value], part: int = 0) -> None:
        super().__init__(node, inputs)
        if not isinstance(inputs[0], Dyn) or len(self.in_metas) != 1:
            raise node.unsupported("input-dependent split sizes")
        meta = self.in_metas[0]
        try:
            axis = normalize_axis(int(node.attr("axis", 0)), meta.rank)
        except ValueError as error:
            raise node.invalid(str(error)) from error
        size = meta.shape[axis]
        sizes = node.attr("split") if node.opset < 13 else optional_constant(node, inputs, 1, "split")
        if sizes is not None and np.size(sizes):
            sizes = [int(s) for s in np.asarray(sizes).reshape(-1)]
            if sum(sizes) != size or min(sizes) < 0:
                raise node.invalid(f"split sizes {sizes} do not add up to {size}")
        else:
            parts = int(node.attr("num_outputs", len(node.outputs) or 1))
            chunk = -(-size // parts)  # ONNX: equal parts, the last one smaller
            sizes = [max(0, min(chunk, size - k * chunk)) for k in range(parts)]
        if not 0 <= part < len(sizes):
            raise node.invalid(f"output {part} of a split into {len(sizes)} parts")
        first, start = sizes[part], sum(sizes[:part])
        if first == 0:
            raise node.unsupported(f"an empty part (output {part})")
        self.meta = meta
        self.stacked_path = not meta.merged or axis == 0
        self.dim = axis + 1 if self.stacked_path else axis
        self.first = first
        out_shape = meta.shape[:axis] + (first,) + meta.shape[axis + 1 :]
        target = preferred(out_shape)
        self.out_merged = target.merged
        self.target = target.torch_shape
        self.register_buffer("indices", torch.arange(start, start + first))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = to_stacked(x, self.meta) if self.stacked_path else x
        return torch.index_select(x, self.dim, self.indices).reshape(-1, *self.target)


@register("ConstantOfShape")
class ConstantOfShape(Op):
    """Always a constant: its shape input is known at load time (an input-dependent shape is refused)."""

    attributes = frozenset({"value"})

    def __init__(self, node: NodeInfo, inputs: Sequence[Value]) -> None:
        raise node.unsupported("an input-dependent shape")
