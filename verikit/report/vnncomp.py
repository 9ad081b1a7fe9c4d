"""VNN-COMP result files: first line sat/unsat/unknown/timeout/error, then the witness for sat."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from verikit.result import Result


def format_assignment(x: np.ndarray, y: np.ndarray) -> str:
    """`((X_0 v) ... (Y_0 v) ...)` with float values written exactly (repr of float64)."""
    lines = [f"(X_{i} {float(v)!r})" for i, v in enumerate(np.asarray(x).reshape(-1))]
    lines += [f"(Y_{j} {float(v)!r})" for j, v in enumerate(np.asarray(y).reshape(-1))]
    return "(" + "\n ".join(lines) + ")"


def format_result(result: Result) -> str:
    text = result.verdict.vnncomp + "\n"
    cex = result.counterexample
    if cex is not None:
        text += format_assignment(cex.x, cex.y) + "\n"
    return text


def write(result: Result, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(format_result(result))
    return path
