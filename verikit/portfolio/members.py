"""Many small box cases decided together before the schedule: the members of a finite manipulation family.

An occlusion family on a 28x28 image is 676 cases, most of them one image (a one-point box). One engine
call per case costs its fixed overhead 676 times, so while at least `MIN_CASES` plain box cases are open:

- the attack's first move, batched: every case's centre (the only point of a one-point box) replayed
  through onnxruntime in one call and checked by `witness.replay.check` — a counterexample is as replayed
  as any other;
- the bounds engine's, batched: cases whose disjuncts are the misclassification rows `y_l - y_j <= 0`
  (one per j != l) are bounded in one auto_LiRPA call per chunk (`engines.lirpa.batch`, the dataset
  audit's path: outward-rounded boxes, every proof re-proven in rigorous float64 arithmetic on the
  piecewise-linear form, nothing proven on a network without one). Every row > 0 proves the case; the rest stay open for the schedule, which runs as always.
"""

from __future__ import annotations

import numpy as np

from verikit.core.property import Case
from verikit.core.result import Budget, Certificate, DisjunctBounds, Falsified, Outcome, Proven
from verikit.engines.problem import Problem
from verikit.spec.topk import pairwise_rows
from verikit.witness.replay import check, to_float32_inside

MIN_CASES = 16
CHUNK = 256


def _label(case: Case, n_outputs: int) -> int | None:
    """l when the disjuncts are exactly `y_l - y_j <= 0` for every j != l, in order; else None."""
    if len(case.disjuncts) != n_outputs - 1 or not all(c.rows == 1 for c in case.disjuncts):
        return None
    first = case.disjuncts[0].C[0]
    positive = np.flatnonzero(first > 0)
    if positive.size != 1:
        return None
    label = int(positive[0])
    others = [j for j in range(n_outputs) if j != label]
    for conjunction, other in zip(case.disjuncts, others):
        want = pairwise_rows(label, [other], n_outputs)[0]
        if not (np.array_equal(conjunction.C[0], want) and conjunction.d[0] == 0.0 and not conjunction.strict[0]):
            return None
    return label


def decide_members(problem: Problem, cases: dict[int, Case], budget: Budget, *, bounds: bool = True,
                   attack: bool = True) -> dict[int, tuple[Outcome, str, str]]:
    """Outcomes (with engine and method names) for the plain box cases it decides; {} below MIN_CASES."""
    network = problem.network
    boxes = {i: c for i, c in cases.items() if c.is_box and not c.box.is_empty
             and np.isfinite(c.box.lower).all() and np.isfinite(c.box.upper).all()}
    if len(boxes) < MIN_CASES:
        return {}
    decided: dict[int, tuple[Outcome, str, str]] = {}
    order = sorted(boxes)
    if attack:
        centres = np.stack([to_float32_inside(boxes[i].box, boxes[i].box.center) for i in order])
        outputs = network.replay(centres)
        for index, x32, y in zip(order, centres, outputs):
            found = check(boxes[index], x32, y, problem.tolerances)
            if found is not None:
                decided[index] = (Falsified(found), "attack", "batched-replay")
                return decided  # the property is falsified: the runner stops at the first
    if not bounds:
        return decided
    from verikit.core.errors import EngineLimitation
    from verikit.engines.lirpa.batch import robust_margin_bounds

    labelled = [(i, _label(boxes[i], network.n_outputs)) for i in order]
    labelled = [(i, label) for i, label in labelled if label is not None]
    if len(labelled) < MIN_CASES:
        return decided
    try:
        bounded = problem.lirpa()
    except EngineLimitation:
        return decided
    from verikit.core.errors import ModelError
    from verikit.engines.lirpa.engine import unconfirmable

    if unconfirmable(bounded) is not None:
        return decided  # float32 bounds alone prove nothing: the schedule says why per case
    for start in range(0, len(labelled), CHUNK):
        if budget.expired():
            break
        chunk = labelled[start:start + CHUNK]
        lower = np.stack([boxes[i].box.lower for i, _ in chunk])
        upper = np.stack([boxes[i].box.upper for i, _ in chunk])
        try:
            margins = robust_margin_bounds(bounded, lower, upper, np.array([label for _, label in chunk]),
                                           method="crown", budget=budget)
        except (EngineLimitation, ModelError):  # ModelError: the form disagrees with onnxruntime; the schedule reports it
            break
        for (index, _), row in zip(chunk, margins):
            if np.all(row > 0):
                found = tuple(DisjunctBounds(np.array([value]), "crown") for value in row)
                detail = {"batched": len(chunk), "confirmed_by": "verikit rigorous float64 bounds"}
                certificate = Certificate("crown", found, detail)
                decided[index] = (Proven(certificate), "bounds", "crown")
    return decided
