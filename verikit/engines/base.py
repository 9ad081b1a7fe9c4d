"""The one interface every engine implements; the portfolio schedules engines through it alone."""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from verikit.core.property import Case
from verikit.core.result import Budget, Outcome

if TYPE_CHECKING:
    from verikit.engines.problem import Problem


class Engine(Protocol):
    """Decides one case of a problem within a budget; pure (no printing, no global settings).

    `supports` says up front why the engine cannot run on this problem (None when it can); `run` is only
    called when it can, and answers Proven, Falsified (replayed through onnxruntime) or Unknown.
    """

    name: str  # "attack", "bounds", "bab", "smt"
    method: str  # e.g. "pgd", "crown", "z3"

    def supports(self, problem: Problem) -> str | None: ...

    def run(self, problem: Problem, case: Case, budget: Budget) -> Outcome: ...

    def settings_dict(self) -> dict:
        """The engine's settings, as recorded in the report."""
        ...
