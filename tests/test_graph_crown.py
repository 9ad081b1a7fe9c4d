"""The float64 graph CROWN (verikit.engines.crown.graph): rigorous bounds for ReLU DAGs (residual adds,
branches), the confirmation of float32 proofs on networks with no piecewise-linear chain form."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.onnx_factory import GraphBuilder
from verikit.core.property import Box, Case, Conjunction, Property
from verikit.core.result import Verdict
from verikit.engines.crown.confirm import ChainForm, confirming_form
from verikit.engines.crown.graph import GraphForm
from verikit.onnx.load import load_network_bytes
from verikit.portfolio.options import Options
from verikit.portfolio.runner import verify


def residual_mlp(seed: int, width: int = 8, n_in: int = 4, n_out: int = 3) -> bytes:
    """Gemm-Relu, a Gemm-Relu branch added back (residual), another subtracted: a DAG, not a chain."""
    g = GraphBuilder(seed)
    r = g.op("Relu", g.op("Gemm", "x", g.weight(width, n_in), g.weight(width, scale=0.1), transB=1))
    a = g.op("Relu", g.op("Gemm", r, g.weight(width, width), g.weight(width, scale=0.1), transB=1))
    s = g.op("Add", a, r)
    b = g.op("Relu", g.op("Gemm", s, g.weight(width, width), g.weight(width, scale=0.1), transB=1))
    t = g.op("Sub", b, s)
    return g.build((1, n_in), g.op("Gemm", t, g.weight(n_out, width), g.weight(n_out, scale=0.1), transB=1))


def residual_cnn(seed: int) -> bytes:
    """Conv-Relu, Conv-BatchNorm-Relu added back, average pool, Gemm."""
    g = GraphBuilder(seed)
    rng = np.random.default_rng(seed)
    r1 = g.op("Relu", g.op("Conv", "x", g.weight(4, 1, 3, 3), g.weight(4, scale=0.1), pads=[1, 1, 1, 1]))
    c2 = g.op("Conv", r1, g.weight(4, 4, 3, 3, scale=0.3), g.weight(4, scale=0.1), pads=[1, 1, 1, 1])
    bn = g.op("BatchNormalization", c2, g.const(np.abs(rng.normal(1, 0.2, 4))), g.weight(4, scale=0.1),
              g.weight(4, scale=0.1), g.const(np.abs(rng.normal(1, 0.2, 4))))
    s = g.op("Add", g.op("Relu", bn), r1)
    p = g.op("Flatten", g.op("AveragePool", s, kernel_shape=[2, 2], strides=[2, 2]))
    return g.build((1, 1, 6, 6), g.op("Gemm", p, g.weight(3, 36), g.weight(3, scale=0.1), transB=1))


@pytest.mark.parametrize("build", [residual_mlp, residual_cnn])
@pytest.mark.parametrize("seed", range(4))
def test_sampled_outputs_stay_inside_the_bounds(build, seed):
    network = load_network_bytes(build(seed), "dag")
    form = GraphForm.build(network.module)
    assert isinstance(form, GraphForm), form
    rng = np.random.default_rng(seed)
    m = network.n_outputs
    C = np.vstack([np.eye(m), -np.eye(m), rng.normal(size=(3, m))])
    for _ in range(3):
        centre, eps = rng.uniform(-1, 1, network.n_inputs), rng.uniform(0.01, 0.5)
        lower = form.lower_bounds(centre - eps, centre + eps, C, np.zeros(len(C)))[0]
        points = rng.uniform(centre - eps, centre + eps, size=(3000, network.n_inputs))
        corners = np.where(rng.random((64, network.n_inputs)) < 0.5, centre - eps, centre + eps)
        points = np.vstack([points, corners])
        values = form.evaluate(points) @ C.T  # float64: the rounding of the check is far below the gaps
        assert np.all(values >= lower[None, :]), (values.min(axis=0) - lower).min()
        onnx_values = network.replay(points.astype(np.float32)).astype(np.float64) @ C.T
        assert np.all(onnx_values >= lower[None, :] - 1e-4)


@pytest.mark.parametrize("build", [residual_mlp, residual_cnn])
def test_bounds_are_crown_bounds(build):
    """As tight as auto_LiRPA's CROWN on the same graph (same relaxation; only the rounding allowance differs)."""
    from verikit.engines.lirpa.engine import prepare

    network = load_network_bytes(build(1), "dag")
    form = GraphForm.build(network.module)
    bounded = prepare(network)
    rng = np.random.default_rng(3)
    centre, eps = rng.uniform(-1, 1, network.n_inputs), 0.1
    m = network.n_outputs
    ours = form.lower_bounds(centre - eps, centre + eps, np.eye(m), np.zeros(m))[0]
    import torch

    from verikit.engines.lirpa.compat import import_auto_lirpa

    lirpa = import_auto_lirpa()
    x = torch.tensor(centre[None], dtype=torch.float32)
    ptb = lirpa.PerturbationLpNorm(norm=np.inf, x_L=x - eps, x_U=x + eps)
    theirs, _ = bounded.module.compute_bounds(x=(lirpa.BoundedTensor(x, ptb),), method="CROWN")
    theirs = theirs[0].detach().double().numpy()
    assert np.all(ours >= theirs - 1e-4 * (1 + np.abs(theirs)))  # never looser (beyond float32 noise)
    assert np.allclose(ours, theirs, rtol=1e-3, atol=1e-4)  # and the same relaxation


def test_a_residual_network_gets_the_graph_form_and_a_chain_keeps_the_chain_form():
    residual = load_network_bytes(residual_mlp(0), "dag")
    assert isinstance(confirming_form(residual), GraphForm)
    g = GraphBuilder(0)
    chain = g.op("Gemm", g.op("Relu", g.op("Gemm", "x", g.weight(5, 3), g.weight(5), transB=1)), g.weight(2, 5),
                 g.weight(2), transB=1)
    assert isinstance(confirming_form(load_network_bytes(g.build((1, 3), chain), "chain")), ChainForm)


@pytest.mark.parametrize("make, fragment", [
    (lambda g, x: g.op("Div", x, g.const(np.full(4, 3.0))), "Div by a constant"),
    (lambda g, x: g.op("Sigmoid", x), "not affine or ReLU"),
    (lambda g, x: g.op("Mul", x, x), "combines several input-dependent tensors"),
])
def test_what_it_cannot_bound_rigorously_is_refused_with_the_node(make, fragment):
    g = GraphBuilder(0)
    h = g.op("Relu", g.op("Gemm", "x", g.weight(4, 3), g.weight(4), transB=1))
    y = g.op("Gemm", g.op("Add", make(g, h), h), g.weight(2, 4), g.weight(2), transB=1)
    network = load_network_bytes(g.build((1, 3), y), "odd")
    reason = GraphForm.build(network.module)
    assert isinstance(reason, str) and fragment in reason and "node '" in reason


def cancelling_branches(big: float = 2.0**24) -> bytes:
    """y = (x·big + 1) + (-x·big) over x in [0, 1]: exactly 1, but float32 branches lose the 1 near x = 1."""
    g = GraphBuilder(0)
    a = g.op("Gemm", "x", g.const([[big]]), g.const([1.0]), transB=1)
    b = g.op("Gemm", "x", g.const([[-big]]), g.const([0.0]), transB=1)
    return g.build((1, 1), g.op("Add", a, b))


def test_cancelling_branches_are_bounded_in_real_arithmetic():
    """The exact output is 1 everywhere: the graph form proves y >= 1 - tiny, never y > 1 + something."""
    network = load_network_bytes(cancelling_branches(), "cancel")
    form = GraphForm.build(network.module)
    assert isinstance(form, GraphForm)
    lower = form.lower_bounds(np.zeros(1), np.ones(1), np.array([[1.0], [-1.0]]), np.zeros(2))[0]
    assert lower[0] <= 1.0 and -lower[1] >= 1.0  # an enclosure of the exact value 1
    assert lower[0] > 0.99 and -lower[1] < 1.01  # and a tight one: the rounding allowance is small


def test_a_false_property_on_a_residual_network_is_never_verified():
    """y <= 0.999 is false (y = 1 exactly); every engine's answer must be falsified or open."""
    network = load_network_bytes(cancelling_branches(), "cancel")
    case = Case(Box(np.zeros(1), np.ones(1)), (Conjunction(np.array([[-1.0]]), np.array([-0.999])),))
    result = verify(network, Property((case,), 1, 1), Options(timeout=10))
    assert result.verdict in (Verdict.FALSIFIED, Verdict.UNKNOWN, Verdict.TIMEOUT)


def test_a_true_property_on_a_residual_network_is_verified_through_the_graph_form():
    network = load_network_bytes(residual_mlp(2), "dag")
    rng = np.random.default_rng(0)
    centre = rng.uniform(-1, 1, 4)
    box = Box(centre - 0.01, centre + 0.01)
    form = GraphForm.build(network.module)
    m = network.n_outputs
    # each output stays above its proven lower bound minus 0.05: violated where y_j <= lower_j - 0.05
    lower = form.lower_bounds(box.lower, box.upper, np.eye(m), np.zeros(m))[0]
    case = Case(box, tuple(Conjunction(np.eye(m)[j:j + 1], np.array([lower[j] - 0.05])) for j in range(m)))
    result = verify(network, Property((case,), 4, m), Options(timeout=20, engines=("bounds",)))
    assert result.verdict is Verdict.VERIFIED, result.reason


def _random_domain(form, root, rng, x0: np.ndarray, count: int) -> list[tuple[int, int, bool]]:
    """`count` splits of neurons the box leaves unstable, each on the side x0 lies on."""
    values = form.evaluate_all(x0[None])
    unstable = []
    for k, (name, _) in enumerate(form.relu_inputs()):
        lo, hi = (t.reshape(-1) for t in root.bounds[name])
        z = values[name].reshape(-1)
        unstable += [(k, int(j), bool(z[j] >= 0)) for j in torch.nonzero((lo < 0) & (hi > 0)).reshape(-1)]
    chosen = rng.choice(len(unstable), size=min(count, len(unstable)), replace=False)
    return [unstable[i] for i in chosen]


def _satisfies(form, points: np.ndarray, domain) -> np.ndarray:
    values = form.evaluate_all(points)
    keep = np.ones(len(points), dtype=bool)
    names = [name for name, _ in form.relu_inputs()]
    for k, j, active in domain:
        z = values[names[k]].reshape(len(points), -1)[:, j].numpy()
        keep &= (z >= 0) if active else (z <= 0)
    return keep


@pytest.mark.parametrize("build", [residual_mlp, residual_cnn])
@pytest.mark.parametrize("seed", range(3))
def test_split_domain_bounds_hold_on_their_domains(build, seed):
    """Random splits, random α in [0, 1] and β >= 0: every sampled point of each domain stays above its bound."""
    network = load_network_bytes(build(seed), "dag")
    form = GraphForm.build(network.module)
    rng = np.random.default_rng(seed)
    m, n = network.n_outputs, network.n_inputs
    C, d = rng.normal(size=(4, m)), rng.normal(size=4) * 0.1
    centre, eps = rng.uniform(-1, 1, n), 0.4
    lower, upper = centre - eps, centre + eps
    root = form.box_bounds(lower, upper)
    sizes = [int(np.prod(shape)) for _, shape in form.relu_inputs()]
    anchors = rng.uniform(lower, upper, size=(3, n))
    domains = [_random_domain(form, root, rng, x0, count) for x0, count in zip(anchors, (1, 3, 6))]
    alpha = [torch.tensor(rng.uniform(0, 1, size=(len(domains), 4, size))) for size in sizes]
    beta = [torch.tensor(rng.exponential(1.0, size=(len(domains), 1, size))) for size in sizes]
    for a, b in ((None, None), (alpha, None), (alpha, beta), (None, beta)):
        bounds = form.split_lower_bounds(root, C, d, domains, alpha=a, beta=b)
        for x0, domain, bound in zip(anchors, domains, bounds):
            near = np.clip(x0 + rng.normal(scale=0.05, size=(3000, n)), lower, upper)
            points = np.vstack([near, rng.uniform(lower, upper, size=(3000, n))])
            points = points[_satisfies(form, points, domain)]
            assert len(points) > 10
            values = form.evaluate(points) @ C.T - d
            assert np.all(values >= bound[None, :]), (values.min(axis=0) - bound).min()


def test_split_bounds_without_splits_are_the_box_bounds():
    network = load_network_bytes(residual_cnn(7), "dag")
    form = GraphForm.build(network.module)
    rng = np.random.default_rng(7)
    C, d = rng.normal(size=(3, network.n_outputs)), np.zeros(3)
    centre = rng.uniform(-1, 1, network.n_inputs)
    whole = form.lower_bounds(centre - 0.2, centre + 0.2, C, d)[0]
    split = form.split_lower_bounds(form.box_bounds(centre - 0.2, centre + 0.2), C, d, [[], []])
    np.testing.assert_allclose(split, np.vstack([whole, whole]), rtol=0, atol=1e-12)


def test_a_split_neuron_is_relaxed_by_its_side():
    """An unstable neuron split both ways: each side's bound is at least the unsplit one on some row, and
    β far too large on a split only loosens (β multiplies a term that is >= 0 on the domain)."""
    network = load_network_bytes(residual_mlp(3), "dag")
    form = GraphForm.build(network.module)
    rng = np.random.default_rng(3)
    C, d = np.eye(network.n_outputs), np.zeros(network.n_outputs)
    centre = rng.uniform(-1, 1, network.n_inputs)
    root = form.box_bounds(centre - 0.5, centre + 0.5)
    k, j, _ = _random_domain(form, root, rng, centre, 1)[0]
    unsplit, on, off = form.split_lower_bounds(root, C, d, [[], [(k, j, True)], [(k, j, False)]])
    assert np.all(np.maximum(on, off) >= unsplit - 1e-12)
    sizes = [int(np.prod(shape)) for _, shape in form.relu_inputs()]
    huge = [torch.full((size,), 1e6) for size in sizes]
    loose = form.split_lower_bounds(root, C, d, [[(k, j, True)]], beta=huge)[0]
    assert np.all(loose < on)
