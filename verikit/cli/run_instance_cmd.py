"""`verikit run-instance v1 CATEGORY ONNX VNNLIB RESULT_FILE TIMEOUT`: the VNN-COMP calling convention."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from verikit.cli.base import command_started, engine_budget_end, exit_now, handles_errors, hard_deadline, main
from verikit.cli.options import build_options, choose_torch_threads, deadline_result, portfolio_options


@click.command("run-instance")
@click.argument("version", type=click.Choice(["v1"]))
@click.argument("category")
@click.argument("onnx", type=click.Path(dir_okay=False, path_type=Path))
@click.argument("vnnlib", type=click.Path(dir_okay=False, path_type=Path))
@click.argument("result_file", type=click.Path(dir_okay=False, path_type=Path))
@click.argument("timeout", type=click.FloatRange(min=0.0))
@portfolio_options
@click.option("--debug", is_flag=True, help="Show tracebacks of internal errors.")
@handles_errors
def run_instance_command(version, category, onnx, vnnlib, result_file, timeout, debug, **portfolio):
    """Verify one instance and write a VNN-COMP result file (sat + witness / unsat / unknown / ...).

    VERSION must be v1 (the VNN-COMP scripts' protocol); CATEGORY is recorded nowhere and may be any
    word. Exit codes as `verikit verify`; 3 (and `error` in the result file) for bad input.
    """
    started = command_started()  # VNN-COMP times the whole command, start-up included
    from verikit.apps.run_instance import exit_code, run_instance
    from verikit.core.result import Budget
    from verikit.report import vnncomp

    options = build_options(timeout, **portfolio)
    choose_torch_threads(onnx)

    def answer_timeout() -> int:
        result = deadline_result(onnx, vnnlib, options, started)
        vnncomp.write(result, result_file)
        return exit_code(result)

    watchdog = hard_deadline(started, timeout, answer_timeout)
    try:
        result = run_instance(onnx, vnnlib, result_file, timeout, options,
                              budget=Budget(engine_budget_end(started, timeout)), before_write=watchdog.claim)
    finally:
        watchdog.cancel()
    exit_now(exit_code(result))


main.add_command(run_instance_command)
