"""Vet each candidate instance before it enters a benchmark.

Planted instance: x* must replay through onnxruntime as a strict counterexample with a margin, and a
strong PGD attack (many restarts and steps) must not find any counterexample. Clean instance: the same
attack must fail; verikit's complete engines may then prove it (truth unsat) or find a counterexample
(truth sat, with that witness); otherwise its truth stays unknown.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from verikit.engines.attack.engine import AttackSettings
from verikit.core.network import Network
from verikit.core.result import Budget, Falsified, Verdict
from verikit.core.property import Property
from verikit.witness.replay import check

STRONG_ATTACK = AttackSettings(restarts=2048, steps=200, rounds=1000, check_every=5, candidates_per_check=16)


@dataclass(frozen=True)
class Vetting:
    """What vetting found. `truth` is sat/unsat/unknown, or None when the instance is rejected."""

    truth: str | None
    basis: str
    x: np.ndarray | None = None  # float32 witness for sat
    y: np.ndarray | None = None
    detail: dict | None = None


def replayed_margin(network: Network, prop: Property, x: np.ndarray) -> tuple[float, np.ndarray]:
    """How strictly x (float32-exact) violates the property under onnxruntime: -max row margin of the
    best disjunct (> 0 means every row holds with that much room), and the replayed output."""
    y = network.replay(np.asarray(x, dtype=np.float32)[None, :])[0]
    best = -np.inf
    for case in prop.cases:
        if case.box.violation(x) > 0:
            continue
        for conjunction in case.disjuncts:
            best = max(best, float(-conjunction.margins(y).max()))
    return best, y


def strong_attack(network: Network, prop: Property, *, seconds: float, seed: int,
                  settings: AttackSettings = STRONG_ATTACK) -> Falsified | None:
    """verikit's PGD with a big budget on every case; the first counterexample found, else None."""
    from verikit.engines.attack import engine as attack

    for index, case in enumerate(prop.cases):
        outcome = attack.run(network, case, Budget.seconds(seconds / len(prop.cases)),
                             seed=seed + index, settings=settings)
        if isinstance(outcome, Falsified):
            return outcome
    return None


def vet_planted(network: Network, prop: Property, point: np.ndarray, *, min_margin: float,
                attack_seconds: float, seed: int) -> Vetting:
    """Accept a planted instance only if x* replays as a counterexample and the strong attack fails."""
    margin, y = replayed_margin(network, prop, point)
    x32 = np.asarray(point, dtype=np.float32)
    if margin < min_margin or not any(check(case, x32, y) is not None for case in prop.cases):
        return Vetting(None, f"planted point replays with margin {margin:.3g} < {min_margin:g}")
    found = strong_attack(network, prop, seconds=attack_seconds, seed=seed)
    if found is not None:
        return Vetting(None, "strong attack found a counterexample: not hidden")
    return Vetting("sat", "planted_counterexample", x32, y, {"replayed_margin": margin})


def vet_clean(network: Network, prop: Property, *, attack_seconds: float, prove_seconds: float,
              seed: int) -> Vetting:
    """Reject a clean instance the strong attack breaks; try to prove it with the complete engines."""
    from verikit.portfolio.options import Options
    from verikit.portfolio.runner import verify

    found = strong_attack(network, prop, seconds=attack_seconds, seed=seed)
    if found is not None:
        return Vetting(None, "strong attack found a counterexample: not robust")
    if prove_seconds <= 0:
        return Vetting("unknown", "attack_failed")
    options = Options(timeout=prove_seconds, engines=("bounds", "bab", "smt"), seed=seed)
    result = verify(network, prop, options)
    if result.verdict is Verdict.VERIFIED:
        return Vetting("unsat", f"proven_by_verikit:{result.engine}/{result.method}")
    counterexample = result.counterexample
    if result.verdict is Verdict.FALSIFIED and counterexample is not None:
        return Vetting("sat", "validated_counterexample:verikit", counterexample.x, counterexample.y)
    return Vetting("unknown", f"attack_failed; verikit {result.verdict.value} in {prove_seconds:g} s",
                   detail={"reason": result.reason})

