"""Check a claimed counterexample: replay X through onnxruntime, then test the box and the formula.

A witness is *strict* when its float32 input lies inside the box of some case and the replayed output
satisfies every row of some disjunct exactly; *within tolerance* when both hold up to an absolute
slack (VNN-COMP used 1e-4); otherwise *invalid*. The decision is made by `verikit.witness.replay.check` (the
same code that accepts verikit's own counterexamples); this module adds the explanation: which box
coordinates and which output rows (atoms) fail, and whether the tool's own Y matches the replay.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from verikit.core.network import Network
from verikit.core.property import Case, Conjunction, Property
from verikit.witness.replay import STRICT, Tolerances, check
from verikit.witness.formats import Witness, WitnessError, read_witness

DEFAULT_TOLERANCE = 1e-4  # absolute, on box coordinates and on output rows (VNN-COMP's)
DEFAULT_Y_RTOL = 1e-3  # relative (absolute below magnitude 1), tool's Y against the replayed Y
MAX_LISTED = 10

STRICT_VALID, WITHIN_TOLERANCE, INVALID = "strict", "within_tolerance", "invalid"


@dataclass(frozen=True)
class BoxMiss:
    """Input coordinate `index` lies `amount` outside the box (`side` is 'lower' or 'upper')."""

    index: int
    value: float
    bound: float
    side: str
    amount: float

    def describe(self) -> str:
        where = "below lower" if self.side == "lower" else "above upper"
        return f"X_{self.index} = {self.value:.9g} {where} {self.bound:.9g} (by {self.amount:.3g})"


@dataclass(frozen=True)
class AtomMiss:
    """Output row `row` of a disjunct, `text` like 'Y_1 - Y_0 <= 0', violated by `amount` > 0."""

    row: int
    text: str
    amount: float

    def describe(self) -> str:
        return f"{self.text} violated by {self.amount:.6g}"


@dataclass(frozen=True, eq=False)
class WitnessReport:
    """The checker's finding for one witness; `status` is strict / within_tolerance / invalid."""

    status: str
    tolerance: float
    x: np.ndarray  # float32, what was fed to onnxruntime
    y: np.ndarray  # onnxruntime's output
    case: int | None  # the case explained (the one the witness comes closest to violating)
    disjunct: int | None
    disjuncts_in_case: int
    box_violation: float
    formula_violation: float
    box_misses: tuple[BoxMiss, ...] = ()
    atom_misses: tuple[AtomMiss, ...] = ()
    y_claimed: np.ndarray | None = None
    y_agrees: bool | None = None
    y_max_difference: float | None = None
    notes: tuple[str, ...] = field(default=())

    @property
    def valid(self) -> bool:
        return self.status != INVALID

    def summary(self) -> str:
        if self.status == STRICT_VALID:
            return "VALID (strict): inside the box, formula satisfied exactly by the onnxruntime replay"
        if self.status == WITHIN_TOLERANCE:
            return (f"VALID within tolerance {self.tolerance:g}: misses the box by {self.box_violation:.3g} "
                    f"and the formula by {self.formula_violation:.3g} (absolute)")
        return (f"INVALID: misses the box by {self.box_violation:.3g} and the formula by "
                f"{self.formula_violation:.3g}, more than tolerance {self.tolerance:g}")

    def describe(self) -> list[str]:
        """Human-readable lines: the summary, then box misses, violated atoms and the Y comparison."""
        lines = [self.summary()]
        if self.case is not None:
            lines.append(f"  closest: case {self.case}, disjunct {self.disjunct} of {self.disjuncts_in_case}")
        lines += [f"  box: {miss.describe()}" for miss in self.box_misses[:MAX_LISTED]]
        if len(self.box_misses) > MAX_LISTED:
            lines.append(f"  box: … and {len(self.box_misses) - MAX_LISTED} more coordinate(s)")
        lines += [f"  formula: {miss.describe()}" for miss in self.atom_misses[:MAX_LISTED]]
        if len(self.atom_misses) > MAX_LISTED:
            lines.append(f"  formula: … and {len(self.atom_misses) - MAX_LISTED} more row(s)")
        lines += [f"  note: {note}" for note in self.notes]
        return lines

    def to_dict(self) -> dict:
        return {
            "status": self.status,
            "valid": self.valid,
            "tolerance": self.tolerance,
            "case": self.case,
            "disjunct": self.disjunct,
            "box_violation": self.box_violation,
            "formula_violation": self.formula_violation,
            "box_misses": [vars(miss) for miss in self.box_misses],
            "violated_atoms": [{"row": m.row, "atom": m.text, "by": m.amount} for m in self.atom_misses],
            "x_fed": [float(v) for v in self.x],
            "y_replayed": [float(v) for v in self.y],
            "y_claimed": None if self.y_claimed is None else [float(v) for v in self.y_claimed],
            "y_agrees": self.y_agrees,
            "y_max_difference": self.y_max_difference,
            "notes": list(self.notes),
        }


def atom_text(conjunction: Conjunction, row: int) -> str:
    """Row `row` of `C @ y <= d` written out, positive terms first, e.g. 'Y_1 - Y_0 <= 0'."""
    coefficients = conjunction.C[row]
    order = [j for j in np.flatnonzero(coefficients > 0)] + [j for j in np.flatnonzero(coefficients < 0)]
    terms = []
    for j in order:
        magnitude = abs(float(coefficients[j]))
        name = f"Y_{j}" if magnitude == 1 else f"{magnitude:g}*Y_{j}"
        if coefficients[j] < 0:
            terms.append(f"- {name}" if terms else f"-{name}")
        else:
            terms.append(f"+ {name}" if terms else name)
    return f"{' '.join(terms) or '0'} <= {float(conjunction.d[row]):g}"


def _box_misses(case: Case, x: np.ndarray) -> tuple[BoxMiss, ...]:
    x64 = x.astype(np.float64)
    misses = []
    for i in np.flatnonzero(x64 < case.box.lower):
        misses.append(BoxMiss(int(i), float(x64[i]), float(case.box.lower[i]), "lower",
                              float(case.box.lower[i] - x64[i])))
    for i in np.flatnonzero(x64 > case.box.upper):
        misses.append(BoxMiss(int(i), float(x64[i]), float(case.box.upper[i]), "upper",
                              float(x64[i] - case.box.upper[i])))
    return tuple(sorted(misses, key=lambda miss: -miss.amount))


def _closest(case: Case, y: np.ndarray) -> tuple[int | None, float]:
    """The disjunct y comes closest to satisfying and its violation (max positive margin)."""
    best, best_violation = None, np.inf
    for index, conjunction in enumerate(case.disjuncts):
        violation = conjunction.violation(y)
        if violation < best_violation:
            best, best_violation = index, violation
    return best, best_violation


def _compare_y(claimed: np.ndarray, replayed: np.ndarray, rtol: float) -> tuple[bool, float, str | None]:
    difference = np.abs(claimed - replayed.astype(np.float64))
    scale = np.maximum(1.0, np.abs(replayed.astype(np.float64)))
    agrees = bool(np.all(difference <= rtol * scale))
    worst = int(np.argmax(difference / scale))
    note = None
    if not agrees:
        note = (f"the witness's Y differs from the onnxruntime replay beyond relative {rtol:g}: "
                f"Y_{worst} claimed {claimed[worst]:.9g}, replayed {float(replayed[worst]):.9g}")
    return agrees, float(difference.max()), note


def _explained_case(prop: Property, x32: np.ndarray, y: np.ndarray, strict: list[bool], within: list[bool]):
    """(case, disjunct, box violation, formula violation) to explain: a valid case first, else the
    one the witness comes closest to violating; None when the spec has no case."""
    candidates = []
    for index, case in enumerate(prop.cases):
        disjunct, formula_violation = _closest(case, y)
        box_violation = case.box.violation(x32)
        rank = (not strict[index], not within[index], max(box_violation, formula_violation),
                box_violation + formula_violation)
        candidates.append((rank, index, disjunct, box_violation, formula_violation))
    return min(candidates, key=lambda candidate: candidate[0])[1:] if candidates else None


def check_witness(
    network: Network,
    prop: Property,
    x: np.ndarray,
    y_claimed: np.ndarray | None = None,
    *,
    tolerance: float = DEFAULT_TOLERANCE,
    y_rtol: float = DEFAULT_Y_RTOL,
) -> WitnessReport:
    """Replay x (n_inputs,) through onnxruntime and classify it against `prop` (see module doc)."""
    x = np.asarray(x, dtype=np.float64).reshape(-1)
    if x.size != network.n_inputs:
        raise WitnessError(f"witness has {x.size} inputs, the model takes {network.n_inputs}")
    if not np.isfinite(x).all():
        raise WitnessError("witness input contains NaN or infinity")
    x32 = x.astype(np.float32)  # what the ONNX model consumes; no clipping, a miss must show
    y = network.replay(x32[None, :])[0]
    loose = Tolerances(box=tolerance, formula=tolerance)
    strict = [check(case, x32, y, STRICT) is not None for case in prop.cases]
    within = [check(case, x32, y, loose) is not None for case in prop.cases]
    status = STRICT_VALID if any(strict) else WITHIN_TOLERANCE if any(within) else INVALID

    notes: list[str] = []
    explained = _explained_case(prop, x32, y, strict, within)
    if explained is None:
        notes.append("the spec has no case: nothing can violate it")
        explained = (None, None, 0.0, np.inf)
    case_index, disjunct, box_violation, formula_violation = explained
    case = prop.cases[case_index] if case_index is not None else None
    atoms: tuple[AtomMiss, ...] = ()
    if case is not None and disjunct is not None:
        conjunction = case.disjuncts[disjunct]
        margins = conjunction.margins(y)
        atoms = tuple(AtomMiss(int(r), atom_text(conjunction, int(r)), float(margins[r]))
                      for r in np.argsort(-margins) if margins[r] > 0)
    elif case is not None:
        notes.append(f"case {case_index} has no disjunct: nothing can violate it")
    if np.abs(x32.astype(np.float64) - x).max() > 0 and status != STRICT_VALID:
        notes.append("the input was rounded to float32 (the type the model consumes) before the check")

    agrees, difference = None, None
    if y_claimed is not None:
        y_claimed = np.asarray(y_claimed, dtype=np.float64).reshape(-1)
        if y_claimed.size != network.n_outputs:
            raise WitnessError(f"witness has {y_claimed.size} outputs, the model gives {network.n_outputs}")
        agrees, difference, note = _compare_y(y_claimed, y, y_rtol)
        if note:
            notes.append(note)
            if case is not None and not within[case_index] and any(
                check(c, x32, y_claimed.astype(np.float32), loose) is not None for c in prop.cases
            ):
                notes.append("the witness's own Y satisfies the formula, the replay does not: "
                             "the tool's network semantics differ from onnxruntime")

    return WitnessReport(
        status=status, tolerance=tolerance, x=x32, y=np.asarray(y, dtype=np.float32), case=case_index,
        disjunct=disjunct, disjuncts_in_case=len(case.disjuncts) if case is not None else 0,
        box_violation=float(box_violation), formula_violation=float(formula_violation),
        box_misses=_box_misses(case, x32) if case is not None else (), atom_misses=atoms,
        y_claimed=y_claimed, y_agrees=agrees, y_max_difference=difference, notes=tuple(notes),
    )


def check_witness_data(network: Network, prop: Property, witness: Witness, **kwargs) -> WitnessReport:
    """`check_witness` on a parsed Witness (its Y compared when present)."""
    return check_witness(network, prop, witness.x, witness.y, **kwargs)


def check_witness_files(
    model: str | Path, spec: str | Path, witness: str | Path, **kwargs
) -> tuple[Witness, WitnessReport]:
    """Load model, spec and witness files and check; raises VerikitError subclasses on bad input."""
    from verikit.onnx.load import load_network
    from verikit.spec.load import load_spec

    network = load_network(model)
    prop = load_spec(spec, n_inputs=network.n_inputs, n_outputs=network.n_outputs)
    parsed = read_witness(witness)
    return parsed, check_witness_data(network, prop, parsed, **kwargs)
