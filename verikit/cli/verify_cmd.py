"""`verikit verify MODEL SPEC`."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from verikit.cli.base import handles_errors, main
from verikit.cli.options import build_options, portfolio_options


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


def _write_certificate(network, spec: Path, result, timeout: float, path: Path) -> str:
    """Write the certificate of a verified result; what happened, in a few words."""
    import json

    from verikit.certify import write_certificate
    from verikit.core.result import Budget
    from verikit.spec.load import load_spec

    if result.verdict.value != "verified":
        return f"none written (the verdict is {result.verdict.value})"
    prop = load_spec(spec, n_inputs=network.n_inputs, n_outputs=network.n_outputs, network=network)
    certificate = write_certificate(network, prop, Budget.seconds(timeout))
    path.write_text(json.dumps(certificate))
    if "unsupported" in certificate:
        return f"{path} says the checker cannot read this network ({certificate['unsupported']})"
    incomplete = [c["index"] for c in certificate["cases"] if "incomplete" in c]
    if incomplete:
        return f"{path} is incomplete: the certifying search did not close case(s) {incomplete[:5]}"
    return f"{path} ({certificate['statistics']['leaves']} leaves; check with `verikit certificate check`)"


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
@click.option("--certificate", "certificate_path", type=click.Path(dir_okay=False, path_type=Path),
              help="When verified, write a checkable certificate here (docs/certificates.md); its search "
                   "gets a budget of --timeout seconds of its own.")
@click.option("--json", "as_json", is_flag=True, help="Print the JSON report on stdout instead of a summary.")
@click.option("--debug", is_flag=True, help="Show tracebacks of internal errors.")
@handles_errors
def verify(model, spec, timeout, report_path, result_file, certificate_path, as_json, debug, **portfolio):
    """Verify that MODEL (ONNX) satisfies SPEC (VNN-LIB or JSON robustness spec)."""
    from verikit.report import json as json_report
    from verikit.report import vnncomp
    from verikit.portfolio import verify_files

    network, result = verify_files(str(model), str(spec), build_options(timeout, **portfolio))
    if report_path is not None:
        json_report.write(result, report_path, network)
    if result_file is not None:
        vnncomp.write(result, result_file)
    note = None if certificate_path is None else _write_certificate(network, spec, result, timeout, certificate_path)
    if as_json:
        click.echo(json_report.dumps(result, network))
    else:
        click.echo(_summary(network, result, report_path) + (f"\n  certificate: {note}" if note else ""))
    sys.exit(int(result.verdict.exit_code))
