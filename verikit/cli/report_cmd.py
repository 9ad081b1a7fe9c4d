"""`verikit report html RESULTS -o report.html`: a self-contained HTML report of a bench, audit or gate run."""

from __future__ import annotations

from pathlib import Path

import click

from verikit.cli.base import handles_errors, main


@main.group()
def report() -> None:
    """Render results that verikit wrote into reports for people."""


@report.command("html")
@click.argument("results", type=click.Path(path_type=Path))
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), default=Path("report.html"),
              show_default=True, help="The HTML file to write.")
@click.option("--compare", multiple=True, type=click.Path(dir_okay=False, exists=True, path_type=Path),
              help="Another tool's VNN-COMP results CSV to overlay on the bench cactus plot (repeatable).")
@click.option("--ground-truth", type=click.Path(dir_okay=False, exists=True, path_type=Path),
              help="Bench: a ground-truth CSV (matched by content hash) for the truth column.")
@click.option("--debug", is_flag=True, help="Show tracebacks of internal errors.")
@handles_errors
def html(results, output, compare, ground_truth, debug):
    """RESULTS: a bench --out folder (or its results.csv), an audit.json, a gate.json or a soundness.json.

    One file with inline CSS and SVG: it opens offline and can be mailed or attached to a CI run.
    """
    from verikit.apps.html_inputs import render
    from verikit.report.html import write

    path = write(render(results, compare, ground_truth), output)
    click.echo(f"wrote {path}")
