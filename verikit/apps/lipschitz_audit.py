"""ℓ2 certification of every sample at once from one Lipschitz bound (docs/lipschitz.md).

With L >= Lip_2(f) proven (in the model's units), each margin y_label - y_j is √2·L-Lipschitz, and an
input moved by δ in raw units moves the model's input by at most δ / min(std). A sample whose rigorous
clean margin is m > 0 keeps its label within the raw radius m / (√2 · L / min std).
"""

from __future__ import annotations

import time

import numpy as np

from verikit.checker.rigorous import affine_interval, down, up


def _rigorous_outputs(chain, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Bounds (N, m) of the exact network outputs over the tiny boxes [down(x), up(x)] (x: (N, n) float64)."""
    lower, upper = down(x), up(x)
    for i, segment in enumerate(chain.segments):
        for op in segment:
            lower, upper = affine_interval(op, lower, upper)
        if i < len(chain.segments) - 1:
            lower, upper = np.maximum(lower, 0.0), np.maximum(upper, 0.0)
    return lower, upper


def lipschitz_radii(onnx_bytes: bytes, model_inputs: np.ndarray, labels: np.ndarray, std: np.ndarray,
                    method: str, seconds: float | None) -> tuple[np.ndarray, dict, str | None]:
    """(certified raw ℓ2 radius per sample (N,), 0 where none; the bound's details; a note or None)."""
    from verikit.lipschitz import NotLipschitzReadable, lipschitz_bound, read_lipnet

    none = np.zeros(labels.size)
    try:
        net = read_lipnet(onnx_bytes)
    except NotLipschitzReadable as reason:
        return none, {}, f"no Lipschitz certificates: {reason}"
    if any(kind != "relu" for kind in net.kinds):
        return none, {}, "no Lipschitz certificates: the rigorous clean margins are computed for ReLU networks"
    deadline = time.monotonic() + (seconds if seconds is not None else 600.0)
    result = lipschitz_bound(net, norm="2", method=method, deadline=deadline)
    lower, upper = _rigorous_outputs(net.chain, np.asarray(model_inputs, dtype=np.float64))
    rows = np.arange(labels.size)
    others = upper.copy()
    others[rows, labels] = -np.inf
    margin = down(lower[rows, labels] - others.max(axis=1))  # a lower bound of min_j (y_label - y_j)
    raw_lipschitz = float(up(up(np.sqrt(2.0) * (1 + 1e-15)) * up(result.upper / float(np.min(std)))))
    radii = np.where(margin > 0, down(margin / raw_lipschitz), 0.0)
    info = {"method": method, "method_used": result.method_used, "lipschitz": result.upper,
            "margin_lipschitz_raw_units": raw_lipschitz, "naive": result.naive, "notes": result.notes}
    return radii, info, None


def ball_margins(bounded, centres: np.ndarray, radius: float, lower: np.ndarray, upper: np.ndarray,
                 labels: np.ndarray, top_k: int = 1) -> tuple[np.ndarray, str | None]:
    """Rigorous lower bounds (N,) of each sample's k-th smallest margin `y_label - y_j` over its ℓ2 ball
    ∩ box, in model units: centres, lower, upper (N, n); one radius for all (-inf for every sample when the
    network has no rigorous form, with the reason). Proven by the confirming form's float64 CROWN over
    the ball (verikit.engines.crown.input_set), never by auto_LiRPA."""
    from verikit.engines.crown.input_set import InputBall
    from verikit.engines.lirpa.batch import margin_matrices
    from verikit.engines.lirpa.engine import unconfirmable
    from verikit.core.property import Box

    best = np.full(labels.size, -np.inf)
    reason = unconfirmable(bounded)
    if reason is not None or labels.size == 0:
        return best, reason
    form = bounded.pwl
    form.check(bounded.network, Box(lower.min(axis=0), upper.max(axis=0)))
    C = margin_matrices(labels, bounded.network.n_outputs)
    for label in np.unique(labels):
        index = np.flatnonzero(labels == label)
        rows = C[index[0]]
        ball = InputBall.of(centres[index], np.full(index.size, radius))
        found = form.lower_bounds(lower[index], upper[index], rows, np.zeros(rows.shape[0]), ball=ball)
        best[index] = np.sort(found, axis=1)[:, top_k - 1]
    return best, None
