"""Run the schedule: every stage on every open case, under one budget, until each case is decided."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import numpy as np

from verikit.core.errors import EngineLimitation, ModelError
from verikit.core.network import Network
from verikit.core.property import Case, Property
from verikit.core.result import Budget, CaseResult, Falsified, Outcome, Proven, Result, Unknown, Verdict
from verikit.engines.problem import Problem
from verikit.engines.regions import region_refusal
from verikit.portfolio.lifting import Lifted, lift
from verikit.portfolio.options import Options
from verikit.portfolio.schedule import Stage, notes, plan


@dataclass
class _Progress:
    open_cases: dict[int, Case]
    results: dict[int, CaseResult] = field(default_factory=dict)
    attempts: dict[int, list[dict]] = field(default_factory=dict)
    stage_seconds: dict[str, float] = field(default_factory=dict)
    lifted: dict[int, Lifted] = field(default_factory=dict)  # manipulated cases decided over their parameters
    stages: list[Stage] = field(default_factory=list)
    report: Callable[[dict], None] | None = None  # receives snapshots of the run so far (core/progress.py)
    started: float = field(default_factory=time.monotonic)

    def snapshot(self, running: tuple[Stage, int] | None = None) -> None:
        """Hand the run so far to `report`: per stage its seconds, the stage and case running now, per case
        its attempts and the best lower bounds reached (the timeout answer is built from the last one)."""
        if self.report is None:
            return
        now = time.monotonic()
        best = {index: _best_bounds(attempts) for index, attempts in self.attempts.items()}
        self.report({
            "elapsed_s": round(now - self.started, 4),
            "schedule": [{**stage.as_dict(), "seconds": round(self.stage_seconds.get(stage.label, 0.0), 4)}
                         for stage in self.stages],
            "running": None if running is None else {"stage": running[0].label, "case": running[1],
                                                      "started_at_s": round(now - self.started, 4)},
            "open_cases": sorted(self.open_cases),
            "attempts": {str(index): attempts for index, attempts in self.attempts.items()},
            "best_lower_bounds": {str(index): bounds for index, bounds in best.items()},
        })


def _best_bounds(attempts: list[dict]) -> list[float]:
    """Per disjunct, the highest lower bound any attempt on the case reached ([] when none reported one)."""
    found = [a["best_lower_bounds"] for a in attempts if a.get("best_lower_bounds")]
    if not found or len({len(bounds) for bounds in found}) != 1:
        return found[-1] if found else []
    return [max(values) for values in zip(*found)]


def _stage_budget(stage: Stage, total: Budget, open_count: int) -> Budget:
    if stage.per_case:
        return total.share(1.0 / max(1, open_count))
    return total.share(stage.share)


def _attempt(stage: Stage, problem: Problem, case: Case, budget: Budget) -> tuple[Outcome, bool]:
    """One engine on one case, and whether it refused the network before running; what it cannot
    handle becomes Unknown with the reason."""
    try:
        reason = region_refusal(stage.engine.name, case) or stage.engine.supports(problem)
        if reason is not None:
            return Unknown(f"{stage.label}: {reason}"), True
        return stage.engine.run(problem, case, budget), False
    except EngineLimitation as limitation:
        return Unknown(f"{stage.label}: {limitation}"), False


def _run_stage(stage: Stage, problem: Problem, progress: _Progress, total: Budget) -> Falsified | None:
    for index in sorted(progress.open_cases):
        if total.expired():
            return None
        case = progress.open_cases[index]
        lifted = progress.lifted.get(index)
        started = time.monotonic()
        budget = _stage_budget(stage, total, len(progress.open_cases))
        progress.snapshot(running=(stage, index))
        if lifted is None:
            outcome, refused = _attempt(stage, problem, case, budget)
        else:
            outcome, refused = _attempt(stage, lifted.problem, lifted.case, budget)
            outcome = lifted.lower(problem.network, outcome, problem.tolerances)
        seconds = time.monotonic() - started
        progress.stage_seconds[stage.label] = progress.stage_seconds.get(stage.label, 0.0) + seconds
        attempt = {"engine": stage.engine.name, "method": stage.engine.method, "seconds": round(seconds, 4),
                   "outcome": type(outcome).__name__.lower()}
        if isinstance(outcome, Unknown):
            attempt["reason"] = outcome.reason
            if outcome.bounds:
                attempt["best_lower_bounds"] = [round(b.best, 6) for b in outcome.bounds]
        progress.attempts.setdefault(index, []).append(attempt)
        progress.snapshot()
        previous = progress.results.get(index)
        if refused and previous is not None and isinstance(previous.outcome, Unknown):
            continue  # an engine that ran says more about the open case than one that refused it
        if isinstance(outcome, Unknown) and not outcome.bounds and previous and previous.outcome.bounds:
            outcome = replace(outcome, bounds=previous.outcome.bounds)  # keep the latest bounds computed
        progress.results[index] = CaseResult(index, outcome, stage.engine.name, stage.engine.method, seconds)
        if isinstance(outcome, Unknown):
            continue
        del progress.open_cases[index]
        if isinstance(outcome, Falsified):
            return outcome
    return None


def verify(network: Network, prop: Property, options: Options = Options(), *,
           budget: Budget | None = None, progress: Callable[[dict], None] | None = None) -> Result:
    """Decide `prop` on `network` within `budget` (default: `options.timeout` seconds from now); engine
    limits become `unknown`.

    The torch translation is checked against onnxruntime on every case's box first (a mismatch is an
    `error` verdict). Internal errors (bugs) propagate; verikit.run turns them into results.
    `progress`, when given, receives a snapshot of the run after every engine attempt and before each.
    """
    started = time.monotonic()
    total = budget or Budget.seconds(options.timeout)
    problem = Problem(network, seed=options.seed, tolerances=options.tolerances, device=options.device)
    progress = _Progress(open_cases=dict(enumerate(prop.cases)), report=progress, started=started)
    translation_error = _lift_and_check(network, prop, problem, progress, options.seed)
    planned = _planning_problem(problem, prop, progress)
    stages = plan(options, planned, prop)
    progress.stages = stages
    progress.snapshot()
    settings = options.as_dict()
    settings["notes"] = notes(options, planned)
    result = Result(
        verdict=Verdict.UNKNOWN, model_sha256=network.sha256, spec_sha256=prop.sha256,
        model_path=network.source, spec_path=prop.source, seconds=0.0, seed=options.seed,
        settings=settings, spec_notes=tuple(prop.notes), spec_kind=prop.kind, spec_details=dict(prop.details),
    )
    if translation_error is not None:
        return replace(result, verdict=Verdict.ERROR, reason=str(translation_error), error_kind="bad-input",
                       seconds=time.monotonic() - started)

    falsified = _decide_members(problem, progress, options, total)
    for stage in stages if not falsified else ():
        if not progress.open_cases or total.expired():
            break
        if _run_stage(stage, problem, progress, total) is not None:
            break

    cases = [progress.results.get(i) or CaseResult(i, Unknown("no engine ran on this case"), "", "", 0.0)
             for i in range(len(prop.cases))]
    for case_result in cases:
        case_result.attempts = progress.attempts.get(case_result.index, [])
        if not prop.cases[case_result.index].is_box:
            case_result.described = prop.cases[case_result.index].describe()
    schedule = [{**stage.as_dict(), "seconds": round(progress.stage_seconds.get(stage.label, 0.0), 4)}
                for stage in stages]
    return replace(result, cases=cases, seconds=time.monotonic() - started, schedule=schedule,
                   **_summarise(cases, total))


def _decide_members(problem: Problem, progress: _Progress, options: Options, total: Budget) -> bool:
    """Many plain box cases (a finite manipulation family) first replayed and bounded together
    (portfolio/members.py); whether that falsified the property."""
    from verikit.portfolio.members import MIN_CASES, decide_members

    if len(progress.open_cases) < MIN_CASES or not {"attack", "bounds"} & set(options.engines):
        return False
    started = time.monotonic()
    decided = decide_members(problem, progress.open_cases, total.share(0.5), bounds="bounds" in options.engines,
                             attack="attack" in options.engines)
    seconds = time.monotonic() - started
    progress.stage_seconds["members (batched)"] = seconds
    falsified = False
    for index, (outcome, engine, method) in decided.items():
        progress.attempts.setdefault(index, []).append({"engine": engine, "method": method, "batched": True,
                                                        "seconds": round(seconds / max(1, len(decided)), 4),
                                                        "outcome": type(outcome).__name__.lower()})
        progress.results[index] = CaseResult(index, outcome, engine, method, seconds / max(1, len(decided)))
        del progress.open_cases[index]
        falsified |= isinstance(outcome, Falsified)
    return falsified


def _lift_and_check(network: Network, prop: Property, problem: Problem, progress: _Progress,
                    seed: int) -> ModelError | None:
    """Lift every manipulated case that has an exact prefix (portfolio/lifting.py), and check the torch
    translation against onnxruntime on every box an engine will search; the first mismatch, or None."""
    from verikit.onnx.load import check_translation

    try:
        for index, case in enumerate(prop.cases):
            lifted = lift(problem, case)
            if lifted is None:  # a one-point box (a finite family's member) has one point to compare on
                one_point = np.array_equal(case.box.lower, case.box.upper)
                check_translation(network, case.box, seed=seed, **({"samples": 0} if one_point else {}))
            else:
                check_translation(lifted.problem.network, lifted.case.box, seed=seed)
                progress.lifted[index] = lifted
    except ModelError as error:
        return error
    return None


def _planning_problem(problem: Problem, prop: Property, progress: _Progress) -> Problem:
    """The problem the schedule is planned for: the lifted one when every case is lifted (a manipulation
    over 1-3 parameters wants the schedule of a few-input network), else the network's own."""
    if prop.cases and len(progress.lifted) == len(prop.cases):
        return progress.lifted[0].problem
    return problem


def _summarise(cases: list[CaseResult], total: Budget) -> dict:
    falsified = [c for c in cases if isinstance(c.outcome, Falsified)]
    if falsified:
        return {"verdict": Verdict.FALSIFIED, "engine": falsified[0].engine, "method": falsified[0].method,
                "reason": f"counterexample in case {falsified[0].index}, replayed through onnxruntime"}
    if all(isinstance(c.outcome, Proven) for c in cases):
        engines = sorted({c.engine for c in cases})
        methods = sorted({c.method for c in cases})
        return {"verdict": Verdict.VERIFIED, "engine": "+".join(engines), "method": "+".join(methods),
                "reason": f"all {len(cases)} case(s) proven ({', '.join(methods)})"}
    open_reasons = [f"case {c.index}: {c.outcome.reason}" for c in cases if isinstance(c.outcome, Unknown)]
    timed_out = total.expired() or any(c.outcome.timed_out for c in cases if isinstance(c.outcome, Unknown))
    return {"verdict": Verdict.TIMEOUT if timed_out else Verdict.UNKNOWN, "engine": "", "method": "",
            "reason": "; ".join(open_reasons[:3])}
