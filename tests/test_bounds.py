"""The bounds engine on hand-checkable networks, tightness order IBP ≤ CROWN ≤ α-CROWN, and verdict rules."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from onnx import TensorProto
from onnx_factory import GraphBuilder, mlp, op_model

from verikit.engines.lirpa import engine as bounds
from verikit.onnx.load import load_network_bytes
from verikit.core.network import Network
from verikit.core.result import Budget, Proven, Unknown
from verikit.core.property import Box, Case, Conjunction

TOL = 1e-4  # float32 bounds plus the engine's slack (REFUTATION_RTOL times small magnitudes)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def dense_network(layers: list[tuple[np.ndarray, np.ndarray]], activation: str = "Relu") -> Network:
    """y = W_k act(... act(W_1 x + b_1)) + b_k as Gemm/activation ONNX nodes, loaded by verikit.onnx.load."""
    g = GraphBuilder()
    value = "x"
    for index, (weight, bias) in enumerate(layers):
        value = g.op("Gemm", value, g.const(weight), g.const(bias), transB=1)
        if index < len(layers) - 1:
            value = g.op(activation, value)
    return load_network_bytes(g.build((1, np.shape(layers[0][0])[1]), value), "dense")


def _with_module(network: Network, module: torch.nn.Module, op: str) -> Network:
    """The same ONNX bytes with another torch module (to feed auto_LiRPA what it cannot handle)."""
    return Network(module, network.onnx_bytes, network.input_name, network.input_shape, network.output_name,
                   network.n_inputs, network.n_outputs, network.op_types | {op})


def random_network(sizes: list[int], seed: int, activation: str = "Relu") -> Network:
    rng = np.random.default_rng(seed)
    layers = [
        (rng.normal(0, 1 / np.sqrt(n_in), (n_out, n_in)), rng.normal(0, 0.1, n_out))
        for n_in, n_out in zip(sizes[:-1], sizes[1:])
    ]
    return dense_network(layers, activation)


@pytest.fixture(scope="module")
def twin() -> bounds.BoundedNetwork:
    """h = relu([x1 + x2, x1 - x2]); y = [h1 - h2, h1 + h2] = [2 x2, 2 x1] while both units are active.

    On x ∈ [1, 2] × [0, 0.5] both units are active: exact ranges y1 ∈ [0, 1], y2 ∈ [2, 4].
    IBP loses the correlation: y1 ∈ [1 - 2, 2.5 - 0.5] = [-1, 2], y2 ∈ [1.5, 4.5]. CROWN is exact.
    """
    network = dense_network(
        [(np.array([[1.0, 1.0], [1.0, -1.0]]), np.zeros(2)), (np.array([[1.0, -1.0], [1.0, 1.0]]), np.zeros(2))]
    )
    return bounds.prepare(network)


TWIN_BOX = Box([1.0, 0.0], [2.0, 0.5])


def test_linear_network_bounds_are_exact_for_every_method():
    weight, bias = np.array([[1.0, -2.0, 0.5], [0.0, 3.0, -1.0]]), np.array([0.25, -1.0])
    bounded = bounds.prepare(dense_network([(weight, bias)]))
    box = Box([-1.0, 0.0, 2.0], [1.0, 1.0, 4.0])
    exact_lower = np.minimum(weight * box.lower, weight * box.upper).sum(axis=1) + bias
    exact_upper = np.maximum(weight * box.lower, weight * box.upper).sum(axis=1) + bias
    for method in bounds.METHODS:
        lower, upper = bounds.output_bounds(bounded, box, method=method)
        np.testing.assert_allclose(lower, exact_lower, rtol=TOL, atol=TOL)
        np.testing.assert_allclose(upper, exact_upper, rtol=TOL, atol=TOL)
        assert np.all(lower <= exact_lower) and np.all(upper >= exact_upper)


def test_relu_of_difference_has_range_zero_to_one():
    """y = relu(x1 - x2) on [0, 1]^2: exact range [0, 1], which every method finds."""
    network = dense_network([(np.array([[1.0, -1.0]]), np.zeros(1)), (np.eye(1), np.zeros(1))])
    bounded = bounds.prepare(network)
    for method in bounds.METHODS:
        lower, upper = bounds.output_bounds(bounded, Box([0.0, 0.0], [1.0, 1.0]), method=method)
        assert lower[0] == pytest.approx(0.0, abs=TOL) and lower[0] <= 0.0
        assert upper[0] == pytest.approx(1.0, abs=TOL) and upper[0] >= 1.0


def test_ibp_loses_correlation_and_crown_is_exact(twin):
    lower, upper = bounds.output_bounds(twin, TWIN_BOX, method="ibp")
    np.testing.assert_allclose(lower, [-1.0, 1.5], rtol=TOL, atol=TOL)
    np.testing.assert_allclose(upper, [2.0, 4.5], rtol=TOL, atol=TOL)
    for method in ("crown", "alpha-crown"):
        lower, upper = bounds.output_bounds(twin, TWIN_BOX, method=method)
        np.testing.assert_allclose(lower, [0.0, 2.0], rtol=TOL, atol=TOL)
        np.testing.assert_allclose(upper, [1.0, 4.0], rtol=TOL, atol=TOL)


def test_margin_bounds_stack_rows_and_subtract_d(twin):
    C = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, -1.0]])
    d = np.array([-0.5, 1.0, 0.0])
    lower = bounds.margin_lower_bounds(twin, TWIN_BOX, C, d, method="crown")
    # y1 + 0.5 ≥ 0.5; y2 - 1 ≥ 1; y1 - y2 = 2 x2 - 2 x1 ≥ -4
    np.testing.assert_allclose(lower, [0.5, 1.0, -4.0], rtol=TOL, atol=TOL)
    assert np.all(lower <= [0.5, 1.0, -4.0])
    assert bounds.margin_lower_bounds(twin, TWIN_BOX, np.zeros((0, 2)), np.zeros(0)).shape == (0,)


REFUTED_A = Conjunction([[1.0, 0.0]], [-0.5])  # y1 <= -0.5: impossible (y1 >= 0)
REFUTED_B = Conjunction([[0.0, 1.0], [1.0, 0.0]], [1.9, 10.0])  # y2 <= 1.9 is impossible (y2 >= 2)
OPEN_C = Conjunction([[-1.0, 0.0]], [-0.2])  # y1 >= 0.2: holds somewhere


def test_proven_when_every_disjunct_has_a_refuting_row(twin):
    outcome = bounds.run(twin, Case(TWIN_BOX, (REFUTED_A, REFUTED_B)), Budget.seconds(30), method="crown")
    assert isinstance(outcome, Proven)
    certificate = outcome.certificate
    assert certificate.method == "crown"
    assert len(certificate.disjuncts) == 2
    assert all(item.refuted and item.method == "crown" for item in certificate.disjuncts)
    np.testing.assert_allclose(certificate.disjuncts[0].lower, [0.5], rtol=TOL, atol=TOL)
    np.testing.assert_allclose(certificate.disjuncts[1].lower, [0.1, -10.0], rtol=TOL, atol=TOL)


def test_unknown_with_bounds_when_one_disjunct_stays_open(twin):
    case = Case(TWIN_BOX, (REFUTED_A, REFUTED_B, OPEN_C))
    outcome = bounds.run(twin, case, Budget.seconds(30), method="crown")
    assert isinstance(outcome, Unknown)
    assert not outcome.timed_out
    assert [item.refuted for item in outcome.bounds] == [True, True, False]
    assert [item.lower.shape for item in outcome.bounds] == [(1,), (2,), (1,)]
    assert "open: 2" in outcome.reason


def test_ibp_is_unknown_where_crown_proves(twin):
    outcome = bounds.run(twin, Case(TWIN_BOX, (REFUTED_A, REFUTED_B)), Budget.seconds(30), method="ibp")
    assert isinstance(outcome, Unknown)
    np.testing.assert_allclose(outcome.bounds[0].lower, [-0.5], rtol=TOL, atol=TOL)
    np.testing.assert_allclose(outcome.bounds[1].lower, [-0.4, -11.0], rtol=TOL, atol=TOL)


def test_a_margin_within_float_slack_does_not_refute(twin):
    """y1 <= -1e-7 cannot hold (y1 >= 0), but a bound of 1e-7 is within float rounding: not a proof."""
    outcome = bounds.run(twin, Case(TWIN_BOX, (Conjunction([[1.0, 0.0]], [-1e-7]),)), Budget.seconds(30))
    assert isinstance(outcome, Unknown)
    assert outcome.bounds[0].lower[0] < 0 < outcome.bounds[0].lower[0] + 2 * bounds.REFUTATION_RTOL


def test_empty_conjunction_and_empty_case(twin):
    always = Conjunction(np.zeros((0, 2)), np.zeros(0))
    outcome = bounds.run(twin, Case(TWIN_BOX, (REFUTED_A, always)), Budget.seconds(30))
    assert isinstance(outcome, Unknown) and "no rows" in outcome.reason
    vacuous = bounds.run(twin, Case(TWIN_BOX, ()), Budget.seconds(30))
    assert isinstance(vacuous, Proven) and vacuous.certificate.disjuncts == ()


def test_expired_budget_and_bad_boxes_give_unknown(twin):
    case = Case(TWIN_BOX, (REFUTED_A,))
    late = bounds.run(twin, case, Budget.seconds(0))
    assert isinstance(late, Unknown) and late.timed_out
    empty = bounds.run(twin, Case(Box([1.0, 1.0], [0.0, 2.0]), (REFUTED_A,)), Budget.seconds(30))
    assert isinstance(empty, Unknown) and "empty" in empty.reason
    unbounded = bounds.run(twin, Case(Box([1.0, -np.inf], [2.0, 0.5]), (REFUTED_A,)), Budget.seconds(30))
    assert isinstance(unbounded, Unknown) and "unbounded" in unbounded.reason


def test_unknown_method_is_an_error(twin):
    with pytest.raises(ValueError, match="unknown bounds method"):
        bounds.run(twin, Case(TWIN_BOX, (REFUTED_A,)), Budget.seconds(30), method="beta-crown")


@pytest.mark.parametrize("seed", range(4))
def test_crown_at_least_as_tight_as_ibp_and_alpha_at_least_as_tight_as_crown(seed):
    network = random_network([4, 16, 16, 3], seed)
    bounded = bounds.prepare(network)
    rng = np.random.default_rng(100 + seed)
    center = rng.uniform(-1, 1, 4)
    box = Box(center - 0.3, center + 0.3)
    C = rng.normal(size=(5, 3))
    d = rng.normal(size=5)
    ibp, crown, alpha = (bounds.margin_lower_bounds(bounded, box, C, d, method=m) for m in bounds.METHODS)
    assert np.all(crown >= ibp - TOL)
    assert np.all(alpha >= crown - TOL)
    samples = np.vstack([box.lower, box.upper, box.sample(200, rng)])
    margins = network.replay(samples).astype(np.float64) @ C.T - d
    assert np.all(margins.min(axis=0) >= alpha)


def test_alpha_crown_stops_at_the_deadline_with_sound_bounds():
    network = random_network([4, 32, 32, 3], seed=7)
    bounded = bounds.prepare(network)
    box = Box(-np.ones(4), np.ones(4))
    C, d = np.eye(3), np.zeros(3)
    crown = bounds.margin_lower_bounds(bounded, box, C, d, method="crown")
    hurried = bounds.margin_lower_bounds(
        bounded, box, C, d, method="alpha-crown", iterations=10_000, budget=Budget.seconds(0)
    )
    np.testing.assert_allclose(hurried, crown, rtol=TOL, atol=TOL)


def test_unsupported_operator_is_named():
    network = random_network([3, 4, 2], seed=1)
    elu = _with_module(network, torch.nn.Sequential(_Flat(network), torch.nn.ELU()), "Elu")
    with pytest.raises(bounds.UnsupportedByBoundsError, match="Elu") as raised:
        bounds.prepare(elu)
    assert raised.value.operators == ("onnx::Elu",)
    outcome = bounds.bound_case(elu, Case(Box(np.zeros(3), np.ones(3)), (REFUTED_A,)), Budget.seconds(30))
    assert isinstance(outcome, Unknown) and "Elu" in outcome.reason


class _Flat(torch.nn.Module):
    """The network's own translation, as a submodule."""

    def __init__(self, network: Network) -> None:
        super().__init__()
        self.inner = network.module

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner(x)


def test_operator_without_relaxation_gives_unknown():
    network = random_network([3, 4, 2], seed=1)
    softplus = _with_module(network, torch.nn.Sequential(_Flat(network), torch.nn.Softplus()), "Softplus")
    bounded = bounds.prepare(softplus)
    outcome = bounds.run(bounded, Case(Box(np.zeros(3), np.ones(3)), (REFUTED_A,)), Budget.seconds(30))
    assert isinstance(outcome, Unknown) and "Softplus" in outcome.reason


def test_operator_configuration_beyond_auto_lirpa_is_named():
    """MaxPool with stride != kernel: IBP bounds it, CROWN is refused naming MaxPool."""
    network = load_network_bytes(op_model("MaxPool_pads"), "maxpool_pads")
    bounded = bounds.prepare(network)
    box = Box(-np.ones(network.n_inputs), np.ones(network.n_inputs))
    lower, upper = bounds.output_bounds(bounded, box, method="ibp")
    assert np.all(lower <= upper)
    with pytest.raises(bounds.UnsupportedByBoundsError, match="MaxPool"):
        bounds.output_bounds(bounded, box, method="crown")


def test_softmax_whose_exp_underflows_gives_unknown_naming_div():
    """auto_LiRPA's Softmax divides by a sum of exps; over a wide box its lower bound underflows to 0."""
    builder = GraphBuilder()
    network = load_network_bytes(builder.build((1, 2), builder.op("Softmax", "x", axis=1)), "softmax")
    bounded = bounds.prepare(network)
    case = Case(Box([1.0, -1000.0], [1000.0, 0.0]), (Conjunction([[1.0, -1.0]], [0.0]),))
    outcome = bounds.run(bounded, case, Budget.seconds(30), method="ibp")
    assert isinstance(outcome, Unknown) and "Div" in outcome.reason and "divisor" in outcome.reason


def _quotient(shift: float) -> Network:
    """x0 / (x1 + shift), the inputs split by Slice."""
    builder = GraphBuilder()
    numerator = builder.op("Slice", "x", builder.const([0]), builder.const([1]))
    divisor = builder.op("Add", builder.op("Slice", "x", builder.const([1]), builder.const([2])),
                         builder.const([shift]))
    return load_network_bytes(builder.build((2,), builder.op("Div", numerator, divisor)), "div")


@pytest.mark.parametrize("method", ["ibp", "crown"])
def test_division_by_an_input_dependent_tensor_is_bounded_soundly_for_either_sign(method):
    """x0 / (x1 + 5) over x0 in [-1, 1], x1 in [0, 1] spans [-0.2, 0.2]; auto_LiRPA 0.3's own Div gave
    x_l / y_u = -1/6 as the lower bound (it 'proved' y > -0.19). With x1 - 5 the divisor is negative."""
    box = Box([-1.0, 0.0], [1.0, 1.0])
    for shift, low, high in [(5.0, -0.2, 0.2), (-5.0, -0.25, 0.25)]:
        network = _quotient(shift)
        lower, upper = bounds.output_bounds(bounds.prepare(network), box, method=method)
        assert lower[0] <= low and upper[0] >= high
        assert lower[0] > 2 * low and upper[0] < 2 * high  # and not loose
    outcome = bounds.bound_case(_quotient(5.0), Case(box, (Conjunction([[1.0]], [-0.19]),)), Budget.seconds(30))
    assert isinstance(outcome, Unknown)


def test_division_by_a_tensor_that_may_reach_zero_is_unknown():
    outcome = bounds.bound_case(_quotient(-0.5), Case(Box([-1.0, 0.0], [1.0, 1.0]), (REFUTED_A_1D,)),
                                Budget.seconds(30))
    assert isinstance(outcome, Unknown) and "may reach 0" in outcome.reason


REFUTED_A_1D = Conjunction([[1.0]], [-100.0])  # y <= -100


def _pow_network(base_of_x, exponent: float, name: str) -> Network:
    builder = GraphBuilder()
    return load_network_bytes(builder.build((1,), builder.op("Pow", base_of_x(builder), builder.const(
        np.float32(exponent)))), name)


def _square_plus_one(builder: GraphBuilder) -> str:
    return builder.op("Add", builder.op("Mul", "x", "x"), builder.const(np.float32(1.0)))


@pytest.mark.parametrize("method", ["ibp", "crown"])
def test_pow_forms_are_bounded_soundly(method):
    """2 ** x (as exp(x ln 2)), (x * x + 1) ** -0.5, (x * x + 1) ** -2 and relu(x) ** 0.5 over x in [0, 1]."""
    builder = GraphBuilder()
    two_to_x = load_network_bytes(builder.build((1,), builder.op("Pow", builder.const(np.float32(2.0)), "x")), "2^x")
    cases = [
        (two_to_x, 1.0, 2.0),
        (_pow_network(_square_plus_one, -0.5, "rsqrt"), 2 ** -0.5, 1.0),
        (_pow_network(_square_plus_one, -2.0, "inverse square"), 0.25, 1.0),
        (_pow_network(lambda b: b.op("Relu", "x"), 0.5, "sqrt"), 0.0, 1.0),
    ]
    for network, low, high in cases:
        lower, upper = bounds.output_bounds(bounds.prepare(network), Box([0.0], [1.0]), method=method)
        assert low - 0.5 < lower[0] <= low and high <= upper[0] < high + 0.5, network.source
        samples = network.replay(np.linspace(0.0, 1.0, 101, dtype=np.float32)[:, None])[:, 0]
        assert lower[0] <= samples.min() and samples.max() <= upper[0]


def test_pow_of_a_base_that_may_be_negative_or_zero_is_unknown_by_name():
    """(x - 0.5) ** 0.5 is NaN below 0; relu(x) ** -0.5 is unbounded at 0: no bound, unknown saying why."""
    shifted = _pow_network(lambda b: b.op("Sub", "x", b.const(np.float32(0.5))), 0.5, "sqrt of x - 0.5")
    rectified = _pow_network(lambda b: b.op("Relu", "x"), -0.5, "rsqrt of relu")
    for network in (shifted, rectified):
        outcome = bounds.bound_case(network, Case(Box([0.0], [1.0]), (REFUTED_A_1D,)), Budget.seconds(30))
        assert isinstance(outcome, Unknown) and "has no bound" in outcome.reason, network.source


@pytest.mark.parametrize("method", ["ibp", "crown"])
def test_comparison_is_exact_where_settled_and_zero_to_one_across_the_jump(method):
    """x > 0.5 as a float 0/1: 1 over [0.6, 1], 0 over [0, 0.4], [0, 1] where the box reaches the jump
    (0.5 itself gives 0: Greater is strict)."""
    builder = GraphBuilder()
    greater = builder.op("Cast", builder.op("Greater", "x", builder.const(np.float32(0.5))), to=TensorProto.FLOAT)
    network = load_network_bytes(builder.build((1,), greater), "greater")
    bounded = bounds.prepare(network)
    for box, expected in [((0.6, 1.0), (1, 1)), ((0.0, 0.4), (0, 0)), ((0.4, 0.6), (0, 1)), ((0.5, 0.6), (0, 1))]:
        lower, upper = bounds.output_bounds(bounded, Box([box[0]], [box[1]]), method=method)
        assert (round(float(lower[0]), 3), round(float(upper[0]), 3)) == expected, box


def test_where_picks_its_branch_in_the_bounds():
    """Where(x > 0.5, x, -1): over [0.6, 1] it is x (at least 0.6), over [0, 1] at least -1."""
    builder = GraphBuilder()
    where = builder.op("Where", builder.op("Greater", "x", builder.const(np.float32(0.5))), "x",
                       builder.const(np.float32(-1.0)))
    bounded = bounds.prepare(load_network_bytes(builder.build((1,), where), "where"))
    lower, upper = bounds.output_bounds(bounded, Box([0.6], [1.0]), method="crown")
    assert 0.6 - 1e-3 < lower[0] <= 0.6 and 1.0 <= upper[0] < 1.0 + 1e-3
    lower, upper = bounds.output_bounds(bounded, Box([0.0], [1.0]), method="crown")
    assert lower[0] <= -1.0 and upper[0] >= 1.0


def test_padding_beyond_auto_lirpa_is_refused_at_prepare():
    network = load_network_bytes(op_model("Conv_pads_strides"), "conv_pads")
    with pytest.raises(bounds.UnsupportedByBoundsError, match="Pad"):
        bounds.prepare(network)


def test_translation_mismatch_is_refused():
    first, second = random_network([3, 4, 2], seed=1), random_network([3, 4, 2], seed=2)
    traced = bounds.prepare(first)
    with pytest.raises(bounds.BoundsError, match="disagrees"):
        bounds._check_translation(bounds.BoundedNetwork(second, traced.module, "cpu"))


def test_prepare_leaves_the_network_module_alone():
    network = random_network([3, 4, 2], seed=3)
    before = {name: value.clone() for name, value in network.module.state_dict().items()}
    bounds.prepare(network)
    after = network.module.state_dict()
    assert all(torch.equal(before[name], after[name]) for name in before)
    assert all(value.device.type == "cpu" for value in after.values())


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_cuda_without_a_device_is_a_clear_error():
    with pytest.raises(bounds.DeviceUnavailableError, match="cuda"):
        bounds.prepare(random_network([2, 2], seed=0), device="cuda")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_bounds_match_cpu_bounds():
    network = random_network([4, 16, 3], seed=5)
    box = Box(-np.ones(4) * 0.5, np.ones(4) * 0.5)
    for method in bounds.METHODS:
        cpu = bounds.output_bounds(bounds.prepare(network), box, method=method)
        gpu = bounds.output_bounds(bounds.prepare(network, device="cuda"), box, method=method)
        np.testing.assert_allclose(cpu, gpu, atol=1e-3)


def test_unexpected_errors_propagate_instead_of_becoming_unknown(monkeypatch):
    """Only auto_LiRPA's known operator limitations become Unknown; anything else is a bug to see."""
    bounded = bounds.prepare(random_network([3, 4, 2], seed=4))

    def broken(*args, **kwargs):
        raise RuntimeError("something unexpected")

    monkeypatch.setattr(bounded.module, "compute_bounds", broken)
    with pytest.raises(RuntimeError, match="something unexpected"):
        bounds.run(bounded, Case(Box(np.zeros(3), np.ones(3)), (REFUTED_A,)), Budget.seconds(30))


def test_no_state_carries_over_between_calls():
    """A prepared network gives, box after box, the bounds a freshly prepared one gives."""
    network = load_network_bytes(mlp((5, 24, 24, 24, 3), seed=3))
    shared = bounds.prepare(network)
    rng = np.random.default_rng(8)
    for radius in (0.01, 2.0, 0.05, 1.0):
        center = rng.normal(size=5)
        box = Box(center - radius, center + radius)
        for method in ("alpha-crown", "crown", "ibp"):
            again = bounds.output_bounds(shared, box, method=method, iterations=3)
            fresh = bounds.output_bounds(bounds.prepare(network), box, method=method, iterations=3)
            np.testing.assert_allclose(again, fresh, rtol=1e-5, atol=1e-5)


def test_problem_builds_the_piecewise_linear_form_once_for_every_engine(monkeypatch):
    """The bounds engine's confirming float64 CROWN reuses the Problem's piecewise-linear form."""
    from verikit.engines.problem import Problem
    from verikit.onnx import pwl as pwl_module

    calls = []
    original = pwl_module.to_piecewise_linear
    monkeypatch.setattr(pwl_module, "to_piecewise_linear", lambda network: calls.append(1) or original(network))
    problem = Problem(random_network([3, 4, 2], seed=1))
    form = problem.piecewise_linear()
    bounded = problem.lirpa()
    assert calls == [1]
    assert bounded.pwl.pwl is form
