"""Shared pieces of the image operators (Conv, pools): the (N, C, *spatial) layout and padding geometry."""

from __future__ import annotations

from collections.abc import Sequence
from math import ceil

import torch

from verikit.onnx.ops.base import Dyn, NodeInfo, Op, Value


class ImageOp(Op):
    """An op on an input-dependent (N, C, *spatial) tensor, run with the per-sample N folded into the batch."""

    min_rank = 3

    def __init__(self, node: NodeInfo, inputs: Sequence[Value]) -> None:
        super().__init__(node, inputs)
        if not inputs or not isinstance(inputs[0], Dyn):
            raise node.unsupported("constant X with input-dependent parameters")
        self.meta = inputs[0].meta
        if self.meta.rank < self.min_rank:
            raise node.invalid(f"needs an (N, C, spatial...) input, got shape {self.meta.shape}")
        self.per_sample = self.meta.shape[0]
        self.out_merged = self.per_sample == 1

    @property
    def spatial_shape(self) -> tuple[int, ...]:
        return self.meta.shape[2:]

    def to_images(self, x: torch.Tensor) -> torch.Tensor:
        """(B * N, C, *spatial)."""
        return x if self.meta.merged else x.reshape(-1, *self.meta.shape[1:])

    def from_images(self, y: torch.Tensor) -> torch.Tensor:
        return y if self.per_sample == 1 else y.unflatten(0, (-1, self.per_sample))


def explicit_pads(
    node: NodeInfo,
    spatial: Sequence[int],
    kernel: Sequence[int],
    strides: Sequence[int],
    dilations: Sequence[int],
) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """(begin, end) pads per spatial dim from `pads` or `auto_pad` (SAME_* worked out from static shapes)."""
    rank = len(spatial)
    if not len(kernel) == len(strides) == len(dilations) == rank:
        raise node.invalid(f"kernel/strides/dilations do not match {rank} spatial dims")
    auto_pad = node.attr("auto_pad", "NOTSET")
    if auto_pad == "NOTSET":
        pads = tuple(int(p) for p in node.attr("pads", (0,) * (2 * rank)))
        if len(pads) != 2 * rank:
            raise node.invalid(f"pads {pads} do not match {rank} spatial dims")
        return pads[:rank], pads[rank:]
    if auto_pad == "VALID":
        return (0,) * rank, (0,) * rank
    if auto_pad not in ("SAME_UPPER", "SAME_LOWER"):
        raise node.unsupported(f"auto_pad={auto_pad}")
    begin, end = [], []
    for size, k, s, d in zip(spatial, kernel, strides, dilations):
        total = max(0, (ceil(size / s) - 1) * s + (k - 1) * d + 1 - size)
        small, large = total // 2, total - total // 2
        begin.append(small if auto_pad == "SAME_UPPER" else large)
        end.append(large if auto_pad == "SAME_UPPER" else small)
    return tuple(begin), tuple(end)


def output_size(size: int, kernel: int, stride: int, dilation: int, begin: int, end: int) -> int:
    """Floor-mode output length of a window op along one dim."""
    return (size + begin + end - ((kernel - 1) * dilation + 1)) // stride + 1


def check_floor_mode(node: NodeInfo, spatial, kernel, strides, dilations, begin, end) -> None:
    """Accept ceil_mode=1 only where it gives the same output size as floor mode."""
    if not node.attr("ceil_mode", 0):
        return
    for size, k, s, d, b, e in zip(spatial, kernel, strides, dilations, begin, end):
        if (size + b + e - ((k - 1) * d + 1)) % s != 0:
            raise node.unsupported("ceil_mode=1 where it changes the output size")


def ceil_mode_end_pads(spatial, kernel, strides, dilations, begin, end) -> tuple[int, ...]:
    """End pads that make floor mode give ceil mode's output size: the last window, cut off by the input's
    end, is completed with padding (for a max, padding with -inf leaves each output as ONNX computes it)."""
    extended = []
    for size, k, s, d, b, e in zip(spatial, kernel, strides, dilations, begin, end):
        span = size + b + e - ((k - 1) * d + 1)
        extended.append(e + (-span) % s)
    return tuple(extended)


def torch_pad(begin: Sequence[int], end: Sequence[int]) -> tuple[int, ...]:
    """ONNX begin/end pads → F.pad's order (last dim first)."""
    return tuple(value for b, e in reversed(list(zip(begin, end))) for value in (b, e))
