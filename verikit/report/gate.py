"""The gate's JSON report, schema "verikit-gate/1" (documented in docs/policy.md); also the baseline format."""

from __future__ import annotations

import datetime as _dt
import json
from pathlib import Path

from typing import TYPE_CHECKING

from verikit.core import output
from verikit.report.json import versions

if TYPE_CHECKING:  # renderers only read the result; they do not depend on the gate
    from verikit.apps.gate.run import GateResult

SCHEMA = "verikit-gate/1"

VERDICTS = ("verified", "falsified", "unknown", "timeout", "error")


def _check(check) -> dict:
    return {
        "id": check.id, "property": check.property, "kind": check.kind, "model": check.model,
        "model_sha256": check.model_sha256, "definition_sha256": check.definition_sha256,
        "verdict": check.verdict, "status": check.status, "message": check.message,
        "seconds": round(check.seconds, 6), "metrics": check.metrics, "spec": check.spec,
        "counterexample": check.counterexample,
    }  # fmt: skip


def _baseline(result: GateResult) -> dict | None:
    comparison = result.comparison
    if comparison is None:
        return None
    return {
        "path": comparison.path, "compared": comparison.compared,
        "regressions": [{"id": r.id, "kind": r.kind, "message": r.message, "before": r.before, "after": r.after}
                        for r in comparison.regressions],
        "not_comparable": comparison.not_comparable, "missing": comparison.missing, "new": comparison.new,
    }  # fmt: skip


def to_dict(result: GateResult) -> dict:
    """The report as JSON-ready data."""
    policy = result.policy
    counts = {verdict: result.count(verdict) for verdict in VERDICTS}
    regressions = len(result.comparison.regressions) if result.comparison else 0
    return {
        "schema": SCHEMA,
        "passed": result.passed,
        "exit_code": result.exit_code,
        "policy": {"path": str(policy.path), "sha256": policy.sha256},
        "seed": policy.seed,
        "thresholds": {"unknown": policy.thresholds.unknown, "max_falsified": policy.thresholds.max_falsified,
                       "max_certified_drop": policy.baseline.max_certified_drop if policy.baseline else 0.0,
                       "fail_on_regression": policy.baseline.fail_on_regression if policy.baseline else True},
        "summary": {"checks": len(result.checks), **counts, "regressions": regressions},
        "failures": result.failures,
        "warnings": result.warnings,
        "models": result.models,
        "datasets": result.datasets,
        "checks": [_check(check) for check in result.checks],
        "baseline": _baseline(result),
        "seconds": round(result.seconds, 6),
        "versions": versions(),
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }


def write(report: dict, path: str | Path) -> Path:
    return output.write_text(path, json.dumps(report, indent=2, default=str) + "\n")
