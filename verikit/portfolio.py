"""The portfolio: attack, then bounds of rising cost, then complete engines, all under one budget."""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from typing import Callable

from verikit.core.errors import EngineLimitation, ModelError
from verikit.core.network import Network
from verikit.core.result import Budget, CaseResult, Falsified, Outcome, Proven, Result, Unknown, Verdict
from verikit.core.property import Case, Property
from verikit.witness.replay import STRICT, Tolerances

ENGINES = ("attack", "bounds", "bab", "smt")
METHODS = ("ibp", "crown", "alpha-crown")


@dataclass(frozen=True)
class Options:
    """Everything a verification run depends on; recorded in the report."""

    timeout: float = 60.0
    engines: tuple[str, ...] = ("attack", "bounds", "bab", "smt")
    methods: tuple[str, ...] = METHODS
    seed: int = 0
    device: str = "cpu"
    tolerances: Tolerances = STRICT
    attack_share: float = 0.1  # fraction of the budget the first attack may use
    attack_rounds: int = 2  # rounds of PGD restarts before bounds get their turn (unlimited if attack runs alone)
    smt_max_relus: int = 40  # SMT joins the automatic portfolio only for networks this small (z3 is exact, slow)

    def as_dict(self) -> dict:
        return {
            "timeout_s": self.timeout,
            "engines": list(self.engines),
            "methods": list(self.methods),
            "seed": self.seed,
            "device": self.device,
            "tolerances": {"box": self.tolerances.box, "formula": self.tolerances.formula},
        }


@dataclass(frozen=True)
class Stage:
    """One engine run on every open case: `run(case, budget) -> Outcome`."""

    engine: str
    method: str
    run: Callable[[Case, Budget], Outcome]
    share: float = 1.0  # fraction of the remaining budget one case may use
    per_case: bool = False  # split the remaining budget evenly over the open cases


@dataclass
class _Progress:
    open_cases: dict[int, Case]
    results: dict[int, CaseResult] = field(default_factory=dict)
    attempts: dict[int, list[dict]] = field(default_factory=dict)


def _attack_stage(network: Network, options: Options) -> Stage:
    from verikit.engines.attack import engine as attack

    alone = options.engines == ("attack",)
    settings = attack.AttackSettings() if alone else attack.AttackSettings(rounds=options.attack_rounds)

    def run(case: Case, budget: Budget) -> Outcome:
        return attack.run(network, case, budget, seed=options.seed, settings=settings,
                          tolerances=options.tolerances)

    return Stage("attack", "pgd", run, share=1.0 if alone else options.attack_share)


def _bounds_stages(network: Network, options: Options) -> list[Stage]:
    from verikit.engines.lirpa import engine as bounds

    prepared: dict[str, object] = {}

    def bounded():
        """The prepared network, built once; a failure to build is remembered and raised again."""
        if "model" not in prepared:
            try:
                prepared["model"] = bounds.prepare(network, device=options.device)
            except EngineLimitation as limitation:
                prepared["model"] = limitation
        if isinstance(prepared["model"], EngineLimitation):
            raise prepared["model"]
        return prepared["model"]

    def make(method: str) -> Stage:
        def run(case: Case, budget: Budget) -> Outcome:
            return bounds.run(bounded(), case, budget, method=method)

        return Stage("bounds", method, run)

    return [make(method) for method in options.methods]


def _complete_stages(network: Network, options: Options) -> list[Stage]:
    """BaB and SMT stages; the piecewise-linear form is built only when a stage first needs it."""
    from verikit.core.pwl import NotPiecewiseLinear

    cache: dict[str, object] = {}
    checked: dict[int, str | None] = {}  # id(case) -> None when the pwl form matched onnxruntime on its box

    def piecewise_linear(case: Case):
        """The piecewise-linear form, or the reason it cannot be used, checked against onnxruntime on
        the case's box (it is a second translation; a wrong op there would be proven about silently)."""
        from verikit.onnx.pwl import check_piecewise_linear, to_piecewise_linear

        if "pwl" not in cache:
            try:
                cache["pwl"] = to_piecewise_linear(network)
            except NotPiecewiseLinear as reason:
                cache["pwl"] = f"complete engines need a piecewise-linear network: {reason}"
        pwl = cache["pwl"]
        if isinstance(pwl, str):
            return pwl
        if id(case) not in checked:
            try:
                check_piecewise_linear(network, pwl, case.box, seed=options.seed)
                checked[id(case)] = None
            except ModelError as error:
                checked[id(case)] = str(error)
        return checked[id(case)] or pwl

    def bab_run(case: Case, budget: Budget) -> Outcome:
        from verikit.engines.bab import engine as bab

        pwl = piecewise_linear(case)
        if isinstance(pwl, str):
            return Unknown(pwl)
        if not pwl.is_relu_mlp:
            return Unknown("branch-and-bound handles affine/ReLU chains only (this network has max-pooling)")
        return bab.run(pwl, network, case, budget, seed=options.seed, tolerances=options.tolerances)

    def smt_run(case: Case, budget: Budget) -> Outcome:
        from verikit.engines.smt import engine as smt

        pwl = piecewise_linear(case)
        if isinstance(pwl, str):
            return Unknown(pwl)
        relus = sum(layer.out_features for layer in pwl.layers[:-1] if hasattr(layer, "out_features"))
        if options.engines != ("smt",) and relus > options.smt_max_relus:
            return Unknown(f"SMT skipped: {relus} ReLUs is above the automatic limit of {options.smt_max_relus}")
        return smt.run(pwl, network, case, budget, seed=options.seed, tolerances=options.tolerances)

    stages = []
    if "bab" in options.engines:
        stages.append(Stage("bab", "crown", bab_run, per_case=True))
    if "smt" in options.engines:
        stages.append(Stage("smt", "z3", smt_run, per_case=True))
    return stages


def build_stages(network: Network, options: Options) -> list[Stage]:
    """The stages the options ask for, cheapest first."""
    stages: list[Stage] = []
    if "attack" in options.engines:
        stages.append(_attack_stage(network, options))
    if "bounds" in options.engines:
        stages.extend(_bounds_stages(network, options))
    if "bab" in options.engines or "smt" in options.engines:
        stages.extend(_complete_stages(network, options))
    return stages


def _stage_budget(stage: Stage, total: Budget, open_count: int) -> Budget:
    if stage.per_case:
        return total.share(1.0 / max(1, open_count))
    return total.share(stage.share)


def _run_stage(stage: Stage, progress: _Progress, total: Budget) -> Falsified | None:
    for index in sorted(progress.open_cases):
        if total.expired():
            return None
        case = progress.open_cases[index]
        started = time.monotonic()
        try:
            outcome = stage.run(case, _stage_budget(stage, total, len(progress.open_cases)))
        except EngineLimitation as limitation:
            outcome = Unknown(f"{stage.engine}/{stage.method}: {limitation}")
        seconds = time.monotonic() - started
        attempt = {"engine": stage.engine, "method": stage.method, "seconds": round(seconds, 4),
                   "outcome": type(outcome).__name__.lower()}
        if isinstance(outcome, Unknown):
            attempt["reason"] = outcome.reason
            if outcome.bounds:
                attempt["best_lower_bounds"] = [round(b.best, 6) for b in outcome.bounds]
        progress.attempts.setdefault(index, []).append(attempt)
        previous = progress.results.get(index)
        if isinstance(outcome, Unknown) and not outcome.bounds and previous and previous.outcome.bounds:
            outcome = replace(outcome, bounds=previous.outcome.bounds)  # keep the latest bounds computed
        progress.results[index] = CaseResult(index, outcome, stage.engine, stage.method, seconds)
        if isinstance(outcome, Unknown):
            continue
        del progress.open_cases[index]
        if isinstance(outcome, Falsified):
            return outcome
    return None


def verify(network: Network, prop: Property, options: Options = Options()) -> Result:
    """Decide `prop` on `network` within `options.timeout` seconds; never raises for engine limits."""
    from verikit.onnx.load import check_translation

    started = time.monotonic()
    total = Budget.seconds(options.timeout)
    result = Result(
        verdict=Verdict.UNKNOWN, model_sha256=network.sha256, spec_sha256=prop.sha256,
        model_path=network.source, spec_path=prop.source, seconds=0.0, seed=options.seed,
        settings=options.as_dict(), spec_notes=tuple(prop.notes),
    )
    try:
        for case in prop.cases:
            check_translation(network, case.box, seed=options.seed)
    except ModelError as error:
        return replace(result, verdict=Verdict.ERROR, reason=str(error), seconds=time.monotonic() - started)

    progress = _Progress(open_cases=dict(enumerate(prop.cases)))
    for stage in build_stages(network, options):
        if not progress.open_cases or total.expired():
            break
        if _run_stage(stage, progress, total) is not None:
            break

    cases = [progress.results.get(i) or CaseResult(i, Unknown("no engine ran on this case"), "", "", 0.0)
             for i in range(len(prop.cases))]
    for case_result in cases:
        case_result.attempts = progress.attempts.get(case_result.index, [])
    return replace(result, cases=cases, seconds=time.monotonic() - started, **_summarise(cases, total))


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


def verify_files(model_path: str, spec_path: str, options: Options = Options(),
                 transform: Callable[[Property], Property] | None = None) -> tuple[Network, Result]:
    """Load an ONNX model and a spec file (raising ModelError/SpecError on bad input) and verify.

    A well-formed VNN-LIB 2.0 query verikit cannot answer gives an `unknown` Result with the reason.
    `transform`, when given, rewrites the Property before it is verified.
    """
    from verikit.onnx.load import load_network
    from verikit.spec.load import load_spec
    from verikit.spec.vnnlib import read_spec_text
    from verikit.spec.vnnlib2 import UnsupportedQuery

    network = load_network(model_path)
    try:
        prop = load_spec(spec_path, n_inputs=network.n_inputs, n_outputs=network.n_outputs, network=network)
    except UnsupportedQuery as error:
        return network, Result(
            verdict=Verdict.UNKNOWN, model_sha256=network.sha256, spec_sha256=read_spec_text(spec_path)[1],
            model_path=network.source, spec_path=str(spec_path), seconds=0.0, reason=str(error),
            seed=options.seed, settings=options.as_dict())
    if transform is not None:
        prop = transform(prop)
    return network, verify(network, prop, options)
