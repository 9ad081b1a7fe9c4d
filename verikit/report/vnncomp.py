"""VNN-COMP result files: first line sat/unsat/unknown/timeout/error, then the witness for sat."""

from __future__ import annotations

from pathlib import Path

from verikit.core import output
from verikit.core.result import Result
from verikit.witness.formats import format_vnncomp_assignment


def format_result(result: Result) -> str:
    text = result.verdict.vnncomp + "\n"
    if result.verdict.value == "error" and result.reason:
        text += "; " + " ".join(result.reason.split()) + "\n"  # why, as a comment line
    cex = result.counterexample
    if cex is not None:
        text += format_vnncomp_assignment(cex.x, cex.y) + "\n"
    return text


def write(result: Result, path: str | Path) -> Path:
    return output.write_text(path, format_result(result))
