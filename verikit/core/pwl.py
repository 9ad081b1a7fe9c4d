"""Piecewise-linear networks as a plain sequence of layers, for the exact (SMT) and fast (BaB) engines.

Layers act on flat float64 vectors: `Affine` (y = W x + b), `Relu` (elementwise max(0, x)) and
`MaxGroups` (y[i] = max of x[groups[i]], e.g. a MaxPool). Obtained from a Network by
`verikit.onnx.pwl.to_piecewise_linear`, which raises NotPiecewiseLinear with the reason.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


class NotPiecewiseLinear(Exception):
    """The network has an operator (or a graph shape) these engines cannot encode exactly."""


@dataclass(frozen=True, eq=False)
class Affine:
    weight: np.ndarray  # (out, in) float64
    bias: np.ndarray  # (out,) float64

    @property
    def in_features(self) -> int:
        return int(self.weight.shape[1])

    @property
    def out_features(self) -> int:
        return int(self.weight.shape[0])


@dataclass(frozen=True)
class Relu:
    pass


@dataclass(frozen=True, eq=False)
class MaxGroups:
    groups: np.ndarray  # (out, k) int64 indices into the previous layer's output


Layer = Affine | Relu | MaxGroups


@dataclass(frozen=True, eq=False)
class PiecewiseLinear:
    layers: tuple[Layer, ...]
    n_inputs: int
    n_outputs: int

    def evaluate(self, x: np.ndarray) -> np.ndarray:
        """Outputs for a batch x (B, n_inputs) in float64, shape (B, n_outputs)."""
        values = np.asarray(x, dtype=np.float64).reshape(-1, self.n_inputs)
        for layer in self.layers:
            if isinstance(layer, Affine):
                values = values @ layer.weight.T + layer.bias
            elif isinstance(layer, Relu):
                values = np.maximum(values, 0.0)
            else:
                values = values[:, layer.groups].max(axis=2)
        return values

    @property
    def is_relu_mlp(self) -> bool:
        """Affine (Relu Affine)* — the shape the batched CROWN/BaB engine handles."""
        kinds = [type(layer) for layer in self.layers]
        return (
            len(kinds) % 2 == 1
            and all(k is Affine for k in kinds[0::2])
            and all(k is Relu for k in kinds[1::2])
        )
