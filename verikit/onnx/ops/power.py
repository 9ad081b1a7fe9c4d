"""Pow, in forms whose bounds are sound (ONNX Pow: x ** e elementwise, numpy broadcasting)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch

from verikit.onnx.ops.base import Dyn, NodeInfo, Op, Value, register
from verikit.onnx.ops.reciprocal import power, reciprocal

MAX_PRODUCT_EXPONENT = 4  # whole exponents up to this are products of x with itself


@register("Pow")
class Pow(Op):
    """x ** e. A constant exponent: whole 0..4 (one, or one per element) as products of x with itself,
    which bound engines relax soundly; whole -4..-1 as the reciprocal of such a product; whole from 5 as
    torch.pow (auto_LiRPA 0.3 bounds it by interval only); not whole (one exponent) as verikit's `power`,
    bounded where x >= 0 (x > 0 for e < 0; NaN below 0, as onnxruntime). A constant base b > 0 with an
    input-dependent exponent: exp(x ln b). Refused: whole exponents below -4 or several ones outside 0..4,
    a base <= 0 with an input-dependent exponent, and both operands input-dependent."""

    def __init__(self, node: NodeInfo, inputs: Sequence[Value]) -> None:
        super().__init__(node, inputs)
        if len(inputs) != 2 or any(value is None for value in inputs):
            raise node.invalid("expects two inputs")
        base, exponent = inputs
        if isinstance(base, Dyn) and isinstance(exponent, Dyn):
            raise node.unsupported("an input-dependent base with an input-dependent exponent")
        meta = self.in_metas[0]
        constant = np.asarray((exponent if isinstance(base, Dyn) else base).value, dtype=np.float64)
        if np.broadcast_shapes(constant.shape, meta.shape) != meta.shape:
            raise node.unsupported(f"a constant of shape {constant.shape} that enlarges {meta.shape}")
        self.mode = "exp" if isinstance(exponent, Dyn) else "power"
        if self.mode == "exp":
            if constant.size != 1 or not float(constant.reshape(-1)[0]) > 0:
                raise node.unsupported(f"base {constant.reshape(-1)[:3].tolist()} with an input-dependent "
                                       "exponent (only one base above 0)")
            self.log_base = math.log(float(constant.reshape(-1)[0]))
            return
        self._power(node, constant, meta)

    def _power(self, node: NodeInfo, exponent: np.ndarray, meta) -> None:
        whole = np.all(exponent == np.round(exponent))
        self.mode = "product"
        if whole and np.all((exponent >= 0) & (exponent <= MAX_PRODUCT_EXPONENT)):
            # per exponent k, a 0/1 mask of the elements raised to k, held like x (batch axis first)
            full = np.broadcast_to(exponent, meta.shape).reshape(1, *meta.torch_shape)
            self.degree = int(full.max())
            self.uniform = exponent.size == 1
            if not self.uniform:
                for k in range(self.degree + 1):
                    self.add_constant(f"mask{k}", (full == k).astype(np.float32))
            if self.degree <= 1:
                self.pwl_role = "affine"
            return
        if exponent.size != 1:
            raise node.unsupported(f"exponents {exponent.reshape(-1)[:3].tolist()}... outside 0..{MAX_PRODUCT_EXPONENT}"
                                   " (one per element)")
        value = float(exponent.reshape(-1)[0])
        if whole and value < -MAX_PRODUCT_EXPONENT:
            raise node.unsupported(f"exponent {value:g} (whole exponents below -{MAX_PRODUCT_EXPONENT} are refused)")
        if whole and value < 0:
            self.mode, self.degree, self.uniform = "reciprocal", int(-value), True
            return
        self.mode, self.exponent = ("pow" if whole else "power"), value

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.mode == "exp":
            return torch.exp(x * self.log_base)
        if self.mode == "pow":
            return torch.pow(x, self.exponent)
        if self.mode == "power":
            return power(x, self.exponent)
        if self.mode == "reciprocal":
            product = x
            for _ in range(self.degree - 1):
                product = product * x
            return reciprocal(product)
        powers = [x * 0.0 + 1.0]  # x ** 0 (kept input-dependent so the output has the batch axis)
        for k in range(1, self.degree + 1):
            powers.append(x if k == 1 else powers[-1] * x)
        if self.uniform:
            return powers[-1]
        y = powers[0] * self.mask0
        for k in range(1, self.degree + 1):
            y = y + powers[k] * getattr(self, f"mask{k}")
        return y
