"""Which engines decide which input regions: the one table the runner consults before an engine runs.

Every engine may prove over `case.box`, which encloses the region (sound, only weaker), so a `Manipulated`
case goes to every engine. An `L2Ball` case goes only to the engines that know the ball: the attack
(PGD projected onto the ball ∩ box) and bound propagation (dual-norm CROWN over ball ∩ box, proven in the
rigorous float64 forms, verikit.engines.crown.input_set). The others search boxes: a counterexample of
the box outside the ball is no counterexample (the replay refuses it), and an input-splitting or exact
search over the box would spend its budget on corners the ball does not hold, so they answer unknown.
"""

from __future__ import annotations

from verikit.core.property import Case, L2Ball, Property

L2_BALL_ENGINES: dict[str, str] = {
    "attack": "PGD projected onto the ball ∩ box",
    "bounds": "dual-norm CROWN over the ball ∩ box, confirmed in rigorous float64",
}
"""Engine name → how it handles an ℓ2 ball; an engine not listed does not run on ℓ2-ball cases."""


def region_refusal(engine_name: str, case: Case) -> str | None:
    """Why the engine named `engine_name` does not run on `case`'s region, or None when it does."""
    if isinstance(case.region, L2Ball) and engine_name not in L2_BALL_ENGINES:
        return (f"{engine_name} decides over boxes only; an ℓ2 ball is decided by "
                f"{' and '.join(sorted(L2_BALL_ENGINES))} (a box counterexample outside the ball is none)")
    return None


def has_l2_ball(prop: Property | None) -> bool:
    """Some case of `prop` has an ℓ2-ball region (the schedule then keeps every bounds stage)."""
    return prop is not None and any(isinstance(case.region, L2Ball) for case in prop.cases)
