"""Turn a candidate input into a counterexample only after replaying it through onnxruntime.

Every `Falsified` outcome in verikit is built here: the candidate is rounded to float32 (the type the
ONNX model consumes), nudged inward where rounding pushed it outside the box, run through onnxruntime
on the original ONNX bytes, and accepted only if it lies in the case's region, its hidden neurons (as
onnxruntime computes them) follow the case's patterns, and the replayed output satisfies some disjunct.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from verikit.core.network import Network
from verikit.core.result import Counterexample
from verikit.core.property import Box, Case, Manipulated


@dataclass(frozen=True)
class Tolerances:
    """Absolute slack allowed when checking a replayed witness (0.0 = strict)."""

    box: float = 0.0
    formula: float = 0.0


STRICT = Tolerances()


def to_float32_inside(box: Box, x: np.ndarray) -> np.ndarray:
    """x clipped to the box and rounded to float32, stepping one ulp inward where rounding left it
    (or left it on an open side)."""
    x32 = np.clip(np.asarray(x, dtype=np.float64).reshape(-1), box.lower, box.upper).astype(np.float32)
    as64 = x32.astype(np.float64)
    below = (as64 < box.lower) | (box.open_lower & (as64 == box.lower))
    above = (as64 > box.upper) | (box.open_upper & (as64 == box.upper))
    x32[below] = np.nextafter(x32[below], np.float32(np.inf))
    x32[above] = np.nextafter(x32[above], np.float32(-np.inf))
    return x32


def follows_patterns(network: Network, case: Case, x32: np.ndarray) -> bool:
    """x32 (n_inputs,) follows every hidden pattern of the case, on onnxruntime's values of the original
    model (True when the case has none)."""
    if not case.hidden:
        return True
    values = network.replay_hidden(x32[None, :], tuple(p.tensor for p in case.hidden))
    return all(pattern.misses(values[pattern.tensor][0]) == 0 for pattern in case.hidden)


def check(case: Case, x32: np.ndarray, y: np.ndarray, tolerances: Tolerances = STRICT, *,
          params: np.ndarray | None = None) -> Counterexample | None:
    """A Counterexample if float32 input x32 with replayed output y violates `case`, else None.

    Strict comparisons are honoured: with zero tolerance a point on an open side of the box, or an output
    with a zero margin on a strict row, is not a counterexample. Hidden patterns are not checked here
    (they need the network): `validate` checks them.
    """
    if not case.admits_input(x32, tolerances.box, params):
        return None
    best_index, best_violation = None, np.inf
    for index, conjunction in enumerate(case.disjuncts):
        if not conjunction.holds(y, tolerances.formula):
            continue
        violation = conjunction.violation(y)
        if violation < best_violation:
            best_index, best_violation = index, violation
    if best_index is None:
        return None
    return Counterexample(
        x=np.asarray(x32, dtype=np.float32).copy(),
        y=np.asarray(y, dtype=np.float32).copy(),
        disjunct=best_index,
        box_violation=case.box.violation(x32),
        formula_violation=best_violation,
        tolerance=max(tolerances.box, tolerances.formula),
        params=None if params is None else np.asarray(params, dtype=np.float64).reshape(-1).copy(),
    )


def validate(
    network: Network, case: Case, x: np.ndarray, tolerances: Tolerances = STRICT, *,
    params: np.ndarray | None = None,
) -> Counterexample | None:
    """Replay candidate x (n_inputs,) through onnxruntime; a Counterexample if it violates `case`.

    For a Manipulated region pass `params` (theta): x is then recomputed from theta in plain numpy
    (`region.image`), whatever the engine proposed, and checked to lie within the region's eps of it."""
    if params is not None and isinstance(case.region, Manipulated):
        x = case.region.image(params) if case.region.eps == 0.0 else x
    x32 = to_float32_inside(case.box, x)
    y = network.replay(x32[None, :])[0]
    found = check(case, x32, y, tolerances, params=params)
    if found is not None and not follows_patterns(network, case, x32):
        return None
    return found


def validate_batch(
    network: Network, case: Case, xs: np.ndarray, tolerances: Tolerances = STRICT
) -> Counterexample | None:
    """The first of candidates xs (N, n_inputs) that replays as a counterexample, else None. In a Manipulated
    region no candidate named by x alone is a member (None): use `validate(..., params=theta)`."""
    xs = np.asarray(xs, dtype=np.float64).reshape(-1, network.n_inputs)
    if xs.shape[0] == 0:
        return None
    x32 = np.stack([to_float32_inside(case.box, x) for x in xs])
    ys = network.replay(x32)
    for candidate, y in zip(x32, ys):
        found = check(case, candidate, y, tolerances)
        if found is not None and follows_patterns(network, case, candidate):
            return found
    return None


def validate_members(
    network: Network, case: Case, thetas: np.ndarray, tolerances: Tolerances = STRICT
) -> Counterexample | None:
    """The first of the parameters thetas (N, n_params) of the case's Manipulated region whose image,
    recomputed in numpy, replays as a counterexample (eps is not searched: delta = 0), else None."""
    region = case.region
    if not isinstance(region, Manipulated):
        raise ValueError("validate_members needs a case with a Manipulated region")
    thetas = np.asarray(thetas, dtype=np.float64).reshape(-1, region.params.size)
    if thetas.shape[0] == 0:
        return None
    x32 = np.stack([to_float32_inside(case.box, region.image(theta)) for theta in thetas])
    ys = network.replay(x32)
    for theta, candidate, y in zip(thetas, x32, ys):
        found = check(case, candidate, y, tolerances, params=theta)
        if found is not None and follows_patterns(network, case, candidate):
            return found
    return None
