"""Piecewise-linear extraction: PiecewiseLinear.evaluate matches onnxruntime; exact small cases; refusals."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from tests.conftest import shared_file
from onnx_factory import BATCH_MODES, OP_CASES, GraphBuilder, case_batch_modes, cnn, mlp, op_model
from verikit.core.pwl import Affine, MaxGroups, NotPiecewiseLinear, Relu
from verikit.onnx.load import load_network, load_network_bytes
from verikit.onnx.pwl import to_piecewise_linear

NOT_PIECEWISE_LINEAR_CASES = {
    "MatMul_two_inputs", "Mul_two_inputs", "Sigmoid", "Tanh", "Softmax", "Softmax_opset11_flattening",
    "Concat", "Concat_constant", "Pow", "Pow_per_element", "Pow_odd_five", "Pow_fractional", "Pow_constant_base",
    "Pow_negative_whole", "Pow_square_root",
    "Div_input_dependent", "Div_negative_divisor", "Greater", "Less", "GreaterOrEqual", "LessOrEqual", "Equal", "Where", "Where_dynamic_branches", "Cast_bool",
    "Max_Min",  # Min of two input-dependent tensors: a branching graph
}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def assert_pwl_matches_onnxruntime(network, *, count: int = 8, seed: int = 0, scale: float = 1.0):
    pwl = to_piecewise_linear(network)
    assert (pwl.n_inputs, pwl.n_outputs) == (network.n_inputs, network.n_outputs)
    x = np.random.default_rng(seed).normal(0.0, scale, size=(count, network.n_inputs)).astype(np.float32)
    expected = network.replay(x)
    np.testing.assert_allclose(pwl.evaluate(x), expected, rtol=1e-5, atol=1e-5 * max(1.0, np.abs(expected).max()))
    assert isinstance(pwl.layers[0], Affine) and isinstance(pwl.layers[-1], Affine)
    return pwl


@pytest.mark.parametrize(
    "parts",
    [("acasxu", "ACASXU_run2a_1_1_batch_2000.onnx"), ("acasxu", "ACASXU_run2a_4_7_batch_2000.onnx"),
     ("mnistfc", "mnist-net_256x2.onnx"), ("mnistfc", "mnist-net_256x6.onnx"), ("test", "test_nano.onnx"),
     ("test", "test_tiny.onnx"), ("test", "test_small.onnx"), ("test", "test_sat.onnx"), ("test", "test_unsat.onnx")],
    ids=lambda parts: parts[1],
)
def test_benchmark_models_are_relu_mlps(parts):
    network = load_network(shared_file(*parts))
    pwl = assert_pwl_matches_onnxruntime(network, scale=0.5)
    assert pwl.is_relu_mlp


def test_acasxu_layers_have_the_known_sizes():
    pwl = to_piecewise_linear(load_network(shared_file("acasxu", "ACASXU_run2a_1_1_batch_2000.onnx")))
    affines = [layer for layer in pwl.layers if isinstance(layer, Affine)]
    assert [a.weight.shape for a in affines] == [(50, 5)] + [(50, 50)] * 5 + [(5, 50)]


@pytest.mark.parametrize(
    "case,batch",
    [(c, b) for c in OP_CASES if c not in NOT_PIECEWISE_LINEAR_CASES for b in case_batch_modes(c)],
)
def test_each_piecewise_linear_op(case, batch):
    assert_pwl_matches_onnxruntime(load_network_bytes(op_model(case, batch=batch, seed=5), case))


@pytest.mark.parametrize("case", sorted(NOT_PIECEWISE_LINEAR_CASES))
def test_other_ops_and_branches_are_refused_with_the_node(case):
    network = load_network_bytes(op_model(case, batch=case_batch_modes(case)[0]), case)
    with pytest.raises(NotPiecewiseLinear, match=r"node '"):
        to_piecewise_linear(network)


@pytest.mark.parametrize("batch", BATCH_MODES)
@pytest.mark.parametrize("pool", ["MaxPool", "AveragePool", None])
def test_cnns(batch, pool):
    network = load_network_bytes(cnn(batch=batch, pool=pool, batchnorm=True, flatten="ShapeChain", seed=1), "cnn")
    pwl = assert_pwl_matches_onnxruntime(network)
    kinds = [type(layer) for layer in pwl.layers]
    assert kinds.count(MaxGroups) == (2 if pool == "MaxPool" else 0)
    assert kinds.count(Relu) == 2


@pytest.mark.parametrize("activation", ["Relu", "LeakyRelu"])
def test_mlps(activation):
    network = load_network_bytes(mlp((6, 9, 7, 4), seed=4, activation=activation, style="matmul"), "mlp")
    pwl = assert_pwl_matches_onnxruntime(network)
    assert pwl.is_relu_mlp
    assert [layer.weight.shape for layer in pwl.layers if isinstance(layer, Affine)] == (
        [(9, 6), (7, 9), (4, 7)] if activation == "Relu" else [(18, 6), (14, 18), (4, 14)]
    )


def test_affine_segment_is_exact_for_a_hand_checkable_net():
    g = GraphBuilder()
    hidden = g.op("Sub", g.op("Gemm", "x", g.const([[1.0, 2.0], [-3.0, 0.5]]), g.const([1.0, -1.0])), g.const(0.5))
    scaled = g.op("Div", g.op("Relu", hidden), g.const([2.0, 4.0]))
    network = load_network_bytes(g.build((1, 2), scaled), "hand")
    first, relu, second = to_piecewise_linear(network).layers
    np.testing.assert_array_equal(first.weight, [[1.0, -3.0], [2.0, 0.5]])
    np.testing.assert_array_equal(first.bias, [0.5, -1.5])
    assert isinstance(relu, Relu)
    np.testing.assert_array_equal(second.weight, np.diag([0.5, 0.25]))
    np.testing.assert_array_equal(second.bias, [0.0, 0.0])


def test_max_groups_leave_padding_out():
    g = GraphBuilder(opset=13)
    pooled = g.op("MaxPool", "x", kernel_shape=[2, 2], strides=[2, 2], pads=[1, 0, 0, 0])
    network = load_network_bytes(g.build((1, 1, 3, 4), pooled), "pool")  # out 2x2 over a 3x4 input
    groups = [layer for layer in to_piecewise_linear(network).layers if isinstance(layer, MaxGroups)][0].groups
    # output (0, j) sees padding and input row 0; output (1, j) sees input rows 1-2
    assert [sorted(set(row)) for row in groups.tolist()] == [[0, 1], [2, 3], [4, 5, 8, 9], [6, 7, 10, 11]]


def test_large_segments_are_refused():
    network = load_network_bytes(mlp((6, 9, 4), seed=0), "m")
    with pytest.raises(NotPiecewiseLinear, match="too many"):
        to_piecewise_linear(network, max_dense_entries=20)


def test_a_network_with_another_module_is_rebuilt_from_its_bytes():
    network = load_network_bytes(mlp((3, 5, 2), batch="dynamic"), "m")
    wrapped = dataclasses.replace(network, module=torch.nn.Sequential(network.module))
    np.testing.assert_allclose(
        to_piecewise_linear(wrapped).evaluate(np.ones((1, 3))), to_piecewise_linear(network).evaluate(np.ones((1, 3)))
    )
