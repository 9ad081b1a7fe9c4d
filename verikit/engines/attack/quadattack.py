"""QuadAttack-style falsification: a QP in the last linear layer's input space, then gradient descent of
the input towards the QP's solution inside the box.

The idea (QuadAttack, NeurIPS 2023, for ordered top-K targets): the output is `y = W z + b` of the
features z (the input of the last Gemm/MatMul). A disjunct `C y <= d` is, in feature space, the polytope
`(C W) z <= d - C b`; the nearest feature vector to the current one that satisfies it with a margin is a
small QP (osqp), solved here per restart and per disjunct (the nearest few disjuncts are kept). The input
then descends `||z(x) - z*||^2 / ||z*||^2` plus the hinge of the disjunct's rows in signed-gradient
steps inside the box, the QP re-solved from the new features every `qp_every` steps. The targets serve
every case (top-k, targeted-order, plain robustness): each disjunct is a polytope the same way.

When the last op is not a plain linear map of a flat tensor, the features are the outputs themselves
(W = I). Every candidate is only a candidate: `verikit.witness.replay` replays it through onnxruntime.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from verikit.core.network import Network
from verikit.core.property import Case
from verikit.core.result import Budget, Falsified, Unknown
from verikit.engines.spec_rows import SpecRows
from verikit.witness.replay import STRICT, Tolerances, validate_batch

QP_MISSING = "QuadAttack needs the QP solver osqp: pip install 'verikit[qp]' (or pip install osqp)"


@dataclass(frozen=True)
class QuadSettings:
    """`restarts` parallel starts, `steps` gradient steps each; the QP is re-solved every `qp_every` steps
    for the `disjuncts` nearest disjuncts; targets ask for `margin` (relative to the logits' spread)."""

    restarts: int = 8
    steps: int = 100
    qp_every: int = 10
    disjuncts: int = 4
    margin: float = 0.05
    step_fraction: float = 0.1
    hinge_weight: float = 1.0


def osqp_available() -> str | None:
    """None when osqp imports, else the message saying how to install it."""
    try:
        import osqp  # noqa: F401
    except ImportError:
        return QP_MISSING
    return None


class FeatureMap:
    """x (B, n_inputs) -> features z (B, F), with y = z @ W.T + b for the network's outputs y."""

    def __init__(self, network: Network, probe: np.ndarray) -> None:
        self.network = network
        self.split = False
        module = network.module
        ops, steps = getattr(module, "ops", None), getattr(module, "steps", None)
        last = ops[-1] if ops is not None and len(ops) else None
        if last is not None and getattr(last, "weight", None) is not None and getattr(last, "addend", None) is None \
                and steps[-1].output == module.output_name and len(steps[-1].inputs) == 1:
            self.W = last.weight.detach().double()
            self.b = (torch.zeros(self.W.shape[0], dtype=torch.float64) if last.bias is None
                      else last.bias.detach().double())
            self.split = True
            x = torch.tensor(probe, dtype=torch.float32)
            with torch.no_grad():
                z = self.features(x).double()
                if z.shape[1] != self.W.shape[1] or not torch.allclose(z @ self.W.T + self.b, module(x).double(),
                                                                       rtol=1e-4, atol=1e-4):
                    self.split = False
        if not self.split:
            self.W = torch.eye(network.n_outputs, dtype=torch.float64)
            self.b = torch.zeros(network.n_outputs, dtype=torch.float64)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        if not self.split:
            return self.network.module(x)
        module = self.network.module
        shape = module.metas[module.input_name].torch_shape
        reshape = module.reshape_input and shape != (module.n_inputs,)
        values = {module.input_name: x.reshape(-1, *shape) if reshape else x}
        for op, step in zip(module.ops[:-1], module.steps[:-1]):
            values[step.output] = op(*(values[name] for name in step.inputs))
        return values[module.steps[-1].inputs[0]].reshape(x.shape[0], -1)


def nearest_target(z: np.ndarray, A: np.ndarray, u: np.ndarray, nonnegative: bool) -> tuple[np.ndarray, float] | None:
    """argmin ||t - z||^2 subject to A t <= u (and t >= 0 when `nonnegative`), by osqp; (t, distance) or None."""
    import osqp
    from scipy import sparse

    size = z.size
    rows = [sparse.csc_matrix(A)]
    lower, upper = [np.full(A.shape[0], -np.inf)], [u]
    if nonnegative:
        rows.append(sparse.identity(size, format="csc"))
        lower.append(np.zeros(size))
        upper.append(np.full(size, np.inf))
    solver = osqp.OSQP()
    solver.setup(sparse.identity(size, format="csc"), -z, sparse.vstack(rows, format="csc"), np.concatenate(lower),
                 np.concatenate(upper), verbose=False, eps_abs=1e-6, eps_rel=1e-6, max_iter=4000, polish=True)
    result = solver.solve()
    if result.x is None or not np.all(np.isfinite(result.x)) or "solved" not in str(result.info.status).lower():
        return None
    return result.x, float(np.linalg.norm(result.x - z))


def run(network: Network, case: Case, budget: Budget, *, seed: int = 0, settings: QuadSettings = QuadSettings(),
        tolerances: Tolerances = STRICT) -> Falsified | Unknown:
    """QuadAttack inside `case.box` until a replayed counterexample, the steps or the budget end."""
    missing = osqp_available()
    if missing is not None:
        return Unknown(missing)
    if not case.disjuncts or case.region is not None:
        return Unknown("QuadAttack searches boxes with an output condition only")
    box = case.box
    found = validate_batch(network, case, box.center[None, :], tolerances)
    if found is not None:
        return Falsified(found)
    generator = torch.Generator().manual_seed(seed)
    lower = torch.tensor(box.lower, dtype=torch.float32)
    upper = torch.tensor(box.upper, dtype=torch.float32)
    width = upper - lower
    x = lower + width * torch.rand((settings.restarts, box.size), generator=generator)
    x[0] = (lower + upper) / 2
    features = FeatureMap(network, x[:2].double().numpy())
    spec = SpecRows.of(case, torch.float32)
    W, b = features.W.numpy(), features.b.numpy()
    with torch.no_grad():
        z0 = features.features(x).double().numpy()
        spread = float(np.ptp((z0 @ W.T + b)[0])) or 1.0
    nonnegative = bool(features.split and (z0 >= 0).all())
    polytopes = [(conj.C @ W, conj.d - conj.C @ b - settings.margin * spread) for conj in case.disjuncts]
    targets = torch.zeros_like(torch.tensor(z0))
    best_loss = math.inf
    for step in range(settings.steps):
        if budget.expired():
            return Unknown(f"QuadAttack found no counterexample in {step} steps (best loss {best_loss:.4g})",
                           timed_out=True)
        if step % settings.qp_every == 0:
            with torch.no_grad():
                z_now = features.features(x).double().numpy()
            targets = torch.tensor(np.stack([_best_target(z, polytopes, settings.disjuncts, nonnegative)
                                             for z in z_now]), dtype=torch.float32)
        x.requires_grad_(True)
        z = features.features(x)
        y = z.double() @ features.W.T.to(z.device) + features.b
        violation = spec.violation(y.float())
        pull = ((z - targets) ** 2).sum(dim=1) / (targets ** 2).sum(dim=1).clamp_min(1e-12)
        loss = pull + settings.hinge_weight * torch.relu(violation + 1e-3 * spread)
        (grad,) = torch.autograd.grad(loss.sum(), x)
        with torch.no_grad():
            best_loss = min(best_loss, float(violation.min()))
            promising = (violation <= 0).nonzero().squeeze(1)
            if promising.numel():
                found = validate_batch(network, case, x[promising].double().numpy(), tolerances)
                if found is not None:
                    return Falsified(found)
            size = settings.step_fraction * width * (0.5 + 0.5 * math.cos(math.pi * step / settings.steps))
            x = torch.clamp(x - size * torch.sign(grad), lower, upper).detach()
    found = validate_batch(network, case, x.double().numpy(), tolerances)
    if found is not None:
        return Falsified(found)
    return Unknown(f"QuadAttack found no counterexample (best loss {best_loss:.4g})")


def _best_target(z: np.ndarray, polytopes: list, keep: int, nonnegative: bool) -> np.ndarray:
    """The nearest feasible target over the disjuncts (the `keep` with the smallest linear violation are
    solved); z itself when no QP is feasible."""
    violations = [float(np.max(A @ z - u)) for A, u in polytopes]
    best, best_distance = z, math.inf
    for index in np.argsort(violations)[:keep]:
        solved = nearest_target(z, *polytopes[index], nonnegative)
        if solved is not None and solved[1] < best_distance:
            best, best_distance = solved
    return best


@dataclass(frozen=True)
class QuadAttackEngine:
    """QuadAttack behind the Engine protocol (verikit.engines.base)."""

    settings: QuadSettings = QuadSettings()
    name = "attack"
    method = "quadattack"

    def supports(self, problem) -> str | None:
        return osqp_available()

    def run(self, problem, case: Case, budget: Budget) -> Falsified | Unknown:
        return run(problem.network, case, budget, seed=problem.seed, settings=self.settings,
                   tolerances=problem.tolerances)

    def settings_dict(self) -> dict:
        from verikit.core.settings import settings_dict

        return settings_dict(self.settings)
