"""Witness replay: float32 rounding at the box edge, strictness, and the formula check."""

import numpy as np

from tests.conftest import MODELS
from verikit.onnx.load import load_network
from verikit.core.property import Box, Case, Conjunction
from verikit.witness.replay import Tolerances, check, to_float32_inside, validate, validate_batch


def test_float32_rounding_is_nudged_inside_the_box():
    # 0.1 rounds up in float32 (0.100000001...), 0.7 rounds down: both must land inside after the nudge
    box = Box([0.1, -1.0], [0.3, 0.7])
    x32 = to_float32_inside(box, np.array([0.1, 0.7]))
    assert x32.dtype == np.float32
    assert box.contains(x32.astype(np.float64))
    assert float(x32[0]) >= 0.1 and float(x32[1]) <= 0.7


def test_points_outside_are_clipped_into_the_box():
    box = Box([0.0, 0.0], [1.0, 1.0])
    assert box.contains(to_float32_inside(box, np.array([-5.0, 7.0])))


def test_check_names_the_satisfied_disjunct_and_respects_tolerance():
    case = Case(Box([0.0], [1.0]), (Conjunction([[1.0]], [-1.0]), Conjunction([[-1.0]], [-2.0])))
    x = np.array([0.5], np.float32)
    assert check(case, x, np.array([3.0])).disjunct == 1  # -y <= -2  <=>  y >= 2
    assert check(case, x, np.array([0.0])) is None
    loose = check(case, x, np.array([1.99995]), Tolerances(formula=1e-4))
    assert loose is not None and 0 < loose.formula_violation <= 1e-4
    assert check(case, np.array([1.5], np.float32), np.array([3.0])) is None  # outside the box


def test_strict_rows_and_open_box_sides_reject_boundary_points():
    strict_row = Conjunction([[1.0]], [0.0], strict=[True])  # y < 0
    case = Case(Box([0.0], [1.0], open_upper=[True]), (strict_row,))  # 0 <= x < 1
    inside = np.array([0.5], np.float32)
    assert check(case, inside, np.array([0.0])) is None  # y = 0 is on the strict boundary
    assert check(case, inside, np.array([-1e-30])) is not None
    assert check(case, np.array([1.0], np.float32), np.array([-1.0])) is None  # x = 1 is on the open side
    assert check(case, np.array([0.0], np.float32), np.array([-1.0])) is not None  # the closed side
    # an explicit tolerance relaxes both, as it does for non-strict comparisons
    assert check(case, inside, np.array([0.0]), Tolerances(formula=1e-6)) is not None


def test_float32_rounding_steps_off_an_open_side():
    box = Box([0.0], [1.0], open_lower=[True], open_upper=[True])
    for x in (0.0, 1.0, -3.0, 5.0):
        x32 = to_float32_inside(box, np.array([x]))
        assert box.contains(x32), x


def test_validate_replays_through_onnxruntime():
    network = load_network(MODELS / "tiny_relu.onnx")
    box = Box(np.zeros(network.n_inputs), np.ones(network.n_inputs))
    y_center = network.replay(box.center[None, :])[0]
    below = Case(box, (Conjunction(np.eye(network.n_outputs)[:1], [y_center[0] + 1e-3]),))
    found = validate(network, below, box.center)
    assert found is not None
    np.testing.assert_allclose(found.y, network.replay(found.x[None, :])[0])
    impossible = Case(box, (Conjunction(np.eye(network.n_outputs)[:1], [-1e6]),))
    assert validate_batch(network, impossible, box.sample(16, np.random.default_rng(0))) is None
