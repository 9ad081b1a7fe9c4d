"""VNN-LIB 1.0 writer: `Property` -> text that `parse_vnnlib` reads back to the same arrays.

Numbers are written as plain decimals (no exponent) with the shortest digits that identify the float64,
so bounds, C and d round-trip exactly (a -0.0 in C is written as an omitted zero and reads back as 0.0).
Layout: one case whose disjuncts all have rows -> one assert per input bound, then the output rows
(one assert per row for a single disjunct, else `(assert (or (and rows) ...))`); otherwise a flat DNF
`(assert (or (and box-atoms rows) ...))` with one `and` per (case, disjunct), which the reader groups
back into cases by box. Cases with no disjunct can never be violated and are left out; a property
with no case left is written as an empty box (every X_i >= 1 and <= 0).
"""

from __future__ import annotations

import math
from decimal import Decimal
from pathlib import Path

import numpy as np

from verikit.core import output
from verikit.core.property import Box, Case, Conjunction, Property


def format_number(value: float) -> str:
    """A plain decimal (no exponent) that reads back as exactly the float64 `value`."""
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"cannot write the non-finite number {value} to VNN-LIB")
    text = repr(value)
    if "e" in text or "E" in text:
        text = format(Decimal(text), "f")
    return text


def write_vnnlib(prop: Property) -> str:
    """VNN-LIB 1.0 text for `prop`, starting with a comment header."""
    lines = [f"; VNN-LIB 1.0 written by verikit {_version()}"]
    if prop.source:
        lines.append(f"; source: {_one_line(prop.source)}")
    if prop.sha256:
        lines.append(f"; sha256 of the source: {prop.sha256}")
    cases = [case for case in prop.cases if case.disjuncts]
    lines.append(f"; {len(cases)} case(s); the asserts describe a violation (sat = counterexample)")
    lines.append("")
    lines.extend(f"(declare-const X_{i} Real)" for i in range(prop.n_inputs))
    lines.append("")
    lines.extend(f"(declare-const Y_{j} Real)" for j in range(prop.n_outputs))
    lines.append("")
    if not cases:
        lines.append("; no case can be violated: an empty input box")
        for i in range(prop.n_inputs):
            lines.append(f"(assert (>= X_{i} 1.0))")
            lines.append(f"(assert (<= X_{i} 0.0))")
    elif len(cases) == 1 and (len(cases[0].disjuncts) == 1 or all(c.rows for c in cases[0].disjuncts)):
        _write_single_case(cases[0], lines)
    else:
        lines.append("(assert (or")
        for case in cases:
            box_atoms = " ".join(_box_atoms(case.box))
            for conjunction in case.disjuncts:
                rows = " ".join(_rows(conjunction))
                lines.append(f"    (and {box_atoms}{' ' + rows if rows else ''})")
        lines.append("))")
    return "\n".join(lines) + "\n"


def save_vnnlib(prop: Property, path: str | Path) -> None:
    """Write `write_vnnlib(prop)` to `path` (UTF-8)."""
    output.write_text(path, write_vnnlib(prop))


def _write_single_case(case: Case, lines: list[str]) -> None:
    lines.append("; input box")
    lines.extend(f"(assert {atom})" for atom in _box_atoms(case.box))
    lines.append("")
    lines.append("; output constraints")
    if len(case.disjuncts) == 1:
        if not case.disjuncts[0].rows:
            lines.append("; none: every input in the box is a violation")
        lines.extend(f"(assert {row})" for row in _rows(case.disjuncts[0]))
        return
    lines.append("(assert (or")
    for conjunction in case.disjuncts:
        lines.append(f"    (and {' '.join(_rows(conjunction))})")
    lines.append("))")


def _box_atoms(box: Box) -> list[str]:
    atoms = []
    for i, (low, high) in enumerate(zip(box.lower.tolist(), box.upper.tolist())):
        atoms.append(f"({'>' if box.open_lower[i] else '>='} X_{i} {format_number(low)})")
        atoms.append(f"({'<' if box.open_upper[i] else '<='} X_{i} {format_number(high)})")
    return atoms


def _rows(conjunction: Conjunction) -> list[str]:
    return [_row(conjunction.C[r], float(conjunction.d[r]), bool(conjunction.strict[r]))
            for r in range(conjunction.rows)]


def _row(coefficients: np.ndarray, bound: float, strict: bool = False) -> str:
    """`coefficients @ y <= bound` (`<` when strict) in the most readable form that reads back exactly."""
    below, above = ("<", ">") if strict else ("<=", ">=")
    nonzero = [(j, float(c)) for j, c in enumerate(coefficients.tolist()) if c != 0.0]
    if len(nonzero) == 1 and nonzero[0][1] == 1.0:
        return f"({below} Y_{nonzero[0][0]} {format_number(bound)})"
    if len(nonzero) == 1 and nonzero[0][1] == -1.0:
        return f"({above} Y_{nonzero[0][0]} {format_number(-bound)})"
    if len(nonzero) == 2 and bound == 0.0 and sorted(c for _, c in nonzero) == [-1.0, 1.0]:
        positive = next(j for j, c in nonzero if c > 0)
        negative = next(j for j, c in nonzero if c < 0)
        return f"({below} Y_{positive} Y_{negative})"
    if not nonzero:
        nonzero = [(0, 0.0)]
    products = [f"(* {format_number(c)} Y_{j})" for j, c in nonzero]
    left = products[0] if len(products) == 1 else f"(+ {' '.join(products)})"
    return f"({below} {left} {format_number(bound)})"


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _version() -> str:
    from verikit import __version__

    return __version__
