"""`verikit verify MODEL SPEC`."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from verikit.cli import params
from verikit.cli.base import handles_errors, main
from verikit.core.errors import OutputError
from verikit.core.result import Verdict
from verikit.cli.options import build_options, portfolio_options


def tolerance_note(settings: dict) -> str:
    """' with box tolerance 0.001, formula tolerance 0.01' for the non-zero tolerances of a run, else ''."""
    tolerances = settings.get("tolerances") or {}
    named = [f"{kind} tolerance {value:g}" for kind, value in tolerances.items() if value]
    return f" with {', '.join(named)}" if named else ""


def _summary(network, result, report_path: Path | None) -> str:
    verdict = result.verdict
    by = f" by {result.engine}/{result.method}" if result.engine else ""
    within = tolerance_note(result.settings)
    lines = [f"{verdict.value.upper()} ({verdict.vnncomp}){by} in {result.seconds:.2f} s{within}"]
    if result.reason:
        lines.append(f"  reason: {result.reason}")
    lines.append(f"  model:  {result.model_path} (sha256 {result.model_sha256[:16]}…)")
    lines.append(f"  spec:   {result.spec_path} (sha256 {result.spec_sha256[:16]}…, {len(result.cases)} case(s))")
    lines.extend(f"  note:   {note}" for note in result.spec_notes)
    cex = result.counterexample
    if cex is not None:
        preview = ", ".join(f"{v:.6g}" for v in cex.x[:8]) + (", …" if cex.x.size > 8 else "")
        lines.append(f"  counterexample x = [{preview}] (replayed through onnxruntime{within})")
    if report_path is not None:
        lines.append(f"  report: {report_path}")
    return "\n".join(lines)


def write_outputs(writers: dict) -> dict:
    """Call each `{path: write(path)}` whose path is not None; {path: OutputError} of those that failed.

    An unwritable output must not cost the verdict: the caller prints it, then these errors on stderr,
    and exits with the verdict's code (documented in README.md)."""
    failed = {}
    for path, write in writers.items():
        if path is not None:
            try:
                write(path)
            except OutputError as error:
                failed[path] = error
    return failed


@main.command()
@click.argument("model", type=click.Path(dir_okay=False, path_type=Path))
@click.argument("spec", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--timeout", type=params.TIMEOUT, default=60.0, show_default=True,
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
    from verikit.report import json as json_report
    from verikit.report import vnncomp
    from verikit.portfolio import verify_files

    network, result = verify_files(str(model), str(spec), build_options(timeout, **portfolio))
    failed = write_outputs({report_path: lambda p: json_report.write(result, p, network),
                            result_file: lambda p: vnncomp.write(result, p)})
    if as_json:
        click.echo(json_report.dumps(result, network))
    else:
        click.echo(_summary(network, result, report_path if report_path not in failed else None))
    if result.verdict is Verdict.ERROR:  # bad input found while verifying: stdout has the verdict, stderr why
        click.echo(f"verikit: error: {result.reason}", err=True)
    for error in failed.values():
        click.echo(f"verikit: error: {error}", err=True)
    sys.exit(int(result.verdict.exit_code))
