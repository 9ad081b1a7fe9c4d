"""VNN-LIB 2.0 writer: `Property` -> query text that `parse_vnnlib2` reads back to the same cases.

Numbers are written as plain decimals that round-trip to the same float64 (the 2.0 lexer has no
exponent notation). Inputs and outputs are declared with the given shapes; a flat index is written as
the C-order multi-index X[i,j,...].
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from verikit.core import output
from verikit.core.property import Case, Conjunction, Property


def format_decimal(value: float) -> str:
    """`value` as digits '.' digits, exact enough to read back to the same float64 (no exponent)."""
    value = float(value)
    if not np.isfinite(value):
        raise ValueError(f"cannot write {value} in VNN-LIB 2.0")
    text = np.format_float_positional(value, unique=True, trim="-")
    return text if "." in text else text + ".0"


def _element(name: str, flat: int, shape: tuple[int, ...]) -> str:
    return f"{name}[{','.join(str(int(i)) for i in np.unravel_index(flat, shape))}]"


def _row(C_row: np.ndarray, d: float, shape: tuple[int, ...]) -> str:
    nonzero = np.flatnonzero(C_row)
    terms = [(int(j), float(C_row[j])) for j in nonzero]
    if len(terms) == 1 and terms[0][1] in (1.0, -1.0):
        j, coef = terms[0]
        return (f"(<= {_element('Y', j, shape)} {format_decimal(d)})" if coef == 1.0
                else f"(>= {_element('Y', j, shape)} {format_decimal(-d)})")
    if len(terms) == 2 and d == 0.0 and sorted(c for _, c in terms) == [-1.0, 1.0]:
        small = next(j for j, c in terms if c == 1.0)
        large = next(j for j, c in terms if c == -1.0)
        return f"(<= {_element('Y', small, shape)} {_element('Y', large, shape)})"
    if not terms:
        raise ValueError("cannot write a constraint with no output in it")
    parts = [f"(* {format_decimal(c)} {_element('Y', j, shape)})" for j, c in terms]
    lhs = parts[0] if len(parts) == 1 else "(+ " + " ".join(parts) + ")"
    return f"(<= {lhs} {format_decimal(d)})"


def _conjunction(conjunction: Conjunction, shape: tuple[int, ...]) -> list[str]:
    if conjunction.rows == 0:
        raise ValueError("cannot write a disjunct with no rows (always true) in VNN-LIB 2.0")
    return [_row(conjunction.C[r], float(conjunction.d[r]), shape) for r in range(conjunction.rows)]


def _and(parts: list[str]) -> str:
    return parts[0] if len(parts) == 1 else "(and " + " ".join(parts) + ")"


def _case_formula(case: Case, x_shape: tuple[int, ...], y_shape: tuple[int, ...]) -> str:
    box = []
    for i in range(case.box.size):
        element = _element("X", i, x_shape)
        box += [f"(>= {element} {format_decimal(case.box.lower[i])})",
                f"(<= {element} {format_decimal(case.box.upper[i])})"]
    disjuncts = [_and(_conjunction(c, y_shape)) for c in case.disjuncts]
    outputs = disjuncts[0] if len(disjuncts) == 1 else "(or " + " ".join(disjuncts) + ")"
    return _and(box + [outputs])


def write_vnnlib2(prop: Property, *, input_shape: tuple[int, ...] | None = None,
                  output_shape: tuple[int, ...] | None = None, element_type: str = "float32",
                  network: str = "N", comment: str = "") -> str:
    """VNN-LIB 2.0 text for `prop` (one network `network` with input X and output Y)."""
    x_shape = tuple(input_shape) if input_shape else (prop.n_inputs,)
    y_shape = tuple(output_shape) if output_shape else (prop.n_outputs,)
    if int(np.prod(x_shape)) != prop.n_inputs or int(np.prod(y_shape)) != prop.n_outputs:
        raise ValueError(f"shapes {x_shape}, {y_shape} do not hold {prop.n_inputs} inputs, {prop.n_outputs} outputs")
    lines = [f"; {line}" for line in comment.splitlines()]
    lines += ["(vnnlib-version <2.0>)", f"(declare-network {network}",
              f"    (declare-input X {element_type} [{','.join(map(str, x_shape))}])",
              f"    (declare-output Y {element_type} [{','.join(map(str, y_shape))}])", ")"]
    if not prop.cases:
        raise ValueError("a property with no case can never be violated; there is no query to write")
    if len(prop.cases) == 1:
        (case,) = prop.cases
        for i in range(case.box.size):
            element = _element("X", i, x_shape)
            lines.append(f"(assert (>= {element} {format_decimal(case.box.lower[i])}))")
            lines.append(f"(assert (<= {element} {format_decimal(case.box.upper[i])}))")
        disjuncts = [_and(_conjunction(c, y_shape)) for c in case.disjuncts]
        if len(disjuncts) == 1:
            lines += [f"(assert {row})" for row in _conjunction(case.disjuncts[0], y_shape)]
        else:
            lines.append("(assert (or " + " ".join(disjuncts) + "))")
    else:
        lines.append("(assert (or " + " ".join(_case_formula(c, x_shape, y_shape) for c in prop.cases) + "))")
    return "\n".join(lines) + "\n"


def save_vnnlib2(prop: Property, path: str | Path, **options) -> Path:
    """Write `write_vnnlib2(prop, **options)` to `path`."""
    return output.write_text(path, write_vnnlib2(prop, **options))
