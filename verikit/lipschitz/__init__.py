"""Lipschitz upper bounds of networks (the product of layer norms, LipSDP-Layer, LipSDP-Neuron), each
proven in outward-rounded float64 from the ONNX weights; see docs/lipschitz.md."""

from verikit.lipschitz.bound import METHODS, NORMS, LipschitzResult, lipschitz_bound
from verikit.lipschitz.layers import LipNet, NotLipschitzReadable, read_lipnet

__all__ = ["METHODS", "NORMS", "LipNet", "LipschitzResult", "NotLipschitzReadable", "lipschitz_bound",
           "read_lipnet"]
