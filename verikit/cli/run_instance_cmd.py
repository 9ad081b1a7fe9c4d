"""`verikit run-instance v1 CATEGORY ONNX VNNLIB RESULT_FILE TIMEOUT`: the VNN-COMP calling convention."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from verikit.cli import params
from verikit.cli.base import command_started, exit_now, handles_errors, hard_deadline, main
from verikit.cli.options import build_options, choose_torch_threads, deadline_result, portfolio_options


@click.command("run-instance")
@click.argument("version", type=click.Choice(["v1"]))
@click.argument("category")
@click.argument("onnx", type=click.Path(dir_okay=False, path_type=Path))
@click.argument("vnnlib", type=click.Path(dir_okay=False, path_type=Path))
@click.argument("result_file", type=click.Path(dir_okay=False, path_type=Path))
@click.argument("timeout", type=params.TIMEOUT)
@portfolio_options
@click.option("--debug", is_flag=True, help="Show tracebacks of internal errors.")
@handles_errors
def run_instance_command(version, category, onnx, vnnlib, result_file, timeout, debug, **portfolio):
    """Verify one instance and write a VNN-COMP result file (sat + witness / unsat / unknown / ...).

    VERSION must be v1 (the VNN-COMP scripts' protocol); CATEGORY is recorded nowhere and may be any
    word. Exit codes as `verikit verify`; 3 (and `error` in the result file) for bad input.
    """
    started = command_started()  # VNN-COMP times the whole command, start-up included
    from verikit.report import vnncomp

    def answer_timeout() -> int:
        result = deadline_result(onnx, vnnlib, timeout, portfolio["seed"], started)
        vnncomp.write(result, result_file)
        return int(result.exit_code)

    watchdog = hard_deadline(started, timeout, answer_timeout)  # forks: before torch is imported
    try:
        options = build_options(timeout, **portfolio)  # imports torch (engine settings)
        choose_torch_threads(onnx)
        from verikit.run import run_instance

        result = run_instance(onnx, vnnlib, options, started=started, debug=debug)
        watchdog.claim()
        vnncomp.write(result, result_file)
        if result.verdict.value == "error":
            click.echo(f"verikit: error: {result.reason}", err=True)
    finally:
        watchdog.cancel()
    exit_now(result.exit_code)


main.add_command(run_instance_command)
