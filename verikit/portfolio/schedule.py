"""The schedule: the stages an Options asks for, cheapest first, each an engine and its share of the budget.

Engine policy (what an engine can handle, its limits) lives in the engines' `supports`; this module only
says which engine runs next and with how much time.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from verikit.engines.attack.engine import AttackEngine
from verikit.engines.bab.engine import BabEngine
from verikit.engines.base import Engine
from verikit.engines.lirpa.engine import BoundsEngine
from verikit.engines.problem import Problem
from verikit.engines.regions import has_l2_ball
from verikit.engines.smt import SmtEngine
from verikit.engines.smt.settings import AUTOMATIC_MAX_RELUS
from verikit.core.property import Property
from verikit.engines.tensor_bab.engine import TensorBabEngine
from verikit.engines.topk import TopKEngine
from verikit.portfolio import METHODS
from verikit.portfolio.options import Options
from verikit.spec.topk import top_k_form


@dataclass(frozen=True)
class Stage:
    """One engine run on every open case. `share`: the fraction of the remaining budget one case may use;
    `per_case`: split the remaining budget evenly over the open cases instead."""

    engine: Engine
    share: float = 1.0
    per_case: bool = False

    @property
    def label(self) -> str:
        return f"{self.engine.name}/{self.engine.method}"

    def as_dict(self) -> dict:
        budget = "even split over open cases" if self.per_case else f"{self.share:g} of the remaining time"
        return {"stage": self.label, "budget": budget, "settings": self.engine.settings_dict()}


def bab_first(options: Options, problem: Problem | None) -> str | None:
    """Why the bounds stages can be skipped on this problem, or None.

    With few inputs and a ReLU MLP, branch and bound splits the input box and bounds every box with its
    own float-safe CROWN, so its root bound decides what IBP/CROWN would, and α is applied inside the
    search where it pays (BabSettings.input_alpha_after); auto_LiRPA's tracing and its all-or-nothing
    α-CROWN stage in front of the search only cost time (measured: benchmarks/README.md).
    """
    if options.portfolio.schedule != "adaptive" or problem is None or "bab" not in options.engines:
        return None
    if tuple(options.methods) != METHODS or options.bab.branching == "relu":
        return None  # the user chose bound methods or a branching: run what was asked
    inputs = problem.network.n_inputs
    if inputs > options.bab.input_split_max_dims or BabEngine(options.bab).supports(problem) is not None:
        return None
    if problem.piecewise_linear_reason() is not None:  # sigmoid/tanh: bab splits activations, bounds go first
        return None
    return (f"adaptive schedule: {inputs} inputs and a ReLU MLP, so branch and bound (input splitting) runs "
            "right after the attack and the auto_LiRPA bounds stages are skipped "
            "(--set portfolio.schedule=full runs them)")


def tensor_root_first(options: Options, problem: Problem | None) -> str | None:
    """Why the CROWN and α-CROWN bounds stages can be skipped on this problem, or None.

    When the tensor branch and bound takes the network (the MLP one does not), its root is auto_LiRPA's
    CROWN and then α-CROWN on the same box with the same fixed intermediate bounds (it answers proven when
    they refute every disjunct), so those stages in front of it would compute each bound twice; on
    sri_resnet_b under load they took the whole budget (90 s and more), leaving the search no time.
    """
    if options.portfolio.schedule != "adaptive" or problem is None or "bab" not in options.engines:
        return None
    if tuple(options.methods) != METHODS or options.tensor_bab.when != "auto" or options.tensor_bab.root_alpha_steps <= 0:
        return None  # the user chose bound methods or the tensor search's policy: run what was asked
    if not _tensor_bab_wanted(options, problem):
        return None
    return ("adaptive schedule: the tensor branch and bound runs CROWN and α-CROWN at its root, so the bounds "
            "engine's crown and alpha-crown stages are skipped (--set portfolio.schedule=full runs them)")


def plan(options: Options, problem: Problem | None = None, prop: Property | None = None) -> list[Stage]:
    """The stages `options` asks for on `problem`: attack, the direct top-k method (when `prop` has a top-k
    case), bounds (each method), branch and bound (MLP, then tensor), SMT."""
    alone = len(options.engines) == 1
    stages: list[Stage] = []
    if "attack" in options.engines:
        if alone:
            stages.append(Stage(AttackEngine(options.attack)))
        else:
            rounds = min(options.attack.rounds, options.portfolio.attack_rounds)
            stages.append(Stage(AttackEngine(replace(options.attack, rounds=rounds)),
                                share=options.portfolio.attack_share))
    if "bab" in options.engines and _top_k_wanted(options, problem, prop):
        stages.append(Stage(TopKEngine(), per_case=True))
    balls = has_l2_ball(prop)  # only the attack and the bounds engine decide an ℓ2 ball: never skip bounds
    if "bounds" in options.engines and (balls or bab_first(options, problem) is None):
        skip = ("crown", "alpha-crown") if tensor_root_first(options, problem) and not balls else ()
        stages.extend(Stage(BoundsEngine(method, options.bounds)) for method in options.methods if method not in skip)
    if "bab" in options.engines:
        stages.append(Stage(BabEngine(options.bab), per_case=True))
        if _tensor_bab_wanted(options, problem):  # CNNs and residual networks, on auto_LiRPA's graph
            stages.append(Stage(TensorBabEngine(options.tensor_bab, options.bounds.max_matrix_bytes), per_case=True))
    if "smt" in options.engines:
        limit = options.smt.max_relus
        if limit is None and not alone:
            limit = AUTOMATIC_MAX_RELUS
        stages.append(Stage(SmtEngine(options.smt, limit), per_case=True))
    return stages


def _top_k_wanted(options: Options, problem: Problem | None, prop: Property | None) -> bool:
    """The direct top-k method is scheduled when some box case of `prop` is a top-k normal form with k >= 2
    (n-1 margins instead of C(n-1, k) disjuncts) and portfolio.topk is "direct"."""
    if options.portfolio.topk != "direct" or problem is None or prop is None:
        return False
    n = problem.network.n_outputs
    return any(case.is_box and top_k_form(case.disjuncts, n) is not None for case in prop.cases)


def _tensor_bab_wanted(options: Options, problem: Problem | None) -> bool:
    """The tensor branch and bound is scheduled unless off, or (when=auto) the MLP one takes the network or
    it has no Relu."""
    if options.tensor_bab.when == "never":
        return False
    if options.tensor_bab.when == "auto" and problem is not None:
        if "Relu" not in problem.network.op_types:  # nothing to split: the MLP search's reason stands
            return False
        return BabEngine(options.bab).supports(problem) is not None
    return True


def notes(options: Options, problem: Problem | None = None) -> list[str]:
    """Options some scheduled engine does not honour, and stages skipped, said out loud (for the report)."""
    said = [reason for reason in [bab_first(options, problem), tensor_root_first(options, problem)] if reason]
    cpu_only = [name for name in ("attack", "smt") if name in options.engines]
    if options.device != "cpu" and cpu_only:
        said.append(f"--device {options.device} applies to the bounds engine (auto_LiRPA) and branch and "
                    f"bound; {', '.join(cpu_only)} run on the CPU")
    if "bab" in options.engines and tuple(options.methods) != METHODS:
        said.append("--method selects the bounds engine's stages; branch and bound always uses its own "
                    "CROWN with α optimisation")
    if options.device != "cpu" and not {"bounds", "bab"} & set(options.engines):
        said.append(f"--device {options.device} has no effect: neither the bounds engine nor branch and "
                    f"bound runs")
    return said
