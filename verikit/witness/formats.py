"""Read counterexample witnesses from the formats tools write them in.

Accepted formats (chosen by content, then by suffix):

- VNN-COMP result/witness text: `((X_0 v) (X_1 v) ... (Y_0 v) ...)`, optionally after a first line
  `sat` (or the 2021 word `violated`). Y values are optional.
- JSON: `{"x": [...], "y": [...]}` (`y` optional), or a verikit report whose `counterexample` holds them.
- NumPy `.npy`: the flat input x (any shape; flattened in C order).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from verikit.core import limits
from verikit.core.errors import ExitCode, VerikitError

_ASSIGNMENT = re.compile(r"\(\s*([XY])_(\d+)\s+([^\s()]+)\s*\)")
_SAT_WORDS = ("sat", "violated")
_NO_WITNESS_WORDS = ("unsat", "holds", "unknown", "timeout", "error")


class WitnessError(VerikitError):
    """A witness file is missing, unreadable or not in a known format."""

    exit_code = ExitCode.BAD_INPUT


@dataclass(frozen=True, eq=False)
class Witness:
    """A claimed counterexample: input x (n_inputs,) float64 and, when the tool gave it, output y."""

    x: np.ndarray
    y: np.ndarray | None
    source: str
    format: str


def _values(mapping: dict[int, float], letter: str, where: str) -> np.ndarray | None:
    if not mapping:
        return None
    expected = set(range(max(mapping) + 1))
    missing = sorted(expected - set(mapping))
    if missing:
        raise WitnessError(f"{letter}_{missing[0]} is missing (indices must run from 0)", where=where)
    return np.array([mapping[i] for i in range(len(mapping))], dtype=np.float64)


def parse_vnncomp(text: str, source: str = "<text>") -> Witness:
    """A witness from VNN-COMP text `((X_0 v) ... (Y_0 v) ...)`, with or without a leading sat line."""
    stripped = text.strip()
    first = stripped.splitlines()[0].strip().lower() if stripped else ""
    if first in _NO_WITNESS_WORDS:
        raise WitnessError(f"result file says {first!r}: it holds no counterexample", where=source)
    if first in _SAT_WORDS:
        stripped = stripped[len(first):]
    assigned: dict[str, dict[int, float]] = {"X": {}, "Y": {}}
    for letter, index, value in _ASSIGNMENT.findall(stripped):
        try:
            number = float(value)
        except ValueError:
            raise WitnessError(f"{letter}_{index} has a value {value[:40]!r} that is not a number",
                               where=source) from None
        if not np.isfinite(number):
            raise WitnessError(f"{letter}_{index} = {value[:40]} is not a finite number", where=source)
        if int(index) in assigned[letter]:
            raise WitnessError(f"{letter}_{index} is assigned twice", where=source)
        assigned[letter][int(index)] = number
    x = _values(assigned["X"], "X", source)
    if x is None:
        raise WitnessError("no (X_i value) assignment found", where=source)
    return Witness(x, _values(assigned["Y"], "Y", source), source, "vnncomp")


def _vector(values, name: str, source: str) -> np.ndarray:
    try:
        if isinstance(values, np.ndarray) and values.dtype.kind not in "fiub":
            raise TypeError(values.dtype)  # complex or text: a cast would drop or invent information
        array = np.asarray(values, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError, OverflowError):
        raise WitnessError(f"{name!r} is not a list of real numbers", where=source) from None
    if array.size == 0:
        raise WitnessError(f"{name!r} is empty", where=source)
    if not np.isfinite(array).all():
        raise WitnessError(f"{name!r} holds NaN or infinite values", where=source)
    return array


def parse_json(text: str, source: str = "<json>") -> Witness:
    """A witness from `{"x": [...], "y": [...]}` or a verikit report's `counterexample`."""
    data = limits.load_json(text, "witness", WitnessError, source, finite=False)  # x and y are checked below
    if isinstance(data, dict) and "counterexample" in data:
        if data["counterexample"] is None:
            verdict = data.get("verdict", "?")
            raise WitnessError(f"report (verdict {verdict}) holds no counterexample", where=source)
        data = data["counterexample"]
    if not isinstance(data, dict) or "x" not in data:
        raise WitnessError('expected an object with an "x" list (and optionally "y")', where=source)
    y = data.get("y")
    return Witness(_vector(data["x"], "x", source), None if y is None else _vector(y, "y", source),
                   source, "json")


def parse_npy(data: bytes, source: str = "<npy>") -> Witness:
    """A witness from NumPy `.npy` bytes holding the input x (flattened in C order)."""
    array = limits.load_npy(data, "witness", WitnessError, source)
    return Witness(_vector(array, "x", source), None, source, "npy")


def read_witness(path: str | Path) -> Witness:
    """Read a witness file in any accepted format; raises WitnessError on bad input."""
    path = Path(path)
    data = limits.read_file(path, "witness", WitnessError)
    if data.startswith(b"\x93NUMPY") or path.suffix.lower() == ".npy":
        return parse_npy(data, str(path))
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise WitnessError("not a text file, nor a .npy array", where=str(path)) from None
    if text.lstrip().startswith("{"):
        return parse_json(text, str(path))
    return parse_vnncomp(text, str(path))


def read_result_file(path: str | Path) -> tuple[str, Witness | None]:
    """A VNN-COMP result file: (first-line answer, witness for sat or None).

    The answer is lowercased; `violated`/`holds` (VNN-COMP 2021) become sat/unsat. A sat file without a
    parsable witness gives (`sat`, None): judging that is the caller's business, not an input error.
    """
    path = Path(path)
    try:
        text = limits.read_file(path, "witness", WitnessError).decode("utf-8", errors="replace")
    except WitnessError:  # missing or unreadable: judged as no answer, by the caller
        text = ""
    lines = text.strip().splitlines()
    answer = lines[0].strip().lower() if lines else ""
    answer = {"violated": "sat", "holds": "unsat"}.get(answer, answer)
    if answer != "sat":
        return answer, None
    try:
        return answer, parse_vnncomp(text, str(path))
    except WitnessError:
        return answer, None


def format_vnncomp(x: np.ndarray, y: np.ndarray, *, answer: str | None = "sat") -> str:
    """VNN-COMP witness text for x and y (exact float64 reprs), with a leading answer line by default."""
    body = format_vnncomp_assignment(x, y) + "\n"
    return f"{answer}\n{body}" if answer else body


def format_vnncomp_assignment(x: np.ndarray, y: np.ndarray) -> str:
    """`((X_0 v) ... (Y_0 v) ...)` with float values written exactly (repr of float64)."""
    lines = [f"(X_{i} {float(v)!r})" for i, v in enumerate(np.asarray(x).reshape(-1))]
    lines += [f"(Y_{j} {float(v)!r})" for j, v in enumerate(np.asarray(y).reshape(-1))]
    return "(" + "\n ".join(lines) + ")"
