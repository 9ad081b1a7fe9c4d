"""The exact engine: a piecewise-linear network and a case as one z3 query over the reals.

Semantics. The query is exact for the real-valued network with the float64 weights (each float enters
z3 as the rational it denotes exactly, see `smt_encoding`). The ONNX network computes in float32, so
`unsat` proves the property for the real-valued network — the standard in the field, and said in the
certificate — and a `sat` model becomes `Falsified` only after an onnxruntime replay (`verikit.witness.replay`).

Cost (measured, z3 5.4.1, one core). z3's simplex is exact and float32 weights are 24-bit rationals, so
pivots are slow (a 3-16-16-3 net with 32 unstable ReLUs: no answer in 20 s). Rounding the bounds
outward to 6 bits (smt_encoding.coarsen) and adding the triangle relaxation cut the median time on 16
random nets (2-4 inputs, <= 3 layers of <= 12) from ~2 s to ~0.5 s; "if" vs "bool-triangle" differ by
noise. Roughly: <= 12 unstable ReLUs well under a second, 15-20 seconds to minutes. Sound bounds
(interval ∩ float64 CROWN) fix every ReLU they prove stable, so the engine suits small networks, small
boxes and branch-and-bound leaves (`box`, `phases`).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from fractions import Fraction

import numpy as np
import z3

from verikit.core.pwl import Affine, NotPiecewiseLinear, PiecewiseLinear, Relu
from verikit.engines.crown.interval import Interval, interval_bounds
from verikit.engines.smt.encoding import (
    RELU_ENCODINGS,
    Encoding,
    Phases,
    coarsen,
    crown_bounds,
    encode,
    intersect_bounds,
)
from verikit.core.network import Network
from verikit.core.result import Budget, Certificate, Falsified, Proven, Unknown
from verikit.core.property import Box, Case
from verikit.witness.replay import STRICT, Tolerances, validate_batch

__all__ = ["run", "run_network", "RELU_ENCODINGS", "DEFAULT_RELU_ENCODING", "SEMANTICS"]

SEMANTICS = (
    "exact over the reals for the float64 weights (each float as its exact rational); "
    "the ONNX network computes in float32, so unsat is proven for the real-valued network"
)
from verikit.engines.smt.settings import DEFAULT_RELU_ENCODING  # noqa: E402
BOUND_BITS = 6  # significant bits bounds keep after outward rounding (see smt_encoding.coarsen)
# Caller bounds may come from float32 (CROWN on a GPU): widened by 1e-5 relative plus 1e-6 absolute.
# Our own float64 CROWN bounds already carry a rounding allowance; widened by 1e-9 relative on top.
_CALLER_WIDENING = (1e-5, 1e-6)
_CROWN_WIDENING = (1e-9, 1e-12)
_MARGIN_CAP = 1e6  # the slack maximised when re-centring a sat model is capped here


def run(
    pwl: PiecewiseLinear,
    network: Network,
    case: Case,
    budget: Budget,
    *,
    bounds: Sequence[Interval | None] | None = None,
    box: Box | None = None,
    phases: Phases | None = None,
    seed: int = 0,
    tolerances: Tolerances = STRICT,
    relu_encoding: str = DEFAULT_RELU_ENCODING,
    use_crown: bool = True,
) -> Proven | Falsified | Unknown:
    """Decide `case` exactly with z3 within `budget`.

    `bounds`: optional sound bounds (lower, upper) of every layer's output, one entry per layer of
    `pwl.layers` (None entries allowed); widened before use. `box`: a sub-box of the case's box (a
    branch-and-bound leaf). `phases`: ReLU phase constraints of a leaf, {index in pwl.layers of a Relu
    layer: (active mask, inactive mask)}, active meaning pre-activation >= 0, inactive <= 0. With `box`
    or `phases` the outcome speaks of that leaf only.
    """
    if relu_encoding not in RELU_ENCODINGS:
        raise ValueError(f"relu_encoding must be one of {RELU_ENCODINGS}, got {relu_encoding!r}")
    if case.box.size != pwl.n_inputs:
        raise ValueError(f"case box has {case.box.size} inputs, the network has {pwl.n_inputs}")
    phases = dict(phases or {})
    for index in phases:
        if not isinstance(pwl.layers[index], Relu):
            raise ValueError(f"phases key {index} is not a Relu layer of the network")
    started = time.monotonic()
    region = case.box if box is None else case.box.intersect(box)
    if not _finite_network(pwl):
        return Unknown("SMT needs finite weights: the network has NaN or infinite weights or biases")
    if region.is_empty:
        return Proven(Certificate("smt", detail={"reason": "the input region is empty", "semantics": SEMANTICS},
                                  arithmetic="exact-rational"))
    layer_bounds, sources = _bounds(pwl, region, phases, bounds, use_crown)
    enc = encode(pwl, region, case, layer_bounds, phases, relu_encoding)
    solver = z3.Solver(ctx=enc.ctx)
    solver.set("random_seed", int(seed) % (2**32))
    solver.add(enc.constraints)
    solver.add(enc.violation())
    remaining = budget.remaining()
    if remaining <= 0.0:
        return Unknown("SMT: the budget ran out while encoding", timed_out=True)
    solver.set("timeout", max(1, int(remaining * 1000)))
    answer = solver.check()
    detail = _detail(enc, solver, started, relu_encoding, sources)
    detail["scope"] = "case" if box is None and not phases else "leaf (sub-box or phase constraints)"
    if answer == z3.unsat:
        return Proven(Certificate("smt", detail=detail, arithmetic="exact-rational"))
    if answer == z3.sat:
        return _falsify(enc, solver.model(), network, case, budget, seed, tolerances)
    reason = solver.reason_unknown()
    timed_out = budget.expired() or reason in ("timeout", "canceled")
    return Unknown(f"z3 returned unknown ({reason}) after {detail['seconds']:.1f} s with "
                   f"{detail['unstable_relus']} unstable ReLUs", timed_out=timed_out)


def run_network(network: Network, case: Case, budget: Budget, **options) -> Proven | Falsified | Unknown:
    """`run` on the network's piecewise-linear form; Unknown with the reason when it has none."""
    from verikit.onnx.pwl import to_piecewise_linear

    try:
        pwl = to_piecewise_linear(network)
    except NotPiecewiseLinear as reason:
        return Unknown(f"SMT needs a piecewise-linear network: {reason}")
    return run(pwl, network, case, budget, **options)


def _finite_network(pwl: PiecewiseLinear) -> bool:
    affine = [layer for layer in pwl.layers if isinstance(layer, Affine)]
    return all(np.isfinite(a.weight).all() and np.isfinite(a.bias).all() for a in affine)


def _bounds(pwl, region, phases, given, use_crown) -> tuple[list[Interval], list[str]]:
    """interval ∩ CROWN ∩ caller bounds, rounded outward; and the names of the sources used."""
    layer_bounds = interval_bounds(pwl, region, phases)
    sources = ["interval"]
    if use_crown:
        from_crown = crown_bounds(pwl, region, phases)
        if from_crown is not None:
            layer_bounds = intersect_bounds(layer_bounds, from_crown, *_CROWN_WIDENING)
            sources.append("crown-float64")
    if given is not None:
        layer_bounds = intersect_bounds(layer_bounds, given, *_CALLER_WIDENING)
        sources.append("caller")
    return coarsen(layer_bounds, BOUND_BITS), sources


def _detail(enc: Encoding, solver: z3.Solver, started: float, relu_encoding: str, sources: list[str]) -> dict:
    stats = solver.statistics()
    wanted = ("conflicts", "decisions", "arith-pivots", "max memory")
    return {
        "solver": f"z3 {z3.get_version_string()}",
        "semantics": SEMANTICS,
        "relu_encoding": relu_encoding,
        "bounds": "+".join(sources),
        "relus": enc.relus,
        "unstable_relus": len(enc.unstable),
        "fixed_by_bounds": enc.fixed_by_bounds,
        "fixed_by_phases": enc.fixed_by_phases,
        "max_candidates_pruned": enc.max_candidates_pruned,
        "seconds": round(time.monotonic() - started, 6),
        "stats": {key: stats.get_key_value(key) for key in stats.keys() if key in wanted},
    }


def _as_float(value) -> float:
    return float(Fraction(value.numerator_as_long(), value.denominator_as_long()))


def _point(enc: Encoding, model) -> np.ndarray:
    return np.array([_as_float(model.eval(x, model_completion=True)) for x in enc.inputs])


def _falsify(enc: Encoding, model, network: Network, case: Case, budget: Budget, seed: int,
             tolerances: Tolerances) -> Falsified | Unknown:
    """Replay z3's point; if float32 rounding undoes it, try the centre of its linear region."""
    point = _point(enc, model)
    found = validate_batch(network, case, point[None, :], tolerances)
    if found is not None:
        return Falsified(found)
    held = [k for k in range(len(enc.disjuncts)) if z3.is_true(model.eval(enc.holds(k), model_completion=True))]
    tried = "the model point"
    if held:
        centre, margin = _region_centre(enc, model, held[0], budget, seed)
        if centre is not None:
            found = validate_batch(network, case, np.stack([centre, (point + centre) / 2, 0.9 * centre + 0.1 * point]),
                                   tolerances)
            if found is not None:
                return Falsified(found)
            tried = f"the model point, the centre of its linear region (margin {margin:.3g}) and two blends"
    return Unknown(f"z3 model did not replay: onnxruntime (float32) rejected {tried}; the real-valued "
                   f"network violates the property at x={point.tolist()}")


def _region_centre(enc: Encoding, model, disjunct: int, budget: Budget, seed: int):
    """The point of the model's activation region that maximises the disjunct's smallest slack (an LP)."""
    if budget.remaining() <= 0.0:
        return None, 0.0
    zero = enc.number(0.0)
    slack = z3.Real("margin_t", enc.ctx)
    optimizer = z3.Optimize(ctx=enc.ctx)
    optimizer.set("timeout", max(1, int(budget.remaining() * 1000)))
    optimizer.set("random_seed", int(seed) % (2**32))
    optimizer.add(enc.constraints)
    for term in enc.unstable:
        optimizer.add(term >= zero if z3.is_true(model.eval(term >= zero, model_completion=True)) else term <= zero)
    optimizer.add(enc.holds(disjunct, slack))
    optimizer.add(slack <= enc.number(_MARGIN_CAP))
    optimizer.maximize(slack)
    if optimizer.check() != z3.sat:
        return None, 0.0
    best = optimizer.model()
    return _point(enc, best), _as_float(best.eval(slack, model_completion=True))
