"""ONNX → torch translation (one small class per operator) and piecewise-linear extraction."""

from verikit.onnx.graph import GraphModule, Translation, build_graph
from verikit.onnx.ops import REGISTRY, supported_ops

__all__ = ["GraphModule", "REGISTRY", "Translation", "build_graph", "supported_ops"]
