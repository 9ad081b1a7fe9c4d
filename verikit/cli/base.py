"""The `verikit` click group and the one place where errors become exit codes (verikit.core.errors.ExitCode)."""

from __future__ import annotations

import functools
import sys
import warnings

import click

import verikit
from verikit.core.errors import ExitCode, VerikitError


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


# torch and auto_LiRPA announce deprecations of their own internals; they are not the user's business
warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"torch\..*")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(verikit.__version__, prog_name="verikit")
def main() -> None:
    """Verify and audit the robustness of neural networks (ONNX models, VNN-LIB specs).

    Exit codes: 0 verified, 1 falsified, 2 usage, 3 bad model or spec (or translation mismatch),
    4 internal error, 5 unknown or timeout.
    """
