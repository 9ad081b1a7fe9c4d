"""Issue 25's fuzzer (verikit/apps/soundness/float_fuzz.py): networks built to defeat float32 bounds, every
`verified` checked against exact rational arithmetic. The two regression seeds are instances the code
before the rigorous re-proof (443c207) answered `verified` although their exact counterexample exists."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest

from verikit.apps.soundness import float_fuzz
from verikit.onnx.load import load_network_bytes

# (family, seed) answered "verified" at 443c207: proven (crown) / proven (ibp), both wrong
REGRESSIONS = [("branches", 11), ("comparison", 3)]


@pytest.mark.parametrize("family", float_fuzz.FAMILIES)
def test_every_instance_has_an_exact_violation_at_its_witness(family):
    for seed in range(3):
        instance = float_fuzz.generate(family, seed)
        assert np.all(instance.lower <= instance.witness) and np.all(instance.witness <= instance.upper)
        y = float_fuzz.evaluate_exact(instance.onnx_bytes, instance.witness)
        value = sum(Fraction(float(c)) * v for c, v in zip(instance.c, y))
        assert value <= Fraction(instance.d)  # a real counterexample: "verified" can only be wrong


def test_the_exact_evaluator_agrees_with_onnxruntime_where_floats_are_exact():
    instance = float_fuzz.generate("relu-chain", 0)
    network = load_network_bytes(instance.onnx_bytes)
    x = instance.lower
    exact = float(float_fuzz.evaluate_exact(instance.onnx_bytes, x)[0])
    assert abs(exact - float(network.replay(x[None].astype(np.float32))[0, 0])) <= 1e-6 * (1 + abs(exact)) * 2**25


@pytest.mark.parametrize("family, seed", REGRESSIONS)
def test_the_instances_the_old_code_verified_are_never_verified(family, seed):
    verdict = float_fuzz.decide(float_fuzz.generate(family, seed), timeout=10)
    assert not verdict.wrong, verdict.reason
    assert verdict.answer in ("falsified", "unknown", "timeout", "error"), verdict


def test_a_small_random_run_has_no_wrong_answer():
    summary = float_fuzz.run(2, seed=100, timeout=3)
    assert summary["runs"] == 2 * len(float_fuzz.FAMILIES)
    assert summary["wrong"] == [], summary
