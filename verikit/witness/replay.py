"""Turn a candidate input into a counterexample only after replaying it through onnxruntime.

Every `Falsified` outcome in verikit is built here: the candidate is rounded to float32 (the type the
ONNX model consumes), nudged inward where rounding pushed it outside the box, run through onnxruntime
on the original ONNX bytes, and accepted only if the replayed output satisfies some disjunct.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from verikit.core.network import Network
from verikit.core.result import Counterexample
from verikit.core.property import Box, Case


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


def check(case: Case, x32: np.ndarray, y: np.ndarray, tolerances: Tolerances = STRICT) -> Counterexample | None:
    """A Counterexample if float32 input x32 with replayed output y violates `case`, else None.

    Strict comparisons are honoured: with zero tolerance a point on an open side of the box, or an output
    with a zero margin on a strict row, is not a counterexample.
    """
    if not case.box.contains(x32, tolerances.box):
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
    )


def validate(
    network: Network, case: Case, x: np.ndarray, tolerances: Tolerances = STRICT
) -> Counterexample | None:
    """Replay candidate x (n_inputs,) through onnxruntime; a Counterexample if it violates `case`."""
    x32 = to_float32_inside(case.box, x)
    y = network.replay(x32[None, :])[0]
    return check(case, x32, y, tolerances)


def validate_batch(
    network: Network, case: Case, xs: np.ndarray, tolerances: Tolerances = STRICT
) -> Counterexample | None:
    """The first of candidates xs (N, n_inputs) that replays as a counterexample, else None."""
    xs = np.asarray(xs, dtype=np.float64).reshape(-1, network.n_inputs)
    if xs.shape[0] == 0:
        return None
    x32 = np.stack([to_float32_inside(case.box, x) for x in xs])
    ys = network.replay(x32)
    for candidate, y in zip(x32, ys):
        found = check(case, candidate, y, tolerances)
        if found is not None:
            return found
    return None
