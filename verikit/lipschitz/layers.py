"""The network as Lipschitz methods see it: y = W_L φ_L(W_{L-1} ... φ_1(W_0 x + b_0) ...) + b_L.

Read by the certificate checker's own ONNX reader (verikit.checker.network, no torch): every weight is an
ONNX float32 held exactly in float64, so the LMI rebuilt from these weights is the network's own. Biases
do not change a Lipschitz constant and are kept only for local (region) bounds.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from verikit.checker.network import AffineOp, Chain, UnsupportedNetwork, read_chain
from verikit.checker.rigorous import layer_bounds

#: each activation's global slope interval [α, β]: (φ(a) - φ(b)) / (a - b) ∈ [α, β]. MaxMin is not
#: elementwise: its [0, 1] only says it is 1-Lipschitz (ℓ2 and ℓ∞), for the naive product; LipSDP gives it
#: its own quadratic constraints (verikit.lipschitz.lmi)
SLOPES = {"relu": (0.0, 1.0), "tanh": (0.0, 1.0), "sigmoid": (0.0, 0.25), "maxmin": (0.0, 1.0)}


class NotLipschitzReadable(Exception):
    """The network is not a chain verikit's Lipschitz methods read (says why)."""


@dataclass(frozen=True, eq=False)
class LipNet:
    """weights[k] (n_{k+1}, n_k) float64, exact; kinds[k] is the activation after weights[k]; pairs[k] the
    (p, q) index pairs of a "maxmin" layer (out[p] = max, out[q] = min of z[p], z[q]), else None."""

    weights: tuple[np.ndarray, ...]
    kinds: tuple[str, ...]
    chain: Chain
    pairs: tuple[np.ndarray | None, ...] = ()

    def pairs_of(self, k: int) -> np.ndarray | None:
        return self.pairs[k] if self.pairs else None

    @property
    def n_inputs(self) -> int:
        return int(self.weights[0].shape[1])

    @property
    def n_outputs(self) -> int:
        return int(self.weights[-1].shape[0])

    @property
    def hidden_sizes(self) -> tuple[int, ...]:
        return tuple(int(w.shape[0]) for w in self.weights[:-1])


@dataclass(frozen=True, eq=False)
class Slopes:
    """Per hidden layer, per neuron, the slope interval [alpha, beta] of its activation on the region."""

    alpha: tuple[np.ndarray, ...]
    beta: tuple[np.ndarray, ...]

    @property
    def stable(self) -> int:
        return int(sum(np.count_nonzero(a == b) for a, b in zip(self.alpha, self.beta)))


def read_lipnet(onnx_bytes: bytes) -> LipNet:
    """The ONNX model as a LipNet; NotLipschitzReadable(reason) when it is not such a chain."""
    try:
        chain = read_chain(onnx_bytes, activations=("Relu", "Tanh", "Sigmoid", "MaxMin"))
    except UnsupportedNetwork as reason:
        raise NotLipschitzReadable(str(reason)) from None
    weights, size = [], chain.n_inputs
    for i, segment in enumerate(chain.segments):
        weights.append(_segment_matrix(segment, size, i))
        size = weights[-1].shape[0]
    kinds = chain.kinds if chain.kinds else ("relu",) * len(chain.hidden_sizes)
    return LipNet(tuple(weights), tuple(kinds), chain, tuple(chain.pairs))


def _segment_matrix(segment: tuple[AffineOp, ...], size: int, index: int) -> np.ndarray:
    """The one matrix of a segment on `size` inputs (the identity when it has none). Products of matrices would round, so a segment
    may hold one matrix and any number of exact sign flips (±I, e.g. from `c - x`)."""
    found = None
    sign = 1.0
    for op in segment:
        if op.A is None:
            continue
        if op.A.shape[0] == op.A.shape[1] and np.array_equal(op.A, -np.eye(op.A.shape[0])):
            sign = -sign
        elif found is None:
            found = op.A
        else:
            raise NotLipschitzReadable(f"segment {index} multiplies two weight matrices in a row; the exact "
                                       "weights of their product are not known")
    if found is None:
        return sign * np.eye(size)
    return found * sign  # a sign flip is exact


def output_map(net: LipNet, pair: tuple[int, int] | None) -> np.ndarray | None:
    """C (1, n_outputs) with C y = y_i - y_j for the margin of `pair`, or None for all outputs."""
    if pair is None:
        return None
    i, j = pair
    if not (0 <= i < net.n_outputs and 0 <= j < net.n_outputs and i != j):
        raise ValueError(f"--output-pair {i},{j}: needs two different outputs in 0..{net.n_outputs - 1}")
    C = np.zeros((1, net.n_outputs))
    C[0, i], C[0, j] = 1.0, -1.0
    return C


def global_slopes(net: LipNet) -> Slopes:
    alpha = tuple(np.full(n, SLOPES[k][0]) for n, k in zip(net.hidden_sizes, net.kinds))
    beta = tuple(np.full(n, SLOPES[k][1]) for n, k in zip(net.hidden_sizes, net.kinds))
    return Slopes(alpha, beta)


def region_slopes(net: LipNet, lower: np.ndarray, upper: np.ndarray) -> tuple[Slopes, str]:
    """Slopes on the box [lower, upper]: a ReLU whose rigorous pre-activation bounds are <= 0 has slope
    [0, 0], one whose bounds are >= 0 has [1, 1]; tanh/sigmoid keep their global slopes. (slopes, note)"""
    base = global_slopes(net)
    if any(k != "relu" for k in net.kinds):
        return base, "local slopes are used for ReLU networks only; tanh/sigmoid keep their global slopes"
    bounds = layer_bounds(net.chain, (np.asarray(lower, float), np.asarray(upper, float)),
                          [np.zeros(n) for n in net.hidden_sizes])
    if bounds is None:
        return base, ""
    alpha, beta = [], []
    for lo, hi in bounds:
        inactive, active = hi <= 0, (lo >= 0) & (hi > 0)
        alpha.append(np.where(active, 1.0, 0.0))
        beta.append(np.where(inactive, 0.0, 1.0))
    return Slopes(tuple(alpha), tuple(beta)), ""
