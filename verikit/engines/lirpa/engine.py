"""Bound-propagation engine: IBP, CROWN and α-CROWN through auto_LiRPA.

`prepare(network)` traces the network into an auto_LiRPA BoundedModule once; `run(bounded, case, budget)`
bounds every row of every disjunct in one call, with the spec's rows stacked into one C matrix (one box
of verikit.engines.lirpa.driver, which widens by a float slack: REFUTATION_RTOL).

auto_LiRPA computes in float32 and that slack is an estimate, not a derivation, so no verdict rests on
it. A case auto_LiRPA refutes is proven only when verikit confirms it in rigorous float64 arithmetic
(`verikit.engines.crown.confirm.rigorous_lower_bounds`: outward-rounded intervals through the
piecewise-linear form, then float64 CROWN/α-CROWN with a derived rounding allowance on a ReLU MLP), after
that form is checked against onnxruntime on the case's box. A ReLU network whose graph is not a chain
(residual adds, branches) is confirmed on its own graph instead (`verikit.engines.crown.graph`, float64
CROWN with a derived allowance); one with neither form (sigmoid outside a chain, comparisons, division,
...) has no confirmation: the engine says so (`supports`), and a refutation there is `unknown` with the
reason, never `verified`.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch

from verikit.engines.lirpa import METHODS, memory, support
from verikit.engines.lirpa.compat import import_auto_lirpa
from verikit.engines.lirpa.driver import ALPHA_ITERATIONS, ALPHA_LR, REFUTATION_RTOL, check_method, limitation
from verikit.engines.lirpa.driver import lower_bounds as driver_lower_bounds
from verikit.engines.lirpa.custom import register_custom_ops
from verikit.engines.lirpa.support import BoundsError, UnsupportedByBoundsError
from verikit.core.errors import EngineLimitation, ExitCode, VerikitError
from verikit.core.network import Network
from verikit.core.result import Budget, Certificate, DisjunctBounds, Proven, Unknown
from verikit.core.settings import settings_dict
from verikit.core.property import Box, Case

__all__ = [
    "METHODS", "REFUTATION_RTOL", "BoundedNetwork", "BoundsError", "UnsupportedByBoundsError",
    "DeviceUnavailableError", "prepare", "margin_lower_bounds", "output_bounds", "run", "bound_case",
]

MAX_MATRIX_BYTES = 16 * 2**30  # an upper estimate (memory.py): the shared families need at most 12.2 (α, max-pool CNN)
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
    pwl: object = None  # the form confirming refutations (crown.confirm.ChainForm, crown.graph.GraphForm), or
    # why there is none (str)
    checked_boxes: set = field(default_factory=set, repr=False)  # boxes check_translation_in_box passed


def prepare(network: Network, *, device: str = "cpu", pwl=None) -> BoundedNetwork:
    """Trace `network` into auto_LiRPA on `device` ("cpu" or "cuda").

    `pwl`: the network's piecewise-linear form when the caller already holds it (a PiecewiseLinear, or the
    reason there is none as a str); None builds it here.

    Raises UnsupportedByBoundsError when auto_LiRPA cannot handle an operator, BoundsError when its
    translation disagrees with the network's module, DeviceUnavailableError for a missing device.
    """
    if not (device == "cpu" or device.startswith("cuda")):
        raise DeviceUnavailableError(f"unknown device {device!r}; use 'cpu' or 'cuda'")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise DeviceUnavailableError(f"device {device!r} requested but torch sees no CUDA device")
    lirpa = import_auto_lirpa()
    register_custom_ops()
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
            known = limitation(error, "convert this network", network.source)
            if known is None:
                raise
            raise known from error
    unsound = support.unsound_operators(bounded)
    if unsound:
        operator, why = unsound[0]
        raise UnsupportedByBoundsError(f"auto_LiRPA cannot bound this network soundly: {operator}: {why}",
                                       operators=(operator,), where=network.source or None)
    support.fix_maxpool_relaxation(bounded)
    support.ensure_parameter(bounded, device)
    from verikit.engines.crown.confirm import confirming_form

    result = BoundedNetwork(network, bounded, device, confirming_form(network, pwl))
    _check_translation(result)
    return result


def unconfirmable(bounded: BoundedNetwork) -> str | None:
    """Why auto_LiRPA's float32 bounds on this network can never be confirmed rigorously, or None."""
    if isinstance(bounded.pwl, str) or bounded.pwl is None:
        return (f"auto_LiRPA bounds in float32, and verikit re-proves such bounds in rigorous arithmetic only on "
                f"a piecewise-linear chain or a ReLU graph form, which this network lacks "
                f"({bounded.pwl or 'none was built'})")
    return None


def _confirm(bounded: BoundedNetwork, case: Case, C: np.ndarray, d: np.ndarray, starts, ends,
             stop=None) -> str | None:
    """None when verikit's rigorous float64 bounds refute every disjunct too, else why the proof stands
    unconfirmed. Raises `_NotConfirmable` when the network has no form to confirm with. `stop()` true cuts
    short the form's optional tightening (the stage's deadline)."""
    from verikit.core.errors import ModelError

    reason = unconfirmable(bounded)
    if reason is not None:
        raise _NotConfirmable(reason)
    form = bounded.pwl
    try:
        form.check(bounded.network, case.box)
    except ModelError as error:
        return str(error)
    lower = rigorous_case_bounds(form, case, C, d, stop)
    open_ = [k for k, (s, e) in enumerate(zip(starts, ends)) if not np.any(lower[s:e] > 0)]
    if open_:
        return (f"auto_LiRPA's float32 bounds refute every disjunct, but verikit's rigorous float64 bounds "
                f"({form.label}) do not confirm disjunct(s) {open_[:5]}")
    return None


def rigorous_case_bounds(form, case: Case, C: np.ndarray, d: np.ndarray, stop=None) -> np.ndarray:
    """The confirming form's rigorous lower bounds (rows,) of `C @ y - d` over the case's input set: its box,
    intersected with its ℓ2 ball when the region is one (verikit.engines.crown.input_set); `stop()` true cuts
    short the form's optional tightening."""
    from verikit.core.property import L2Ball
    from verikit.engines.crown.input_set import InputBall

    region = case.region
    ball = InputBall.of(region.center, region.radius) if isinstance(region, L2Ball) else None
    return form.lower_bounds(case.box.lower[None], case.box.upper[None], C, d, ball=ball, stop=stop)[0]


def _over_the_ball(bounded: BoundedNetwork, case: Case, C: np.ndarray, d: np.ndarray, starts, ends,
                   method: str, found: tuple, stop=None) -> Proven | tuple | None:
    """For an ℓ2-ball case auto_LiRPA leaves open over the box (it bounds boxes only: its ℓ2 perturbation
    in 0.3 starts IBP from the centre alone, x_L = x_U = x, which would be unsound here), the rigorous
    form's bounds over ball ∩ box: Proven, else the better bounds, or None (no form, or not a ball)."""
    from verikit.core.errors import ModelError
    from verikit.core.property import L2Ball

    if not isinstance(case.region, L2Ball) or method == "ibp" or unconfirmable(bounded) is not None:
        return None
    try:
        bounded.pwl.check(bounded.network, case.box)
    except ModelError:
        return None
    lower = rigorous_case_bounds(bounded.pwl, case, C, d, stop)
    better = tuple(DisjunctBounds(np.maximum(lower[s:e], item.lower), f"{method} over the l2 ball")
                   for (s, e), item in zip(zip(starts, ends), found))
    if all(np.any(lower[s:e] > 0) for s, e in zip(starts, ends)):
        return Proven(Certificate(f"{method}-l2", tuple(DisjunctBounds(lower[s:e].copy(), method)
                                                        for s, e in zip(starts, ends)),
                                  {"input_set": "l2 ball ∩ box", "confirmed_by": "verikit rigorous float64 bounds "
                                   f"over the ball ({bounded.pwl.label}, dual norm)"}))
    return better


def confirm_case(bounded: BoundedNetwork, case: Case) -> str | None:
    """None when the case is proven in rigorous float64 arithmetic on the whole box, else the reason."""
    disjuncts = case.disjuncts
    C = np.vstack([conjunction.C for conjunction in disjuncts])
    d = np.concatenate([conjunction.d for conjunction in disjuncts])
    ends = np.cumsum([conjunction.rows for conjunction in disjuncts])
    try:
        return _confirm(bounded, case, C, d, ends - np.array([c.rows for c in disjuncts]), ends)
    except _NotConfirmable as reason:
        return str(reason)


class _NotConfirmable(Exception):
    """The network has no form verikit's rigorous CROWN can bound."""


def _check_translation(bounded: BoundedNetwork, samples: int = 4, seed: int = 0) -> None:
    """auto_LiRPA re-implements each operator; refuse a translation that computes something else (on a
    few random normal points here, and on points of every box bounded: `check_translation_in_box`)."""
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(samples, bounded.network.n_inputs, generator=generator)
    x[0] = 0.0
    _compare_translation(bounded, x, "")


def check_translation_in_box(bounded: BoundedNetwork, box: Box) -> None:
    """BoundsError unless auto_LiRPA's forward matches the network's at the centre, the two corners and
    two uniform points of `box` (a translation may differ only where the box lies); once per box."""
    from verikit.onnx.load import evaluation_points

    key = (box.lower.tobytes(), box.upper.tobytes())
    if key in bounded.checked_boxes:
        return
    points = evaluation_points(box, samples=1)
    _compare_translation(bounded, torch.from_numpy(points.astype(np.float32)), " inside the box")
    if len(bounded.checked_boxes) >= 4096:
        bounded.checked_boxes.clear()
    bounded.checked_boxes.add(key)


def _compare_translation(bounded: BoundedNetwork, x: torch.Tensor, where: str) -> None:
    """BoundsError unless auto_LiRPA's outputs at x (k, n) float32 match the network module's, output j
    within `_TRANSLATION_RTOL * (1 + max |y_j|)` (each output on its own scale)."""
    expected = bounded.network.forward(x).double().reshape(x.shape[0], -1)
    with support.quiet_lirpa(), torch.no_grad():
        # One sample at a time: auto_LiRPA records the batch shape of its last forward in its nodes.
        rows = [bounded.module(row[None].to(bounded.device)).reshape(1, -1) for row in x]
    got = torch.cat(rows).double().cpu()
    # a sample may hit a pole (x / x at 0): there both must give the same inf or NaN
    same_special = (got == expected) | (torch.isnan(got) & torch.isnan(expected))
    finite = torch.isfinite(got) & torch.isfinite(expected)
    if got.shape != expected.shape or not bool((finite | same_special).all()):
        raise BoundsError(f"auto_LiRPA's translation of the network gives outputs of another shape or NaN{where}")
    error = torch.where(finite, got - expected, torch.zeros_like(got)).abs()
    scale = torch.where(finite, expected, torch.zeros_like(expected)).abs().amax(dim=0)
    excess = error / (_TRANSLATION_RTOL * (1.0 + scale))
    if bool((excess > 1.0).any()):
        output = int(excess.amax(dim=0).argmax())
        raise BoundsError(f"auto_LiRPA's translation disagrees with the network{where} by "
                          f"{float(error[:, output].max()):.3g} on output {output}")


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
    check_method(method)
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
    check_translation_in_box(bounded, box)
    bounds = driver_lower_bounds(
        bounded, box.lower[None, :], box.upper[None, :], C[None], d[None], method=method, iterations=iterations,
        lr=lr, budget=budget, done=lambda widened: np.array([done(widened[0])]),
    )
    return bounds[0]


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
    check_method(method)
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
    except BoundsError as error:  # an operator auto_LiRPA cannot bound, or its translation differs in the box
        return Unknown(f"bounds engine cannot handle this network: {error}")
    found = tuple(DisjunctBounds(lower[s:e].copy(), method) for s, e in zip(starts, ends))
    open_ = [index for index, item in enumerate(found) if not item.refuted]
    if open_ and not budget.expired():
        over_ball = _over_the_ball(bounded, case, C, d, starts, ends, method, found, stop=budget.expired)
        if isinstance(over_ball, Proven):
            return over_ball
        if over_ball is not None:
            found = over_ball
            open_ = [index for index, item in enumerate(found) if not item.refuted]
    if not open_:
        try:
            unconfirmed = _confirm(bounded, case, C, d, starts, ends, stop=budget.expired)
        except _NotConfirmable as reason:
            return Unknown(f"{method} refutes every disjunct in float32, which is not a proof: {reason}", bounds=found)
        if unconfirmed is not None:
            return Unknown(unconfirmed, bounds=found, timed_out=budget.expired())
        return Proven(Certificate(method, found, {"refutation_rtol": REFUTATION_RTOL,
                                                  "confirmed_by": "verikit rigorous float64 bounds"}))
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


@dataclass(frozen=True)
class BoundsSettings:
    """α-CROWN's optimisation: at most `alpha_iterations` steps of size `alpha_lr` (stops once proven);
    CROWN and α-CROWN answer unknown when their dense matrices would pass `max_matrix_bytes` (0: no cap)."""

    alpha_iterations: int = ALPHA_ITERATIONS
    alpha_lr: float = ALPHA_LR
    max_matrix_bytes: int = MAX_MATRIX_BYTES


@dataclass(frozen=True)
class BoundsEngine:
    """IBP, CROWN or α-CROWN (auto_LiRPA) behind the Engine protocol; `method` picks which."""

    method: str = "crown"
    settings: BoundsSettings = BoundsSettings()
    name = "bounds"

    def __post_init__(self) -> None:
        check_method(self.method)

    def supports(self, problem) -> str | None:
        try:
            problem.lirpa()
        except EngineLimitation as limitation:  # auto_LiRPA missing, or an operator it cannot bound
            return f"bounds engine cannot handle this network: {limitation}"
        reason = unconfirmable(problem.lirpa())
        return None if reason is None else f"bounds engine cannot prove anything here: {reason}"

    def run(self, problem, case: Case, budget: Budget) -> Proven | Unknown:
        too_big = memory.over_cap(problem.lirpa().module, self.method, self.settings.max_matrix_bytes)
        if too_big:
            return Unknown(too_big)
        return run(problem.lirpa(), case, budget, method=self.method, iterations=self.settings.alpha_iterations,
                   lr=self.settings.alpha_lr)

    def settings_dict(self) -> dict:
        return settings_dict(self.settings)
