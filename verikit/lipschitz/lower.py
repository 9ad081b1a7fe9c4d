"""A lower bound of the Lipschitz constant: the largest Jacobian norm found by sampling and hill climbing,
witnessed by a pair of points whose onnxruntime outputs give that ratio."""

from __future__ import annotations

import time

import numpy as np

from verikit.checker.network import maxmin
from verikit.lipschitz.layers import LipNet


def _jacobians(net: LipNet, x: np.ndarray, C: np.ndarray | None) -> np.ndarray:
    """Jacobians (B, m, n_0) of the network (or C y) at x (B, n_0), from the float64 chain."""
    chain = net.chain
    J = None
    values = x.copy()
    for k, segment in enumerate(chain.segments):
        for op in segment:
            values = values if op.A is None else values @ op.A.T
            values = values if op.b is None else values + op.b
        W = net.weights[k]
        J = np.broadcast_to(W, (x.shape[0], *W.shape)).copy() if J is None else np.einsum("ij,bjn->bin", W, J)
        if k < len(net.kinds):
            kind = net.kinds[k]
            if kind == "maxmin":  # per pair, the max takes the larger input's row, the min the other's
                pairs = net.pairs_of(k)
                p, q = pairs[:, 0], pairs[:, 1]
                larger = (values[:, p] >= values[:, q])[:, :, None]
                Jp, Jq = J[:, p, :].copy(), J[:, q, :].copy()
                J[:, p, :] = np.where(larger, Jp, Jq)
                J[:, q, :] = np.where(larger, Jq, Jp)
                values = maxmin(values, pairs)
                continue
            if kind == "relu":
                slope = (values > 0).astype(np.float64)
                values = np.maximum(values, 0.0)
            elif kind == "tanh":
                values = np.tanh(values)
                slope = 1.0 - values**2
            else:
                values = 0.5 * (1.0 + np.tanh(0.5 * values))
                slope = values * (1.0 - values)
            J = J * slope[:, :, None]
    return J if C is None else np.einsum("ij,bjn->bin", C, J)


def _norms(J: np.ndarray, norm: str) -> tuple[np.ndarray, np.ndarray]:
    """(induced norms (B,), a maximising direction (B, n_0) of unit norm) of Jacobians J (B, m, n)."""
    if norm == "2":
        _, s, vt = np.linalg.svd(J, full_matrices=False)
        return s[:, 0], vt[:, 0, :]
    rows = np.abs(J).sum(axis=2)  # ℓ∞ → ℓ∞: the largest absolute row sum, direction sign(row)
    best = rows.argmax(axis=1)
    return rows.max(axis=1), np.sign(J[np.arange(J.shape[0]), best, :])


def lower_bound(net: LipNet, C: np.ndarray | None, norm: str, lower: np.ndarray, upper: np.ndarray,
                replay, *, seconds: float = 2.0, seed: int = 0) -> tuple[float, dict]:
    """(max ||f(x) - f(y)|| / ||x - y|| over witnessed pairs in [lower, upper], the best pair's details).

    `replay(x (B, n_0)) -> y (B, m)` is onnxruntime on the original model."""
    rng = np.random.default_rng(seed)
    lower, upper = np.asarray(lower, float), np.asarray(upper, float)
    width = upper - lower
    deadline = time.monotonic() + seconds
    batch = int(max(4, min(64, 2e7 // max(1, net.weights[0].size))))
    centre = (lower + upper) / 2
    scales = np.geomspace(1e-3, 1.0, batch)[:, None]  # near the centre too: random corners saturate ReLUs
    points = np.clip(centre + scales * width * (rng.random((batch, net.n_inputs)) - 0.5), lower, upper)
    points[::2] = lower + rng.random((points[::2].shape[0], net.n_inputs)) * width
    best_x, best_value = points[0], -1.0
    step = 0.1
    while True:
        values, _ = _norms(_jacobians(net, points, C), norm)
        i = int(np.argmax(values))
        if values[i] > best_value:
            best_x, best_value = points[i], float(values[i])
        if time.monotonic() > deadline:
            break
        moves = np.geomspace(1e-3, 1.0, batch)[:, None] * step
        points = np.clip(best_x + moves * width * rng.standard_normal((batch, net.n_inputs)), lower, upper)
        step = max(step * 0.97, 1e-2)
    _, direction = _norms(_jacobians(net, best_x[None], C), norm)
    ratio, pair = 0.0, {}
    for h in (1e-2, 1e-3, 1e-1, -1e-2, -1e-3, -1e-1):  # both ways: one may leave the box at its face
        x = best_x
        y = np.clip(x + h * np.max(width) * direction[0], lower, upper)
        out = np.asarray(replay(np.stack([x, y])), dtype=np.float64)
        if C is not None:
            out = out @ C.T
        dx = np.linalg.norm(y - x, 2 if norm == "2" else np.inf)
        if dx > 0:
            r = float(np.linalg.norm(out[1] - out[0], 2 if norm == "2" else np.inf) / dx)
            if r > ratio:
                ratio, pair = r, {"step": h, "jacobian_norm": best_value}
    return ratio, pair
