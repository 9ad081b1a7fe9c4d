"""`verikit gate [POLICY]`: run a release gate in CI; exit 0 on pass, 1 on fail, 3 on bad input."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from verikit.cli.base import handles_errors, main
from verikit.cli.scale import executor_options, html_option, open_executor
from verikit.core.errors import OutputError


def write_reports(result, report: dict, out_dir: Path) -> dict[str, Path]:
    """gate.json, junit.xml, summary.md and one audit JSON + CSV per robustness property under out_dir."""
    from verikit.report import audit as audit_report
    from verikit.report import gate as gate_report
    from verikit.report import junit, markdown

    written = {"json": gate_report.write(report, out_dir / "gate.json"),
               "junit": junit.write(report, out_dir / "junit.xml"),
               "markdown": markdown.write(report, out_dir / "summary.md")}
    for key, audit in result.audits.items():
        stem = key.replace("/", "__")
        audit_report.write_json(audit, out_dir / "audits" / f"{stem}.json")
        audit_report.write_csv(audit, out_dir / "audits" / f"{stem}.csv")
    return written


@main.command()
@click.argument("policy", required=False, default="verikit.toml",
                type=click.Path(dir_okay=False, path_type=Path))
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path),
              help="Folder for gate.json, junit.xml, summary.md, audits/ [default: the policy's `out`, "
                   "else reports/gate].")
@click.option("--baseline", type=click.Path(dir_okay=False, path_type=Path),
              help="Compare with this gate.json instead of the policy's baseline.")
@click.option("--no-baseline", is_flag=True, help="Skip the baseline comparison.")
@click.option("--threads", type=click.IntRange(min=1), help="torch CPU threads (default: torch's choice).")
@click.option("--jobs", type=click.IntRange(min=1), default=1, show_default=True,
              help="(property, model) pairs checked in parallel (local workers, or the CPUs of a local Ray).")
@executor_options
@html_option
@click.option("--json", "as_json", is_flag=True, help="Print the JSON report on stdout instead of the summary.")
@click.option("--quiet", is_flag=True, help="No progress lines on stderr.")
@click.option("--debug", is_flag=True, help="Show tracebacks of internal errors.")
@handles_errors
def gate(policy, out_dir, baseline, no_baseline, threads, jobs, executor_kind, ray_address, task_threads, html_path,
         as_json, quiet, debug):
    """Check every property of POLICY (default ./verikit.toml) and decide pass or fail.

    Writes the JSON report (schema verikit-gate/1, usable as the next baseline), JUnit XML and a Markdown
    summary (also appended to $GITHUB_STEP_SUMMARY when set). Exit codes: 0 pass, 1 fail, 3 invalid policy
    or unreadable model/spec/data, 4 internal error.
    """
    import torch

    from verikit.apps.gate.policy import load_policy
    from verikit.apps.gate.run import run_gate
    from verikit.report import gate as gate_report
    from verikit.report import markdown

    if threads is not None:
        torch.set_num_threads(threads)
    loaded = load_policy(policy)

    def say(message: str) -> None:
        if not quiet and not as_json:
            click.echo(f"verikit gate: {message}", err=True)

    if jobs > 1 or executor_kind != "local":
        with open_executor(executor_kind, jobs, ray_address) as executor:
            result = run_gate(loaded, baseline=baseline, use_baseline=not no_baseline, progress=say,
                              executor=executor, threads=task_threads)
    else:
        result = run_gate(loaded, baseline=baseline, use_baseline=not no_baseline, progress=say)
    report = gate_report.to_dict(result)
    target = out_dir or loaded.out or Path("reports/gate")
    summary = markdown.to_markdown(report)
    failed: list[OutputError] = []  # unwritable reports must not cost the decision: printed, then the errors
    written, step_summary = {}, None
    try:
        written = write_reports(result, report, target)
        if html_path is not None:
            from verikit.report.html import gate_page, write

            written["html"] = write(gate_page(report), html_path)
    except OutputError as error:
        failed.append(error)
    try:
        step_summary = markdown.append_step_summary(summary)
    except OutputError as error:
        failed.append(error)
    if as_json:
        click.echo(json.dumps(report, indent=2, default=str))
    else:
        click.echo(summary)
        click.echo("reports: " + ", ".join(str(path) for path in written.values()))
        if step_summary is not None:
            click.echo(f"summary appended to {step_summary}")
    for error in failed:
        click.echo(f"verikit: error: {error}", err=True)
    sys.exit(result.exit_code)
