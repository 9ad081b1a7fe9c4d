"""Operator translations, one class per ONNX op type; importing this package fills `REGISTRY`."""

from verikit.onnx.ops import (  # noqa: F401  (registration)
    compare,
    elementwise,
    linear,
    pad,
    pool,
    power,
    reduce,
    shape,
    tensor,
)
from verikit.onnx.ops.base import REGISTRY, Const, Dyn, NodeInfo, Op, Value, register, supported_ops

__all__ = ["REGISTRY", "Const", "Dyn", "NodeInfo", "Op", "Value", "register", "supported_ops"]
