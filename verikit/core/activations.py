"""MLPs with elementwise monotone activations as a plain chain of layers: `Affine (Activation Affine)*`.

The form branch and bound uses for networks that are not piecewise linear (sigmoid, tanh), obtained from
a Network by `verikit.onnx.activation_chain.to_activation_chain`, which raises NoActivationChain with the
reason. Layers act on flat float64 vectors; `Affine` is the piecewise-linear IR's.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from verikit.core.pwl import Affine

#: activation kinds the chain holds; every one is monotone non-decreasing
KINDS = ("relu", "sigmoid", "tanh")
#: the S-shaped kinds: convex below their inflection point 0, concave above it
S_SHAPED = ("sigmoid", "tanh")


class NoActivationChain(Exception):
    """The network is not an MLP of affine layers and supported elementwise activations (says why)."""


def apply_activation(kind: str, z: np.ndarray) -> np.ndarray:
    """The activation `kind` applied elementwise to float64 values."""
    if kind == "relu":
        return np.maximum(z, 0.0)
    if kind == "sigmoid":
        return 0.5 * (1.0 + np.tanh(0.5 * z))  # no overflow warning for large |z|
    if kind == "tanh":
        return np.tanh(z)
    raise ValueError(f"unknown activation kind {kind!r}")


@dataclass(frozen=True)
class Activation:
    """One elementwise activation layer of `kind` (one of KINDS)."""

    kind: str

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown activation kind {self.kind!r}; one of {KINDS}")


@dataclass(frozen=True, eq=False)
class ActivationChain:
    """Affine (Activation Affine)*: hidden layer i has z_i = W_i a_{i-1} + b_i, a_i = f_i(z_i)."""

    layers: tuple[Affine | Activation, ...]
    n_inputs: int
    n_outputs: int

    def __post_init__(self) -> None:
        kinds = [type(layer) for layer in self.layers]
        if not (len(kinds) % 2 == 1 and all(k is Affine for k in kinds[0::2])
                and all(k is Activation for k in kinds[1::2])):
            raise ValueError("an activation chain alternates Affine and Activation, first and last Affine")

    @property
    def affines(self) -> tuple[Affine, ...]:
        return tuple(layer for layer in self.layers if isinstance(layer, Affine))

    @property
    def kinds(self) -> tuple[str, ...]:
        """The activation kind of each hidden layer."""
        return tuple(layer.kind for layer in self.layers if isinstance(layer, Activation))

    @property
    def has_s_shaped(self) -> bool:
        return any(kind in S_SHAPED for kind in self.kinds)

    def evaluate(self, x: np.ndarray) -> np.ndarray:
        """Outputs for a batch x (B, n_inputs) in float64, shape (B, n_outputs)."""
        values = np.asarray(x, dtype=np.float64).reshape(-1, self.n_inputs)
        for layer in self.layers:
            if isinstance(layer, Affine):
                values = values @ layer.weight.T + layer.bias
            else:
                values = apply_activation(layer.kind, values)
        return values
