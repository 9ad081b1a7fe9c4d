"""The `verikit` click group and the one place where errors become exit codes (verikit.core.errors.ExitCode)."""

from __future__ import annotations

import functools
import os
import sys
import time
import warnings
from typing import Callable

import click

import verikit
from verikit.core.deadline import Guard, Watchdog, process_started, supervise
from verikit.core.errors import ExitCode, VerikitError

DEADLINE_GRACE = 0.3  # s after --timeout at which the watchdog answers `timeout` and ends the process


def _fail(message: str, code: ExitCode) -> None:
    click.echo(f"verikit: error: {message}", err=True)
    sys.exit(int(code))


def handles_errors(command):
    """Map VerikitError to its one-line message and exit code; anything else is an internal error."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except VerikitError as error:
            _fail(str(error), error.exit_code)
        except KeyboardInterrupt:
            _fail("interrupted", ExitCode.UNKNOWN)
        except Exception as error:  # an unexpected bug: say so in one line, never as a verdict
            if kwargs.get("debug"):
                raise
            _fail(f"internal error: {type(error).__name__}: {error} (rerun with --debug for the traceback)",
                  ExitCode.INTERNAL)

    return wrapper


def owns_process() -> bool:
    """Whether this command is the process (its stdout is the real one), not run inside a caller such as
    click's CliRunner or a test: only then may a deadline end the process or count from its start."""
    return sys.stdout is sys.__stdout__


def command_started() -> float:
    """When the command started (time.monotonic()): the process's start when the command owns it."""
    return process_started() if owns_process() else time.monotonic()


def hard_deadline(started: float, timeout: float, on_expiry: Callable[[], int]) -> Watchdog | Guard:
    """Ends the command at `started + timeout` (+ grace) with `on_expiry`'s answer, whatever runs then.

    Call it before torch is imported: it forks (verikit.core.deadline.supervise) where it can, else it
    starts a watchdog thread. Armed only when the command owns the process: under click's CliRunner or a
    library caller, ending the process would end the caller too, so it stays unarmed (claim/cancel: no-ops).
    """
    deadline = started + timeout + DEADLINE_GRACE
    if not owns_process():
        return Watchdog(deadline, on_expiry)
    if hasattr(os, "fork"):
        return supervise(deadline, on_expiry)
    return Watchdog(deadline, on_expiry).start()


def exit_now(code: int) -> None:
    """End the command with `code` once its answer is written. A process of its own ends with os._exit:
    torch's and auto_LiRPA's teardown took 1.5-2 s of a loaded machine's time after the answer."""
    if owns_process():
        for stream in (sys.stdout, sys.stderr):
            stream.flush()
        os._exit(int(code))
    sys.exit(int(code))


# torch and auto_LiRPA announce deprecations of their own internals; they are not the user's business
warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"torch\..*")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(verikit.__version__, prog_name="verikit")
def main() -> None:
    """Verify and audit the robustness of neural networks (ONNX models, VNN-LIB specs).

    Exit codes: 0 verified, 1 falsified, 2 usage, 3 bad model or spec (or translation mismatch),
    4 internal error, 5 unknown or timeout.
    """
