"""VNN-COMP style entry: verify one instance and write a result file, as `run_instance.sh` does.

    python -m verikit.apps.run_instance v1 CATEGORY ONNX VNNLIB RESULT_FILE TIMEOUT [--engine ...] [--seed N]
    verikit run-instance v1 CATEGORY ONNX VNNLIB RESULT_FILE TIMEOUT        (the same command)

The result file's first line is sat / unsat / unknown / timeout / error; for sat the witness
`((X_0 v) ... (Y_0 v) ...)` follows, replayed through onnxruntime before it is written. Bad input
(unreadable model or spec) gives `error` and exit code 3; other exit codes follow `verikit verify`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from verikit.core import output
from verikit.core.errors import VerikitError
from verikit.core.result import Result
from verikit.core.property import Property
from verikit.portfolio import Options


def run_instance(
    onnx: str | Path,
    vnnlib: str | Path,
    result_file: str | Path,
    timeout: float,
    options: Options = Options(),
    transform: Callable[[Property], Property] | None = None,
    on_error: Callable[[VerikitError], None] | None = None,
) -> Result | None:
    """Verify and write `result_file`; returns the Result, or None after writing `error` for bad input
    (then `on_error`, when given, gets the error: the command line prints it).

    `transform` (for tests of the harness) may rewrite the property before verification.
    """
    from dataclasses import replace

    from verikit.report import vnncomp
    from verikit.portfolio import verify_files

    try:
        _, result = verify_files(str(onnx), str(vnnlib), replace(options, timeout=timeout), transform)
    except VerikitError as error:
        output.write_text(result_file, f"error\n; {error}\n")
        if on_error is not None:
            on_error(error)
        return None
    vnncomp.write(result, result_file)
    return result


def exit_code(result: Result | None) -> int:
    """The process exit code for a run (3 for bad input, else as `verikit verify`)."""
    return 3 if result is None else int(result.verdict.exit_code)
