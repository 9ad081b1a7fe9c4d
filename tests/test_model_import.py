"""ONNX import: every supported op matches onnxruntime, batch dims of every kind, benchmark models load,
auto_LiRPA can bound the translations, and bad files give one-line ModelErrors."""

from __future__ import annotations

import hashlib
import io
from contextlib import redirect_stdout

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper

from tests.conftest import shared_file
from onnx_factory import (
    BATCH_MODES,
    OP_CASES,
    GraphBuilder,
    case_batch_modes,
    cnn,
    mlp,
    op_model,
    unsupported_op_model,
)
from verikit.core.errors import ModelError, UnsupportedOperatorError
from verikit.onnx.load import (
    TRANSLATION_RTOL,
    check_translation,
    crosscheck,
    evaluation_points,
    load_network,
    load_network_bytes,
)
from verikit.onnx import supported_ops
from verikit.core.property import Box



pytestmark = pytest.mark.usefixtures("one_torch_thread")


def assert_matches_onnxruntime(network, *, batch: int = 3, seed: int = 0, scale: float = 1.0) -> None:
    x = np.random.default_rng(seed).normal(0.0, scale, size=(batch, network.n_inputs)).astype(np.float32)
    expected = network.replay(x)
    actual = network.forward(x).numpy()
    assert actual.shape == expected.shape == (batch, network.n_outputs)
    np.testing.assert_allclose(actual, expected, rtol=1e-5, atol=1e-5 * max(1.0, np.abs(expected).max()))


# ---- every op, every batch mode ----


@pytest.mark.parametrize(
    "case,batch", [(case, batch) for case in OP_CASES for batch in case_batch_modes(case)]
)
def test_each_op_matches_onnxruntime(case, batch):
    network = load_network_bytes(op_model(case, batch=batch, seed=3), f"{case}-{batch}")
    assert_matches_onnxruntime(network, batch=1)
    assert_matches_onnxruntime(network, batch=4, seed=1)


def test_every_supported_op_has_a_case():
    models = [op_model(case, batch=case_batch_modes(case)[0]) for case in OP_CASES]
    covered = {node.op_type for data in models for node in onnx.load_from_string(data).graph.node}
    assert set(supported_ops()) <= covered


@pytest.mark.parametrize(
    "batch,style", [(b, s) for b in BATCH_MODES for s in ("gemm", "matmul") if (b, s) != ("none", "gemm")]
)
@pytest.mark.parametrize("constant_inputs", [False, True])
def test_mlp_in_every_batch_style(batch, style, constant_inputs):
    data = mlp((5, 7, 6, 3), seed=2, batch=batch, style=style, constant_inputs=constant_inputs)
    network = load_network_bytes(data, "mlp")
    assert network.input_shape == {"fixed": (1, 5), "dynamic": ("N", 5), "none": (5,)}[batch]
    assert (network.n_inputs, network.n_outputs) == (5, 3)
    assert_matches_onnxruntime(network, batch=5)


@pytest.mark.parametrize("batch", BATCH_MODES)
@pytest.mark.parametrize("flatten", ["Flatten", "Reshape", "ShapeChain"])
def test_cnn_in_every_batch_style(batch, flatten):
    network = load_network_bytes(cnn(batch=batch, flatten=flatten, batchnorm=True), "cnn")
    assert (network.n_inputs, network.n_outputs) == (36, 3)
    assert_matches_onnxruntime(network, batch=3)


def _matmul_model(first_dim) -> bytes:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 3])
    if first_dim is not None:
        dim = x.type.tensor_type.shape.dim[0]
        if isinstance(first_dim, str):
            dim.dim_param = first_dim
        else:
            dim.dim_value = first_dim
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 2])
    weight = helper.make_tensor("w", TensorProto.FLOAT, [3, 2], np.arange(6, dtype=np.float32))
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"])], "g", [x], [y], [weight])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8).SerializeToString()


@pytest.mark.parametrize("first_dim,declared", [(None, (None, 3)), (-1, (None, 3)), ("B", ("B", 3)), (1, (1, 3))])
def test_unknown_symbolic_negative_and_fixed_batch_dims(first_dim, declared):
    network = load_network_bytes(_matmul_model(first_dim), "m")
    assert network.input_shape == declared and network.n_inputs == 3
    assert_matches_onnxruntime(network, batch=4)


def test_a_zero_sized_input_is_refused():
    assert "no elements" in _one_line_error(ModelError, lambda: load_network_bytes(_matmul_model(0), "m"))


def test_network_records_the_model_interface():
    data = mlp((4, 3), batch="dynamic", opset=13)
    network = load_network_bytes(data, "where/it/came/from.onnx")
    assert network.sha256 == hashlib.sha256(data).hexdigest()
    assert network.op_types == frozenset({"Gemm"})
    assert network.opset == 13
    assert network.source == "where/it/came/from.onnx"
    assert network.input_name == "x" and network.input_shape == ("N", 4)


def test_matmul_then_bias_add_runs_as_one_linear():
    network = load_network_bytes(mlp((4, 5, 2), style="matmul"), "m")
    assert [op.op_type for op in network.module.ops] == ["MatMul", "Relu", "MatMul"]
    assert network.op_types == frozenset({"MatMul", "Add", "Relu"})
    assert_matches_onnxruntime(network)


def test_constant_subgraphs_are_folded_and_dead_nodes_pruned():
    g = GraphBuilder(seed=0)
    weight = g.op("Transpose", g.weight(4, 3))  # constant only: folded at load
    g.op("Erf", "x")  # unsupported, but nothing uses it
    data = g.build((1, 3), g.op("MatMul", "x", weight))
    network = load_network_bytes(data, "folded")
    assert [op.op_type for op in network.module.ops] == ["MatMul"]
    assert_matches_onnxruntime(network)


# ---- benchmark models ----


@pytest.mark.parametrize("name", ["test_nano", "test_tiny", "test_small", "test_sat", "test_unsat"])
def test_shared_test_models_match_onnxruntime(name):
    network = load_network(shared_file("test", f"{name}.onnx"))
    assert_matches_onnxruntime(network, batch=4)


@pytest.mark.parametrize("name", ["mnist-net_256x2", "mnist-net_256x4", "mnist-net_256x6"])
def test_mnistfc_models_match_onnxruntime(name):
    network = load_network(shared_file("mnistfc", f"{name}.onnx"))
    assert (network.n_inputs, network.n_outputs) == (784, 10)
    assert_matches_onnxruntime(network, batch=3, scale=0.5)


@pytest.mark.parametrize("name", ["1_1", "3_3", "5_9"])
def test_acasxu_models_match_onnxruntime(name):
    network = load_network(shared_file("acasxu", f"ACASXU_run2a_{name}_batch_2000.onnx"))
    assert network.input_shape == (1, 1, 1, 5) and network.n_outputs == 5
    assert_matches_onnxruntime(network, batch=6)
    box = Box(-np.ones(5), np.ones(5))
    assert check_translation(network, box) <= TRANSLATION_RTOL


# ---- auto_LiRPA can trace and bound the translations ----


def _crown_bounds_hold(network, eps: float = 0.05) -> None:
    from verikit.engines.lirpa.compat import import_auto_lirpa

    auto_lirpa = import_auto_lirpa()
    n = network.n_inputs
    with redirect_stdout(io.StringIO()):
        bounded = auto_lirpa.BoundedModule(network.module, torch.zeros(1, n), device="cpu", verbose=False)
    center = torch.as_tensor(np.random.default_rng(0).uniform(-0.5, 0.5, (1, n)), dtype=torch.float32)
    perturbation = auto_lirpa.PerturbationLpNorm(norm=np.inf, x_L=center - eps, x_U=center + eps)
    lower, upper = bounded.compute_bounds(x=(auto_lirpa.BoundedTensor(center, perturbation),), method="CROWN")
    points = center + eps * (2 * torch.rand(64, n, generator=torch.Generator().manual_seed(0)) - 1)
    outputs = network.forward(points)
    assert lower.shape == upper.shape == (1, network.n_outputs)
    assert bool((lower - 1e-5 <= outputs).all() and (outputs <= upper + 1e-5).all())


@pytest.mark.parametrize(
    "make",
    [
        lambda: mlp((5, 8, 8, 3), batch="fixed"),
        lambda: mlp((5, 8, 3), batch="none", style="matmul"),
        lambda: cnn(batch="fixed", batchnorm=True),
        lambda: cnn(batch="none", pool="AveragePool", flatten="ShapeChain"),
    ],
    ids=["mlp", "mlp-no-batch", "cnn-maxpool-bn", "cnn-avgpool-no-batch"],
)
def test_auto_lirpa_bounds_factory_models(make):
    _crown_bounds_hold(load_network_bytes(make(), "factory"))


@pytest.mark.parametrize(
    "parts",
    [("test", "test_small.onnx"), ("test", "test_sat.onnx"), ("mnistfc", "mnist-net_256x2.onnx"),
     ("acasxu", "ACASXU_run2a_1_1_batch_2000.onnx")],
    ids=lambda parts: parts[1],
)
def test_auto_lirpa_bounds_benchmark_models(parts):
    _crown_bounds_hold(load_network(shared_file(*parts)), eps=0.01)


# ---- the cross-check ----


def test_crosscheck_is_tiny_and_check_translation_passes():
    network = load_network_bytes(cnn(batch="dynamic"), "cnn")
    box = Box(np.zeros(36), np.ones(36))
    assert crosscheck(network, box) < 1e-5
    assert check_translation(network, box) < 1e-5


def test_check_translation_catches_a_wrong_translation():
    network = load_network_bytes(mlp((3, 4, 2)), "tampered.onnx")
    with torch.no_grad():
        network.module.ops[0].weight[0, 0] += 0.5
    with pytest.raises(ModelError) as error:
        check_translation(network, Box(-np.ones(3), np.ones(3)))
    message = str(error.value)
    assert message.startswith("tampered.onnx: torch translation disagrees with onnxruntime: max |diff| = ")
    assert "\n" not in message


def test_onnxruntime_failures_become_model_errors():
    g = GraphBuilder(seed=0)  # declares a dynamic batch but reshapes to [1, -1]: onnxruntime cannot batch it
    data = g.build(("N", 2, 3), g.op("MatMul", g.op("Reshape", "x", g.const([1, -1])), g.weight(6, 2)))
    network = load_network_bytes(data, "unbatchable.onnx")
    message = _one_line_error(ModelError, lambda: check_translation(network, Box(np.zeros(6), np.ones(6))))
    assert "onnxruntime cannot run the model" in message


def test_evaluation_points_cover_center_corners_and_samples():
    box = Box([0.0, -1.0, 2.0], [1.0, 1.0, np.inf])
    points = evaluation_points(box, samples=16, seed=1)
    assert points.shape == (3 + 8 + 16, 3)
    np.testing.assert_array_equal(points[1], [0.0, -1.0, 2.0])
    np.testing.assert_array_equal(points[2], [1.0, 1.0, 3.0])  # an infinite side becomes a unit interval
    assert np.all(points >= [0.0, -1.0, 2.0]) and np.all(points <= [1.0, 1.0, 3.0])
    np.testing.assert_array_equal(points, evaluation_points(box, samples=16, seed=1))


# ---- errors ----


def _one_line_error(error_type, load) -> str:
    with pytest.raises(error_type) as error:
        load()
    message = str(error.value)
    assert "\n" not in message and message
    return message


def test_missing_file_and_directory(tmp_path):
    message = _one_line_error(ModelError, lambda: load_network(tmp_path / "nope.onnx"))
    assert "nope.onnx" in message and "not found" in message
    assert "directory" in _one_line_error(ModelError, lambda: load_network(tmp_path))


@pytest.mark.parametrize("data", [b"", b"\x00" * 7, b"this is not an onnx model at all", bytes(range(256))])
def test_garbage_bytes(data):
    _one_line_error(ModelError, lambda: load_network_bytes(data, "garbage.onnx"))


def test_every_truncation_is_refused():
    data = cnn()
    for length in np.linspace(1, len(data) - 1, 25).astype(int):
        _one_line_error(ModelError, lambda: load_network_bytes(data[:length], "cut.onnx"))


def test_unsupported_op_names_the_node_and_the_supported_ops():
    message = _one_line_error(UnsupportedOperatorError, lambda: load_network_bytes(unsupported_op_model("Erf"), "m"))
    assert "the_strange_node" in message and "'Erf'" in message
    assert "Gemm" in message and "Relu" in message


def _graph(build) -> bytes:
    g = GraphBuilder(seed=0)
    return build(g)


@pytest.mark.parametrize(
    "build,fragment",
    [
        (lambda g: g.build((1, 1, 5, 5), g.op("AveragePool", "x", kernel_shape=[2, 2], strides=[2, 2], ceil_mode=1)),
         "ceil_mode"),
        (lambda g: g.build((2, 2), g.op("Gemm", g.weight(2, 2), "x")), "constant A"),
        (lambda g: g.build((1, 4), g.op("Cast", g.op("Cast", "x", to=TensorProto.INT64), to=TensorProto.FLOAT)),
         "to=INT64"),
        (lambda g: g.build((1, 4), g.op("Dropout", "x", outputs=2, name="drop")), None),
    ],
    ids=["ceil_mode", "input-dependent-B", "cast-to-int", "dropout-mask"],
)
def test_unsupported_attributes_and_patterns_name_the_node(build, fragment):
    data = _graph(build)
    if fragment is None:  # make the Dropout mask the model output instead of its data output
        model = onnx.load_from_string(data)
        model.graph.output[0].name = model.graph.node[0].output[1]
        model.graph.output[0].type.tensor_type.elem_type = TensorProto.BOOL
        data = model.SerializeToString()
    message = _one_line_error(UnsupportedOperatorError, lambda: load_network_bytes(data, "m"))
    assert "node '" in message and (fragment is None or fragment in message)


def _model_with(inputs, outputs, nodes, initializers=()) -> bytes:
    graph = helper.make_graph(nodes, "g", inputs, outputs, list(initializers))
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8).SerializeToString()


_F = TensorProto.FLOAT


@pytest.mark.parametrize(
    "data,fragment",
    [
        (_model_with([helper.make_tensor_value_info("a", _F, [2]), helper.make_tensor_value_info("b", _F, [2])],
                     [helper.make_tensor_value_info("y", _F, [2])], [helper.make_node("Add", ["a", "b"], ["y"])]),
         "2 inputs"),
        (_model_with([helper.make_tensor_value_info("w", _F, [2])], [helper.make_tensor_value_info("y", _F, [2])],
                     [helper.make_node("Relu", ["w"], ["y"])], [helper.make_tensor("w", _F, [2], [1.0, 2.0])]),
         "no input"),
        (_model_with([helper.make_tensor_value_info("x", TensorProto.INT64, [2])],
                     [helper.make_tensor_value_info("y", TensorProto.INT64, [2])],
                     [helper.make_node("Neg", ["x"], ["y"])]),
         "float32"),
        (_model_with([helper.make_tensor_value_info("x", _F, ["N", "C"])],
                     [helper.make_tensor_value_info("y", _F, ["N", "C"])],
                     [helper.make_node("Relu", ["x"], ["y"])]),
         "non-fixed dim 1"),
        (_model_with([helper.make_tensor_value_info("x", _F, [1, 2])],
                     [helper.make_tensor_value_info("y", _F, [1, 2]), helper.make_tensor_value_info("z", _F, [1, 2])],
                     [helper.make_node("Relu", ["x"], ["y"]), helper.make_node("Neg", ["x"], ["z"])]),
         "2 outputs"),
    ],
    ids=["two-inputs", "no-input", "int-input", "symbolic-feature-dim", "two-outputs"],
)
def test_models_verikit_cannot_take_give_model_errors(data, fragment):
    assert fragment in _one_line_error(ModelError, lambda: load_network_bytes(data, "m.onnx"))


def test_custom_domain_is_unsupported():
    node = helper.make_node("Frobnicate", ["x"], ["y"], domain="com.example", name="frob")
    graph = helper.make_graph(
        [node], "g", [helper.make_tensor_value_info("x", _F, [1, 2])], [helper.make_tensor_value_info("y", _F, [1, 2])]
    )
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", 13), helper.make_opsetid("com.example", 1)], ir_version=8
    )
    message = _one_line_error(UnsupportedOperatorError, lambda: load_network_bytes(model.SerializeToString(), "m"))
    assert "frob" in message and "com.example" in message
