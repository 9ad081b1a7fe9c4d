"""Elementwise operators: arithmetic with broadcasting, activations, and pass-throughs."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from onnx import TensorProto

from verikit.core.pwl import Affine, Layer, Relu
from verikit.onnx.layout import Meta, normalize_axis, to_stacked
from verikit.onnx.ops.base import (
    Const,
    Dyn,
    NodeInfo,
    Op,
    Value,
    optional_constant,
    register,
)
from verikit.onnx.ops.reciprocal import reciprocal
from verikit.onnx.ops.step import not_zero

_LEGACY_BROADCAST = frozenset({"broadcast", "consumed_inputs"})  # opset < 7; `axis` is refused


def broadcast_operands(node: NodeInfo, inputs: Sequence[Value],
                       count: int) -> tuple[int, list[Meta | None], bool]:
    """For an op of `count` operands broadcast as numpy does: the output's rank, each operand's meta (None
    for a constant), and whether the op runs in the merged layout (a leading output dim of 1 that every
    input-dependent operand of full rank shares); the node is refused when the count or shapes do not fit."""
    if len(inputs) != count or any(value is None for value in inputs):
        raise node.invalid(f"expects {count} inputs")
    shapes = [v.meta.shape if isinstance(v, Dyn) else np.shape(v.value) for v in inputs]
    try:
        out_shape = np.broadcast_shapes(*shapes)
    except ValueError as error:
        raise node.invalid(f"cannot broadcast shapes {' and '.join(map(str, shapes))}") from error
    metas = [v.meta if isinstance(v, Dyn) else None for v in inputs]
    rank = len(out_shape)
    merged = bool(out_shape) and out_shape[0] == 1 and all(
        m.merged and m.rank == rank for m in metas if m is not None)
    return rank, metas, merged


class _Binary(Op):
    """`function(a, b)` with numpy broadcasting; either operand may be a constant."""

    attributes = _LEGACY_BROADCAST
    function: ClassVar[Callable[[torch.Tensor, torch.Tensor], torch.Tensor]]
    affine_positions: ClassVar[tuple[int, ...]] = (0, 1)  # where the one input-dependent operand keeps it affine
    const_batch_dim: ClassVar[bool] = False  # in the merged layout, hold the constant with a leading batch dim

    def __init__(self, node: NodeInfo, inputs: Sequence[Value]) -> None:
        super().__init__(node, inputs)
        self.rank, self.metas, self.merged_path = broadcast_operands(node, inputs, 2)
        self.out_merged = self.merged_path
        self.const_position = next((i for i, v in enumerate(inputs) if isinstance(v, Const)), -1)
        self.function = type(self).function
        if self.const_position >= 0:
            const, self.function, const_batch_dim = self.with_constant(
                np.asarray(inputs[self.const_position].value), self.const_position
            )
            if self.merged_path:  # the forms auto_LiRPA's bound code expects (its Add and Mul differ)
                if const_batch_dim:
                    const = const.reshape((1,) * (self.rank - const.ndim) + const.shape)
                elif const.ndim == self.rank:
                    const = const[0]
            self.add_constant("const", const)
        dynamic_position = next(i for i, v in enumerate(inputs) if isinstance(v, Dyn))
        if self.const_position >= 0 and dynamic_position in self.affine_positions:
            self.pwl_role = "affine"

    def with_constant(self, const: np.ndarray, position: int) -> tuple[np.ndarray, Callable, bool]:
        """(constant to hold, torch function, whether to hold it with a batch dim) for a constant operand."""
        return const, type(self).function, type(self).const_batch_dim

    def forward(self, *xs: torch.Tensor) -> torch.Tensor:
        given = iter(xs)
        operands = []
        for position, meta in enumerate(self.metas):
            if position == self.const_position:
                operands.append(self.const)
            else:
                x = next(given)
                operands.append(x if self.merged_path else to_stacked(x, meta, self.rank))
        return self.function(*operands)


@register("Add")
class Add(_Binary):
    function = staticmethod(torch.add)


@register("Sub")
class Sub(_Binary):
    function = staticmethod(torch.sub)


@register("Mul")
class Mul(_Binary):
    function = staticmethod(torch.mul)
    const_batch_dim = True


def _maximum(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return b + F.relu(a - b)  # as a ReLU, so bound propagation relaxes it as one


def _minimum(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return a - F.relu(a - b)


class _TwoOperands(_Binary):
    """ONNX's Max and Min take any number of operands; verikit reads two (MaxMin, a clamp by a constant).
    A constant operand is held as _Binary holds it for Sub and Add, the ops its function is made of."""

    attributes = frozenset()

    def __init__(self, node: NodeInfo, inputs: Sequence[Value]) -> None:
        if len(inputs) != 2:
            raise node.unsupported(f"{len(inputs)} operands (verikit reads {node.op_type} of two)")
        super().__init__(node, inputs)
        self.pwl_role = "other"  # piecewise linear, but not written as a chain layer


@register("Max")
class Max(_TwoOperands):
    """max(a, b) = b + relu(a - b) elementwise (a MaxMin/GroupSort activation's half, or a clamp)."""

    function = staticmethod(_maximum)


@register("Min")
class Min(_TwoOperands):
    """min(a, b) = a - relu(a - b) elementwise."""

    function = staticmethod(_minimum)


def _times_reciprocal(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return a * reciprocal(b)


@register("Div")
class Div(_Binary):
    """a / b. By a constant: a * (1 / c). By an input-dependent b: a * reciprocal(b), whose bounds
    verikit gives (auto_LiRPA 0.3's own Div bounds are unsound for a negative numerator)."""

    function = staticmethod(_times_reciprocal)
    affine_positions = (0,)

    def with_constant(self, const: np.ndarray, position: int) -> tuple[np.ndarray, Callable, bool]:
        if position == 1:  # x * (1 / c): auto_LiRPA bounds a Mul by a constant, not a Div
            return 1.0 / const.astype(np.float64), torch.mul, Mul.const_batch_dim
        return const, _times_reciprocal, Mul.const_batch_dim


class _Unary(Op):
    """An elementwise function of one input; the layout passes through."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.apply(x)

    def apply(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError


@register("Relu")
class ReluOp(_Unary):
    attributes = frozenset({"consumed_inputs"})
    pwl_role = "piecewise"

    def apply(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(x)

    def pwl_layers(self, size: int) -> tuple[Layer, ...]:
        return (Relu(),)


@register("LeakyRelu")
class LeakyRelu(_Unary):
    attributes = frozenset({"alpha", "consumed_inputs"})
    pwl_role = "piecewise"

    def __init__(self, node: NodeInfo, inputs: Sequence[Value]) -> None:
        super().__init__(node, inputs)
        self.alpha = float(node.attr("alpha", 0.01))

    def apply(self, x: torch.Tensor) -> torch.Tensor:
        return F.leaky_relu(x, self.alpha)

    def pwl_layers(self, size: int) -> tuple[Layer, ...]:
        """relu(x) - alpha * relu(-x)."""
        eye = np.eye(size)
        zeros = np.zeros(size)
        return (
            Affine(np.vstack([eye, -eye]), np.zeros(2 * size)),
            Relu(),
            Affine(np.hstack([eye, -self.alpha * eye]), zeros),
        )


@register("Clip")
class Clip(_Unary):
    """min(max(x, lo), hi), written as lo + relu(x - lo) - relu(x - hi) so bound engines see Relus."""

    attributes = frozenset({"min", "max"})
    pwl_role = "piecewise"

    def __init__(self, node: NodeInfo, inputs: Sequence[Value]) -> None:
        super().__init__(node, inputs)
        if node.opset < 11:
            lo, hi = node.attr("min"), node.attr("max")
        else:
            lo = optional_constant(node, inputs, 1, "min")
            hi = optional_constant(node, inputs, 2, "max")
        self.lo = None if lo is None or not np.isfinite(lo) else float(np.asarray(lo).reshape(()))
        self.hi = None if hi is None or not np.isfinite(hi) else float(np.asarray(hi).reshape(()))
        if self.lo is not None and self.hi is not None and self.lo > self.hi:
            raise node.unsupported(f"min {self.lo} above max {self.hi}")

    def apply(self, x: torch.Tensor) -> torch.Tensor:
        y = x
        if self.lo is not None:
            y = F.relu(x - self.lo) + self.lo
        if self.hi is not None:
            y = y - F.relu(x - self.hi)
        return y

    def pwl_layers(self, size: int) -> tuple[Layer, ...]:
        eye = np.eye(size)
        rows, offsets, mix = [], [], []
        out_bias = np.zeros(size)
        if self.lo is None:  # x - relu(x - hi), with x = relu(x) - relu(-x)
            rows += [eye, -eye]
            offsets += [np.zeros(size), np.zeros(size)]
            mix += [eye, -eye]
        else:
            rows.append(eye)
            offsets.append(np.full(size, -self.lo))
            mix.append(eye)
            out_bias += self.lo
        if self.hi is not None:
            rows.append(eye)
            offsets.append(np.full(size, -self.hi))
            mix.append(-eye)
        return (Affine(np.vstack(rows), np.concatenate(offsets)), Relu(), Affine(np.hstack(mix), out_bias))


@register("Sigmoid")
class Sigmoid(_Unary):
    attributes = frozenset({"consumed_inputs"})

    def apply(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(x)


@register("Tanh")
class Tanh(_Unary):
    attributes = frozenset({"consumed_inputs"})

    def apply(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tanh(x)


@register("Neg")
class Neg(_Unary):
    attributes = frozenset({"consumed_inputs"})
    pwl_role = "affine"

    def apply(self, x: torch.Tensor) -> torch.Tensor:
        return torch.neg(x)


@register("Identity")
class Identity(_Unary):
    pwl_role = "relayout"

    def apply(self, x: torch.Tensor) -> torch.Tensor:
        return x


@register("Dropout")
class Dropout(Identity):
    """Inference: the identity (a used mask output is refused by the graph builder)."""

    attributes = frozenset({"ratio", "is_test", "seed", "consumed_inputs"})

    def __init__(self, node: NodeInfo, inputs: Sequence[Value]) -> None:
        super().__init__(node, inputs)
        training = optional_constant(node, inputs, 2, "training_mode")
        if training is not None and bool(np.asarray(training).reshape(())):
            raise node.unsupported("training_mode=true")
        if node.opset < 7 and node.attr("is_test", 0) == 0:
            raise node.unsupported("is_test=0")


@register("Cast")
class Cast(Identity):
    """A cast of an input-dependent tensor to FLOAT (a no-op: bools are held as 0.0/1.0 floats) or to BOOL
    (x != 0, a step: see verikit.onnx.ops.step); other targets are refused. Constants are folded."""

    attributes = frozenset({"to", "saturate"})
    pwl_role = "relayout"

    def __init__(self, node: NodeInfo, inputs: Sequence[Value]) -> None:
        super().__init__(node, inputs)
        target = node.attr("to")
        self.to_bool = target in (TensorProto.BOOL, "BOOL", "bool")
        if self.to_bool:
            self.pwl_role = "other"
        elif target not in (TensorProto.FLOAT, "FLOAT", "float"):
            name = TensorProto.DataType.Name(target) if isinstance(target, int) else str(target)
            raise node.unsupported(f"to={name} on an input-dependent tensor (only FLOAT and BOOL)")

    def apply(self, x: torch.Tensor) -> torch.Tensor:
        return not_zero(x) if self.to_bool else x


@register("Softmax")
class Softmax(Op):
    """Softmax over `axis` (opset ≥ 13), or over the flattened dims from `axis` on (older opsets)."""

    attributes = frozenset({"axis"})

    def __init__(self, node: NodeInfo, inputs: Sequence[Value]) -> None:
        super().__init__(node, inputs)
        meta = self.in_metas[0]
        self.meta = meta
        try:
            axis = normalize_axis(int(node.attr("axis", -1 if node.opset >= 13 else 1)), max(meta.rank, 1))
        except ValueError as error:
            raise node.invalid(str(error)) from error
        self.flat = node.opset < 13 and axis != meta.rank - 1
        self.split = int(np.prod(meta.shape[:axis]))
        self.stacked_path = self.flat or (meta.merged and axis == 0)
        self.dim = -1 if self.flat else (axis + 1 if self.stacked_path else meta.torch_axis(axis))
        self.out_merged = meta.merged and not self.stacked_path

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.stacked_path:
            return torch.softmax(x, dim=self.dim)
        x = to_stacked(x, self.meta)
        if self.flat:
            return torch.softmax(x.reshape(-1, self.split, self.meta.size // self.split), dim=-1).reshape(
                -1, *self.meta.shape
            )
        return torch.softmax(x, dim=self.dim)
