"""Compare a gate run with a baseline gate report (verikit-gate/1) and list the regressions.

Checks are matched by id ("<property>/<model>[/<detail>]"), and compared only when their definition
hashes agree (same spec bytes, or same dataset bytes, ε, norm, normalisation and threshold): a changed
property is listed as not comparable, never as a regression. Regressions:

- newly-falsified: falsified now, not in the baseline;
- certified-drop: certified robust accuracy fell by more than `max_certified_drop` (absolute);
- lost-proof: verified in the baseline, unknown or timeout now.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from verikit.core import limits
from verikit.core.errors import DataError
from verikit.apps.gate.checks import CheckResult

from verikit.report.gate import SCHEMA  # the baseline is a gate report


@dataclass(frozen=True)
class Regression:
    id: str
    kind: str
    message: str
    before: object
    after: object


@dataclass
class Comparison:
    path: str
    compared: int = 0
    regressions: list[Regression] = field(default_factory=list)
    not_comparable: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)  # in the baseline, not run now
    new: list[str] = field(default_factory=list)  # run now, not in the baseline


def read_baseline(path: str | Path) -> dict:
    """A previous gate report; DataError when it is missing or not a verikit-gate/1 report."""
    path = Path(path)
    if not path.exists() and not path.is_symlink():
        raise DataError("baseline report not found", where=str(path))
    report = limits.load_json(limits.read_text(path, "report", DataError), "baseline report", DataError, str(path),
                              finite=False)  # a gate report may hold NaN
    if not isinstance(report, dict) or report.get("schema") != SCHEMA:
        found = report.get("schema") if isinstance(report, dict) else type(report).__name__
        raise DataError(f"not a verikit gate report (schema {found!r}, expected {SCHEMA!r})", where=str(path))
    if not isinstance(report.get("checks"), list):
        raise DataError("the baseline report has no 'checks' array", where=str(path))
    for number, entry in enumerate(report["checks"], start=1):
        problem = _check_problem(entry)
        if problem:
            raise DataError(f"checks[{number}] is not a gate check record: {problem}", where=str(path))
    return report


def _check_problem(entry) -> str:
    """Why a baseline check entry cannot be compared with (empty when it can)."""
    if not isinstance(entry, dict):
        return f"expected an object, got {type(entry).__name__}"
    for key in ("id", "verdict"):
        if not isinstance(entry.get(key), str) or not entry[key]:
            return f"'{key}' must be a non-empty string"
    if not isinstance(entry.get("definition_sha256"), str):
        return "'definition_sha256' must be a string"
    if entry.get("metrics") is not None and not isinstance(entry["metrics"], dict):
        return "'metrics' must be an object"
    return ""


def compare(checks: list[CheckResult], baseline: dict, path: str, max_certified_drop: float) -> Comparison:
    """Regressions of `checks` against the `baseline` report's checks."""
    before = {entry.get("id"): entry for entry in baseline["checks"] if isinstance(entry, dict)}
    comparison = Comparison(path)
    now_ids = {check.id for check in checks}
    comparison.missing = sorted(i for i in before if i not in now_ids)
    for check in checks:
        old = before.get(check.id)
        if old is None:
            comparison.new.append(check.id)
            continue
        if old.get("definition_sha256") != check.definition_sha256:
            comparison.not_comparable.append(check.id)
            continue
        comparison.compared += 1
        comparison.regressions.extend(_regressions(check, old, max_certified_drop))
    return comparison


def _regressions(check: CheckResult, old: dict, max_drop: float) -> list[Regression]:
    found = []
    was = old.get("verdict")
    if check.verdict == "falsified" and was != "falsified":
        found.append(Regression(check.id, "newly-falsified", f"{check.id}: falsified now, {was} in the baseline",
                                was, check.verdict))
    elif was == "verified" and check.verdict in ("unknown", "timeout"):
        found.append(Regression(check.id, "lost-proof", f"{check.id}: verified in the baseline, {check.verdict} now",
                                was, check.verdict))
    before = (old.get("metrics") or {}).get("certified_robust_accuracy")
    after = check.metrics.get("certified_robust_accuracy")
    if isinstance(before, (int, float)) and isinstance(after, (int, float)) and before - after > max_drop + 1e-12:
        found.append(Regression(
            check.id, "certified-drop",
            f"{check.id}: certified robust accuracy {before:.2%} → {after:.2%} "
            f"(down {before - after:.2%}, tolerance {max_drop:.2%})", before, after))
    return found
