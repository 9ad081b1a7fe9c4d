"""What engines return (Outcome) and what users get (Verdict, CaseResult, Result)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from enum import Enum

import numpy as np

from verikit.core.errors import ExitCode


class Verdict(Enum):
    """The user-facing answer; `.vnncomp` is the VNN-COMP word (sat = counterexample exists)."""

    VERIFIED = "verified"
    FALSIFIED = "falsified"
    UNKNOWN = "unknown"
    TIMEOUT = "timeout"
    ERROR = "error"

    @property
    def vnncomp(self) -> str:
        return {"verified": "unsat", "falsified": "sat"}.get(self.value, self.value)

    @property
    def exit_code(self) -> ExitCode:
        return {
            Verdict.VERIFIED: ExitCode.VERIFIED,
            Verdict.FALSIFIED: ExitCode.FALSIFIED,
            Verdict.ERROR: ExitCode.BAD_INPUT,
        }.get(self, ExitCode.UNKNOWN)


@dataclass(frozen=True)
class Budget:
    """A wall-clock deadline on `time.monotonic()`; engines poll it, nobody sleeps on it."""

    deadline: float

    @classmethod
    def seconds(cls, seconds: float) -> "Budget":
        return cls(time.monotonic() + max(0.0, seconds))

    def remaining(self) -> float:
        return max(0.0, self.deadline - time.monotonic())

    def expired(self) -> bool:
        return time.monotonic() >= self.deadline

    def share(self, fraction: float) -> "Budget":
        """A budget ending after `fraction` of the remaining time (never after this one)."""
        return Budget(min(self.deadline, time.monotonic() + self.remaining() * fraction))


class StepTimer:
    """For a loop whose steps cannot be interrupted: called once per step, `out_of_time()` says whether
    another step, as long as the longest so far, would overrun `budget` (never, when budget is None)."""

    def __init__(self, budget: Budget | None):
        self.budget = budget
        self.last: float | None = None
        self.longest = 0.0

    def out_of_time(self) -> bool:
        now = time.monotonic()
        if self.last is not None:
            self.longest = max(self.longest, now - self.last)
        self.last = now
        return self.budget is not None and self.budget.remaining() <= self.longest


@dataclass(frozen=True, eq=False)
class DisjunctBounds:
    """Proven lower bounds of the margins `C @ y - d` of one disjunct, shape (rows,).

    The disjunct is refuted (cannot hold) when some entry is > 0.
    """

    lower: np.ndarray
    method: str

    @property
    def refuted(self) -> bool:
        return bool(np.any(self.lower > 0))

    @property
    def best(self) -> float:
        return float(np.max(self.lower))


#: What a `verified` case's proof covers (the report's per-case `arithmetic`; docs/report-schema.md).
#: No engine proves anything about float32 inference as onnxruntime runs it.
ARITHMETIC = {
    "real": "real arithmetic over the network's weights (float32 values, composed in float64 by the "
            "piecewise-linear translation); every rounding error of the bound computation is bounded and "
            "accounted for",
    "exact-rational": "exact rational arithmetic (z3) over the network's weights (float32 values, composed "
                      "in float64 by the piecewise-linear translation)",
}


@dataclass(frozen=True, eq=False)
class Certificate:
    """Why a case holds: per disjunct, the bounds that refute it (or a complete engine's word).

    `arithmetic` is a key of ARITHMETIC: the model of computation the proof holds in."""

    method: str
    disjuncts: tuple[DisjunctBounds, ...] = ()
    detail: dict = field(default_factory=dict)
    arithmetic: str = "real"


@dataclass(frozen=True, eq=False)
class Counterexample:
    """A replayed witness: x fed to onnxruntime (float32, flat), y what it returned (flat).

    `params` is the theta that names x in a Manipulated region (x was recomputed from it), else None."""

    x: np.ndarray
    y: np.ndarray
    disjunct: int
    box_violation: float
    formula_violation: float
    tolerance: float
    params: np.ndarray | None = None


@dataclass(frozen=True, eq=False)
class Proven:
    certificate: Certificate


@dataclass(frozen=True, eq=False)
class Falsified:
    counterexample: Counterexample


@dataclass(frozen=True, eq=False)
class Unknown:
    reason: str
    bounds: tuple[DisjunctBounds, ...] = ()
    timed_out: bool = False


Outcome = Proven | Falsified | Unknown


@dataclass(eq=False)
class CaseResult:
    """One case's outcome, with which engine and method decided it and how long it took (s)."""

    index: int
    outcome: Outcome
    engine: str
    method: str
    seconds: float
    attempts: list[dict] = field(default_factory=list)
    described: dict = field(default_factory=dict)  # the case's input set and hidden constraints (Case.describe)


@dataclass(eq=False)
class Result:
    """The whole run: a verdict and everything needed to check or reproduce it."""

    verdict: Verdict
    model_sha256: str
    spec_sha256: str
    model_path: str
    spec_path: str
    seconds: float
    cases: list[CaseResult] = field(default_factory=list)
    engine: str = ""
    method: str = ""
    reason: str = ""
    seed: int = 0
    settings: dict = field(default_factory=dict)
    spec_notes: tuple[str, ...] = ()  # what the spec reader noted (strict comparisons, dropped empty terms, ...)
    spec_kind: str = ""  # Property.kind: the question asked ("vnnlib", "robustness", "perturbation", ...)
    spec_details: dict = field(default_factory=dict)  # Property.details: the question in the spec's own terms
    schedule: list[dict] = field(default_factory=list)  # the stages planned, their budgets and seconds spent
    model_info: dict = field(default_factory=dict)  # inputs, outputs, input_shape, op_types of the model read
    error_kind: str = ""  # for verdict ERROR: "bad-input" (exit 3), "usage" (exit 2) or "internal" (a bug, exit 4)

    @property
    def exit_code(self) -> ExitCode:
        """The process exit code this result gives (verikit.core.errors.ExitCode)."""
        if self.verdict is Verdict.ERROR:
            return {"internal": ExitCode.INTERNAL, "usage": ExitCode.USAGE}.get(self.error_kind, ExitCode.BAD_INPUT)
        return self.verdict.exit_code

    @property
    def counterexample(self) -> Counterexample | None:
        for case in self.cases:
            if isinstance(case.outcome, Falsified):
                return case.outcome.counterexample
        return None
