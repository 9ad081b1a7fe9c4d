"""Branch and bound for ReLU MLPs on batched CROWN bounds (verikit.engines.crown.propagate): a complete method.

`run(pwl, network, case, budget)` decides one case:

- input branching (`bab_input`) bisects the input box — chosen for low-dimensional inputs (at most
  `BabSettings.input_split_max_dims`, e.g. ACAS Xu's 5), where a few bisections per coordinate make the
  relaxation nearly exact;
- ReLU branching (`bab_relu`) splits unstable neurons into active/inactive — for high-dimensional inputs
  (e.g. MNIST's 784), where bisecting coordinates would never end.

A domain is dropped only when every disjunct has a row with a proven lower bound > 0 there. A
counterexample is reported only after `verikit.witness.replay` replayed it through onnxruntime. The open-domain
queue is capped (Unknown "domain limit reached") and the budget is polled between batches
(Unknown timed_out=True). Deterministic: the same seed gives the same outcome.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import torch

from verikit.engines.bab import activation_form
from verikit.engines.bab import activation_split as bab_activation
from verikit.engines.bab import input_split as bab_input

from verikit.engines.bab import relu_split as bab_relu
from verikit.engines.bab.common import BabSettings, SpecRows
from verikit.engines.bab.device import ieee_float32, sized_for, torch_device
from verikit.engines.crown.propagate import ReluMlp
from verikit.core.activations import ActivationChain
from verikit.core.pwl import PiecewiseLinear, Relu
from verikit.core.network import Network
from verikit.core.result import Budget, Certificate, Falsified, Proven, Unknown
from verikit.core.settings import settings_dict
from verikit.core.property import Case
from verikit.witness.replay import validate_batch

__all__ = ["BabSettings", "run", "run_activation", "branching_for"]


def branching_for(n_inputs: int, settings: BabSettings) -> str:
    """The branching a case gets: the explicit setting, else input splitting for few inputs."""
    if settings.branching != "auto":
        return settings.branching
    return "input" if n_inputs <= settings.input_split_max_dims else "relu"


def run(
    pwl: PiecewiseLinear,
    network: Network,
    case: Case,
    budget: Budget,
    *,
    seed: int = 0,
    settings: BabSettings | None = None,
    device: str = "cpu",
    phases: dict | None = None,
    **overrides,
) -> Proven | Falsified | Unknown:
    """Decide `case` on the ReLU MLP `pwl` (the exact translation of `network`), bounding on `device`
    ("cpu", "cuda[:N]"; UsageError when absent).

    `overrides` replace fields of `settings` (e.g. max_domains=..., batch_size=..., branching="relu").
    `phases`: the case's hidden patterns (verikit.engines.hidden), split constraints at the root of ReLU
    branching, which "auto" then picks; input branching (asked for explicitly) proves the case without them
    (a larger set, so its proofs stand).
    """
    settings = dataclasses.replace(settings or BabSettings(), **overrides)
    if not pwl.is_relu_mlp:
        return Unknown("branch and bound needs a ReLU MLP (Affine (Relu Affine)*)")
    if not any(isinstance(layer, Relu) for layer in pwl.layers):
        return Unknown("branch and bound needs at least one ReLU layer; this network is affine, so the bound "
                       "engines bound each output row exactly on it")
    if pwl.n_inputs != case.box.size:
        return Unknown(f"case box has {case.box.size} inputs, network {pwl.n_inputs}")
    trivial = _trivial(network, case, settings)
    if trivial is not None:
        return trivial
    branching = branching_for(pwl.n_inputs, settings)
    if phases and settings.branching == "auto":
        branching = "relu"  # input bisection cannot take the hidden pattern; ReLU splits fix it at the root
    if branching not in ("input", "relu"):
        return Unknown(f"unknown branching {settings.branching!r}")
    where = torch_device(device)
    net = ReluMlp.from_pwl(pwl, settings.dtype, where)
    net64 = net if settings.dtype == torch.float64 else ReluMlp.from_pwl(pwl, torch.float64, where)
    spec = SpecRows.of(case, settings.dtype).to(where)
    settings = sized_for(settings, where, net.hidden_sizes, net.n_inputs, int(spec.C.shape[0]))
    with ieee_float32(where):
        if branching == "input":
            return bab_input.search(net, net64, network, case, spec, budget, settings, seed)
        return bab_relu.search(net, net64, network, case, spec, budget, settings, seed, phases=phases)


def run_activation(chain: ActivationChain, network: Network, case: Case, budget: Budget, *, seed: int = 0,
                   settings: BabSettings | None = None, **overrides) -> Proven | Falsified | Unknown:
    """Decide `case` on `chain` (the translation of `network`, with sigmoid/tanh layers) by splitting
    pre-activation intervals (verikit.engines.bab.activation_split)."""
    settings = dataclasses.replace(settings or BabSettings(), **overrides)
    if chain.n_inputs != case.box.size:
        return Unknown(f"case box has {case.box.size} inputs, network {chain.n_inputs}")
    trivial = _trivial(network, case, settings)
    if trivial is not None:
        return trivial
    return bab_activation.search(chain, network, case, budget, settings, seed)


def _trivial(network: Network, case: Case, settings: BabSettings) -> Proven | Falsified | Unknown | None:
    """Outcomes that need no search: empty box, no disjunct, an always-true disjunct, unbounded box."""
    box = case.box
    if box.is_empty:
        return Proven(Certificate(method="bab-input", detail={"reason": "empty input box"}))
    if not case.disjuncts:
        return Proven(Certificate(method="bab-input", detail={"reason": "no disjunct can hold"}))
    if not (np.isfinite(box.lower).all() and np.isfinite(box.upper).all()):
        return Unknown("branch and bound needs a bounded input box")
    if any(conjunction.rows == 0 for conjunction in case.disjuncts):
        found = validate_batch(network, case, box.center[None, :], settings.tolerances)
        if found is not None:
            return Falsified(found)
        return Unknown("an empty disjunct holds everywhere but the replay of the box centre disagreed")
    return None


@dataclass(frozen=True)
class BabEngine:
    """Branch and bound behind the Engine protocol: ReLU MLPs, and MLPs with sigmoid/tanh layers (see
    `supports`; those go to verikit.engines.bab.activation_split)."""

    settings: BabSettings = BabSettings()
    name = "bab"
    method = "crown"

    def supports(self, problem) -> str | None:
        reason = self._relu_reason(problem)
        if reason is None or not activation_form.S_SHAPED_OPS & problem.network.op_types:
            return reason  # (no second dense translation for networks without sigmoid/tanh)
        return activation_form.s_shaped_reason(problem)

    @staticmethod
    def _relu_reason(problem) -> str | None:
        reason = problem.piecewise_linear_reason()
        if reason is not None:
            return reason
        pwl = problem.piecewise_linear()
        if not pwl.is_relu_mlp:
            return "branch-and-bound handles affine/ReLU chains only (this network has max-pooling)"
        if not any(isinstance(layer, Relu) for layer in pwl.layers):
            return ("branch and bound needs at least one ReLU layer; this network is affine, so the bound "
                    "engines bound each output row exactly on it")
        return None

    def run(self, problem, case: Case, budget: Budget) -> Proven | Falsified | Unknown:
        settings = dataclasses.replace(self.settings, tolerances=problem.tolerances)
        if self._relu_reason(problem) is not None:  # supported, so: an MLP with sigmoid/tanh layers
            return run_activation(activation_form.checked_activation_chain(problem, case), problem.network, case,
                                  budget, seed=problem.seed, settings=settings)
        from verikit.engines.hidden import conflicting

        phases = problem.hidden_phases(case)
        if conflicting(phases):
            return Proven(Certificate(method="bab-relu", detail={
                "hidden_pattern": "infeasible: a neuron is asked to be both active and inactive"}))
        return run(problem.checked_piecewise_linear(case), problem.network, case, budget, seed=problem.seed,
                   settings=settings, device=problem.device, phases=phases)

    def settings_dict(self) -> dict:
        return settings_dict(self.settings)
