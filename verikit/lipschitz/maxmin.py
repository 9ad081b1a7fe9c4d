"""MaxMin as ReLUs: the rewriting a slope-restricted LipSDP needs, the baseline the extension is measured by.

Per pair (p, q), five ReLUs of the pre-activations: r1 = relu(z_p - z_q), r2 = relu(z_p), r3 = relu(-z_p),
r4 = relu(z_q), r5 = relu(-z_q); then max = z_q + relu(z_p - z_q) = r1 + r4 - r5 and
min = z_p - relu(z_p - z_q) = r2 - r3 - r1. The new weights are R W S (R: the rows above, S: the
outputs above, both of 0 and ±1), each entry a sum of at most four signed weights; the rewriting is used
only when every such sum is exact in float64 (checked by error-free transformations), so the LMI proven
for it is about the network's own function.
"""

from __future__ import annotations

import numpy as np

from verikit.checker.network import AffineOp, Chain
from verikit.lipschitz.layers import LipNet, NotLipschitzReadable

#: per pair, each ReLU's pre-activation as signed terms of (p, q), and each ReLU's share of (max, min)
_ROWS = (((0, 1), (1, -1)), ((0, 1),), ((0, -1),), ((1, 1),), ((1, -1),))
_OUTPUTS = (((0, 1), (1, -1)), ((1, 1),), ((1, -1),), ((0, 1),), ((0, -1),))  # (which of max/min, sign)


def _combos(pairs: np.ndarray | None, n: int, table) -> tuple[np.ndarray, np.ndarray]:
    """(index (N, 2), sign (N, 2)): the new coordinates as signed sums of at most two old ones."""
    if pairs is None:
        return np.stack([np.arange(n), np.zeros(n, int)], 1), np.stack([np.ones(n), np.zeros(n)], 1)
    index, sign = [], []
    for p, q in pairs:
        for terms in table:
            ends = [(int((p, q)[which]), float(s)) for which, s in terms] + [(0, 0.0)] * (2 - len(terms))
            index.append([e[0] for e in ends])
            sign.append([e[1] for e in ends])
    return np.asarray(index), np.asarray(sign)


def _two_sum(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    s = a + b
    bb = s - a
    return s, (a - (s - bb)) + (b - bb)


def _exact_sum(terms: list[np.ndarray]) -> np.ndarray | None:
    """The sum of `terms` when every partial sum is exact in float64, else None."""
    total = terms[0]
    for term in terms[1:]:
        total, error = _two_sum(total, term)
        if np.any(error != 0):
            return None
    return total


def combine(W: np.ndarray, rows: tuple[np.ndarray, np.ndarray], cols: tuple[np.ndarray, np.ndarray]) -> np.ndarray | None:
    """R W S exactly (rows/cols as _combos gives them), or None when some entry rounds."""
    (ri, rs), (ci, cs) = rows, cols
    terms = [rs[:, u][:, None] * cs[:, v][None, :] * W[np.ix_(ri[:, u], ci[:, v])] for u in (0, 1) for v in (0, 1)]
    return _exact_sum(terms)  # each term is exact: a weight times 0 or ±1


def relu_rewrite(net: LipNet) -> LipNet:
    """`net` with every MaxMin layer as five ReLUs per pair (the same function); NotLipschitzReadable when
    a rewritten weight would round."""
    if "maxmin" not in net.kinds:
        return net
    L = len(net.hidden_sizes)
    weights, segments = [], []
    for k, W in enumerate(net.weights):
        pairs_here = net.pairs_of(k) if k < L else None
        pairs_before = net.pairs_of(k - 1) if k > 0 else None
        rows = _combos(pairs_here, W.shape[0], _ROWS)
        cols = _combos(pairs_before, W.shape[1], _OUTPUTS)
        combined = combine(W, rows, cols)
        if combined is None:
            raise NotLipschitzReadable(f"the ReLU rewriting of MaxMin layer {k} would round its weights")
        weights.append(combined)
        R = combine(np.eye(W.shape[0]), rows, _combos(None, W.shape[0], None))
        S = combine(np.eye(W.shape[1]), _combos(None, W.shape[1], None), cols)
        ops = (([AffineOp(S, None, S.shape[1], S.shape[0])] if pairs_before is not None else [])
               + list(net.chain.segments[k])
               + ([AffineOp(R, None, R.shape[1], R.shape[0])] if pairs_here is not None else []))
        segments.append(tuple(ops))
    hidden = tuple(int(w.shape[0]) for w in weights[:-1])
    kinds = tuple("relu" if kind == "maxmin" else kind for kind in net.kinds)
    chain = Chain(tuple(segments), hidden, net.n_inputs, net.n_outputs, () if set(kinds) == {"relu"} else kinds)
    return LipNet(tuple(weights), kinds, chain)
