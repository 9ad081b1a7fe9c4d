"""`verikit bench INSTANCES [--ground-truth CSV]`: run a VNN-COMP style benchmark and score it."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from verikit.cli import params
from verikit.core import output
from verikit.cli.base import handles_errors, main
from verikit.cli.options import build_options, portfolio_options
from verikit.cli.scale import executor_options, html_option, open_executor


def print_summary(summary, console) -> None:
    from rich.table import Table

    table = Table(title="verikit bench")
    for column in ("result", "count"):
        table.add_column(column)
    for result, count in sorted(summary.counts.items()):
        table.add_row(result, str(count))
    console.print(table)
    console.print(f"total {summary.total_s:.1f} s, median {summary.median_s:.2f} s per instance")
    if summary.correct or summary.wrong or summary.unchecked:
        console.print(f"ground truth: {summary.correct} correct, {len(summary.wrong)} wrong, "
                      f"{summary.unchecked} decided where the truth is unknown; score {summary.score}")
    for wrong in summary.wrong:
        console.print(f"[bold red]WRONG[/]: {wrong['answer']} on {wrong['onnx']} {wrong['vnnlib']} "
                      f"(truth {wrong['truth']})")


@main.command()
@click.argument("instances", type=click.Path(exists=False, path_type=Path))
@click.option("--ground-truth", type=click.Path(dir_okay=False, path_type=Path),
              help="CSV with onnx, vnnlib, truth columns; rows matched by content hash.")
@click.option("--timeout-scale", type=params.SCALE, default=1.0, show_default=True,
              help="Multiply every instance's timeout by this factor.")
@click.option("--jobs", type=click.IntRange(min=1), default=1, show_default=True,
              help="Instances run in parallel (local workers, or the CPUs of a local Ray).")
@executor_options
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), default=Path("reports/bench"),
              show_default=True, help="Folder for results.csv, witnesses/ and summary.json (resumable).")
@portfolio_options
@html_option
@click.option("--compare", multiple=True, type=click.Path(dir_okay=False, exists=True, path_type=Path),
              help="Another tool's VNN-COMP results CSV for the HTML cactus plot (repeatable).")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON on stdout.")
@click.option("--debug", is_flag=True, help="Show tracebacks of internal errors.")
@handles_errors
def bench(instances, ground_truth, timeout_scale, jobs, executor_kind, ray_address, task_threads, out_dir, html_path,
          compare, as_json, debug, **portfolio):
    """Run every (onnx, vnnlib, timeout) row of INSTANCES (a CSV, or a folder of *instances*.csv).

    Exits 1 when any answer contradicts the ground truth, else 0.
    """
    from verikit.cli.options import console as make_console
    from rich.progress import Progress

    from verikit.apps import bench as bench_lib

    rows_in = bench_lib.read_instances(instances)
    truths = bench_lib.read_ground_truth(ground_truth) if ground_truth else None
    options = build_options(0.0, **portfolio)
    console = make_console(stderr=True)
    with open_executor(executor_kind, jobs, ray_address) as executor, \
            Progress(console=console, disable=as_json or not console.is_terminal) as progress:
        task = progress.add_task("verifying", total=len(rows_in))
        rows = bench_lib.run(rows_in, out_dir, options=options, timeout_scale=timeout_scale, executor=executor,
                             threads=task_threads, on_row=lambda row: progress.advance(task))
    summary = bench_lib.summarise(rows, rows_in, truths)
    output.write_text(out_dir / "summary.json", json.dumps(bench_lib.summary_dict(summary), indent=2) + "\n")
    if html_path is not None:
        from verikit.apps.html_inputs import bench_html
        from verikit.report.html import write

        write(bench_html(out_dir, compare, ground_truth), html_path)
    if as_json:
        click.echo(json.dumps(bench_lib.summary_dict(summary), indent=2))
    else:
        print_summary(summary, make_console())
    sys.exit(1 if summary.wrong else 0)
