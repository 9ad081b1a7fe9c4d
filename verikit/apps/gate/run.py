"""Run a gate policy: every property on its models, a pass/fail decision, and the baseline comparison.

The gate fails when: more checks are falsified than `thresholds.max_falsified`; a check ends in error;
`thresholds.unknown = "fail"` and a check is unknown or timed out; or `baseline.fail_on_regression` and
the baseline comparison finds a regression (verikit.apps.gate.baseline).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from verikit.apps.gate import checks as run_checks
from verikit.apps.gate.baseline import Comparison, compare, read_baseline
from verikit.apps.gate.checks import CheckResult
from verikit.apps.gate.policy import LipschitzLimit, Manipulation, Policy, Robustness, SpecFiles

UNDECIDED = ("unknown", "timeout")


@dataclass
class GateResult:
    policy: Policy
    checks: list[CheckResult]
    passed: bool
    failures: list[str]
    warnings: list[str]
    seconds: float
    models: list[dict]
    datasets: list[dict]
    comparison: Comparison | None = None
    audits: dict = field(default_factory=dict)  # "<property>/<model>" → AuditResult

    @property
    def exit_code(self) -> int:
        return 0 if self.passed else 1

    def count(self, verdict: str) -> int:
        return sum(1 for check in self.checks if check.verdict == verdict)


def _load(policy: Policy, progress: Callable[[str], None] | None):
    from verikit.apps.data import load_dataset
    from verikit.onnx.load import load_network

    networks, datasets = {}, {}
    for entry in policy.models:
        if progress:
            progress(f"loading model {entry.name} ({entry.path})")
        networks[entry.name] = load_network(entry.path)
    for entry in policy.datasets:
        datasets[entry.name] = load_dataset(entry.path, entry.labels).head(entry.limit)
    return networks, datasets


def decide(checks: list[CheckResult], policy: Policy, comparison: Comparison | None) -> tuple[bool, list, list]:
    """Set each check's status (pass / fail / warn / ignored); the gate's verdict, failures and warnings."""
    failures: list[str] = []
    warnings: list[str] = []
    thresholds = policy.thresholds
    falsified = [c for c in checks if c.verdict == "falsified"]
    undecided = [c for c in checks if c.verdict in UNDECIDED]
    errors = [c for c in checks if c.verdict == "error"]
    too_many = len(falsified) > thresholds.max_falsified
    for check in checks:
        if check.verdict == "verified":
            check.status = "pass"
        elif check.verdict == "falsified":
            check.status = "fail" if too_many else "warn"
        elif check.verdict in UNDECIDED:
            check.status = {"fail": "fail", "warn": "warn", "ignore": "ignored"}[thresholds.unknown]
        else:
            check.status = "fail"
    if too_many:
        failures.append(f"{len(falsified)} check(s) falsified, at most {thresholds.max_falsified} allowed: "
                        + ", ".join(c.id for c in falsified))
    elif falsified:
        warnings.append(f"{len(falsified)} check(s) falsified (allowed by thresholds.max_falsified = "
                        f"{thresholds.max_falsified}): " + ", ".join(c.id for c in falsified))
    failures.extend(f"{c.id}: error: {c.message}" for c in errors)
    if undecided and thresholds.unknown != "ignore":
        line = (f"{len(undecided)} check(s) undecided (unknown or timeout; thresholds.unknown = "
                f"'{thresholds.unknown}'): " + ", ".join(c.id for c in undecided))
        (failures if thresholds.unknown == "fail" else warnings).append(line)
    if comparison is not None and comparison.compared == 0 and policy.baseline and policy.baseline.required:
        failures.append(f"the required baseline {comparison.path} has no check comparable with this run")
    if comparison is not None and comparison.regressions:
        line = f"{len(comparison.regressions)} regression(s) against the baseline {comparison.path}"
        fail = policy.baseline is None or policy.baseline.fail_on_regression
        (failures if fail else warnings).append(line)
    return not failures, failures, warnings


def run_gate(policy: Policy, *, baseline: Path | None = None, use_baseline: bool = True,
             progress: Callable[[str], None] | None = None, executor=None, threads: int | None = None) -> GateResult:
    """Check every property of `policy`; `baseline` overrides the policy's baseline path.

    With an `executor` (verikit.apps.executors), each (property, model) runs as one task there.
    Raises ModelError / DataError / SpecError / PolicyError (exit 3) for inputs that cannot be read.
    """
    started = time.monotonic()
    warnings_before: list[str] = []
    previous = None  # the baseline is read first: a bad one fails the gate before minutes of checks
    path = baseline if baseline is not None else (policy.baseline.path if policy.baseline else None)
    if use_baseline and path is not None:
        if Path(path).is_file() or baseline is not None or (policy.baseline and policy.baseline.required):
            previous = read_baseline(path)
        else:
            warnings_before.append(f"baseline {path} not found: nothing compared (first run?)")
    networks, datasets = _load(policy, progress)
    results: list[CheckResult] = []
    audits = {}
    if executor is not None:
        from verikit.apps.gate.distributed import run_checks_on

        results, audits = run_checks_on(executor, policy, datasets, networks, threads, progress)
    for prop in policy.properties if executor is None else ():
        for model_name in prop.models:
            if progress:
                progress(f"checking {prop.name} ({prop.kind}) on {model_name}")
            network = networks[model_name]
            if isinstance(prop, Robustness):
                entry = policy.dataset(prop.dataset)
                found, audit = run_checks.robustness_checks(prop, model_name, network, datasets[prop.dataset],
                                                            entry.normalization, policy.seed)
                audits[f"{prop.name}/{model_name}"] = audit
                results.extend(found)
            elif isinstance(prop, Manipulation):
                entry = policy.dataset(prop.dataset)
                results.extend(run_checks.perturbation_checks(prop, model_name, network, datasets[prop.dataset],
                                                              entry.normalization, policy.seed))
            elif isinstance(prop, SpecFiles):
                results.extend(run_checks.spec_checks(prop, model_name, network, policy.seed))
            elif isinstance(prop, LipschitzLimit):
                results.append(run_checks.lipschitz_check(prop, model_name, network, policy.seed))
            else:
                results.append(run_checks.output_range_check(prop, model_name, network, policy.seed))

    comparison = None
    if previous is not None:
        drop = policy.baseline.max_certified_drop if policy.baseline else 0.0
        comparison = compare(results, previous, str(path), drop)
    passed, failures, warnings = decide(results, policy, comparison)
    models = [{"name": m.name, "path": str(m.path), "sha256": networks[m.name].sha256,
               "inputs": networks[m.name].n_inputs, "outputs": networks[m.name].n_outputs} for m in policy.models]
    data = [{"name": d.name, "path": str(d.path), "sha256": datasets[d.name].sha256,
             "samples": len(datasets[d.name]), "normalization": d.normalization.as_dict()} for d in policy.datasets]
    return GateResult(policy, results, passed, failures, warnings_before + warnings, time.monotonic() - started,
                      models, data, comparison, audits)
