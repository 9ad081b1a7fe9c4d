"""`verikit run-instance v1 CATEGORY ONNX VNNLIB RESULT_FILE TIMEOUT`: the VNN-COMP calling convention."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from verikit.cli import params
from verikit.cli.base import handles_errors, main
from verikit.cli.options import build_options, portfolio_options


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
    from verikit.apps.run_instance import exit_code, run_instance

    result = run_instance(onnx, vnnlib, result_file, timeout, build_options(timeout, **portfolio),
                          on_error=lambda error: click.echo(f"verikit: error: {error}", err=True))
    sys.exit(exit_code(result))


main.add_command(run_instance_command)
