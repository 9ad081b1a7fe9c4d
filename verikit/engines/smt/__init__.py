"""Exact SMT (z3) engine. The Engine class lives here, apart from the solver code, so that scheduling
it does not import z3: z3 is loaded only when the engine runs."""

from __future__ import annotations

from dataclasses import dataclass

from verikit.core.property import Case
from verikit.core.result import Budget, Outcome
from verikit.core.settings import settings_dict
from verikit.engines.smt.settings import SmtSettings


@dataclass(frozen=True)
class SmtEngine:
    """z3 on the exact piecewise-linear form behind the Engine protocol."""

    settings: SmtSettings = SmtSettings()
    max_relus: int | None = None  # the limit in force (the settings' or the portfolio's automatic one)
    name = "smt"
    method = "z3"

    def supports(self, problem) -> str | None:
        reason = problem.piecewise_linear_reason()
        if reason is not None:
            return reason
        relus = problem.relu_count()
        if self.max_relus is not None and relus > self.max_relus:
            return (f"SMT skipped: {relus} ReLUs is above the limit of {self.max_relus} "
                    "(raise it with --set smt.max_relus=N, or run --engine smt alone)")
        return None

    def run(self, problem, case: Case, budget: Budget) -> Outcome:
        from verikit.engines.smt import engine

        from verikit.core.result import Certificate, Proven
        from verikit.engines.hidden import conflicting

        phases = problem.hidden_phases(case)  # the case's hidden patterns, fixed as phase constraints
        if conflicting(phases):
            return Proven(Certificate("smt", detail={"reason": "the hidden patterns ask a neuron to be both active "
                                                               "and inactive: no input follows them"}))
        return engine.run(problem.checked_piecewise_linear(case), problem.network, case, budget, seed=problem.seed,
                          tolerances=problem.tolerances, relu_encoding=self.settings.relu_encoding,
                          use_crown=self.settings.use_crown, phases=phases or None)

    def settings_dict(self) -> dict:
        return {**settings_dict(self.settings), "max_relus_in_force": self.max_relus}
