"""Spec bounds no float32 number lies within: widened to the nearest float32, so witnesses can be replayed
(a model reads float32) and proofs still cover the spec's own box."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.conftest import MODELS
from verikit.core.property import Box
from verikit.core.result import Budget, Falsified
from verikit.engines.attack import engine as attack
from verikit.onnx.load import load_network
from verikit.spec.robustness import robustness_property
from verikit.spec.vnnlib import parse_vnnlib
from verikit.witness.replay import to_float32_inside

DECIMAL = 0.123456789  # no float32 equals it


def _has_float32(lower: float, upper: float) -> bool:
    first = np.float32(lower)
    if float(first) < lower:
        first = np.nextafter(first, np.float32(np.inf))
    return float(first) <= upper


def test_a_fixed_decimal_is_widened_to_take_in_its_float32_and_keeps_the_decimal():
    box, widened = Box([DECIMAL, 0.25, 0.0], [DECIMAL, 0.25, 1.0]).holding_float32()
    nearest = float(np.float32(DECIMAL))
    assert widened.tolist() == [0]
    assert box.lower[0] == min(DECIMAL, nearest) and box.upper[0] == max(DECIMAL, nearest)
    assert box.contains([DECIMAL, 0.25, 0.5]) and box.contains([nearest, 0.25, 0.5])
    assert box.lower[1] == box.upper[1] == 0.25  # 0.25 is a float32: untouched
    assert box.lower[2] == 0.0 and box.upper[2] == 1.0


def test_a_box_with_float32_numbers_in_every_interval_is_the_same_box():
    box = Box([0.1, -np.inf, 0.5], [0.2, 3.0, np.inf], open_lower=[True, False, False])
    held, widened = box.holding_float32()
    assert widened.size == 0 and held is box


def test_an_open_side_on_the_only_float32_widens_past_it():
    tiny = np.nextafter(0.5, 1.0)  # (0.5, 0.5 + 2^-53]: 0.5 is excluded, the next float32 is far above
    box, widened = Box([0.5], [tiny], open_lower=[True]).holding_float32()
    assert widened.tolist() == [0]
    x32 = to_float32_inside(box, np.array([0.5]))
    assert box.contains(x32)


@settings(max_examples=200, deadline=None)
@given(st.floats(-1e6, 1e6, allow_nan=False), st.floats(0.0, 1e-6))
def test_every_widened_interval_holds_a_float32_and_contains_the_original(lower, width):
    upper = lower + width
    box, widened = Box([lower], [upper]).holding_float32()
    assert box.lower[0] <= lower and box.upper[0] >= upper
    assert _has_float32(box.lower[0], box.upper[0])
    if _has_float32(lower, upper):
        assert widened.size == 0
    else:  # widened by at most one float32 spacing
        spacing = float(np.spacing(np.float32(abs(lower) + width)))
        assert box.upper[0] - box.lower[0] <= width + spacing


def _spec_fixing_every_input(n_inputs: int, n_outputs: int, value: float) -> str:
    lines = [f"(declare-const X_{i} Real)" for i in range(n_inputs)]
    lines += [f"(declare-const Y_{j} Real)" for j in range(n_outputs)]
    for i in range(n_inputs):
        lines += [f"(assert (>= X_{i} {value!r}))", f"(assert (<= X_{i} {value!r}))"]
    lines.append("(assert (>= Y_0 -1000000.0))")  # holds at any input the model can read
    return "\n".join(lines)


def test_a_spec_fixing_inputs_at_decimals_is_falsified_by_a_replayed_float32_input_and_says_so():
    network = load_network(MODELS / "digits_mlp.onnx")
    prop = parse_vnnlib(_spec_fixing_every_input(network.n_inputs, network.n_outputs, DECIMAL))
    assert any("no float32 number lies within" in note for note in prop.notes)
    case = prop.cases[0]
    outcome = attack.run(network, case, Budget.seconds(5), seed=0)
    assert isinstance(outcome, Falsified)  # before: no float32 input lay in the box, nothing replayed
    assert np.all(outcome.counterexample.x == np.float32(DECIMAL))
    assert case.box.contains(outcome.counterexample.x)


def test_a_dataset_spec_with_zero_radius_on_a_decimal_image_is_widened_too():
    x = np.full(64, DECIMAL)
    prop = robustness_property(x, 0, 0.0, num_classes=10)
    assert any("no float32 number lies within" in note for note in prop.notes)
    assert prop.cases[0].box.contains(x.astype(np.float32)) and prop.cases[0].box.contains(x)
