"""The gate's checks as executor tasks: one task per (property, model), files shipped by content.

Each task rebuilds what it needs on its worker: the network from the model's bytes, the dataset
(sent by value: the samples the policy selected), the spec files from their bytes. Check ids and spec
paths in the results are the policy's own, whatever path the worker read the bytes from. A task that
fails (its worker died on every retry, or it ran past its limit) becomes one `error` check: the gate
then fails, as it does for any check that ends in error.
"""

from __future__ import annotations

from dataclasses import replace

from verikit.apps.data import Dataset, Normalization
from verikit.apps.executors import Executor, Failed, FileRef, Task
from verikit.apps.gate import checks as run_checks
from verikit.apps.gate.checks import CheckResult, definition_hash
from verikit.apps.gate.policy import LipschitzLimit, Manipulation, Policy, Robustness, SpecFiles

GATE_GRACE_S = 60.0  # past the sum of a property's own timeouts


def check_task(prop, model_name: str, model: FileRef, dataset: Dataset | None, normalization: Normalization | None,
               specs: tuple[FileRef, ...], seed: int):
    """One property on one model: (checks, AuditResult or None), on whichever machine runs this."""
    from verikit.onnx.load import load_network

    network = load_network(str(model.local_path()))
    if isinstance(prop, Robustness):
        return run_checks.robustness_checks(prop, model_name, network, dataset, normalization, seed)
    if isinstance(prop, Manipulation):
        return run_checks.perturbation_checks(prop, model_name, network, dataset, normalization, seed), None
    if isinstance(prop, SpecFiles):
        local = replace(prop, specs=tuple(spec.local_path() for spec in specs))
        found = run_checks.spec_checks(local, model_name, network, seed)
        for check, original in zip(found, prop.specs):  # name the policy's files, not the worker's copies
            check.spec["path"] = str(original)
        return found, None
    if isinstance(prop, LipschitzLimit):
        return [run_checks.lipschitz_check(prop, model_name, network, seed)], None
    return [run_checks.output_range_check(prop, model_name, network, seed)], None


def _limit(prop) -> float | None:
    if isinstance(prop, Robustness):
        return None if prop.timeout is None else prop.timeout * len(prop.eps) + GATE_GRACE_S
    if isinstance(prop, Manipulation):
        return None if prop.timeout is None else prop.timeout * len(prop.perturbations) + GATE_GRACE_S
    count = len(prop.specs) if isinstance(prop, SpecFiles) else 1
    return prop.timeout * count + GATE_GRACE_S


def run_checks_on(executor: Executor, policy: Policy, datasets: dict[str, Dataset], networks: dict,
                  threads: int | None = None, progress=None) -> tuple[list[CheckResult], dict]:
    """Every (property, model) of `policy` as a task; checks in the policy's order and the audits by key."""
    models = {entry.name: executor.ship(entry.path) for entry in policy.models}
    tasks = []
    for prop in policy.properties:
        specs = tuple(executor.ship(path) for path in prop.specs) if isinstance(prop, SpecFiles) else ()
        on_data = isinstance(prop, (Robustness, Manipulation))
        dataset = datasets[prop.dataset] if on_data else None
        normalization = policy.dataset(prop.dataset).normalization if on_data else None
        for model_name in prop.models:
            tasks.append(Task(f"{prop.name}/{model_name}", check_task,
                              (prop, model_name, models[model_name], dataset, normalization, specs, policy.seed),
                              timeout=_limit(prop), threads=threads))
    order = {task.key: index for index, task in enumerate(tasks)}
    found: dict[str, list[CheckResult]] = {}
    audits = {}
    for task, value in executor.run(tasks):
        if progress:
            progress(f"checked {task.key}")
        if isinstance(value, Failed):
            prop, model_name = task.args[0], task.args[1]
            found[task.key] = [CheckResult(task.key, prop.name, prop.kind, model_name, networks[model_name].sha256,
                                           definition_hash("failed", task.key), "error", value.reason, 0.0)]
            continue
        checks, audit = value
        found[task.key] = checks
        if audit is not None:
            audits[task.key] = audit
    results = [check for key in sorted(found, key=order.get) for check in found[key]]
    return results, {key: audits[key] for key in sorted(audits, key=order.get)}

