"""The one auto_LiRPA driver: sound lower bounds of `C[b] @ y - d[b]` over a batch of B >= 1 boxes.

The single-case engine (verikit.engines.lirpa.engine, B = 1 with the spec's rows stacked) and the
dataset audit (verikit.engines.lirpa.batch, one box per sample with its margin matrix) both call
`lower_bounds`.

Soundness: auto_LiRPA works in float32, so its bounds hold up to float rounding, and onnxruntime rounds
too. The boxes are rounded outward to float32 and every bound is widened by a slack of
`REFUTATION_RTOL * (1 + |C_r| @ |f(center)| + |d_r| + |raw bound|)` per row (the magnitudes involved).
A row refutes its disjunct only when the widened lower bound is still > 0.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import numpy as np
import torch

from verikit.core.result import Budget, StepTimer
from verikit.engines.crown.propagate import round_outward
from verikit.engines.lirpa import METHODS, support
from verikit.engines.lirpa.compat import import_auto_lirpa
from verikit.engines.lirpa.support import UnsupportedByBoundsError

REFUTATION_RTOL = 1e-5
"""Relative float slack subtracted from every lower bound (and added to every upper bound)."""

ALPHA_ITERATIONS = 20
ALPHA_LR = 0.5

_LIRPA_METHOD = {"ibp": "IBP", "crown": "CROWN", "alpha-crown": "CROWN-Optimized"}

Done = Callable[[np.ndarray], np.ndarray]
"""Widened bounds (B, R) -> bool (B,): the boxes whose α need not move any more."""


def check_method(method: str) -> None:
    if method not in METHODS:
        raise ValueError(f"unknown bounds method {method!r}; choose one of {', '.join(METHODS)}")


def limitation(error: BaseException, doing: str, source: str) -> UnsupportedByBoundsError | None:
    """A typed error for auto_LiRPA's known limitations (support.limitation_of), else None (re-raise)."""
    what = support.limitation_of(error)
    if what is None:
        return None
    operator = what.split(":", 1)[0]
    detail = str(error).splitlines()[0][:200] if str(error) else type(error).__name__
    return UnsupportedByBoundsError(
        f"auto_LiRPA cannot {doing}: {what} ({detail})", operators=(operator,), where=source or None
    )


def widen(raw: np.ndarray, d: np.ndarray, center_term: np.ndarray) -> np.ndarray:
    """`raw - d` minus the float slack REFUTATION_RTOL * (1 + |C y(center)| + |d| + |raw|), elementwise."""
    magnitude = center_term + np.abs(d) + np.where(np.isfinite(raw), np.abs(raw), 0.0)
    return raw - d - REFUTATION_RTOL * (1.0 + magnitude)


def lower_bounds(
    bounded,
    lower: np.ndarray,
    upper: np.ndarray,
    C: np.ndarray,
    d: np.ndarray,
    *,
    method: str,
    iterations: int = ALPHA_ITERATIONS,
    lr: float = ALPHA_LR,
    budget: Budget | None = None,
    done: Done | None = None,
) -> np.ndarray:
    """Sound lower bounds of `C[b] @ y - d[b]` over box b, widened, float64 (B, R).

    `bounded`: a verikit.engines.lirpa.engine.BoundedNetwork; lower/upper: finite non-empty boxes
    float64 (B, n_inputs); C (B, R, n_outputs); d (B, R). For α-CROWN, `iterations`/`lr` tune the
    optimiser, which stops near the budget's deadline (keeping its best bounds so far) and stops moving
    the α of the boxes `done` marks. Raises UnsupportedByBoundsError for auto_LiRPA's known limitations.
    """
    check_method(method)
    lower, upper = np.asarray(lower, np.float64), np.asarray(upper, np.float64)
    C, d = np.asarray(C, np.float64), np.asarray(d, np.float64)
    y_center = bounded.network.forward((lower + upper) / 2.0).double().cpu().numpy()
    center_term = np.einsum("brk,bk->br", np.abs(C), np.abs(y_center))

    def stop(raw: torch.Tensor) -> np.ndarray:
        if done is None:
            return np.zeros(raw.shape[0], dtype=bool)
        return done(widen(raw.detach().double().cpu().numpy().reshape(d.shape), d, center_term))

    raw = _raw_lower_bounds(bounded, lower, upper, C, method, iterations, lr, budget, stop)
    return widen(raw, d, center_term)


def _alpha_options(iterations: int, lr: float, budget: Budget | None,
                   stop: Callable[[torch.Tensor], np.ndarray]) -> dict:
    """auto_LiRPA's optimizer settings; its per-box stop criterion (B, 1) is all true near the deadline."""
    timer = StepTimer(budget)

    def criterion(raw: torch.Tensor) -> torch.Tensor:
        if timer.out_of_time():
            return torch.ones((raw.shape[0], 1), dtype=torch.bool, device=raw.device)
        return torch.as_tensor(stop(raw), dtype=torch.bool, device=raw.device).reshape(-1, 1)

    return {"iteration": max(1, int(iterations)), "lr_alpha": float(lr), "stop_criterion_func": criterion}


def _dense_spec_alpha(module: torch.nn.Module) -> None:
    """auto_LiRPA 0.3's sparse-spec α breaks when a later call (or iteration) bounds an intermediate
    layer densely (`assert alpha_lookup_idx[...] is None` in BoundRelu); full α is always valid."""
    for node in module.optimizable_activations:
        if hasattr(node, "use_sparse_spec_alpha"):
            node.use_sparse_spec_alpha = False


def _raw_lower_bounds(bounded, lower: np.ndarray, upper: np.ndarray, C: np.ndarray, method: str,
                      iterations: int, lr: float, budget: Budget | None,
                      stop: Callable[[torch.Tensor], np.ndarray]) -> np.ndarray:
    """auto_LiRPA's float32 lower bounds of C[b] @ y over box b, as float64 (B, R), before widening."""
    lirpa = import_auto_lirpa()
    device, module = bounded.device, bounded.module
    low, high = round_outward(torch.tensor(lower), torch.tensor(upper), torch.float32)
    x_low, x_high = low.to(device), high.to(device)
    center = torch.minimum(torch.maximum((x_low + x_high) / 2, x_low), x_high)
    x = lirpa.BoundedTensor(center, lirpa.PerturbationLpNorm(norm=float("inf"), x_L=x_low, x_U=x_high))
    spec = torch.as_tensor(C, dtype=torch.float32, device=device)
    if method == "alpha-crown" and not module.optimizable_activations:
        method = "crown"  # nothing to optimize: α-CROWN is CROWN (auto_LiRPA fails on an empty α)
    if method == "alpha-crown":
        _dense_spec_alpha(module)
        module.set_bound_opts({"optimize_bound_args": _alpha_options(iterations, lr, budget, stop)})
    merge_spec = not (method == "ibp" and support.final_node_is_matmul(module))
    with support.quiet_lirpa(), contextlib.ExitStack() as stack:
        if method != "alpha-crown":
            stack.enter_context(torch.no_grad())
        try:
            raw, raw_upper = module.compute_bounds(x=(x,), C=spec if merge_spec else None,
                                                   method=_LIRPA_METHOD[method], bound_upper=not merge_spec)
        except Exception as error:  # noqa: BLE001 - re-raised unless it is a known limitation
            known = limitation(error, f"compute {method} bounds", bounded.network.source)
            if known is None:
                raise
            raise known from error
    batch, rows = C.shape[:2]
    if merge_spec:
        values = raw.detach().double().cpu().numpy().reshape(batch, rows)
    else:  # interval arithmetic for C @ y from the output intervals, in float64
        y_low = raw.detach().double().cpu().numpy().reshape(batch, -1)
        y_high = raw_upper.detach().double().cpu().numpy().reshape(batch, -1)
        values = (np.einsum("brk,bk->br", np.clip(C, 0, None), y_low)
                  + np.einsum("brk,bk->br", np.clip(C, None, 0), y_high))
    return np.where(np.isnan(values), -np.inf, values)
