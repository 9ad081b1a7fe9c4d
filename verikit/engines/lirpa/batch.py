"""Certify classification robustness for a batch of boxes in one auto_LiRPA call per chunk.

For sample b with label l_b, the spec matrix C[b] (K-1, K) has rows `e_l - e_j` (j != l); the box is
proven robust when every row's lower bound of `y_l - y_j` over the box is > 0. auto_LiRPA takes the
whole batch at once: per-sample `x_L`/`x_U` of shape (B, n_inputs) and C of shape (B, K-1, K).

Soundness follows verikit.engines.lirpa.engine: the boxes are rounded outward to float32 and every bound is
widened by `REFUTATION_RTOL * (1 + |C| @ |f(center)| + |raw bound|)` before it is compared with 0; on a
piecewise-linear ReLU MLP every box proven that way is re-bounded by verikit's float64 CROWN (derived
rounding allowance), whose bounds replace auto_LiRPA's for it.
"""

from __future__ import annotations

import contextlib

import numpy as np
import torch

from verikit.engines.lirpa import support
from verikit.engines.lirpa.engine import ALPHA_ITERATIONS, ALPHA_LR, REFUTATION_RTOL, BoundedNetwork
from verikit.engines.crown.propagate import round_outward
from verikit.engines.lirpa.compat import import_auto_lirpa
from verikit.engines.lirpa.support import UnsupportedByBoundsError
from verikit.core.result import Budget, StepTimer

CASCADE = {"ibp": ("ibp",), "crown": ("crown",), "alpha-crown": ("crown", "alpha-crown")}
"""Methods run per requested method, cheapest first; later ones run only on boxes still open."""
_LIRPA_METHOD = {"ibp": "IBP", "crown": "CROWN", "alpha-crown": "CROWN-Optimized"}


def margin_matrices(labels: np.ndarray, num_classes: int) -> np.ndarray:
    """C (B, K-1, K) with rows `e_label - e_j` for every j != label, float64."""
    labels = np.asarray(labels, dtype=np.int64).reshape(-1)
    others = np.array([[j for j in range(num_classes) if j != label] for label in labels], dtype=np.int64)
    C = np.zeros((labels.size, num_classes - 1, num_classes))
    rows = np.arange(num_classes - 1)
    for b, label in enumerate(labels):
        C[b, rows, label] = 1.0
        C[b, rows, others[b]] = -1.0
    return C


def _widen(raw: torch.Tensor, center_term: torch.Tensor) -> torch.Tensor:
    magnitude = center_term + torch.where(torch.isfinite(raw), raw.abs(), torch.zeros_like(raw))
    return raw - REFUTATION_RTOL * (1.0 + magnitude)


def _dense_spec_alpha(module: torch.nn.Module) -> None:
    """auto_LiRPA 0.3's sparse-spec α breaks when a later call (or iteration) bounds an intermediate
    layer densely (`assert alpha_lookup_idx[...] is None` in BoundRelu); full α is always valid."""
    for node in module.optimizable_activations:
        if hasattr(node, "use_sparse_spec_alpha"):
            node.use_sparse_spec_alpha = False


def _alpha_options(proven, budget: Budget | None, iterations: int) -> dict:
    """Optimizer settings; per sample, α stops moving once its box is proven; all stop near the deadline."""
    timer = StepTimer(budget)

    def stop(raw: torch.Tensor) -> torch.Tensor:
        if timer.out_of_time():
            return torch.ones((raw.shape[0], 1), dtype=torch.bool, device=raw.device)
        return proven(raw.detach())

    return {"iteration": max(1, int(iterations)), "lr_alpha": ALPHA_LR, "stop_criterion_func": stop}


def _raw_lower(bounded: BoundedNetwork, lower: np.ndarray, upper: np.ndarray, C: np.ndarray,
               method: str, center_term: np.ndarray, budget: Budget | None, iterations: int) -> np.ndarray:
    """auto_LiRPA's lower bounds of C[b] @ y over box b, float64 (B, rows), before widening."""
    lirpa = import_auto_lirpa()
    device, module = bounded.device, bounded.module
    low, high = round_outward(torch.tensor(lower), torch.tensor(upper), torch.float32)
    x_low, x_high = low.to(device), high.to(device)
    center = torch.minimum(torch.maximum((x_low + x_high) / 2, x_low), x_high)
    x = lirpa.BoundedTensor(center, lirpa.PerturbationLpNorm(norm=float("inf"), x_L=x_low, x_U=x_high))
    spec = torch.as_tensor(C, dtype=torch.float32, device=device)
    if method == "alpha-crown" and not module.optimizable_activations:
        method = "crown"  # nothing to optimize: α-CROWN is CROWN
    if method == "alpha-crown":
        term = torch.as_tensor(center_term, dtype=torch.float32, device=device)

        def proven(raw: torch.Tensor) -> torch.Tensor:
            return (_widen(raw.float(), term) > 0).all(dim=1, keepdim=True)

        _dense_spec_alpha(module)
        module.set_bound_opts({"optimize_bound_args": _alpha_options(proven, budget, iterations)})
    merge_spec = not (method == "ibp" and support.final_node_is_matmul(module))
    with support.quiet_lirpa(), contextlib.ExitStack() as stack:
        if method != "alpha-crown":
            stack.enter_context(torch.no_grad())
        try:
            raw, upper_raw = module.compute_bounds(x=(x,), C=spec if merge_spec else None,
                                                   method=_LIRPA_METHOD[method], bound_upper=not merge_spec)
        except Exception as error:  # noqa: BLE001 - re-raised unless it is a known auto_LiRPA limitation
            operator = support.limitation_of(error)
            if operator is None:
                raise
            raise UnsupportedByBoundsError(f"auto_LiRPA cannot compute {method} bounds: its {operator} operator "
                                           f"fails ({type(error).__name__})", operators=(operator,),
                                           where=bounded.network.source or None) from error
    if merge_spec:
        values = raw.detach().double().cpu().numpy().reshape(C.shape[0], C.shape[1])
    else:  # interval arithmetic for C @ y from the output intervals, in float64
        y_low = raw.detach().double().cpu().numpy().reshape(C.shape[0], -1)
        y_high = upper_raw.detach().double().cpu().numpy().reshape(C.shape[0], -1)
        values = (np.einsum("brk,bk->br", np.clip(C, 0, None), y_low)
                  + np.einsum("brk,bk->br", np.clip(C, None, 0), y_high))
    return np.where(np.isnan(values), -np.inf, values)


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
    entry is the best (largest) bound any method found. Boxes must be finite and non-empty.
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
    y_center = network.forward((lower + upper) / 2.0).double().cpu().numpy()
    center_term = np.einsum("brk,bk->br", np.abs(C), np.abs(y_center))
    for stage in CASCADE[method]:
        open_ = np.flatnonzero(~np.all(best > 0, axis=1))
        if open_.size == 0 or (budget is not None and budget.expired()):
            break
        raw = _raw_lower(bounded, lower[open_], upper[open_], C[open_], stage, center_term[open_], budget,
                         iterations)
        widened = _widen(torch.as_tensor(raw), torch.as_tensor(center_term[open_])).numpy()
        best[open_] = np.maximum(best[open_], widened)
    return _confirmed(bounded, lower, upper, labels, C, best)


def _confirmed(bounded: BoundedNetwork, lower: np.ndarray, upper: np.ndarray, labels: np.ndarray, C: np.ndarray,
               best: np.ndarray) -> np.ndarray:
    """`best` with every box proven by auto_LiRPA re-bounded by verikit's float64 CROWN, one call per label
    (a box it does not confirm is no longer proven); unchanged when the network is not a ReLU MLP."""
    if not isinstance(bounded.pwl, tuple):
        return best
    from verikit.engines.crown.confirm import confirmed_lower_bounds

    _, mlp = bounded.pwl
    proven = np.all(best > 0, axis=1)
    labels = np.asarray(labels, dtype=np.int64).reshape(-1)
    for label in np.unique(labels[proven]):
        index = np.flatnonzero(proven & (labels == label))
        rows = C[index[0]]
        best[index] = confirmed_lower_bounds(mlp, lower[index], upper[index], rows, np.zeros(rows.shape[0]))
    return best
