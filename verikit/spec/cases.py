"""From DNF terms to `Case`s: the one place both VNN-LIB readers (1.0 and 2.0) turn a term's atoms into an
input box and a `Conjunction`, and group terms that share a box into one case.

A reader feeds each term's atoms to a `TermBuilder` (`bound` for one input against a constant, `row` for a
linear output constraint), then hands the finished term to `CaseGroups.add`, which drops terms whose
box is empty (noting the first few) and merges terms with the same box.
"""

from __future__ import annotations

import math

import numpy as np

from verikit.core.property import Box, Case, Conjunction

MAX_NOTES = 20  # empty-box notes written one by one; the rest are counted


class TermBuilder:
    """One DNF term being read: the tightest bound per input side, strict where a strict atom sets it,
    and the output rows `sum coefs * y[cols] <= rhs` (`<` when strict)."""

    def __init__(self, n_inputs: int, n_outputs: int):
        self.lower = [-math.inf] * n_inputs
        self.upper = [math.inf] * n_inputs
        self.open_lower = [False] * n_inputs
        self.open_upper = [False] * n_inputs
        self.n_outputs = n_outputs
        self.rows: list[tuple[tuple[int, ...], tuple[float, ...], float, bool]] = []

    def bound(self, index: int, is_upper: bool, value: float, strict: bool = False) -> None:
        """`x[index] <= value` (is_upper) or `x[index] >= value`; `<`/`>` when strict."""
        if is_upper:
            if value < self.upper[index]:
                self.upper[index], self.open_upper[index] = value, strict
            elif value == self.upper[index]:
                self.open_upper[index] = self.open_upper[index] or strict
        elif value > self.lower[index]:
            self.lower[index], self.open_lower[index] = value, strict
        elif value == self.lower[index]:
            self.open_lower[index] = self.open_lower[index] or strict

    def row(self, cols, coefs, rhs: float, strict: bool = False) -> None:
        self.rows.append((tuple(cols), tuple(coefs), rhs, strict))

    def box_arrays(self) -> tuple[np.ndarray, np.ndarray]:
        return np.array(self.lower, dtype=np.float64), np.array(self.upper, dtype=np.float64)

    def empty_input(self, low: np.ndarray, high: np.ndarray) -> int | None:
        """An input whose bounds (`box_arrays`) leave no value (lower > upper, or equal with a strict side)."""
        opens = np.array(self.open_lower) | np.array(self.open_upper)
        empty = np.flatnonzero((low > high) | ((low == high) & opens))
        return int(empty[0]) if empty.size else None

    def conjunction(self) -> Conjunction:
        C = np.zeros((len(self.rows), self.n_outputs))
        d = np.empty(len(self.rows))
        for r, (cols, coefs, rhs, _) in enumerate(self.rows):
            C[r, list(cols)] = coefs
            d[r] = rhs
        return Conjunction(C, d, np.array([row[3] for row in self.rows], dtype=bool))


class CaseGroups:
    """Terms grouped by identical box, in first-seen order; empty boxes dropped and noted in `notes`."""

    def __init__(self, notes: list[str]):
        self.notes = notes
        self.groups: dict[bytes, tuple[Box, list[Conjunction]]] = {}
        self.dropped = 0

    def drop_empty(self, term: TermBuilder, low: np.ndarray, high: np.ndarray, describe) -> bool:
        """True (and a note, via describe(index) -> text) when the term's box `low`, `high` is empty."""
        index = term.empty_input(low, high)
        if index is None:
            return False
        self.dropped += 1
        if self.dropped <= MAX_NOTES:
            self.notes.append(f"{describe(index)}; dropped, it can never be violated")
        return True

    def add(self, term: TermBuilder, low: np.ndarray, high: np.ndarray) -> None:
        """Add a term with the non-empty box `low`, `high` (its `box_arrays`, or those with filled-in sides)."""
        open_low, open_high = np.array(term.open_lower, dtype=bool), np.array(term.open_upper, dtype=bool)
        key = low.tobytes() + high.tobytes() + open_low.tobytes() + open_high.tobytes()
        if key not in self.groups:
            self.groups[key] = (Box(low, high, open_low, open_high), [])
        self.groups[key][1].append(term.conjunction())

    def cases(self) -> list[Case]:
        if self.dropped > MAX_NOTES:
            self.notes.append(f"... {self.dropped} terms with an empty input box were dropped in all")
        cases, widened = [], set()
        for box, disjuncts in self.groups.values():
            held, indices = box.holding_float32()
            widened.update(indices.tolist())
            cases.append(Case(held, tuple(disjuncts)))
        if widened:
            self.notes.append(float32_note(sorted(widened)))
        return cases


def float32_note(widened: list[int]) -> str:
    """The note of a spec whose inputs `widened` (flat indices) had intervals without a float32 number."""
    shown = ", ".join(str(i) for i in widened[:5]) + (", ..." if len(widened) > 5 else "")
    return (f"{len(widened)} input(s) ({shown}) have bounds no float32 number lies within (a decimal such as "
            "0.123456789 fixed by lower = upper); each is widened to the float32 nearest it, the value the model "
            "receives (at most one float32 spacing), so a proof still covers the spec's box")
