"""Reductions that are affine: ReduceSum and ReduceMean over constant axes."""

from __future__ import annotations

from collections.abc import Sequence
from math import prod

import torch

from verikit.onnx.layout import normalize_axis, preferred, to_stacked
from verikit.onnx.ops.base import Dyn, NodeInfo, Op, Value, axes_of, register


class _Reduce(Op):
    """A sum (or mean) over `axes` of an input-dependent tensor, run in the stacked layout."""

    attributes = frozenset({"axes", "keepdims", "noop_with_empty_axes"})
    pwl_role = "affine"
    mean = False
    axes_input_since = 13  # opset from which `axes` is an input, not an attribute

    def __init__(self, node: NodeInfo, inputs: Sequence[Value]) -> None:
        super().__init__(node, inputs)
        if not isinstance(inputs[0], Dyn) or len(self.in_metas) != 1:
            raise node.unsupported("input-dependent axes")
        meta = self.in_metas[0]
        axes = axes_of(node, inputs, 1, since_opset=self.axes_input_since)
        if not axes:
            axes = [] if node.attr("noop_with_empty_axes", 0) else list(range(meta.rank))
        try:
            axes = sorted({normalize_axis(a, meta.rank) for a in axes})
        except ValueError as error:
            raise node.invalid(str(error)) from error
        keep = bool(node.attr("keepdims", 1))
        out_shape = tuple(1 if i in axes else d for i, d in enumerate(meta.shape) if keep or i not in axes)
        target = preferred(out_shape) if out_shape else None
        self.meta = meta
        self.dims = [a + 1 for a in axes]
        self.out_merged = target.merged if target else False
        self.target = target.torch_shape if target else ()
        self.scale = 1.0 / max(1, prod(meta.shape[a] for a in axes)) if self.mean else 1.0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.dims:
            return x.reshape(-1, *self.target)
        y = torch.sum(to_stacked(x, self.meta), dim=self.dims, keepdim=True)
        y = y.reshape(-1, *self.target)
        return y * self.scale if self.mean else y


@register("ReduceSum")
class ReduceSum(_Reduce):
    pass


@register("ReduceMean")
class ReduceMean(_Reduce):
    mean = True
    axes_input_since = 18
