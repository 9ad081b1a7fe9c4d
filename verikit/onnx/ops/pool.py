"""Pooling operators: MaxPool, AveragePool, GlobalAveragePool."""

from __future__ import annotations

from collections.abc import Sequence
from itertools import product

import numpy as np
import torch
import torch.nn.functional as F

from verikit.core.pwl import Layer, MaxGroups
from verikit.onnx.ops.base import NodeInfo, Value, register
from verikit.onnx.ops.spatial import (
    ImageOp,
    ceil_mode_end_pads,
    check_floor_mode,
    explicit_pads,
    output_size,
    torch_pad,
)


class _WindowOp(ImageOp):
    """Shared geometry of the sliding-window pools: kernel, strides, dilations, begin/end pads."""

    #: ceil_mode=1 as extra end padding (right for a max; an average would count the padding)
    ceil_by_padding: bool = False

    def __init__(self, node: NodeInfo, inputs: Sequence[Value]) -> None:
        super().__init__(node, inputs)
        spatial = len(self.spatial_shape)
        if spatial not in (1, 2, 3):
            raise node.unsupported(f"{spatial} spatial dims")
        if node.attr("kernel_shape") is None:
            raise node.invalid("missing kernel_shape")
        self.kernel = tuple(int(k) for k in node.attr("kernel_shape"))
        self.strides = tuple(int(s) for s in node.attr("strides", (1,) * spatial))
        self.dilations = tuple(int(d) for d in node.attr("dilations", (1,) * spatial))
        self.begin, self.end = explicit_pads(node, self.spatial_shape, self.kernel, self.strides, self.dilations)
        if self.ceil_by_padding and node.attr("ceil_mode", 0):
            self.end = ceil_mode_end_pads(self.spatial_shape, self.kernel, self.strides, self.dilations,
                                          self.begin, self.end)
        check_floor_mode(node, self.spatial_shape, self.kernel, self.strides, self.dilations, self.begin, self.end)
        if any(b >= k or e >= k for b, e, k in zip(self.begin, self.end, self.kernel)):
            raise node.unsupported(f"pads {self.begin + self.end} not smaller than kernel {self.kernel}")
        # torch pads implicitly only symmetrically and by at most half the kernel; else pad explicitly
        self.implicit = self.begin == self.end and all(2 * b <= k for b, k in zip(self.begin, self.kernel))
        self.padding = self.begin if self.implicit else (0,) * spatial


@register("MaxPool")
class MaxPool(_WindowOp):
    attributes = frozenset({"auto_pad", "ceil_mode", "dilations", "kernel_shape", "pads", "storage_order", "strides"})
    pwl_role = "piecewise"
    ceil_by_padding = True

    def __init__(self, node: NodeInfo, inputs: Sequence[Value]) -> None:
        super().__init__(node, inputs)
        self.function = (F.max_pool1d, F.max_pool2d, F.max_pool3d)[len(self.kernel) - 1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        images = self.to_images(x)
        if not self.implicit:
            images = F.pad(images, torch_pad(self.begin, self.end), value=float("-inf"))
        out = self.function(images, self.kernel, self.strides, self.padding, self.dilations)
        return self.from_images(out)

    def pwl_layers(self, size: int) -> tuple[Layer, ...]:
        return (MaxGroups(self.max_groups()),)

    def max_groups(self) -> np.ndarray:
        """(out_elements, window) flat per-sample input indices of each output's window; padding is
        left out by repeating an index of the same window (a max is unchanged by repeats)."""
        spatial = self.spatial_shape
        out = tuple(
            output_size(*args) for args in zip(spatial, self.kernel, self.strides, self.dilations, self.begin, self.end)
        )
        positions = np.indices(out).reshape(len(out), -1)  # (dims, out_spatial)
        indices, valid = [], []
        for offset in product(*(range(k) for k in self.kernel)):
            coords = [
                positions[d] * self.strides[d] - self.begin[d] + offset[d] * self.dilations[d] for d in range(len(out))
            ]
            inside = np.all([(c >= 0) & (c < spatial[d]) for d, c in enumerate(coords)], axis=0)
            clipped = [np.clip(c, 0, spatial[d] - 1) for d, c in enumerate(coords)]
            indices.append(np.ravel_multi_index(clipped, spatial))
            valid.append(inside)
        indices, valid = np.stack(indices, axis=1), np.stack(valid, axis=1)  # (out_spatial, window)
        first = indices[np.arange(indices.shape[0]), valid.argmax(axis=1)]
        indices = np.where(valid, indices, first[:, None])
        planes = self.meta.shape[0] * self.meta.shape[1]
        plane_offsets = np.arange(planes)[:, None, None] * int(np.prod(spatial))
        return (plane_offsets + indices[None]).reshape(-1, indices.shape[1]).astype(np.int64)


@register("AveragePool")
class AveragePool(_WindowOp):
    attributes = frozenset({"auto_pad", "ceil_mode", "count_include_pad", "dilations", "kernel_shape", "pads", "strides"})
    pwl_role = "affine"

    def __init__(self, node: NodeInfo, inputs: Sequence[Value]) -> None:
        super().__init__(node, inputs)
        if any(d != 1 for d in self.dilations):
            raise node.unsupported(f"dilations={list(self.dilations)}")
        self.count_pads = bool(node.attr("count_include_pad", 0))
        if not self.implicit and not self.count_pads and any(self.begin + self.end):
            raise node.unsupported("asymmetric or large pads with count_include_pad=0")
        self.function = (F.avg_pool1d, F.avg_pool2d, F.avg_pool3d)[len(self.kernel) - 1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        images = self.to_images(x)
        if not self.implicit:
            images = F.pad(images, torch_pad(self.begin, self.end))
        out = self.function(images, self.kernel, self.strides, self.padding, False, self.count_pads)
        return self.from_images(out)


@register("GlobalAveragePool")
class GlobalAveragePool(ImageOp):
    pwl_role = "affine"

    def __init__(self, node: NodeInfo, inputs: Sequence[Value]) -> None:
        super().__init__(node, inputs)
        spatial = len(self.spatial_shape)
        if spatial not in (1, 2, 3):
            raise node.unsupported(f"{spatial} spatial dims")
        self.function = (F.adaptive_avg_pool1d, F.adaptive_avg_pool2d, F.adaptive_avg_pool3d)[spatial - 1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.from_images(self.function(self.to_images(x), 1))
