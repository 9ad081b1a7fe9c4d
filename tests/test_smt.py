"""The z3 engine: exact answers on hand-checkable networks, replayed counterexamples, honest unknowns."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest

from onnx_factory import GraphBuilder, mlp
from verikit.engines.smt import engine as smt
from verikit.core.pwl import MaxGroups, PiecewiseLinear
from verikit.engines.crown.interval import interval_bounds
from verikit.engines.smt.encoding import Encoding, coarsen
from verikit.onnx.load import load_network_bytes
from verikit.core.network import Network
from verikit.onnx.pwl import to_piecewise_linear
from verikit.core.result import Budget, Falsified, Proven, Unknown
from verikit.core.property import Box, Case, Conjunction

BUDGET_S = 30.0


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def dense(layers: list[tuple[list, list]], activation: str = "Relu") -> Network:
    """y = W_k act(... act(W_1 x + b_1)) + b_k as Gemm nodes, loaded through verikit.onnx.load."""
    g = GraphBuilder()
    value = "x"
    for index, (weight, bias) in enumerate(layers):
        value = g.op("Gemm", value, g.const(np.asarray(weight, float)), g.const(np.asarray(bias, float)), transB=1)
        if index < len(layers) - 1:
            value = g.op(activation, value)
    return load_network_bytes(g.build((1, np.shape(layers[0][0])[1]), value), "dense")


def decide(network: Network, case: Case, seconds: float = BUDGET_S, **options):
    return smt.run(to_piecewise_linear(network), network, case, Budget.seconds(seconds), **options)


def at_least(threshold: float, n_outputs: int = 1, output: int = 0) -> Conjunction:
    """y[output] >= threshold, as a row of C y <= d."""
    row = np.zeros((1, n_outputs))
    row[0, output] = -1.0
    return Conjunction(row, [-threshold])


def at_most(threshold: float, n_outputs: int = 1, output: int = 0) -> Conjunction:
    row = np.zeros((1, n_outputs))
    row[0, output] = 1.0
    return Conjunction(row, [threshold])


# y = relu(x0 + x1) - relu(x0 - x1) on [-1, 1]^2: max 2 at (1, 1), min -2 at (1, -1).
HAND = [([[1, 1], [1, -1]], [0, 0]), ([[1, -1]], [0])]
SQUARE = Box([-1, -1], [1, 1])


def assert_replays(network: Network, case: Case, outcome) -> None:
    """The counterexample lies in the box and onnxruntime's output satisfies its disjunct."""
    assert isinstance(outcome, Falsified), outcome
    found = outcome.counterexample
    assert case.box.contains(found.x)
    y = network.replay(found.x[None, :])[0]
    assert case.disjuncts[found.disjunct].holds(y)


@pytest.mark.parametrize(
    ("conjunction", "violated"),
    [
        (at_least(2 - 1 / 64), True),
        (at_least(2.0), True),  # attained exactly at the corner (1, 1)
        (at_least(2 + 1 / 64), False),
        (at_most(-2 + 1 / 64), True),
        (at_most(-2 - 1 / 64), False),
    ],
)
def test_exact_extremes_of_a_hand_checked_network(conjunction, violated):
    network = dense(HAND)
    case = Case(SQUARE, (conjunction,))
    outcome = decide(network, case)
    if violated:
        assert_replays(network, case, outcome)
    else:
        assert isinstance(outcome, Proven), outcome
        assert outcome.certificate.method == "smt"
        assert "real-valued" in outcome.certificate.detail["semantics"]


def test_falsified_names_the_disjunct_that_holds():
    network = dense(HAND)
    case = Case(SQUARE, (at_least(3.0), at_most(-1.5)))
    outcome = decide(network, case)
    assert_replays(network, case, outcome)
    assert outcome.counterexample.disjunct == 1


def test_conjunction_of_rows_and_multiple_outputs():
    # y0 = relu(x0), y1 = relu(-x0): both >= 0.25 never holds together; each alone does.
    network = dense([([[1.0], [-1.0]], [0, 0]), ([[1, 0], [0, 1]], [0, 0])])
    box = Box([-1], [1])
    both = Conjunction([[-1, 0], [0, -1]], [-0.25, -0.25])
    assert isinstance(decide(network, Case(box, (both,))), Proven)
    case = Case(box, (both, at_least(0.25, 2, 1)))
    assert_replays(network, case, decide(network, case))


def test_sub_box_and_phase_constraints_restrict_the_question_to_a_leaf():
    network = dense(HAND)
    case = Case(SQUARE, (at_least(1 / 64),))
    assert isinstance(decide(network, case), Falsified)
    # x0 + x1 <= 0 (first ReLU inactive) leaves y = -relu(x0 - x1) <= 0
    inactive_first = {1: (np.array([False, False]), np.array([True, False]))}
    leaf = decide(network, case, phases=inactive_first)
    assert isinstance(leaf, Proven) and leaf.certificate.detail["scope"].startswith("leaf")
    # on the sub-box x <= -1/2 the first ReLU is off as well
    assert isinstance(decide(network, case, box=Box([-1, -1], [-0.5, -0.5])), Proven)
    active_first = {1: (np.array([True, False]), np.array([False, False]))}
    assert_replays(network, case, decide(network, case, phases=active_first))
    with pytest.raises(ValueError, match="not a Relu layer"):
        decide(network, case, phases={0: (np.array([True]), np.array([False]))})


def test_max_pool_groups_are_encoded_exactly():
    g = GraphBuilder()
    image = g.op("Reshape", "x", g.const(np.array([1, 1, 2, 2])))
    pooled = g.op("MaxPool", image, kernel_shape=[2, 2])
    network = load_network_bytes(g.build((1, 4), g.op("Flatten", pooled)), "maxpool")
    pwl = to_piecewise_linear(network)
    assert any(isinstance(layer, MaxGroups) for layer in pwl.layers)
    box = Box([-1, -1, -1, -1], [0.5, 0.25, 0.5, -0.5])
    assert isinstance(decide(network, Case(box, (at_least(0.5 + 1 / 64),))), Proven)
    case = Case(box, (at_least(0.5),))
    assert_replays(network, case, decide(network, case))


def test_bounds_fix_stable_relus_and_caller_bounds_are_used():
    # the first neuron is always on (bias 4 on [-1, 1]), the second always off
    network = dense([([[1.0], [1.0]], [4.0, -4.0]), ([[1.0, 1.0]], [0.0])])
    case = Case(Box([-1], [1]), (at_least(5 + 1 / 64),))
    outcome = decide(network, case)
    assert isinstance(outcome, Proven)
    assert outcome.certificate.detail["fixed_by_bounds"] == 2
    assert outcome.certificate.detail["unstable_relus"] == 0
    pwl = to_piecewise_linear(network)
    given = interval_bounds(pwl, case.box)
    with_given = smt.run(pwl, network, case, Budget.seconds(BUDGET_S), bounds=[None] + given[1:])
    assert isinstance(with_given, Proven) and "caller" in with_given.certificate.detail["bounds"]


def test_sigmoid_network_is_unknown_with_the_reason():
    network = dense(HAND, activation="Sigmoid")
    outcome = smt.run_network(network, Case(SQUARE, (at_least(10.0),)), Budget.seconds(BUDGET_S))
    assert isinstance(outcome, Unknown)
    assert "piecewise-linear" in outcome.reason and "Sigmoid" in outcome.reason


def test_a_violation_float32_cannot_reach_is_unknown_not_falsified():
    # y = x on [0, 0.1]: over the reals y >= 0.1 holds at x = 0.1 only, which float32 cannot represent
    # inside the box (float32(0.1) > 0.1), so the replay must refuse it.
    network = dense([([[1.0]], [0.0])])
    outcome = decide(network, Case(Box([0.0], [0.1]), (at_least(0.1),)))
    assert isinstance(outcome, Unknown), outcome
    assert "did not replay" in outcome.reason


def hard_case(seed: int = 0) -> tuple[Network, Case]:
    network = load_network_bytes(mlp((3, 16, 16, 2), seed=seed), "hard")
    box = Box(-np.ones(3), np.ones(3))
    ys = to_piecewise_linear(network).evaluate(box.sample(20000, np.random.default_rng(seed)))
    top = float((ys[:, 0] - ys[:, 1]).max())
    return network, Case(box, (Conjunction([[-1.0, 1.0]], [-(top + 0.02 * abs(top))]),))


def test_timeout_is_unknown_and_says_so():
    network, case = hard_case()
    outcome = decide(network, case, seconds=0.3)
    assert isinstance(outcome, Unknown) and outcome.timed_out
    spent = decide(network, case, seconds=0.0)
    assert isinstance(spent, Unknown) and spent.timed_out


def test_same_seed_same_answer():
    network = load_network_bytes(mlp((3, 6, 2), seed=3), "small")
    box = Box([-1, -1, -1], [1, 1, 1])
    case = Case(box, (Conjunction([[-1.0, 1.0]], [-0.1]),))
    first, second = decide(network, case, seed=7), decide(network, case, seed=7)
    assert isinstance(first, Falsified) and isinstance(second, Falsified)
    np.testing.assert_array_equal(first.counterexample.x, second.counterexample.x)
    proven = [decide(network, Case(box, (Conjunction([[-1.0, 1.0]], [-0.6]),)), seed=7) for _ in range(2)]
    assert all(isinstance(outcome, Proven) for outcome in proven)
    counts = [{k: v for k, v in p.certificate.detail["stats"].items() if k != "max memory"} for p in proven]
    assert counts[0] == counts[1]


@pytest.mark.parametrize("encoding", smt.RELU_ENCODINGS)
def test_every_relu_encoding_gives_the_same_answers(encoding):
    network = dense(HAND)
    assert isinstance(decide(network, Case(SQUARE, (at_least(2 + 1 / 64),)), relu_encoding=encoding), Proven)
    case = Case(SQUARE, (at_least(2 - 1 / 64),))
    assert_replays(network, case, decide(network, case, relu_encoding=encoding))


def test_floats_enter_z3_as_their_exact_rationals():
    import z3

    enc = Encoding(z3.Context())
    value = enc.number(0.1)
    assert Fraction(value.numerator_as_long(), value.denominator_as_long()) == Fraction(0.1)
    assert Fraction(0.1) != Fraction("0.1")


def test_coarsened_bounds_only_widen():
    rng = np.random.default_rng(0)
    lower = rng.normal(size=100) * 10.0 ** rng.integers(-6, 6, size=100)
    upper = lower + rng.uniform(0, 1, size=100)
    ((wide_lower, wide_upper),) = coarsen([(lower, upper)], 6)
    assert (wide_lower <= lower).all() and (wide_upper >= upper).all()
    # widened by at most 2^-6 of the interval's magnitude: signs (stable ReLUs) never change
    magnitude = np.maximum(np.abs(lower), np.abs(upper))
    assert (lower - wide_lower <= magnitude / 64).all() and (wide_upper - upper <= magnitude / 64).all()
    assert (np.sign(wide_lower) * np.sign(lower) >= 0).all() and (np.sign(wide_upper) * np.sign(upper) >= 0).all()


@pytest.mark.parametrize("seed", range(4))
def test_bounds_used_by_the_encoding_contain_every_sampled_activation(seed):
    network = load_network_bytes(mlp((3, 8, 8, 2), seed=seed), "sampled")
    pwl = to_piecewise_linear(network)
    rng = np.random.default_rng(seed)
    centre = rng.uniform(-1, 1, 3)
    box = Box(centre - 0.3, centre + 0.3)
    layer_bounds, sources = smt._bounds(pwl, box, {}, None, True)
    assert "crown-float64" in sources
    values = np.vstack([box.sample(4000, rng), box.lower[None, :], box.upper[None, :]])
    for layer, (lower, upper) in zip(pwl.layers, layer_bounds):
        values = PiecewiseLinear((layer,), values.shape[1], 0).evaluate(values)
        assert (values >= lower).all() and (values <= upper).all()
