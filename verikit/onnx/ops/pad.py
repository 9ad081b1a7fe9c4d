"""Pad: constant, edge, reflect and wrap padding (and negative pads, which crop) of an input-dependent tensor.

Every mode is affine: along each padded axis the output is a 0/1 selection matrix times the input (a
zero row where the constant goes), then the constant is added where it goes. Matmuls and a constant add
are exact in every bound engine. (auto_LiRPA's Gather backward bound is wrong for repeated indices, which
edge, reflect and wrap need, and its Pad cannot be traced from `F.pad` with torch 2.x.) Symmetric zero
padding of an image's two spatial dims is a 1x1 identity convolution with that padding, which auto_LiRPA
keeps in its patch form.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from verikit.onnx.layout import normalize_axis, preferred, to_stacked
from verikit.onnx.ops.base import Dyn, NodeInfo, Op, Value, constant, optional_constant, register

MODES = ("constant", "edge", "reflect", "wrap")


@register("Pad")
class Pad(Op):
    attributes = frozenset({"mode", "pads", "value"})
    pwl_role = "affine"

    def __init__(self, node: NodeInfo, inputs: Sequence[Value]) -> None:
        super().__init__(node, inputs)
        if len(self.in_metas) != 1 or not isinstance(inputs[0], Dyn):
            raise node.unsupported("input-dependent pads or pad value")
        meta = self.in_metas[0]
        mode = node.attr("mode", "constant")
        mode = mode.decode() if isinstance(mode, bytes) else str(mode)
        if mode not in MODES or (mode == "wrap" and node.opset < 19):
            raise node.unsupported(f"mode={mode}")
        begin, end, value = _pads_and_value(node, inputs, meta.rank)
        out_shape = tuple(size + b + e for size, b, e in zip(meta.shape, begin, end))
        if any(d <= 0 for d in out_shape):
            raise node.invalid(f"pads {begin + end} leave no values of shape {meta.shape}")
        self.meta = meta
        target = preferred(out_shape)
        self.out_merged = target.merged
        self.target = target.torch_shape
        self.identity = not any(begin + end)
        self.spatial_zero = (
            mode == "constant" and value == 0.0 and meta.merged and target.merged and meta.rank == 4
            and not any(begin[:2] + end[:2]) and begin == end and min(begin) >= 0
        )
        if self.spatial_zero:
            self.padding = tuple(begin[2:])
            self.add_constant("eye", np.ones((meta.shape[1], 1, 1, 1), np.float32))
        if self.identity or self.spatial_zero:
            return
        self.meta = meta
        self.stacked_path = not meta.merged or bool(begin[0] or end[0])
        self.selections = []
        for axis, (size, b, e) in enumerate(zip(meta.shape, begin, end)):
            if b or e:
                name = f"select{axis}"
                self.add_constant(name, _selection(node, mode, size, b, e))
                self.selections.append((axis + 1 if self.stacked_path else axis, name))
        self.has_offset = mode == "constant" and value != 0.0 and max(begin + end) > 0
        if self.has_offset:
            inside = np.ones(out_shape, np.float32)
            for axis, (size, b, e) in enumerate(zip(meta.shape, begin, end)):
                keep = np.zeros(out_shape[axis], np.float32)
                keep[max(b, 0) : max(b, 0) + size + min(b, 0) + min(e, 0)] = 1.0
                inside = inside * keep.reshape([-1 if i == axis else 1 for i in range(meta.rank)])
            self.add_constant("offset", ((1.0 - inside) * np.float32(value)).reshape(self.target))  # no batch dim: auto_LiRPA's Add wants it so

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.identity:
            return x.reshape(-1, *self.target)
        if self.spatial_zero:
            return F.conv2d(x, self.eye, padding=self.padding, groups=self.eye.shape[0])
        y = to_stacked(x, self.meta) if self.stacked_path else x
        for dim, name in self.selections:
            last = y.dim() - 1  # positive dims: auto_LiRPA's Transpose misreads negative ones
            swapped = y if dim == last else y.transpose(dim, last)
            y = torch.matmul(swapped, getattr(self, name).t())
            y = y if dim == last else y.transpose(dim, last)
        y = y.reshape(-1, *self.target)
        return y + self.offset if self.has_offset else y


def _pads_and_value(node: NodeInfo, inputs: Sequence[Value], rank: int) -> tuple[tuple, tuple, float]:
    """Per-axis (begin, end) pads over all `rank` axes and the constant pad value."""
    if node.opset < 11:
        pads = node.attr("pads")
        if pads is None:
            raise node.invalid("missing pads")
        pads, value, axes = [int(p) for p in pads], float(node.attr("value", 0.0)), None
    else:
        pads = [int(p) for p in np.asarray(constant(node, inputs, 1, "pads")).reshape(-1)]
        given = optional_constant(node, inputs, 2, "constant_value")
        value = 0.0 if given is None or np.size(given) == 0 else float(np.asarray(given).reshape(-1)[0])
        axes = optional_constant(node, inputs, 3, "axes")
    try:
        axes = list(range(rank)) if axes is None else [normalize_axis(int(a), rank) for a in np.reshape(axes, -1)]
    except ValueError as error:
        raise node.invalid(str(error)) from error
    if len(pads) != 2 * len(axes) or len(set(axes)) != len(axes):
        raise node.invalid(f"pads {pads} do not match axes {axes}")
    begin, end = [0] * rank, [0] * rank
    for i, axis in enumerate(axes):
        begin[axis], end[axis] = pads[i], pads[len(axes) + i]
    if not np.isfinite(value):
        raise node.unsupported(f"pad value {value}")
    return tuple(begin), tuple(end), value


def _selection(node: NodeInfo, mode: str, size: int, begin: int, end: int) -> np.ndarray:
    """(size + begin + end, size) 0/1 matrix: row o picks the input value output o copies (none: constant)."""
    index = np.arange(size + begin + end) - begin
    inside = (index >= 0) & (index < size)
    if mode == "edge":
        index = np.clip(index, 0, size - 1)
    elif mode == "wrap":
        index = np.mod(index, size)
    elif mode == "reflect" and not inside.all():
        if size < 2 or max(begin, end) > size - 1:
            raise node.invalid(f"reflect pads ({begin}, {end}) need more than {max(begin, end)} values, axis has {size}")
        index = np.where(index < 0, -index, np.where(index >= size, 2 * (size - 1) - index, index))
    picks = inside | (mode != "constant")
    matrix = np.zeros((index.size, size), np.float32)
    matrix[np.flatnonzero(picks), index[picks]] = 1.0
    return matrix
