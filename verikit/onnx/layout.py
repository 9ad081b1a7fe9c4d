"""How a tensor of the ONNX graph is held in torch: constant, or input-dependent with a leading batch axis.

The torch module computes the ONNX graph once per sample (the model's own batch dim, if any, is 1 for
each sample) for B samples at once. An input-dependent tensor of per-sample ONNX shape `shape` is held as
either
- *merged* (`shape[0] == 1`): torch shape `(B, *shape[1:])` — ONNX axis 0 is the batch axis, which is how
  ordinary models with a leading batch dim run, so their ops translate one to one; or
- *stacked*: torch shape `(B, *shape)` — an extra batch axis in front of the ONNX axes.
Both hold each sample's values in the same C order, so switching between them is a reshape.
"""

from __future__ import annotations

from dataclasses import dataclass
from math import prod

import torch


@dataclass(frozen=True)
class Meta:
    """Per-sample ONNX shape of an input-dependent tensor and how torch holds it (see the module doc)."""

    shape: tuple[int, ...]
    merged: bool

    def __post_init__(self) -> None:
        if self.merged and (not self.shape or self.shape[0] != 1):
            raise ValueError(f"a merged layout needs a leading dim of 1, got shape {self.shape}")

    @property
    def rank(self) -> int:
        return len(self.shape)

    @property
    def size(self) -> int:
        return int(prod(self.shape))

    @property
    def torch_shape(self) -> tuple[int, ...]:
        """The torch shape without the batch axis."""
        return self.shape[1:] if self.merged else self.shape

    def torch_axis(self, axis: int) -> int:
        """The torch axis holding ONNX axis `axis` (normalised, not 0 when merged)."""
        axis = normalize_axis(axis, self.rank)
        if self.merged and axis == 0:
            raise ValueError("ONNX axis 0 is the batch axis in a merged layout")
        return axis if self.merged else axis + 1


def preferred(shape: tuple[int, ...]) -> Meta:
    """The layout for a freshly shaped tensor: merged when its leading dim is 1."""
    shape = tuple(int(d) for d in shape)
    return Meta(shape, merged=bool(shape) and shape[0] == 1)


def stacked(shape: tuple[int, ...]) -> Meta:
    return Meta(tuple(int(d) for d in shape), merged=False)


def normalize_axis(axis: int, rank: int) -> int:
    """ONNX axis in [-rank, rank) → [0, rank); ValueError outside."""
    if not -rank <= axis < rank:
        raise ValueError(f"axis {axis} is out of range for rank {rank}")
    return axis + rank if axis < 0 else axis


def to_stacked(x: torch.Tensor, meta: Meta, rank: int | None = None) -> torch.Tensor:
    """`x` (held as `meta`) in the stacked layout, with size-1 dims prepended to reach ONNX rank `rank`."""
    rank = meta.rank if rank is None else rank
    if not meta.merged and rank == meta.rank:
        return x
    return x.reshape(-1, *((1,) * (rank - meta.rank)), *meta.shape)


def relayout(x: torch.Tensor, source: Meta, target: Meta) -> torch.Tensor:
    """`x` held as `source` reshaped to be held as `target` (same per-sample element count)."""
    if source.torch_shape == target.torch_shape:
        return x
    return x.reshape(-1, *target.torch_shape)

