"""Shape operators: reshapes (Flatten, Reshape, Squeeze, Unsqueeze), Transpose, Concat, Gather, Slice,
and the load-time ones (Shape, Size, Constant)."""

from __future__ import annotations

from collections.abc import Sequence
from math import prod

import numpy as np
import torch

from verikit.onnx.layout import Meta, normalize_axis, preferred, to_stacked
from verikit.onnx.ops.base import (
    Const,
    Dyn,
    NodeInfo,
    Op,
    Value,
    axes_of,
    constant,
    optional_constant,
    register,
)


class Reshaping(Op):
    """A change of shape that keeps each sample's values in C order: one torch reshape (or none)."""

    pwl_role = "relayout"

    def __init__(self, node: NodeInfo, inputs: Sequence[Value]) -> None:
        super().__init__(node, inputs)
        if not isinstance(inputs[0], Dyn):
            raise node.unsupported("input-dependent shape arguments")
        source = inputs[0].meta
        try:
            shape = tuple(int(d) for d in self.output_shape(node, inputs, source.shape))
        except ValueError as error:
            raise node.invalid(str(error)) from error
        if prod(shape) != source.size:
            raise node.invalid(f"cannot reshape {source.shape} ({source.size} values) to {shape}")
        target = preferred(shape)
        self.out_merged = target.merged
        self.target = target.torch_shape
        self.skip = target.torch_shape == source.torch_shape  # the input is already held in this shape

    def accept_any_layout(self) -> None:
        """Reshape whatever torch shape comes in (the graph builder drops reshapes made before this one)."""
        self.skip = False

    def output_shape(self, node: NodeInfo, inputs: Sequence[Value], shape: tuple[int, ...]) -> tuple[int, ...]:
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x if self.skip else x.reshape(-1, *self.target)


@register("Flatten")
class Flatten(Reshaping):
    attributes = frozenset({"axis"})

    def output_shape(self, node, inputs, shape):
        axis = normalize_axis(int(node.attr("axis", 1)), len(shape) + 1)
        return prod(shape[:axis]), prod(shape[axis:])


@register("Reshape")
class Reshape(Reshaping):
    attributes = frozenset({"allowzero", "shape", "consumed_inputs"})

    def output_shape(self, node, inputs, shape):
        requested = node.attr("shape") if node.opset < 5 else constant(node, inputs, 1, "shape")
        requested = [int(d) for d in np.asarray(requested).reshape(-1)]
        if node.attr("allowzero", 0) and 0 in requested:
            raise node.unsupported("allowzero=1 with a 0 in the shape")
        result = [shape[i] if d == 0 else d for i, d in enumerate(requested)]
        if result.count(-1) > 1:
            raise ValueError(f"shape {requested} has more than one -1")
        if -1 in result:
            known = prod(d for d in result if d != -1)
            if known == 0 or prod(shape) % known:
                raise ValueError(f"cannot reshape {shape} to {requested}")
            result[result.index(-1)] = prod(shape) // known
        return tuple(result)


@register("Squeeze")
class Squeeze(Reshaping):
    attributes = frozenset({"axes"})

    def output_shape(self, node, inputs, shape):
        axes = axes_of(node, inputs, 1, since_opset=13)
        if axes is None:
            return tuple(d for d in shape if d != 1)
        axes = {normalize_axis(a, len(shape)) for a in axes}
        if any(shape[a] != 1 for a in axes):
            raise ValueError(f"cannot squeeze axes {sorted(axes)} of shape {shape}")
        return tuple(d for i, d in enumerate(shape) if i not in axes)


@register("Unsqueeze")
class Unsqueeze(Reshaping):
    attributes = frozenset({"axes"})

    def output_shape(self, node, inputs, shape):
        axes = axes_of(node, inputs, 1, since_opset=13)
        if not axes:
            raise ValueError("Unsqueeze needs axes")
        rank = len(shape) + len(axes)
        axes = {normalize_axis(a, rank) for a in axes}
        rest = iter(shape)
        return tuple(1 if i in axes else next(rest) for i in range(rank))


@register("Transpose")
class Transpose(Op):
    attributes = frozenset({"perm"})
    pwl_role = "affine"

    def __init__(self, node: NodeInfo, inputs: Sequence[Value]) -> None:
        super().__init__(node, inputs)
        meta = self.in_metas[0]
        perm = [int(p) for p in node.attr("perm", range(meta.rank - 1, -1, -1))]
        if sorted(perm) != list(range(meta.rank)):
            raise node.invalid(f"perm {perm} is not a permutation of {meta.rank} axes")
        self.meta = meta
        self.stacked_path = not meta.merged or perm[0] != 0
        self.dims = (0, *(p + 1 for p in perm)) if self.stacked_path else (0, *perm[1:])
        self.out_merged = not self.stacked_path

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (to_stacked(x, self.meta) if self.stacked_path else x).permute(*self.dims)


@register("Concat")
class Concat(Op):
    attributes = frozenset({"axis"})

    def __init__(self, node: NodeInfo, inputs: Sequence[Value]) -> None:
        super().__init__(node, inputs)
        self.metas: list[Meta | None] = [v.meta if isinstance(v, Dyn) else None for v in inputs]
        shapes = [v.meta.shape if isinstance(v, Dyn) else np.shape(v.value) for v in inputs]
        rank = len(shapes[0])
        if any(len(s) != rank for s in shapes) or rank == 0:
            raise node.invalid(f"cannot concatenate shapes {shapes}")
        self.axis = normalize_axis(int(node.attr("axis")), rank)
        merged = self.axis != 0 and all(m is None or m.merged for m in self.metas)
        self.out_merged = merged
        self.dim = self.axis if merged else self.axis + 1
        constants = [np.asarray(v.value) for v in inputs if isinstance(v, Const)]
        for index, array in enumerate(constants):  # held with a batch axis of 1, expanded in forward
            self.add_constant(f"const{index}", (array[0] if merged else array)[None])
        if len(self.in_metas) == 1:
            self.pwl_role = "affine"

    def forward(self, *xs: torch.Tensor) -> torch.Tensor:
        given, constants = iter(xs), 0
        batch = xs[0].shape[0]
        parts = []
        for meta in self.metas:
            if meta is None:
                const = getattr(self, f"const{constants}")
                parts.append(const.expand(batch, *const.shape[1:]))
                constants += 1
            else:
                parts.append(next(given) if self.out_merged else to_stacked(next(given), meta))
        return torch.cat(parts, dim=self.dim)


@register("Gather")
class Gather(Op):
    """Gather of an input-dependent tensor at constant indices along `axis`."""

    attributes = frozenset({"axis"})
    pwl_role = "affine"

    def __init__(self, node: NodeInfo, inputs: Sequence[Value]) -> None:
        super().__init__(node, inputs)
        if not isinstance(inputs[0], Dyn):
            raise node.unsupported("input-dependent indices")
        meta = inputs[0].meta
        indices = np.asarray(constant(node, inputs, 1, "indices")).astype(np.int64)
        axis = normalize_axis(int(node.attr("axis", 0)), meta.rank)
        size = meta.shape[axis]
        if ((indices < -size) | (indices >= size)).any():
            raise node.invalid(f"indices out of range for axis {axis} of size {size}")
        out_shape = meta.shape[:axis] + indices.shape + meta.shape[axis + 1 :]
        self.meta = meta
        self.stacked_path = not meta.merged or axis == 0
        self.dim = axis + 1 if self.stacked_path else axis
        target = Meta(out_shape, merged=not self.stacked_path)
        self.out_merged = target.merged
        self.target = target.torch_shape
        flat = np.where(indices < 0, indices + size, indices).reshape(-1)
        self.register_buffer("indices", torch.from_numpy(flat))
        # auto_LiRPA's Gather backward bound keeps one of repeated indices' coefficients (unsound):
        # repeated indices are a 0/1 selection matmul instead
        self.repeated = len(np.unique(flat)) < len(flat)
        if self.repeated:
            selection = np.zeros((len(flat), size), np.float32)
            selection[np.arange(len(flat)), flat] = 1.0
            self.add_constant("selection", selection)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = to_stacked(x, self.meta) if self.stacked_path else x
        if not self.repeated:
            return torch.index_select(x, self.dim, self.indices).reshape(-1, *self.target)
        last = x.dim() - 1  # positive dims: auto_LiRPA's Transpose misreads negative ones
        x = x if self.dim == last else x.transpose(self.dim, last)
        x = torch.matmul(x, self.selection.t())
        x = x if self.dim == last else x.transpose(self.dim, last)
        return x.reshape(-1, *self.target)


@register("Slice")
class Slice(Op):
    """Slice of an input-dependent tensor with constant starts/ends/axes/steps."""

    attributes = frozenset({"starts", "ends", "axes"})
    pwl_role = "affine"

    def __init__(self, node: NodeInfo, inputs: Sequence[Value]) -> None:
        super().__init__(node, inputs)
        meta = self.in_metas[0]
        if node.opset < 10:
            starts, ends, axes, steps = node.attr("starts"), node.attr("ends"), node.attr("axes"), None
        else:
            starts, ends = constant(node, inputs, 1, "starts"), constant(node, inputs, 2, "ends")
            axes = optional_constant(node, inputs, 3, "axes")
            steps = optional_constant(node, inputs, 4, "steps")
        starts, ends = np.asarray(starts).reshape(-1), np.asarray(ends).reshape(-1)
        axes = np.arange(len(starts)) if axes is None else np.asarray(axes).reshape(-1)
        steps = np.ones(len(starts), np.int64) if steps is None else np.asarray(steps).reshape(-1)
        self.meta = meta
        picks: dict[int, np.ndarray] = {}
        for start, end, axis, step in zip(starts, ends, axes, steps):
            axis = normalize_axis(int(axis), meta.rank)
            if step == 0:
                raise node.invalid("step 0")
            size = meta.shape[axis]
            chosen = np.arange(size)[slice(_clamp(start, size), _clamp(end, size), int(step))]
            if chosen.size == 0:
                raise node.unsupported(f"an empty slice of axis {axis}")
            if not np.array_equal(chosen, np.arange(size)):
                picks[axis] = chosen
        self.stacked_path = not meta.merged or 0 in picks
        self.out_merged = not self.stacked_path
        self.picks = []
        for axis, chosen in sorted(picks.items()):
            name = f"pick{len(self.picks)}"
            self.register_buffer(name, torch.from_numpy(chosen.astype(np.int64)))
            self.picks.append((axis + 1 if self.stacked_path else axis, name))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = to_stacked(x, self.meta) if self.stacked_path else x
        for dim, name in self.picks:
            x = torch.index_select(x, dim, getattr(self, name))
        return x


def _clamp(index, size: int) -> int:
    """A huge ONNX start/end (INT64_MAX style) clipped so Python slicing reads it the same way."""
    return int(np.clip(int(index), -size - 1, size + 1))


@register("Shape")
class Shape(Op):
    """The per-sample shape (a model's batch dim is 1): always known at load time."""

    attributes = frozenset({"start", "end"})

    @classmethod
    def fold(cls, node: NodeInfo, inputs: Sequence[Value]) -> np.ndarray:
        shape = inputs[0].meta.shape
        start, end = node.attr("start", 0), node.attr("end", len(shape))
        return np.asarray(shape[slice(start, end)], dtype=np.int64)


@register("Size")
class Size(Op):
    @classmethod
    def fold(cls, node: NodeInfo, inputs: Sequence[Value]) -> np.ndarray:
        return np.asarray(inputs[0].meta.size, dtype=np.int64)


@register("Constant")
class Constant(Op):
    """Has no inputs, so the graph builder always folds it."""

    attributes = frozenset(
        {"value", "value_float", "value_floats", "value_int", "value_ints", "value_string", "value_strings"}
    )

