"""Run one policy property on one model → CheckResults (one per spec file, ε, or range).

Verdicts follow verikit's rules: `verified` only from proofs, `falsified` only with evidence replayed
through onnxruntime. For dataset robustness at ε with threshold t:

- verified: certified robust accuracy >= t (the true robust accuracy is at least that);
- falsified: empirical robust accuracy < t (the true one is at most that: replayed attacks prove it),
  or clean accuracy below `min_clean_accuracy`;
- unknown (timeout when the budget ran out): certified < t <= empirical.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from verikit.apps.data import Dataset, Normalization
from verikit.core.errors import PolicyError
from verikit.apps.gate.policy import LipschitzLimit, Manipulation, OutputRange, Robustness, SpecFiles
from verikit.core.network import Network
from verikit.core.result import Result
from verikit.core.property import Box, Case, Conjunction, Property

if TYPE_CHECKING:
    from verikit.apps.audit import AuditResult


@dataclass
class CheckResult:
    """One line of the gate: `id` is "<property>/<model>[/<detail>]"; `status` is set by the gate's decision."""

    id: str
    property: str
    kind: str
    model: str
    model_sha256: str
    definition_sha256: str
    verdict: str
    message: str
    seconds: float
    metrics: dict = field(default_factory=dict)
    spec: dict | None = None
    counterexample: dict | None = None
    status: str = ""


def definition_hash(*parts: object) -> str:
    """sha256 of a property's definition (and its data's hashes): equal hashes = comparable results."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


def robustness_checks(prop: Robustness, model_name: str, network: Network, dataset: Dataset,
                      normalization: Normalization, seed: int) -> tuple[list[CheckResult], AuditResult]:
    """Audit the dataset once and give one check per ε; also returns the AuditResult."""
    from verikit.apps.audit import AuditSettings, audit
    from verikit.engines.attack.pgd import PGDSettings

    settings = AuditSettings(eps=prop.eps, norm=prop.norm, method=prop.method, normalization=normalization,
                             seed=seed, attack=PGDSettings(restarts=prop.restarts, steps=prop.steps),
                             timeout=prop.timeout, top_k=prop.top_k)
    result = audit(network, dataset, settings)
    checks = []
    for outcome, minimum in zip(result.per_eps, prop.min_certified):
        cert, emp, clean = (outcome.certified_robust_accuracy, outcome.empirical_robust_accuracy,
                            outcome.clean_accuracy)
        metrics = {"eps": outcome.eps, "norm": prop.norm, "method": prop.method, "samples": len(dataset),
                   "clean_accuracy": clean, "empirical_robust_accuracy": emp, "certified_robust_accuracy": cert,
                   "min_certified_accuracy": minimum, "min_clean_accuracy": prop.min_clean,
                   "falsified_samples": int(outcome.broken.sum()), "top_k": prop.top_k}
        found = f"certified {cert:.2%} ≤ robust ≤ {emp:.2%} (empirical), clean {clean:.2%}"
        if prop.min_clean is not None and clean < prop.min_clean:
            verdict, message = "falsified", f"clean accuracy {clean:.2%} < {prop.min_clean:.2%}; {found}"
        elif cert >= minimum:
            verdict, message = "verified", f"certified {cert:.2%} ≥ {minimum:.2%} required; {found}"
        elif emp < minimum:
            verdict = "falsified"
            message = (f"empirical robust accuracy {emp:.2%} < {minimum:.2%} required (replayed attacks "
                       f"break {int(outcome.broken.sum())} samples); {found}")
        else:
            verdict = "timeout" if outcome.timed_out else "unknown"
            message = f"certified {cert:.2%} < {minimum:.2%} required ≤ empirical {emp:.2%}: undecided"
        definition = definition_hash("robustness", dataset.sha256, outcome.eps, prop.norm,
                                     normalization.as_dict(), len(dataset), minimum, prop.min_clean,
                                     *(() if prop.top_k == 1 else (("top_k", prop.top_k),)))
        top = "" if prop.top_k == 1 else f"/top-{prop.top_k}"
        checks.append(CheckResult(f"{prop.name}/{model_name}/eps={outcome.eps:g}{top}", prop.name, prop.kind,
                                  model_name, network.sha256, definition, verdict, message,
                                  sum(outcome.seconds.values()), metrics))
    return checks, result


def perturbation_checks(prop: Manipulation, model_name: str, network: Network, dataset: Dataset,
                        normalization: Normalization, seed: int) -> list[CheckResult]:
    """Audit the dataset under every manipulation of the property once; one check per manipulation, decided
    as robustness checks are (certified >= t verified, empirical < t falsified, else unknown)."""
    from dataclasses import replace as with_fields

    from verikit.apps.perturbation_audit import PerturbationAuditSettings, parse_perturbations, perturbation_audit

    if normalization.clip_min is None and normalization.clip_max is None:
        normalization = with_fields(normalization, clip_min=0.0, clip_max=1.0)
    settings = PerturbationAuditSettings(parse_perturbations(prop.perturbations), normalization, prop.image_shape,
                                         sample_timeout=prop.sample_timeout, timeout=prop.timeout, seed=seed)
    report = perturbation_audit(network, dataset, settings)
    checks = []
    for row, minimum in zip(report["results"], prop.min_certified):
        cert, emp, clean = row["certified_accuracy"], row["empirical_accuracy"], row["clean_accuracy"]
        metrics = {"perturbation": row["perturbation"], "samples": len(dataset), "clean_accuracy": clean,
                   "empirical_robust_accuracy": emp, "certified_robust_accuracy": cert,
                   "min_certified_accuracy": minimum,
                   "min_clean_accuracy": prop.min_clean, "falsified_samples": row["counts"]["falsified"]}
        found = f"certified {cert:.2%} ≤ accuracy under {row['perturbation']} ≤ {emp:.2%} (empirical)"
        if prop.min_clean is not None and clean < prop.min_clean:
            verdict, message = "falsified", f"clean accuracy {clean:.2%} < {prop.min_clean:.2%}; {found}"
        elif cert >= minimum:
            verdict, message = "verified", f"certified {cert:.2%} ≥ {minimum:.2%} required; {found}"
        elif emp < minimum:
            verdict = "falsified"
            message = (f"empirical accuracy {emp:.2%} < {minimum:.2%} required (replayed manipulated images "
                       f"break {row['counts']['falsified']} samples); {found}")
        else:
            verdict = "timeout" if row["counts"]["timeout"] else "unknown"
            message = f"certified {cert:.2%} < {minimum:.2%} required ≤ empirical {emp:.2%}: undecided"
        definition = definition_hash("perturbation", dataset.sha256, row["perturbation"], normalization.as_dict(),
                                     len(dataset), minimum, prop.min_clean)
        checks.append(CheckResult(f"{prop.name}/{model_name}/{row['perturbation']}", prop.name, prop.kind,
                                  model_name, network.sha256, definition, verdict, message, row["seconds"],
                                  metrics))
    return checks


def _options(prop: SpecFiles | OutputRange, seed: int):
    from verikit.portfolio.options import Options

    return Options(timeout=prop.timeout, engines=prop.engines, methods=prop.methods,
                   seed=seed).with_settings(prop.settings)


def _from_result(check_id: str, prop: SpecFiles | OutputRange, model_name: str, network: Network,
                 spec_info: dict | None, definition: str, result: Result) -> CheckResult:
    from verikit.report import json as json_report

    return CheckResult(check_id, prop.name, prop.kind, model_name, network.sha256, definition,
                       result.verdict.value, result.reason or result.verdict.value, result.seconds,
                       {"engine": result.engine, "method": result.method}, spec_info,
                       json_report.counterexample_to_dict(result))


def spec_checks(prop: SpecFiles, model_name: str, network: Network, seed: int) -> list[CheckResult]:
    """Verify every spec file of the property on the model."""
    from verikit.spec.load import load_spec
    from verikit.run import run_loaded

    checks = []
    for path in prop.specs:
        spec = load_spec(path, n_inputs=network.n_inputs, n_outputs=network.n_outputs,
                         model_name=network.source or model_name)
        result = run_loaded(network, spec, _options(prop, seed))
        info = {"path": str(path), "sha256": spec.sha256}
        checks.append(_from_result(f"{prop.name}/{model_name}/{path.name}", prop, model_name, network, info,
                                   definition_hash("vnnlib", spec.sha256), result))
    return checks


def _broadcast(values: tuple[float, ...], n: int, what: str, prop: OutputRange) -> np.ndarray:
    if len(values) not in (1, n):
        raise PolicyError(f"property {prop.name!r}: {what} has {len(values)} values but the model has {n} inputs")
    return np.full(n, values[0]) if len(values) == 1 else np.asarray(values, dtype=np.float64)


def _range_violations(prop: OutputRange, n_outputs: int) -> list[tuple[int, str]]:
    """(output, "max" | "min") per disjunct of the output-range property, in order."""
    outputs = prop.outputs if prop.outputs is not None else tuple(range(n_outputs))
    if max(outputs) >= n_outputs:
        raise PolicyError(f"property {prop.name!r}: output {max(outputs)} does not exist (the model has {n_outputs})")
    sides = [side for side, bound in (("max", prop.max), ("min", prop.min)) if bound is not None]
    return [(k, side) for k in outputs for side in sides]


def output_range_property(prop: OutputRange, network: Network) -> Property:
    """Violated iff some input in the box gives y[k] >= max or y[k] <= min for some listed output k."""
    lower = _broadcast(prop.input_lower, network.n_inputs, "input_lower", prop)
    upper = _broadcast(prop.input_upper, network.n_inputs, "input_upper", prop)
    if np.any(lower > upper):
        raise PolicyError(f"property {prop.name!r}: input_lower exceeds input_upper")
    disjuncts = []
    for k, side in _range_violations(prop, network.n_outputs):
        row = np.zeros((1, network.n_outputs))
        row[0, k] = 1.0
        if side == "max":
            disjuncts.append(Conjunction(-row, np.array([-prop.max])))  # y[k] >= max
        else:
            disjuncts.append(Conjunction(row, np.array([prop.min])))  # y[k] <= min
    outputs = prop.outputs if prop.outputs is not None else tuple(range(network.n_outputs))
    definition = definition_hash("output-range", lower.tolist(), upper.tolist(), outputs, prop.min, prop.max)
    return Property((Case(Box(lower, upper), tuple(disjuncts)),), network.n_inputs, network.n_outputs,
                    source=f"policy property {prop.name}", sha256=definition)


def output_range_check(prop: OutputRange, model_name: str, network: Network, seed: int) -> CheckResult:
    from verikit.run import run_loaded

    spec = output_range_property(prop, network)
    result = run_loaded(network, spec, _options(prop, seed))
    check = _from_result(f"{prop.name}/{model_name}", prop, model_name, network, None, spec.sha256, result)
    witness = result.counterexample
    if witness is not None:
        k, side = _range_violations(prop, network.n_outputs)[witness.disjunct]
        relation = "≥" if side == "max" else "≤"
        check.message = (f"y[{k}] = {float(witness.y[k]):.6g} {relation} {side} {getattr(prop, side):g} at an input "
                         "in the box (replayed through onnxruntime)")
    return check


def lipschitz_check(prop: LipschitzLimit, model_name: str, network: Network, seed: int) -> CheckResult:
    """verified when the proven upper bound is <= max; falsified when a pair replayed through onnxruntime
    shows a larger ratio; unknown in between (or when the model is not a chain the methods read)."""
    import time

    from verikit.lipschitz import NotLipschitzReadable, lipschitz_bound, read_lipnet

    started = time.monotonic()
    definition = definition_hash("lipschitz", prop.max, prop.norm, prop.method, prop.output_pair)
    metrics = {"max": prop.max, "norm": prop.norm, "method": prop.method}
    try:
        net = read_lipnet(network.onnx_bytes)
    except NotLipschitzReadable as reason:
        return CheckResult(f"{prop.name}/{model_name}", prop.name, prop.kind, model_name, network.sha256,
                           definition, "unknown", f"no Lipschitz bound for this network: {reason}",
                           time.monotonic() - started, metrics)
    result = lipschitz_bound(net, norm=prop.norm, method=prop.method, pair=prop.output_pair,
                             deadline=started + prop.timeout, replay=network.replay, seed=seed)
    metrics.update(upper=result.upper, lower=result.lower, naive=result.naive, method_used=result.method_used)
    found = f"{result.lower or 0.0:.6g} <= L <= {result.upper:.6g} ({result.method_used})"
    if result.upper <= prop.max:
        verdict, message = "verified", f"Lipschitz constant proven <= {prop.max:g}: {found}"
    elif result.lower is not None and result.lower > prop.max:
        verdict, message = "falsified", f"a replayed pair of inputs shows L >= {result.lower:.6g} > {prop.max:g}"
    else:
        verdict = "unknown"
        message = f"proven bound {result.upper:.6g} above {prop.max:g}, no pair shows more: {found}"
    if result.notes:
        message += " (" + "; ".join(result.notes) + ")"
    return CheckResult(f"{prop.name}/{model_name}", prop.name, prop.kind, model_name, network.sha256, definition,
                       verdict, message, time.monotonic() - started, metrics)
