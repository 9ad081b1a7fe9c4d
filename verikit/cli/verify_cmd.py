"""`verikit verify MODEL SPEC`."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from verikit.cli.base import command_started, engine_budget_end, exit_now, handles_errors, hard_deadline, main
from verikit.cli.options import build_options, choose_torch_threads, deadline_result, portfolio_options


def _summary(network, result, report_path: Path | None) -> str:
    verdict = result.verdict
    by = f" by {result.engine}/{result.method}" if result.engine else ""
    lines = [f"{verdict.value.upper()} ({verdict.vnncomp}){by} in {result.seconds:.2f} s"]
    if result.reason:
        lines.append(f"  reason: {result.reason}")
    lines.append(f"  model:  {result.model_path} (sha256 {result.model_sha256[:16]}…)")
    lines.append(f"  spec:   {result.spec_path} (sha256 {result.spec_sha256[:16]}…, {len(result.cases)} case(s))")
    lines.extend(f"  note:   {note}" for note in result.spec_notes)
    cex = result.counterexample
    if cex is not None:
        preview = ", ".join(f"{v:.6g}" for v in cex.x[:8]) + (", …" if cex.x.size > 8 else "")
        lines.append(f"  counterexample x = [{preview}] (replayed through onnxruntime)")
    if report_path is not None:
        lines.append(f"  report: {report_path}")
    return "\n".join(lines)


@main.command()
@click.argument("model", type=click.Path(dir_okay=False, path_type=Path))
@click.argument("spec", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--timeout", type=click.FloatRange(min=0.0), default=60.0, show_default=True,
              help="Wall-clock budget in seconds for the whole run.")
@portfolio_options
@click.option("--report", "report_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Write the JSON report here.")
@click.option("--result-file", type=click.Path(dir_okay=False, path_type=Path),
              help="Write a VNN-COMP result file (sat/unsat/... and the witness) here.")
@click.option("--json", "as_json", is_flag=True, help="Print the JSON report on stdout instead of a summary.")
@click.option("--debug", is_flag=True, help="Show tracebacks of internal errors.")
@handles_errors
def verify(model, spec, timeout, report_path, result_file, as_json, debug, **portfolio):
    """Verify that MODEL (ONNX) satisfies SPEC (VNN-LIB or JSON robustness spec)."""
    started = command_started()  # the budget covers the whole command: start-up, parsing, engines, report
    from verikit.core.result import Budget
    from verikit.portfolio import verify_files

    options = build_options(timeout, **portfolio)
    choose_torch_threads(model)

    def answer_timeout() -> int:
        result = deadline_result(model, spec, options, started)
        _write(None, result, report_path, result_file, as_json)
        return int(result.verdict.exit_code)

    watchdog = hard_deadline(started, timeout, answer_timeout)
    try:
        network, result = verify_files(str(model), str(spec), options,
                                       budget=Budget(engine_budget_end(started, timeout)))
        watchdog.claim()
        _write(network, result, report_path, result_file, as_json)
    finally:
        watchdog.cancel()
    exit_now(result.verdict.exit_code)


def _write(network, result, report_path: Path | None, result_file: Path | None, as_json: bool) -> None:
    from verikit.report import json as json_report
    from verikit.report import vnncomp

    if report_path is not None:
        json_report.write(result, report_path, network)
    if result_file is not None:
        vnncomp.write(result, result_file)
    if as_json:
        click.echo(json_report.dumps(result, network))
    else:
        click.echo(_summary(network, result, report_path))
