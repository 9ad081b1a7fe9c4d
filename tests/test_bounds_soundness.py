"""Soundness of the bounds engine: onnxruntime's outputs on points of a box never leave its bounds.

Random small networks of every op family the engine supports, random boxes (some coordinates of zero
width), every method; then real networks (ACAS Xu, mnistfc) on their spec boxes and the example models.
Points: the box's corners (all of them up to 8 inputs, else a seeded sample), its center and uniform
draws. Allowed excess: 1e-5 times the output scale, on top of the engine's own float slack.
"""

from __future__ import annotations

import csv
import itertools
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from onnx_factory import OP_CASES, GraphBuilder, cnn, mlp, op_model

from verikit.engines.lirpa import engine as bounds
from verikit.onnx.load import load_network, load_network_bytes
from verikit.core.network import Network
from verikit.core.result import Budget, Proven
from verikit.core.property import Box
from verikit.spec.vnnlib import read_vnnlib

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(__file__).resolve().parents[2] / "shared" / "benchmarks"
ALPHA_ITERATIONS = 5  # soundness does not depend on how long α is optimized


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def seeded(examples: int) -> settings:
    """Deterministic (derandomized) hypothesis settings without deadlines: bound computations vary."""
    return settings(max_examples=examples, derandomize=True, deadline=None, database=None,
                    suppress_health_check=[HealthCheck.too_slow])


def sample_points(box: Box, rng: np.random.Generator, uniform: int = 200, corners: int = 64) -> np.ndarray:
    """Corners (all, or `corners` random ones), the center and `uniform` points of the box, (k, n)."""
    n = box.size
    if n <= 8:
        signs = np.array(list(itertools.product((0, 1), repeat=n)), dtype=bool)
    else:
        signs = rng.integers(0, 2, size=(corners, n)).astype(bool)
    corner_points = np.where(signs, box.upper, box.lower)
    return np.vstack([corner_points, box.center[None, :], box.sample(uniform, rng)])


def random_box(n: int, rng: np.random.Generator, radius: float = 0.5) -> Box:
    center = rng.normal(0.0, 1.0, n)
    widths = rng.uniform(0.0, radius, n) * (rng.random(n) > 0.2)  # some coordinates fixed
    return Box(center - widths, center + widths)


def assert_sound(network: Network, box: Box, rng: np.random.Generator, methods=bounds.METHODS,
                 bounded: bounds.BoundedNetwork | None = None) -> None:
    """Every method's bounds of the outputs and of 3 random margins `C y - d` hold on sampled points.

    One call per method bounds all rows at once: C stacks I, -I (output bounds) and the margins.
    """
    bounded = bounded or bounds.prepare(network)
    points = sample_points(box, rng)
    outputs = network.replay(points).astype(np.float64)
    n = network.n_outputs
    C = np.vstack([np.eye(n), -np.eye(n), rng.normal(size=(3, n))])
    d = np.concatenate([np.zeros(2 * n), rng.normal(size=3)])
    margins = outputs @ C.T - d
    scale = 1.0 + float(np.abs(outputs).max()) * np.abs(C).sum(axis=1) + np.abs(d)
    for method in methods:
        lower = bounds.margin_lower_bounds(bounded, box, C, d, method=method, iterations=ALPHA_ITERATIONS)
        excess = lower - margins.min(axis=0)
        assert np.all(excess <= 1e-5 * scale), (method, excess.max())


@seeded(10)
@given(
    seed=st.integers(0, 2**16),
    sizes=st.lists(st.integers(1, 8), min_size=3, max_size=4),
    activation=st.sampled_from(["Relu", "Sigmoid", "Tanh", "LeakyRelu"]),
    style=st.sampled_from(["gemm", "matmul"]),
    batch=st.sampled_from(["fixed", "dynamic"]),
)
def test_mlp_bounds_contain_onnxruntime_outputs(seed, sizes, activation, style, batch):
    network = load_network_bytes(mlp(sizes, seed=seed, activation=activation, style=style, batch=batch))
    rng = np.random.default_rng(seed)
    assert_sound(network, random_box(network.n_inputs, rng), rng)


@seeded(6)
@given(
    seed=st.integers(0, 2**16),
    image=st.sampled_from([(1, 4, 4), (2, 4, 4), (1, 6, 6)]),
    channels=st.sampled_from([(2,), (3,), (2, 2)]),
    pool=st.sampled_from(["MaxPool", "AveragePool", None]),
    batchnorm=st.booleans(),
    flatten=st.sampled_from(["Flatten", "Reshape", "ShapeChain"]),
)
def test_cnn_bounds_contain_onnxruntime_outputs(seed, image, channels, pool, batchnorm, flatten):
    data = cnn(image, channels=channels, outputs=3, seed=seed, pool=pool, batchnorm=batchnorm, flatten=flatten)
    network = load_network_bytes(data)
    rng = np.random.default_rng(seed)
    assert_sound(network, random_box(network.n_inputs, rng, radius=0.3), rng)


def shape_graph(seed: int) -> bytes:
    """Gemm → Relu → Reshape (3, 4) → Transpose → Concat with its Tanh → Flatten → Gemm."""
    g = GraphBuilder(seed)
    hidden = g.op("Relu", g.op("Gemm", "x", g.weight(12, 5), g.weight(12, scale=0.1), transB=1))
    grid = g.op("Transpose", g.op("Reshape", hidden, g.const([1, 3, 4])), perm=[0, 2, 1])
    joined = g.op("Concat", grid, g.op("Tanh", grid), axis=2)
    flat = g.op("Flatten", joined, axis=1)
    return g.build((1, 5), g.op("Gemm", flat, g.weight(3, 24), g.weight(3, scale=0.1), transB=1))


@seeded(4)
@given(seed=st.integers(0, 2**16))
def test_reshape_transpose_concat_graph_bounds_are_sound(seed):
    network = load_network_bytes(shape_graph(seed))
    rng = np.random.default_rng(seed)
    assert_sound(network, random_box(network.n_inputs, rng), rng)


# Cases auto_LiRPA 0.3 must bound with every method (a regression check of the engine's workarounds).
MUST_SUPPORT = {
    "Gemm", "MatMul", "MatMul_two_inputs", "Add", "Sub_const_first", "Mul_two_inputs", "Neg", "Relu",
    "Sigmoid", "Tanh", "LeakyRelu", "Clip", "Identity", "Dropout", "BatchNormalization", "MaxPool",
    "GlobalAveragePool", "Conv_group_valid", "Conv1d", "Flatten", "Reshape_zero_minus_one", "Reshape_flatten_chain",
    "Transpose", "Squeeze", "Unsqueeze", "Concat", "Gather", "Slice", "Constant",
    "ReduceSum", "ReduceSum_all", "ReduceMean", "ConstantOfShape", "Expand", "Expand_rank_growing", "Split_first", "Pow", "Pow_per_element", "Pow_zero", "Pow_constant_base", "Pow_fractional", "Pow_negative_whole", "Pow_square_root",
    "Div_input_dependent", "Div_negative_divisor", "Greater", "Less", "GreaterOrEqual", "LessOrEqual", "Equal", "Where", "Where_dynamic_branches", "Cast_bool",
    "Gather_repeated_indices", "Pad_zero_spatial", "Pad_zero_symmetric", "Pad_opset9_all_zero", "Pad_value_and_crop", "Pad_reflect", "Pad_edge_axes", "Pad_wrap",
}


@pytest.mark.parametrize("case", OP_CASES)
def test_every_single_op_model_is_bounded_soundly_or_refused_by_name(case):
    """Sound bounds, or a typed refusal (never an untyped crash, never a wrong bound)."""
    batch = "fixed" if "fixed" in _modes(case) else "none"
    network = load_network_bytes(op_model(case, batch=batch), case)
    rng = np.random.default_rng(len(case))
    box = random_box(network.n_inputs, rng, radius=0.3)
    try:
        bounded = bounds.prepare(network)
    except bounds.BoundsError:
        assert case not in MUST_SUPPORT
        return
    for method in bounds.METHODS:
        try:
            assert_sound(network, box, rng, methods=(method,), bounded=bounded)
        except bounds.UnsupportedByBoundsError as error:
            assert case not in MUST_SUPPORT, str(error)
            assert error.operators


def _modes(case: str) -> tuple[str, ...]:
    from onnx_factory import case_batch_modes

    return case_batch_modes(case)


def _benchmark(folder: str) -> Path:
    path = SHARED / folder
    if not path.is_dir():
        pytest.skip(f"{path} not found")
    return path


@pytest.mark.parametrize("net, prop", [("1_1", "prop_1"), ("1_1", "prop_3"), ("2_3", "prop_2")])
def test_acasxu_bounds_are_sound_on_spec_boxes(net, prop):
    folder = _benchmark("acasxu")
    network = load_network(folder / f"ACASXU_run2a_{net}_batch_2000.onnx")
    case = read_vnnlib(folder / f"{prop}.vnnlib").cases[0]
    assert_sound(network, case.box, np.random.default_rng(1))


@pytest.mark.parametrize("net, prop", [("256x2", "prop_0_0.03"), ("256x4", "prop_1_0.05")])
def test_mnistfc_bounds_are_sound_on_spec_boxes(net, prop):
    folder = _benchmark("mnistfc")
    network = load_network(folder / f"mnist-net_{net}.onnx")
    case = read_vnnlib(folder / f"{prop}.vnnlib").cases[0]
    assert_sound(network, case.box, np.random.default_rng(2))


def _example_instances() -> list[tuple[str, str, str, str]]:
    expected = ROOT / "specs" / "expected.csv"
    if not expected.is_file():
        return []
    with expected.open() as handle:
        return [(row["onnx"], row["vnnlib"], row["truth"], row["basis"]) for row in csv.DictReader(handle)
                if row["vnnlib"].endswith(".vnnlib")]


# Which methods must prove an unsat example, by the independent evidence that says it is unsat.
MUST_PROVE = {"crown-numpy": ("crown", "alpha-crown"), "ibp-numpy": bounds.METHODS}


@pytest.mark.parametrize("model, spec, truth, basis", _example_instances())
def test_example_models_bounds_are_sound_and_agree_with_their_expected_verdicts(model, spec, truth, basis):
    """Never Proven on a sat spec; Proven where an independent CROWN/IBP (models/example_bounds.py) proved it."""
    network = load_network(ROOT / model)
    bounded = bounds.prepare(network)
    rng = np.random.default_rng(3)
    must_prove = MUST_PROVE.get(basis.split(":")[0], ()) if truth == "unsat" else ()
    for case in read_vnnlib(ROOT / spec).cases:
        assert_sound(network, case.box, rng, bounded=bounded)
        for method in bounds.METHODS:
            outcome = bounds.run(bounded, case, Budget.seconds(60), method=method, iterations=ALPHA_ITERATIONS)
            if truth == "sat":
                assert not isinstance(outcome, Proven), (method, outcome)
            if method in must_prove:
                assert isinstance(outcome, Proven), (method, outcome)
