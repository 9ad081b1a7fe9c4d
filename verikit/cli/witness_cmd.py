"""`verikit witness MODEL SPEC WITNESS`: is this counterexample real? (onnxruntime replay + formula)"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from verikit.cli import params
from verikit.cli.base import handles_errors, main
from verikit.witness.check import DEFAULT_TOLERANCE, DEFAULT_Y_RTOL


@main.command()
@click.argument("model", type=click.Path(dir_okay=False, path_type=Path))
@click.argument("spec", type=click.Path(dir_okay=False, path_type=Path))
@click.argument("witness", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--tolerance", type=params.TOLERANCE, default=DEFAULT_TOLERANCE, show_default=True,
              help="Absolute slack allowed on box coordinates and output rows.")
@click.option("--y-rtol", type=params.TOLERANCE, default=DEFAULT_Y_RTOL, show_default=True,
              help="Relative tolerance when comparing the witness's Y with the replayed Y.")
@click.option("--json", "as_json", is_flag=True, help="Print the finding as JSON.")
@click.option("--debug", is_flag=True, help="Show tracebacks of internal errors.")
@handles_errors
def witness(model, spec, witness, tolerance, y_rtol, as_json, debug):
    """Check that WITNESS is a counterexample of SPEC on MODEL.

    WITNESS: a VNN-COMP witness or result file ((X_0 v) ... (Y_0 v) ...), JSON {"x": [...], "y": [...]}
    or a verikit JSON report, or a .npy array of x. X is rounded to float32, replayed through
    onnxruntime, and must lie in the box with the output satisfying the formula.

    Exits 0 when valid (strict or within tolerance), 1 when invalid, 3 on bad input.
    """
    from verikit.witness.check import check_witness_files

    parsed, report = check_witness_files(model, spec, witness, tolerance=tolerance, y_rtol=y_rtol)
    if as_json:
        data = {"model": str(model), "spec": str(spec), "witness": str(witness), "format": parsed.format,
                **report.to_dict()}
        click.echo(json.dumps(data, indent=2))
    else:
        click.echo("\n".join(report.describe()))
        if report.y_agrees:
            click.echo(f"  the witness's Y matches the onnxruntime replay (relative {y_rtol:g})")
        elif report.y_claimed is None:
            click.echo("  the witness gives no Y; only the replayed output was checked")
    sys.exit(0 if report.valid else 1)
