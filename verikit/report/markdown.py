"""A Markdown summary of a gate report (verikit-gate/1 dict), for terminals and $GITHUB_STEP_SUMMARY."""

from __future__ import annotations

import os
from pathlib import Path

from verikit.core import output
from verikit.core.errors import OutputError

ICONS = {"pass": "✅", "fail": "❌", "warn": "⚠️", "ignored": "➖"}


def _cell(text: object) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _result(check: dict) -> str:
    metrics = check.get("metrics") or {}
    if "certified_robust_accuracy" in metrics:
        clean = f"clean {metrics['clean_accuracy']:.1%}"
        if metrics.get("min_clean_accuracy") is not None:
            clean += f" (required {metrics['min_clean_accuracy']:.1%})"
        return (f"certified {metrics['certified_robust_accuracy']:.1%} (required "
                f"{metrics['min_certified_accuracy']:.1%}), empirical {metrics['empirical_robust_accuracy']:.1%}, "
                f"{clean}")
    return check["message"]


def to_markdown(report: dict) -> str:
    """Verdict first, then why it failed, the table of checks, regressions and warnings."""
    summary = report["summary"]
    verdict = "PASSED ✅" if report["passed"] else "FAILED ❌"
    lines = [f"## verikit gate {verdict}", "",
             f"Policy `{report['policy']['path']}`: {summary['checks']} check(s): {summary['verified']} verified, "
             f"{summary['falsified']} falsified, {summary['unknown'] + summary['timeout']} undecided, "
             f"{summary['error']} error(s); {summary['regressions']} regression(s). "
             f"{report['seconds']:.1f} s, seed {report['seed']}.", ""]  # fmt: skip
    if report["failures"]:
        lines += ["**Why it failed:**", ""] + [f"- {_cell(line)}" for line in report["failures"]] + [""]
    lines += ["| | check | verdict | result |", "| --- | --- | --- | --- |"]
    for check in report["checks"]:
        lines.append(f"| {ICONS.get(check['status'], '')} | `{_cell(check['id'])}` | {check['verdict']} | "
                     f"{_cell(_result(check))} |")
    lines.append("")
    baseline = report.get("baseline")
    if baseline:
        lines.append(f"**Baseline** `{baseline['path']}`: {baseline['compared']} check(s) compared, "
                     f"{len(baseline['regressions'])} regression(s).")
        lines += [""] + [f"- ❌ {_cell(r['message'])}" for r in baseline["regressions"]]
        if baseline["not_comparable"]:
            lines.append(f"- not comparable (definition changed): {', '.join(baseline['not_comparable'])}")
        lines.append("")
    if report["warnings"]:
        lines += ["**Warnings:**", ""] + [f"- ⚠️ {_cell(line)}" for line in report["warnings"]] + [""]
    models = ", ".join(f"`{m['name']}` ({m['sha256'][:12]})" for m in report["models"])
    lines.append(f"Models: {models}. Falsified means a counterexample replayed through onnxruntime; "
                 "verified means a proof.")
    return "\n".join(lines) + "\n"


def write(report: dict, path: str | Path) -> Path:
    return output.write_text(path, to_markdown(report))


def append_step_summary(text: str, environ: dict | None = None) -> Path | None:
    """Append to the file $GITHUB_STEP_SUMMARY names (GitHub Actions), when it is set."""
    target = (environ if environ is not None else os.environ).get("GITHUB_STEP_SUMMARY")
    if not target:
        return None
    path = Path(target)
    try:
        with path.open("a", encoding="utf-8") as handle:  # appended to, as GitHub expects: not replaced
            handle.write(text + "\n")
    except OSError as error:
        raise OutputError(f"cannot append the step summary: {error.strerror or error}", where=str(path)) from None
    return path
