"""`verikit-vnnlib`: the VNN-LIB standard solver command line, a thin shell over `verikit.apps.vnnlib_solver`.

    verikit-vnnlib --name | --version
    verikit-vnnlib supports --onnx-operators          (any capability of the standard; see docs/vnnlib.md)
    verikit-vnnlib verify QUERY --network N=model.onnx [--timeout SECONDS] [--serialise-assignments DIR]

`verify` prints sat / unsat / unknown / timed-out as the first stdout line, then for sat the assignment
block (unless --serialise-assignments; when that folder cannot be written, the block is printed instead and
the error follows on stderr). Logs and errors go to stderr only. Exit codes: 0 whenever an answer was
printed, 2 usage, 3 bad query or model (the standard's error cases), 4 internal error.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from pathlib import Path

import click

import verikit
from verikit.cli import params
from verikit.cli.base import command_started, exit_now, hard_deadline
from verikit.core.errors import ExitCode, OutputError, VerikitError

PROG = "verikit-vnnlib"
NOT_SUPPORTED = 1  # exit code of `supports` for a capability verikit lacks or does not know


def _fail(message: str, code: int) -> None:
    click.echo(f"{PROG}: error: {message}", err=True)
    exit_now(code)


@contextlib.contextmanager
def _stdout_to_stderr():
    """Send everything written to stdout (Python or C level) to stderr, so stdout holds only the answer."""
    sys.stdout.flush()
    try:
        descriptor = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):  # not a real file (e.g. click's CliRunner)
        descriptor = None
    saved = os.dup(descriptor) if descriptor is not None else None
    if saved is not None:
        sys.stderr.flush()
        os.dup2(sys.stderr.fileno(), descriptor)
    try:
        with contextlib.redirect_stdout(sys.stderr):
            yield
    finally:
        sys.stderr.flush()
        if saved is not None:
            os.dup2(saved, descriptor)
            os.close(saved)


def _timed_out_answer(started: float):
    """The watchdog's answer: `timed-out` on the real stdout (fd 1 is sent to stderr while verifying)."""
    try:
        answer_fd = os.dup(sys.stdout.fileno())
    except (AttributeError, OSError, ValueError):
        answer_fd = None

    def answer() -> int:
        os.write(sys.stderr.fileno(), f"{PROG}: timed-out in {time.monotonic() - started:.2f} s: the deadline "
                 "passed before an answer (the watchdog ended the run)\n".encode())
        if answer_fd is not None:
            os.write(answer_fd, b"timed-out\n")
        return 0

    return answer


def _networks(ctx, param, values: tuple[str, ...]) -> dict[str, str]:
    networks: dict[str, str] = {}
    for value in values:
        name, sep, path = value.partition("=")
        if not sep or not name or not path:
            raise click.BadParameter(f"expected NAME=PATH, got '{value}'")
        if name in networks:
            raise click.BadParameter(f"network '{name}' is given twice")
        networks[name] = path
    return networks


@click.group(invoke_without_command=True, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--name", "show_name", is_flag=True, help="Print the solver's name.")
@click.option("--version", "show_version", is_flag=True, help="Print the solver's version.")
@click.pass_context
def main(ctx: click.Context, show_name: bool, show_version: bool) -> None:
    """verikit behind the VNN-LIB standard solver command line (commands: verify, supports)."""
    from verikit.apps.vnnlib_solver import NAME

    if show_name or show_version:
        click.echo(NAME if show_name else verikit.__version__)
        ctx.exit(0)
    if ctx.invoked_subcommand is None:
        click.echo(ctx.get_help(), err=True)
        ctx.exit(int(ExitCode.USAGE))


@main.command(context_settings={"ignore_unknown_options": True})
@click.argument("capability")
def supports(capability: str) -> None:
    """Report a capability, e.g. `supports --onnx-operators` (exit 1 when verikit lacks it)."""
    from verikit.apps.vnnlib_solver import NotSupported
    from verikit.apps.vnnlib_solver import capability as lines_for

    try:
        lines = lines_for(capability)
    except KeyError:
        _fail(f"unknown capability '{capability}'", NOT_SUPPORTED)
    except NotSupported as reason:
        _fail(str(reason), NOT_SUPPORTED)
    click.echo("\n".join(lines))


@main.command()
@click.argument("query", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--network", "networks", multiple=True, callback=_networks, metavar="NAME=PATH",
              help="The ONNX model of a declared network (repeat for each).")
@click.option("--timeout", type=params.TIMEOUT, default=60.0, show_default=True,
              help="Seconds for the whole run, start-up included (fractions accepted).")
@click.option("--serialise-assignments", "folder", type=click.Path(file_okay=False, path_type=Path),
              help="Write a sat assignment as DIR/<name>.pb (ONNX TensorProto) instead of printing it.")
@click.option("--seed", type=params.SEED, default=0, show_default=True,
              help="Seed of every random choice (non-standard).")
@click.option("--debug", is_flag=True, help="Show tracebacks of internal errors (non-standard).")
def verify(query: Path, networks: dict[str, str], timeout: float, folder: Path | None, seed: int,
           debug: bool) -> None:
    """Decide whether QUERY has a satisfying assignment (sat = a counterexample)."""
    started = command_started()  # the budget covers the whole command, interpreter start-up included
    from verikit.apps.vnnlib_solver import format_tensor_assignment, serialise_assignment, verify_query
    from verikit.cli.options import choose_torch_threads

    watchdog = hard_deadline(started, timeout, _timed_out_answer(started))  # forks: before torch is imported
    choose_torch_threads(*networks.values())
    unwritten = None  # an unwritable folder must not cost the answer: it is printed with the assignment
    try:
        with _stdout_to_stderr():
            answer = verify_query(query, networks, timeout=timeout, seed=seed, started=started)
            if answer.status == "sat" and folder is not None:
                watchdog.claim()
                try:
                    serialise_assignment(answer.assignment, folder)
                except OutputError as error:
                    unwritten, folder = error, None
        watchdog.claim()
    except VerikitError as error:
        watchdog.cancel()
        _fail(str(error), error.exit_code)
    except KeyboardInterrupt:
        watchdog.cancel()
        _fail("interrupted", ExitCode.UNKNOWN)
    except Exception as error:  # a bug: one line and exit 4, never an answer
        watchdog.cancel()
        if debug:
            raise
        _fail(f"internal error: {type(error).__name__}: {error} (rerun with --debug for the traceback)",
              ExitCode.INTERNAL)
    click.echo(f"{PROG}: {answer.status} in {answer.seconds:.2f} s" + (f": {answer.reason}" if answer.reason
                                                                         else ""), err=True)
    click.echo(answer.status)
    if answer.status == "sat" and folder is None:
        click.echo(format_tensor_assignment(answer.assignment))
    if unwritten is not None:
        click.echo(f"{PROG}: error: {unwritten} (the assignment is printed on stdout instead)", err=True)
    exit_now(0)
