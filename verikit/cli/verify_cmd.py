"""`verikit verify MODEL SPEC`."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from verikit.cli import params
from verikit.cli.base import command_started, exit_now, handles_errors, hard_deadline, main
from verikit.cli.options import build_options, choose_torch_threads, deadline_result, portfolio_options, progress_log
from verikit.core.errors import OutputError


def tolerance_note(settings: dict) -> str:
    """' with box tolerance 0.001, formula tolerance 0.01' for the non-zero tolerances of a run, else ''."""
    tolerances = settings.get("tolerances") or {}
    named = [f"{kind} tolerance {value:g}" for kind, value in tolerances.items() if value]
    return f" with {', '.join(named)}" if named else ""


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


def _summary(result, report_path: Path | None) -> str:
    verdict = result.verdict
    by = f" by {result.engine}/{result.method}" if result.engine else ""
    within = tolerance_note(result.settings)
    lines = [f"{verdict.value.upper()} ({verdict.vnncomp}){by} in {result.seconds:.2f} s{within}"]
    if result.reason:
        lines.append(f"  reason: {result.reason}")
    lines.append(f"  model:  {result.model_path} (sha256 {result.model_sha256[:16]}…)")
    lines.append(f"  spec:   {result.spec_path} (sha256 {result.spec_sha256[:16]}…, {len(result.cases)} case(s))")
    lines.extend(f"  note:   {note}" for note in result.spec_notes)
    lines.extend(f"  note:   {note}" for note in result.settings.get("notes", ()))
    cex = result.counterexample
    if cex is not None:
        preview = ", ".join(f"{v:.6g}" for v in cex.x[:8]) + (", …" if cex.x.size > 8 else "")
        lines.append(f"  counterexample x = [{preview}] (replayed through onnxruntime{within})")
    if report_path is not None:
        lines.append(f"  report: {report_path}")
    return "\n".join(lines)


def _write_certificate(model: Path, spec: Path, result, deadline: float, path: Path) -> str:
    """Write the certificate of a verified result (a separate certifying search, until `deadline` on
    time.monotonic()); what happened, in a few words."""
    import json

    from verikit.certify import write_certificate
    from verikit.core import output
    from verikit.core.result import Budget
    from verikit.onnx.load import load_network
    from verikit.spec.load import load_spec

    if result.verdict.value != "verified":
        return f"none written (the verdict is {result.verdict.value})"
    network = load_network(model)
    prop = load_spec(spec, n_inputs=network.n_inputs, n_outputs=network.n_outputs, network=network)
    certificate = write_certificate(network, prop, Budget(deadline - 0.2))
    output.write_text(path, json.dumps(certificate))
    if "unsupported" in certificate:
        return f"{path} says the checker cannot read this network ({certificate['unsupported']})"
    incomplete = [c["index"] for c in certificate["cases"] if "incomplete" in c]
    if incomplete:
        return f"{path} is incomplete: the certifying search did not close case(s) {incomplete[:5]}"
    return f"{path} ({certificate['statistics']['leaves']} leaves; check with `verikit certificate check`)"


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
@click.option("--certificate", "certificate_path", type=click.Path(dir_okay=False, path_type=Path),
              help="When verified, write a checkable certificate here (docs/certificates.md); its search "
                   "gets --timeout seconds of its own, so the command then ends within twice --timeout.")
@click.option("--json", "as_json", is_flag=True, help="Print the JSON report on stdout instead of a summary.")
@click.option("--debug", is_flag=True, help="Show tracebacks of internal errors.")
@handles_errors
def verify(model, spec, timeout, report_path, result_file, certificate_path, as_json, debug, **portfolio):
    """Verify that MODEL (ONNX) satisfies SPEC (VNN-LIB or JSON robustness spec)."""
    started = command_started()  # the budget covers the whole command: start-up, parsing, engines, report
    import verikit.report.json, verikit.report.vnncomp  # noqa: F401, E401  (ready before the deadline, not at it)

    progress = progress_log()  # where the run leaves its progress for the deadline's answer

    def answer_timeout() -> int:
        result = deadline_result(model, spec, timeout, portfolio["seed"], started, progress.read())
        progress.remove()
        _write(result, report_path, result_file, as_json)
        return int(result.exit_code)

    certifying = timeout if certificate_path is not None else 0.0  # the certifying search's own time
    watchdog = hard_deadline(started, timeout + certifying, answer_timeout)  # forks: before torch is imported
    try:
        options = build_options(timeout, **portfolio)  # imports torch (engine settings)
        choose_torch_threads(model)
        from verikit.run import run_instance

        result = run_instance(model, spec, options, started=started, debug=debug, progress=progress.write)
        note = None
        if certificate_path is not None:
            note = _write_certificate(model, spec, result, started + timeout + certifying, certificate_path)
        watchdog.claim()
        _write(result, report_path, result_file, as_json, note)
    finally:
        watchdog.cancel()
        progress.remove()
    exit_now(result.exit_code)


def _write(result, report_path: Path | None, result_file: Path | None, as_json: bool,
           certificate_note: str | None = None) -> None:
    from verikit.report import json as json_report
    from verikit.report import vnncomp

    failed = write_outputs({report_path: lambda p: json_report.write(result, p),
                            result_file: lambda p: vnncomp.write(result, p)})
    if as_json:
        click.echo(json_report.dumps(result))
    elif result.verdict.value != "error" or result.model_sha256:  # a model was read: its verdict, then why
        click.echo(_summary(result, report_path if report_path not in failed else None)
                   + (f"\n  certificate: {certificate_note}" if certificate_note else ""))
    if result.verdict.value == "error":
        click.echo(f"verikit: error: {result.reason}", err=True)
    for error in failed.values():
        click.echo(f"verikit: error: {error}", err=True)
