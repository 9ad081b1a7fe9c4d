"""Linear operators with constant weights: MatMul, Gemm, Conv, BatchNormalization."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from verikit.onnx.layout import Meta, to_stacked
from verikit.onnx.ops.base import (
    Const,
    Dyn,
    NodeInfo,
    Op,
    Value,
    as_float,
    constant,
    optional_constant,
    register,
)
from verikit.onnx.ops.spatial import ImageOp, explicit_pads, torch_pad


class _LinearBias(Op):
    """An op computing F.linear(x, weight, bias) when `self.linear`, which can take over a following Add."""

    linear = True

    def absorb_bias(self, addend: np.ndarray, out_meta: Meta) -> bool:
        """Take `+ addend` into the bias when it is one value per output feature; True if taken.

        The graph builder calls this so that auto_LiRPA sees one Linear instead of MatMul then Add."""
        if not self.linear or getattr(self, "addend", None) is not None:
            return False
        vector = bias_vector(addend, out_meta, int(self.weight.shape[0]))
        if vector is None:
            return False
        previous = 0.0 if self.bias is None else self.exact_constants.get("bias", self.bias.detach().double().numpy())
        total = previous + vector
        back = total - previous  # TwoSum: the float64 rounding error of the sum, exactly
        if np.any((previous - (total - back)) + (vector - back) != 0.0):
            return False  # the float64 sum is rounded too: keep the Add as its own op
        self.add_constant("bias", total)  # exact in float64; float32 for auto_LiRPA (see add_constant)
        return True


@register("MatMul")
class MatMul(_LinearBias):
    """numpy-style matmul; one side may be a constant (the usual weight), or both input-dependent.

    A constant 2-D weight runs as `F.linear` (auto_LiRPA's best-supported form), which can also take
    over a following bias Add (see `absorb_bias`).
    """

    def __init__(self, node: NodeInfo, inputs: Sequence[Value]) -> None:
        super().__init__(node, inputs)
        if len(inputs) != 2 or any(value is None for value in inputs):
            raise node.invalid("expects two inputs")
        left, right = inputs
        self.mode = {(Dyn, Const): "x@W", (Const, Dyn): "W@x", (Dyn, Dyn): "x@y"}[(type(left), type(right))]
        self.metas = [v.meta if isinstance(v, Dyn) else None for v in inputs]
        ranks = [v.meta.rank if isinstance(v, Dyn) else np.ndim(v.value) for v in inputs]
        self.rank = max(ranks)
        self.linear = False  # y = F.linear(x, weight, bias)
        self.stacked_path = True
        if self.mode == "x@W":
            weight, meta = np.asarray(right.value), left.meta
            if weight.ndim == 0 or (meta.rank == 1 and weight.ndim > 2):
                raise node.unsupported(f"MatMul of shapes {meta.shape} and {weight.shape}")
            self.x_rank = self.rank if meta.rank >= 2 else 1
            self.stacked_path = not (
                meta.merged
                and meta.rank >= 2
                and (
                    weight.ndim < meta.rank
                    or (weight.ndim == meta.rank and (meta.rank == 2 or weight.shape[0] == 1))
                )
            )
            self.linear = weight.ndim == 2
            self.add_constant("weight", weight.T if self.linear else weight)
        elif self.mode == "W@x":
            weight, meta = np.asarray(left.value), right.meta
            if weight.ndim == 0 or (meta.rank == 1 and weight.ndim != 2):
                raise node.unsupported(f"MatMul of shapes {weight.shape} and {meta.shape}")
            self.linear = meta.rank == 1
            self.add_constant("weight", weight)
        elif min(ranks) < 2:
            raise node.unsupported("MatMul of two input-dependent tensors with a vector among them")
        self.add_constant("bias", None)
        self.pwl_role = "other" if self.mode == "x@y" else "affine"
        self.out_merged = not self.stacked_path

    def forward(self, *xs: torch.Tensor) -> torch.Tensor:
        if self.mode == "x@W":
            x = to_stacked(xs[0], self.metas[0], self.x_rank) if self.stacked_path else xs[0]
            return F.linear(x, self.weight, self.bias) if self.linear else torch.matmul(x, self.weight)
        if self.mode == "W@x":
            if self.linear:
                return F.linear(to_stacked(xs[0], self.metas[1]), self.weight, self.bias)
            return torch.matmul(self.weight, to_stacked(xs[0], self.metas[1], self.rank))
        return torch.matmul(to_stacked(xs[0], self.metas[0], self.rank), to_stacked(xs[1], self.metas[1], self.rank))


def bias_vector(addend: np.ndarray, out_meta: Meta, features: int) -> np.ndarray | None:
    """`addend` as a (features,) vector when adding it to an output of `out_meta` (features last) is
    adding that vector to every row, else None."""
    addend = np.asarray(addend, dtype=np.float64)
    if not out_meta.shape or out_meta.shape[-1] != features or addend.ndim > out_meta.rank:
        return None
    if (addend.ndim and any(d != 1 for d in addend.shape[:-1])) or addend.size not in (1, features):
        return None
    return np.broadcast_to(addend.reshape(-1), (features,)).copy()


@register("Gemm")
class Gemm(_LinearBias):
    """alpha * A' @ B' + beta * C with constant B and C; A' = A.T when transA, B' likewise."""

    attributes = frozenset({"alpha", "beta", "transA", "transB", "broadcast"})
    pwl_role = "affine"

    def __init__(self, node: NodeInfo, inputs: Sequence[Value]) -> None:
        super().__init__(node, inputs)
        if not isinstance(inputs[0], Dyn):
            raise node.unsupported("constant A with input-dependent B or C")
        meta = inputs[0].meta
        if meta.rank != 2:
            raise node.invalid(f"A must be 2-D, got shape {meta.shape}")
        alpha, beta = float(node.attr("alpha", 1.0)), float(node.attr("beta", 1.0))
        b = constant(node, inputs, 1, "B").astype(np.float64)
        b = b.T if node.attr("transB", 0) else b
        c = optional_constant(node, inputs, 2, "C")
        self.meta = meta
        self.trans_a = bool(node.attr("transA", 0))
        self.stacked_path = self.trans_a or not meta.merged
        rows = meta.shape[1] if self.trans_a else meta.shape[0]
        if b.ndim != 2 or b.shape[0] != (meta.shape[0] if self.trans_a else meta.shape[1]):
            raise node.invalid(f"A of shape {meta.shape} does not fit B' of shape {b.shape}")
        self.add_constant("weight", (alpha * b).T)
        self.add_constant("addend", None)
        bias = None
        if c is not None and beta != 0.0:
            c = beta * np.asarray(c, dtype=np.float64)
            try:
                full = np.broadcast_to(c, (rows, b.shape[1]))
            except ValueError as error:
                raise node.invalid(f"C of shape {c.shape} does not broadcast to {(rows, b.shape[1])}") from error
            if (full == full[:1]).all():
                bias = full[0]
            else:
                self.add_constant("addend", full)
        self.add_constant("bias", bias)
        self.out_merged = not self.stacked_path

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stacked_path:
            x = to_stacked(x, self.meta)
            if self.trans_a:
                x = x.transpose(1, 2)
        y = F.linear(x, self.weight, self.bias)
        return y if self.addend is None else y + self.addend


@register("Conv")
class Conv(ImageOp):
    """N-d convolution (1-3 spatial dims) with a constant kernel and bias."""

    attributes = frozenset({"auto_pad", "dilations", "group", "kernel_shape", "pads", "strides"})
    pwl_role = "affine"

    def __init__(self, node: NodeInfo, inputs: Sequence[Value]) -> None:
        super().__init__(node, inputs)
        weight = constant(node, inputs, 1, "weight")
        bias = optional_constant(node, inputs, 2, "bias")
        spatial = weight.ndim - 2
        if spatial not in (1, 2, 3) or self.meta.rank != weight.ndim:
            raise node.unsupported(f"Conv with input {self.meta.shape} and kernel {weight.shape}")
        kernel = tuple(node.attr("kernel_shape", weight.shape[2:]))
        if kernel != tuple(weight.shape[2:]):
            raise node.invalid(f"kernel_shape {kernel} differs from the weight's {weight.shape[2:]}")
        self.strides = tuple(node.attr("strides", (1,) * spatial))
        self.dilations = tuple(node.attr("dilations", (1,) * spatial))
        self.groups = int(node.attr("group", 1))
        begin, end = explicit_pads(node, self.meta.shape[2:], kernel, self.strides, self.dilations)
        self.padding, self.pre_pad = (begin, None) if begin == end else ((0,) * spatial, torch_pad(begin, end))
        # a 1-D convolution runs as a 2-D one over a height of 1: auto_LiRPA 0.3 bounds 2-D convolutions only
        self.as_2d = spatial == 1
        if self.as_2d:
            weight = weight[:, :, None, :]
            self.strides, self.dilations = (1, *self.strides), (1, *self.dilations)
            self.padding = (0, *self.padding)
            spatial = 2
        self.add_constant("weight", weight)
        self.add_constant("bias", bias)
        self.function = (F.conv2d, F.conv3d)[spatial - 2]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        images = self.to_images(x)
        if self.pre_pad is not None:
            images = F.pad(images, self.pre_pad)
        if self.as_2d:
            images = images.unsqueeze(2)
        out = self.function(
            images, self.weight, self.bias, self.strides, self.padding, self.dilations, self.groups
        )
        return self.from_images(out.squeeze(2) if self.as_2d else out)


@register("BatchNormalization")
class BatchNormalization(ImageOp):
    """Inference-mode batch norm (channels on ONNX axis 1), as torch's batch_norm."""

    attributes = frozenset({"epsilon", "momentum", "spatial", "training_mode", "is_test", "consumed_inputs"})
    pwl_role = "affine"
    min_rank = 2

    def __init__(self, node: NodeInfo, inputs: Sequence[Value]) -> None:
        super().__init__(node, inputs)
        if node.attr("training_mode", 0):
            raise node.unsupported("training_mode=1")
        if node.attr("spatial", 1) != 1:
            raise node.unsupported("spatial=0")
        for index, name in enumerate(("scale", "shift", "mean", "var"), start=1):
            array = constant(node, inputs, index, name).reshape(-1)
            if name in ("scale", "shift"):
                self.add_constant(name, array)
            else:  # running statistics are buffers, as in nn.BatchNorm (batch_norm refuses them as parameters)
                self.register_buffer(name, as_float(array))
        self.epsilon = float(node.attr("epsilon", 1e-5))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.batch_norm(self.to_images(x), self.mean, self.var, self.scale, self.shift, False, 0.0, self.epsilon)
        return self.from_images(out)
