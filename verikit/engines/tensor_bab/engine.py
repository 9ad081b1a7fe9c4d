"""TensorBabEngine: the tensor branch and bound behind the Engine protocol."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from verikit.core.errors import EngineLimitation
from verikit.core.property import Case
from verikit.core.result import Budget, Certificate, Falsified, Proven, Unknown
from verikit.core.settings import settings_dict
from verikit.engines.lirpa import memory
from verikit.engines.lirpa.support import UnsupportedByBoundsError
from verikit.engines.tensor_bab.settings import TensorBabSettings

MLP_BAB_TAKES_IT = "the MLP branch and bound takes this network (tensor_bab.when=always runs this one too)"


@dataclass(frozen=True)
class TensorBabEngine:
    """ReLU-split branch and bound on auto_LiRPA's graph; `max_matrix_bytes` (bounds.max_matrix_bytes)
    caps the dense bound matrices of one batch, which sets the domains per batch."""

    settings: TensorBabSettings = TensorBabSettings()
    max_matrix_bytes: int = 16 * 2**30
    name = "bab"
    method = "tensor-crown"

    def supports(self, problem) -> str | None:
        if self.settings.when == "never":
            return "tensor branch and bound is off (tensor_bab.when=never)"
        if self.settings.when == "auto" and _mlp_bab_takes(problem):
            return MLP_BAB_TAKES_IT
        try:
            bounded = problem.lirpa()
        except EngineLimitation as limitation:
            return f"tensor branch and bound needs auto_LiRPA's graph: {limitation}"
        from verikit.engines.tensor_bab.bounding import split_layers

        if not split_layers(bounded.module)[0]:
            return "tensor branch and bound needs a ReLU to split; this network has none"
        return None

    def run(self, problem, case: Case, budget: Budget) -> Proven | Falsified | Unknown:
        from verikit.engines.tensor_bab.search import search

        box = case.box
        if not case.disjuncts:
            return Proven(Certificate(self.method, (), {"note": "no disjuncts: the case cannot be violated"}))
        if any(conjunction.rows == 0 for conjunction in case.disjuncts):
            return Unknown("a disjunct has no rows, so it always holds: the attack or replay decides it")
        if box.is_empty or not (np.isfinite(box.lower).all() and np.isfinite(box.upper).all()):
            return Unknown("tensor branch and bound needs a non-empty bounded input box")
        if budget.expired():
            return Unknown("no time left for tensor branch and bound", timed_out=True)
        method = "alpha-crown" if self.settings.root_alpha_steps > 0 else "crown"
        too_big = memory.over_cap(problem.lirpa().module, method, self.max_matrix_bytes)
        if too_big:  # the root's bounds are the bounds engine's; domains then fit the cap by batch size
            return Unknown(f"tensor branch and bound: {too_big}")
        try:
            return search(problem.lirpa(), case, budget, self.settings, cap_bytes=self.max_matrix_bytes,
                          tolerances=problem.tolerances)
        except UnsupportedByBoundsError as error:
            return Unknown(f"tensor branch and bound: auto_LiRPA cannot bound this network: {error}")

    def settings_dict(self) -> dict:
        return {**settings_dict(self.settings), "max_matrix_bytes": self.max_matrix_bytes}


def _mlp_bab_takes(problem) -> bool:
    from verikit.engines.bab.engine import BabEngine

    return BabEngine().supports(problem) is None
