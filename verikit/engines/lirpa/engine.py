"""Bound-propagation engine: IBP, CROWN and α-CROWN through auto_LiRPA.

`prepare(network)` traces the network into an auto_LiRPA BoundedModule once; `run(bounded, case, budget)`
bounds every row of every disjunct in one call, with the spec's rows stacked into one C matrix.

Soundness: auto_LiRPA works in float32, so its bounds hold up to float rounding, and onnxruntime rounds
too. Every bound this module returns is therefore widened by a slack of
`REFUTATION_RTOL * (1 + |C_r| @ |f(center)| + |d_r| + |raw bound|)` per row (the magnitudes involved),
and the input box is rounded outward to float32. A row refutes its disjunct only when the widened
lower bound of `C[r] @ y - d[r]` is still > 0.

That slack is an estimate, not a derivation. So on a piecewise-linear ReLU MLP (checked against
onnxruntime on the case's box) every refutation is confirmed by verikit's own float64 CROWN/α-CROWN
(`verikit.engines.crown.confirm`, derived rounding allowance) before the case counts as proven; one it
cannot confirm is Unknown (branch and bound takes it over). On other networks the certificate says
which arithmetic the proof assumes (`arithmetic="real-estimated-slack"`).
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from verikit.engines.lirpa import support
from verikit.engines.crown.propagate import round_outward
from verikit.engines.lirpa.compat import import_auto_lirpa
from verikit.engines.lirpa.support import BoundsError, UnsupportedByBoundsError
from verikit.core.errors import ExitCode, VerikitError
from verikit.core.network import Network
from verikit.core.result import Budget, Certificate, DisjunctBounds, Proven, StepTimer, Unknown
from verikit.core.property import Box, Case

__all__ = [
    "METHODS", "REFUTATION_RTOL", "BoundedNetwork", "BoundsError", "UnsupportedByBoundsError",
    "DeviceUnavailableError", "prepare", "margin_lower_bounds", "output_bounds", "run", "bound_case",
]

METHODS = ("ibp", "crown", "alpha-crown")
_LIRPA_METHOD = {"ibp": "IBP", "crown": "CROWN", "alpha-crown": "CROWN-Optimized"}

REFUTATION_RTOL = 1e-5
"""Relative float slack subtracted from every lower bound (and added to every upper bound)."""

ALPHA_ITERATIONS = 20
ALPHA_LR = 0.5
_TRANSLATION_RTOL = 1e-4  # auto_LiRPA's own forward vs the network's torch module, relative to scale

class DeviceUnavailableError(VerikitError):
    """The requested torch device is not available on this machine."""

    exit_code = ExitCode.USAGE


@dataclass(frozen=True, eq=False)
class BoundedNetwork:
    """A network traced into auto_LiRPA once, reused for many boxes. Not safe to share across threads."""

    network: Network
    module: torch.nn.Module  # auto_LiRPA.BoundedModule
    device: str
    pwl: object = None  # the float64 ReluMlp confirming refutations, or the reason there is none (str)


def _limitation(error: BaseException, doing: str, source: str) -> UnsupportedByBoundsError | None:
    """A typed error for auto_LiRPA's known limitations (see lirpa_support.limitation_of), else None."""
    what = support.limitation_of(error)
    if what is None:
        return None
    operator = what.split(":", 1)[0]
    detail = str(error).splitlines()[0][:200] if str(error) else type(error).__name__
    return UnsupportedByBoundsError(
        f"auto_LiRPA cannot {doing}: {what} ({detail})", operators=(operator,), where=source or None
    )


def prepare(network: Network, *, device: str = "cpu") -> BoundedNetwork:
    """Trace `network` into auto_LiRPA on `device` ("cpu" or "cuda").

    Raises UnsupportedByBoundsError when auto_LiRPA cannot handle an operator, BoundsError when its
    translation disagrees with the network's module, DeviceUnavailableError for a missing device.
    """
    if not (device == "cpu" or device.startswith("cuda")):
        raise DeviceUnavailableError(f"unknown device {device!r}; use 'cpu' or 'cuda'")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise DeviceUnavailableError(f"device {device!r} requested but torch sees no CUDA device")
    lirpa = import_auto_lirpa()
    module = copy.deepcopy(network.module).eval()  # auto_LiRPA moves what it is given to the device
    dummy = torch.zeros(1, network.n_inputs, dtype=torch.float32, device=device)
    with support.quiet_lirpa() as records:
        try:
            bounded = lirpa.BoundedModule(module, (dummy,), device=device, bound_opts=support.bound_opts())
        except Exception as error:  # noqa: BLE001 - re-raised unless it is a known limitation
            operators = support.unsupported_operators(records)
            if operators:
                raise UnsupportedByBoundsError(
                    f"auto_LiRPA cannot handle {', '.join(operators)}", operators=operators,
                    where=network.source or None,
                ) from error
            known = _limitation(error, "convert this network", network.source)
            if known is None:
                raise
            raise known from error
    support.fix_maxpool_relaxation(bounded)
    support.ensure_parameter(bounded, device)
    result = BoundedNetwork(network, bounded, device, _confirming_mlp(network))
    _check_translation(result)
    return result


def _confirming_mlp(network: Network):
    """The float64 ReluMlp that confirms refutations, or the reason there is none."""
    from verikit.core.pwl import NotPiecewiseLinear
    from verikit.engines.crown.confirm import exact_mlp
    from verikit.onnx.pwl import to_piecewise_linear

    try:
        pwl = to_piecewise_linear(network)
    except NotPiecewiseLinear as reason:
        return f"not piecewise linear: {reason}"
    mlp = exact_mlp(pwl)
    return (pwl, mlp) if mlp is not None else "not a ReLU MLP with a hidden layer (Affine (Relu Affine)+)"


def _confirm(bounded: BoundedNetwork, case: Case, C: np.ndarray, d: np.ndarray, starts, ends) -> str | None:
    """None when verikit's float64 CROWN refutes every disjunct too, else why the proof stands unconfirmed.

    Raises `_NotConfirmable` when the network has no piecewise-linear ReLU-MLP form to confirm with."""
    from verikit.core.errors import ModelError
    from verikit.engines.crown.confirm import confirmed_lower_bounds
    from verikit.onnx.pwl import check_piecewise_linear

    if isinstance(bounded.pwl, str) or bounded.pwl is None:
        raise _NotConfirmable(bounded.pwl or "no piecewise-linear form")
    pwl, mlp = bounded.pwl
    try:
        check_piecewise_linear(bounded.network, pwl, case.box)
    except ModelError as error:
        return str(error)
    lower = confirmed_lower_bounds(mlp, case.box.lower[None], case.box.upper[None], C, d)[0]
    open_ = [k for k, (s, e) in enumerate(zip(starts, ends)) if not np.any(lower[s:e] > 0)]
    if open_:
        return (f"auto_LiRPA's float32 bounds refute every disjunct, but verikit's float64 CROWN (derived "
                f"rounding allowance) does not confirm disjunct(s) {open_[:5]}")
    return None


class _NotConfirmable(Exception):
    """The network has no form verikit's rigorous CROWN can bound."""


def _check_translation(bounded: BoundedNetwork, samples: int = 4, seed: int = 0) -> None:
    """auto_LiRPA re-implements each operator; refuse a translation that computes something else."""
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(samples, bounded.network.n_inputs, generator=generator)
    x[0] = 0.0
    expected = bounded.network.forward(x).double()
    with support.quiet_lirpa(), torch.no_grad():
        # One sample at a time: auto_LiRPA records the batch shape of its last forward in its nodes.
        rows = [bounded.module(row[None].to(bounded.device)).reshape(1, -1) for row in x]
    got = torch.cat(rows).double().cpu()
    if got.shape != expected.shape or not bool(torch.isfinite(got).all()):
        raise BoundsError("auto_LiRPA's translation of the network gives outputs of another shape or NaN")
    error = float((got - expected).abs().max())
    if error > _TRANSLATION_RTOL * (1.0 + float(expected.abs().max())):
        raise BoundsError(f"auto_LiRPA's translation disagrees with the network by {error:.3g}")


def _check_method(method: str) -> None:
    if method not in METHODS:
        raise ValueError(f"unknown bounds method {method!r}; choose one of {', '.join(METHODS)}")


def _alpha_options(
    iterations: int, lr: float, budget: Budget | None, done: Callable[[torch.Tensor], bool]
) -> dict:
    """auto_LiRPA's optimizer settings; its stop criterion ends early when `done` or near the deadline."""
    timer = StepTimer(budget)

    def stop(lower: torch.Tensor) -> torch.Tensor:
        return torch.full_like(lower, bool(timer.out_of_time() or done(lower)), dtype=torch.bool)

    return {"iteration": max(1, int(iterations)), "lr_alpha": float(lr), "stop_criterion_func": stop}


def _raw_lower_bounds(
    bounded: BoundedNetwork,
    box: Box,
    C: np.ndarray,
    method: str,
    iterations: int,
    lr: float,
    budget: Budget | None,
    done: Callable[[torch.Tensor], bool],
) -> np.ndarray:
    """auto_LiRPA's float32 lower bounds of C @ y over the box, as float64 (rows,)."""
    lirpa = import_auto_lirpa()
    device, module = bounded.device, bounded.module
    low, high = round_outward(torch.tensor(box.lower), torch.tensor(box.upper), torch.float32)
    x_low, x_high = low.to(device).reshape(1, -1), high.to(device).reshape(1, -1)
    center = torch.minimum(torch.maximum((x_low + x_high) / 2, x_low), x_high)
    x = lirpa.BoundedTensor(center, lirpa.PerturbationLpNorm(norm=float("inf"), x_L=x_low, x_U=x_high))
    spec = torch.as_tensor(C, dtype=torch.float32, device=device).unsqueeze(0)
    if method == "alpha-crown" and not module.optimizable_activations:
        method = "crown"  # nothing to optimize: α-CROWN is CROWN (auto_LiRPA fails on an empty α)
    if method == "alpha-crown":
        module.set_bound_opts({"optimize_bound_args": _alpha_options(iterations, lr, budget, done)})
    merge_spec = not (method == "ibp" and support.final_node_is_matmul(module))
    with support.quiet_lirpa(), contextlib.ExitStack() as stack:
        if method != "alpha-crown":
            stack.enter_context(torch.no_grad())
        try:
            lower, upper = module.compute_bounds(
                x=(x,), C=spec if merge_spec else None, method=_LIRPA_METHOD[method],
                bound_upper=not merge_spec,
            )
        except Exception as error:  # noqa: BLE001 - re-raised unless it is a known limitation
            known = _limitation(error, f"compute {method} bounds", bounded.network.source)
            if known is None:
                raise
            raise known from error
    if merge_spec:
        values = lower.detach().double().cpu().numpy().reshape(-1)
    else:  # interval arithmetic for C @ y from the output intervals, in float64
        y_low = lower.detach().double().cpu().numpy().reshape(-1)
        y_high = upper.detach().double().cpu().numpy().reshape(-1)
        values = np.clip(C, 0, None) @ y_low + np.clip(C, None, 0) @ y_high
    return np.where(np.isnan(values), -np.inf, values)


def _widen(raw: np.ndarray, d: np.ndarray, center_term: np.ndarray) -> np.ndarray:
    """`raw - d` minus the float slack REFUTATION_RTOL * (1 + |C y(center)| + |d| + |raw|), per row."""
    magnitude = center_term + np.abs(d) + np.where(np.isfinite(raw), np.abs(raw), 0.0)
    return raw - d - REFUTATION_RTOL * (1.0 + magnitude)


def margin_lower_bounds(
    bounded: BoundedNetwork,
    box: Box,
    C: np.ndarray,
    d: np.ndarray,
    *,
    method: str = "crown",
    iterations: int = ALPHA_ITERATIONS,
    lr: float = ALPHA_LR,
    budget: Budget | None = None,
) -> np.ndarray:
    """Sound lower bounds of `C @ y - d` over the box, float64 shape (rows,), widened by the float slack.

    C has shape (rows, n_outputs), d shape (rows,). `iterations`/`lr` tune α-CROWN only; with a
    budget, α-CROWN stops before the deadline (keeping its best bounds so far). Raises
    UnsupportedByBoundsError when auto_LiRPA cannot compute `method` bounds for an operator.
    """
    return _margin_lower_bounds(bounded, box, C, d, method, iterations, lr, budget, lambda margins: False)


def _margin_lower_bounds(
    bounded: BoundedNetwork,
    box: Box,
    C: np.ndarray,
    d: np.ndarray,
    method: str,
    iterations: int,
    lr: float,
    budget: Budget | None,
    done: Callable[[np.ndarray], bool],
) -> np.ndarray:
    _check_method(method)
    C = np.asarray(C, dtype=np.float64).reshape(-1, bounded.network.n_outputs)
    d = np.asarray(d, dtype=np.float64).reshape(-1)
    if C.shape[0] != d.size:
        raise ValueError(f"C has {C.shape[0]} rows but d has {d.size}")
    if box.size != bounded.network.n_inputs:
        raise ValueError(f"box has {box.size} inputs, the network {bounded.network.n_inputs}")
    if box.is_empty or not (np.isfinite(box.lower).all() and np.isfinite(box.upper).all()):
        raise ValueError("the box must be non-empty and finite")
    if C.shape[0] == 0:
        return np.zeros(0)
    y_center = bounded.network.forward(box.center[None, :]).double().cpu().numpy().reshape(-1)
    center_term = np.abs(C) @ np.abs(y_center)

    def done_raw(raw: torch.Tensor) -> bool:
        return done(_widen(raw.detach().double().cpu().numpy().reshape(-1), d, center_term))

    raw = _raw_lower_bounds(bounded, box, C, method, iterations, lr, budget, done_raw)
    return _widen(raw, d, center_term)


def output_bounds(
    bounded: BoundedNetwork,
    box: Box,
    *,
    method: str = "crown",
    iterations: int = ALPHA_ITERATIONS,
    lr: float = ALPHA_LR,
    budget: Budget | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Sound (lower, upper) bounds of each output over the box, float64 (n_outputs,) each, slack included."""
    n = bounded.network.n_outputs
    identity = np.eye(n)
    lower = margin_lower_bounds(
        bounded, box, np.vstack([identity, -identity]), np.zeros(2 * n),
        method=method, iterations=iterations, lr=lr, budget=budget,
    )
    return lower[:n], -lower[n:]


def run(
    bounded: BoundedNetwork,
    case: Case,
    budget: Budget,
    *,
    method: str = "crown",
    iterations: int = ALPHA_ITERATIONS,
    lr: float = ALPHA_LR,
) -> Proven | Unknown:
    """Proven iff every disjunct has a row whose bound shows `C[r] @ y - d[r] > 0`; else Unknown with bounds.

    When auto_LiRPA cannot compute `method` bounds for an operator, the answer is Unknown with its reason.
    """
    _check_method(method)
    disjuncts = case.disjuncts
    if not disjuncts:
        return Proven(Certificate(method, (), {"note": "no disjuncts: the case cannot be violated"}))
    empty = [index for index, conjunction in enumerate(disjuncts) if conjunction.rows == 0]
    if empty:
        return Unknown(f"disjunct {empty[0]} has no rows, so it always holds and cannot be refuted")
    box = case.box
    if box.is_empty:
        return Unknown("the input box is empty")
    if not (np.isfinite(box.lower).all() and np.isfinite(box.upper).all()):
        return Unknown("the input box is unbounded; bound propagation needs finite bounds")
    if budget.expired():
        return Unknown("no time left for bound propagation", timed_out=True)
    C = np.vstack([conjunction.C for conjunction in disjuncts])
    d = np.concatenate([conjunction.d for conjunction in disjuncts])
    ends = np.cumsum([conjunction.rows for conjunction in disjuncts])
    starts = ends - np.array([conjunction.rows for conjunction in disjuncts])

    def all_refuted(margins: np.ndarray) -> bool:
        return all(bool(np.any(margins[s:e] > 0)) for s, e in zip(starts, ends))

    try:
        lower = _margin_lower_bounds(bounded, box, C, d, method, iterations, lr, budget, all_refuted)
    except UnsupportedByBoundsError as error:
        return Unknown(f"bounds engine cannot handle this network: {error}")
    found = tuple(DisjunctBounds(lower[s:e].copy(), method) for s, e in zip(starts, ends))
    open_ = [index for index, item in enumerate(found) if not item.refuted]
    if not open_:
        try:
            unconfirmed = _confirm(bounded, case, C, d, starts, ends)
        except _NotConfirmable as reason:
            return Proven(Certificate(method, found, {"refutation_rtol": REFUTATION_RTOL, "unconfirmed": str(reason)},
                                      arithmetic="real-estimated-slack"))
        if unconfirmed is not None:
            return Unknown(unconfirmed, bounds=found)
        return Proven(Certificate(method, found, {"refutation_rtol": REFUTATION_RTOL,
                                                  "confirmed_by": "verikit float64 CROWN/alpha-CROWN"}))
    listed = ", ".join(str(index) for index in open_[:5]) + (", …" if len(open_) > 5 else "")
    best = max(found[index].best for index in open_)
    return Unknown(
        f"{method} bounds refute {len(found) - len(open_)} of {len(found)} disjuncts; open: {listed} "
        f"(best open margin lower bound {best:.4g})",
        bounds=found,
        timed_out=budget.expired(),
    )


def bound_case(
    network: Network, case: Case, budget: Budget, *, method: str = "crown", device: str = "cpu"
) -> Proven | Unknown:
    """The engine in one call: prepare then run (prefer prepare once and run many cases).

    A network auto_LiRPA cannot trace or translates wrongly gives Unknown with the reason.
    """
    try:
        bounded = prepare(network, device=device)
    except BoundsError as error:
        return Unknown(f"bounds engine cannot handle this network: {error}")
    return run(bounded, case, budget, method=method)
