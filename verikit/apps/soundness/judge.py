"""Judge a verifier's answer on one instance against what is known about it.

| answer | known truth | judgement |
| --- | --- | --- |
| unsat | sat (a counterexample is known) | soundness_bug |
| unsat | unsat / unknown | correct / unchecked |
| sat, no witness in the result file | any | unchecked (a right answer cannot be told from a wrong one) |
| sat, witness unreadable or failing the replay (tolerance 1e-4) | any | false_alarm |
| sat, valid witness | sat / unknown | correct (new_sat when the truth was unknown) |
| sat, valid witness | unsat | truth_wrong (the recorded truth is refuted) |
| unknown, timeout, error, anything else | any | undecided |
"""

from __future__ import annotations

from dataclasses import dataclass, field

from verikit.core.network import Network
from verikit.apps.soundness.answers import Answer
from verikit.core.property import Property
from verikit.witness.check import DEFAULT_TOLERANCE, check_witness_data
from verikit.witness.formats import Witness, WitnessError

SOUNDNESS_BUG, FALSE_ALARM, TRUTH_WRONG = "soundness_bug", "false_alarm", "truth_wrong"
CORRECT, NEW_SAT, UNCHECKED, UNDECIDED = "correct", "new_sat", "unchecked", "undecided"
JUDGEMENTS = (SOUNDNESS_BUG, FALSE_ALARM, TRUTH_WRONG, CORRECT, NEW_SAT, UNCHECKED, UNDECIDED)


@dataclass
class Judgement:
    """One instance: the verifier's answer, the known truth, and the judgement with its reason."""

    onnx: str
    vnnlib: str
    answer: str
    truth: str
    basis: str
    judgement: str
    reason: str
    seconds: float = 0.0
    witness_status: str | None = None  # strict / within_tolerance / invalid / missing / unreadable
    witness_lines: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return dict(vars(self))


def _witness_verdict(network: Network | None, prop: Property | None, witness: Witness | None,
                     tolerance: float) -> tuple[str, list[str]]:
    """(status, explanation lines) of a sat answer's witness."""
    if witness is None:
        return "missing", ["the result file says sat but holds no parsable (X_i value) witness"]
    if network is None or prop is None:
        return "unchecked", ["the instance could not be loaded, so the witness was not replayed"]
    try:
        report = check_witness_data(network, prop, witness, tolerance=tolerance)
    except WitnessError as error:
        return "unreadable", [str(error)]
    return report.status, report.describe()


def judge(
    onnx: str,
    vnnlib: str,
    answer: str,
    known: Answer | None,
    *,
    witness: Witness | None = None,
    network: Network | None = None,
    prop: Property | None = None,
    tolerance: float = DEFAULT_TOLERANCE,
    seconds: float = 0.0,
) -> Judgement:
    """Judge `answer` (VNN-COMP word) on one instance; `network`/`prop` are needed to replay a witness."""
    truth = known.truth if known is not None else "unknown"
    basis = known.basis if known is not None else ""
    result = Judgement(onnx, vnnlib, answer, truth, basis, UNDECIDED, "", seconds)
    if answer == "unsat":
        if truth == "sat":
            result.judgement = SOUNDNESS_BUG
            result.reason = f"unsat, but a counterexample is known ({basis or 'truth sat'})"
        elif truth == "unsat":
            result.judgement, result.reason = CORRECT, "unsat, as known"
        else:
            result.judgement, result.reason = UNCHECKED, "unsat; the truth is unknown, so it cannot be checked"
        return result
    if answer != "sat":
        result.reason = f"no decision ({answer or 'empty result'})"
        return result
    status, lines = _witness_verdict(network, prop, witness, tolerance)
    result.witness_status, result.witness_lines = status, lines
    if status == "unchecked":
        result.judgement, result.reason = UNCHECKED, lines[0]
    elif status == "missing":
        # Tools such as nnenum write only `violated`: a sat that cannot be replayed is unchecked, not
        # wrong; a false alarm needs a witness that fails the replay.
        result.judgement = UNCHECKED
        result.reason = f"sat without a witness, so it cannot be checked (known truth: {truth})"
    elif status not in ("strict", "within_tolerance"):
        result.judgement = FALSE_ALARM
        result.reason = f"sat without a valid witness ({status}): {lines[0]}"
    elif truth == "unsat":
        result.judgement = TRUTH_WRONG
        result.reason = f"a valid witness ({status}) refutes the recorded truth unsat ({basis or 'no basis'})"
    elif truth == "sat":
        result.judgement, result.reason = CORRECT, f"sat with a valid witness ({status})"
    else:
        result.judgement, result.reason = NEW_SAT, f"sat with a valid witness ({status}); the truth was unknown"
    return result


def tally(judgements: list[Judgement]) -> dict[str, int]:
    """How many instances got each judgement (every judgement named, zeros included)."""
    counts = {name: 0 for name in JUDGEMENTS}
    for item in judgements:
        counts[item.judgement] += 1
    return counts
