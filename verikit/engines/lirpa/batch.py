"""Certify classification robustness for a batch of boxes in one auto_LiRPA call per chunk.

For sample b with label l_b, the spec matrix C[b] (K-1, K) has rows `e_l - e_j` (j != l); the box is
proven robust when every row's lower bound of `y_l - y_j` over the box is > 0. auto_LiRPA takes the
whole batch at once: per-sample `x_L`/`x_U` of shape (B, n_inputs) and C of shape (B, K-1, K).

Bounds come from verikit.engines.lirpa.driver (outward-rounded boxes, widened bounds), one call per
method of the cascade. auto_LiRPA's float32 bounds are not a proof: every box proven that way is
re-bounded in rigorous float64 arithmetic (verikit.engines.crown.confirm.rigorous_lower_bounds, after the
piecewise-linear form is checked against onnxruntime on the boxes' hull), whose bounds replace
auto_LiRPA's for it; on a network with no piecewise-linear chain form every bound is -inf (nothing
proven), as `verify` answers unknown there.
"""

from __future__ import annotations

import numpy as np

from verikit.core.result import Budget
from verikit.engines.lirpa.driver import ALPHA_ITERATIONS, ALPHA_LR, lower_bounds
from verikit.engines.lirpa.engine import BoundedNetwork, check_translation_in_box
from verikit.spec.topk import pairwise_rows

CASCADE = {"ibp": ("ibp",), "crown": ("crown",), "alpha-crown": ("crown", "alpha-crown")}
"""Methods run per requested method, cheapest first; later ones run only on boxes still open."""


def margin_matrices(labels: np.ndarray, num_classes: int) -> np.ndarray:
    """C (B, K-1, K) with rows `e_label - e_j` for every j != label, float64."""
    labels = np.asarray(labels, dtype=np.int64).reshape(-1)
    C = np.zeros((labels.size, num_classes - 1, num_classes))
    for b, label in enumerate(labels):
        C[b] = pairwise_rows(int(label), [j for j in range(num_classes) if j != label], num_classes)
    return C


def robust_margin_bounds(
    bounded: BoundedNetwork,
    lower: np.ndarray,
    upper: np.ndarray,
    labels: np.ndarray,
    *,
    method: str = "crown",
    budget: Budget | None = None,
    iterations: int = ALPHA_ITERATIONS,
) -> np.ndarray:
    """Sound lower bounds of `y_label - y_j` (j != label) over each box, float64 (B, K-1), widened.

    lower/upper: float64 (B, n_inputs) in the model's input units; labels int (B,). With
    method "alpha-crown", CROWN runs first and α-CROWN only on the boxes CROWN leaves open; each
    entry is the best (largest) bound any method found. Boxes must be finite and non-empty. Raises
    BoundsError when auto_LiRPA's translation differs from the network on the boxes' hull.
    """
    if method not in CASCADE:
        raise ValueError(f"unknown bounds method {method!r}; choose one of {', '.join(CASCADE)}")
    lower = np.asarray(lower, dtype=np.float64)
    upper = np.asarray(upper, dtype=np.float64)
    network = bounded.network
    if lower.shape != upper.shape or lower.ndim != 2 or lower.shape[1] != network.n_inputs:
        raise ValueError(f"boxes must have shape (B, {network.n_inputs}); got {lower.shape} and {upper.shape}")
    if not (np.all(np.isfinite(lower)) and np.all(np.isfinite(upper)) and np.all(lower <= upper)):
        raise ValueError("every box must be finite and non-empty")
    C = margin_matrices(labels, network.n_outputs)
    best = np.full(C.shape[:2], -np.inf)
    if lower.shape[0] == 0:
        return best
    from verikit.core.property import Box

    check_translation_in_box(bounded, Box(lower.min(axis=0), upper.max(axis=0)))  # BoundsError if not
    zeros = np.zeros(C.shape[:2])
    for stage in CASCADE[method]:
        open_ = np.flatnonzero(~np.all(best > 0, axis=1))
        if open_.size == 0 or (budget is not None and budget.expired()):
            break
        found = lower_bounds(bounded, lower[open_], upper[open_], C[open_], zeros[open_], method=stage,
                             iterations=iterations, lr=ALPHA_LR, budget=budget,
                             done=lambda widened: np.all(widened > 0, axis=1))
        best[open_] = np.maximum(best[open_], found)
    return _confirmed(bounded, lower, upper, labels, C, best)


def _confirmed(bounded: BoundedNetwork, lower: np.ndarray, upper: np.ndarray, labels: np.ndarray, C: np.ndarray,
               best: np.ndarray) -> np.ndarray:
    """`best` with every box proven by auto_LiRPA re-bounded rigorously, one call per label (a box that is
    not confirmed is no longer proven); all -inf when the network has no form to confirm with."""
    from verikit.core.property import Box
    from verikit.engines.lirpa.engine import unconfirmable

    proven = np.all(best > 0, axis=1)
    if unconfirmable(bounded) is not None:
        return np.full_like(best, -np.inf)
    if not proven.any():
        return best
    form = bounded.pwl
    form.check(bounded.network, Box(lower[proven].min(axis=0), upper[proven].max(axis=0)))
    labels = np.asarray(labels, dtype=np.int64).reshape(-1)
    for label in np.unique(labels[proven]):
        index = np.flatnonzero(proven & (labels == label))
        rows = C[index[0]]
        best[index] = form.lower_bounds(lower[index], upper[index], rows, np.zeros(rows.shape[0]))
    return best
