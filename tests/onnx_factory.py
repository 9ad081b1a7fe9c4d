"""Small ONNX models built with onnx.helper, returned as bytes, for tests.

    from onnx_factory import mlp, cnn, op_model, OP_CASES, GraphBuilder
    data = mlp((5, 8, 3), seed=1, batch="dynamic")      # bytes, ready for load_network_bytes
    data = op_model("Conv_pads_strides", batch="none")    # one model per supported op (and variants)

`batch` says how the model declares its batch dim: "fixed" (1, ...), "dynamic" ("N", ...) or "none"
(no batch dim). Weights are seeded normal draws. `GraphBuilder` is the tool the rest is made with.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Literal

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

Batch = Literal["fixed", "dynamic", "none"]
BATCH_MODES: tuple[Batch, ...] = ("fixed", "dynamic", "none")


def lead(batch: Batch) -> tuple:
    """The batch prefix of an input shape."""
    return {"fixed": (1,), "dynamic": ("N",), "none": ()}[batch]


class GraphBuilder:
    """Accumulates nodes and initializers; `build` makes the model bytes with one input `x`."""

    def __init__(self, seed: int = 0, opset: int = 13) -> None:
        self.rng = np.random.default_rng(seed)
        self.opset = opset
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: dict[str, np.ndarray] = {}
        self._count = 0

    def _name(self, prefix: str) -> str:
        self._count += 1
        return f"{prefix}{self._count}"

    def const(self, array, name: str | None = None) -> str:
        """An initializer (float arrays become float32, ints int64)."""
        array = np.asarray(array)
        array = array.astype(np.int64 if array.dtype.kind in "iu" else np.float32)
        name = name or self._name("c")
        self.initializers[name] = array
        return name

    def weight(self, *shape: int, scale: float = 0.5) -> str:
        return self.const(self.rng.normal(0.0, scale, size=shape))

    def op(self, op_type: str, *inputs: str, outputs: int = 1, name: str | None = None, **attributes) -> str:
        """Add a node; returns its (first) output name."""
        names = [self._name(op_type.lower()) for _ in range(outputs)]
        self.nodes.append(helper.make_node(op_type, list(inputs), names, name=name or names[0], **attributes))
        return names[0]

    def build(
        self,
        input_shape: Sequence[int | str | None],
        output: str,
        *,
        constant_inputs: bool = False,
        input_name: str = "x",
        output_shape: Sequence[int | str | None] | None = None,
    ) -> bytes:
        """Model bytes; `constant_inputs` also lists every initializer as a graph input (old exporters).
        The output's shape is inferred unless given (inference cannot see through Shape-computed shapes)."""
        inputs = [helper.make_tensor_value_info(input_name, TensorProto.FLOAT, list(input_shape))]
        if constant_inputs:
            inputs += [
                helper.make_tensor_value_info(name, helper.np_dtype_to_tensor_dtype(a.dtype), a.shape)
                for name, a in self.initializers.items()
            ]
        graph = helper.make_graph(
            self.nodes,
            "factory",
            inputs,
            [helper.make_tensor_value_info(output, TensorProto.FLOAT, output_shape)],
            [numpy_helper.from_array(array, name) for name, array in self.initializers.items()],
        )
        ir = 7 if self.opset < 15 else 8
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", self.opset)], ir_version=ir)
        model = onnx.shape_inference.infer_shapes(model, strict_mode=True)  # fills in the output's shape
        onnx.checker.check_model(model)
        return model.SerializeToString()


def mlp(
    sizes: Sequence[int] = (5, 8, 8, 3),
    *,
    seed: int = 0,
    batch: Batch = "fixed",
    activation: str | None = "Relu",
    style: Literal["gemm", "matmul"] = "gemm",
    constant_inputs: bool = False,
    opset: int = 13,
) -> bytes:
    """Dense layers `sizes[0] → … → sizes[-1]` with `activation` between them (Gemm needs a batch dim)."""
    if style == "gemm" and batch == "none":
        raise ValueError("Gemm needs 2-D inputs: use style='matmul' with batch='none'")
    g = GraphBuilder(seed, opset)
    value = "x"
    for index, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        if style == "gemm":
            value = g.op("Gemm", value, g.weight(n_out, n_in), g.weight(n_out, scale=0.1), transB=1)
        else:
            value = g.op("Add", g.op("MatMul", value, g.weight(n_in, n_out)), g.weight(n_out, scale=0.1))
        if activation and index < len(sizes) - 2:
            value = g.op(activation, value)
    return g.build((*lead(batch), sizes[0]), value, constant_inputs=constant_inputs)


def cnn(
    image: tuple[int, int, int] = (1, 6, 6),
    *,
    channels: Sequence[int] = (3, 4),
    outputs: int = 3,
    seed: int = 0,
    batch: Batch = "fixed",
    pool: Literal["MaxPool", "AveragePool"] | None = "MaxPool",
    batchnorm: bool = False,
    flatten: Literal["Flatten", "Reshape", "ShapeChain"] = "Flatten",
    opset: int = 13,
) -> bytes:
    """Conv(3x3, pad 1) [BatchNorm] Relu [2x2 pool] per entry of `channels`, then flatten and Gemm."""
    g = GraphBuilder(seed, opset)
    value = "x" if batch != "none" else _unsqueeze(g, "x", [0])
    c, h, w = image
    for out_c in channels:
        value = g.op("Conv", value, g.weight(out_c, c, 3, 3), g.weight(out_c, scale=0.1), pads=[1, 1, 1, 1])
        if batchnorm:
            value = g.op(
                "BatchNormalization",
                value,
                g.const(g.rng.uniform(0.5, 1.5, out_c)),
                g.weight(out_c, scale=0.1),
                g.weight(out_c, scale=0.1),
                g.const(g.rng.uniform(0.5, 2.0, out_c)),
                epsilon=1e-3,
            )
        value = g.op("Relu", value)
        if pool:
            value = g.op(pool, value, kernel_shape=[2, 2], strides=[2, 2])
            h, w = h // 2, w // 2
        c = out_c
    value = _flatten(g, value, flatten)
    value = g.op("Gemm", value, g.weight(outputs, c * h * w), g.weight(outputs, scale=0.1), transB=1)
    return g.build((*lead(batch), *image), value, output_shape=(*(lead(batch) or (1,)), outputs))


def _unsqueeze(g: GraphBuilder, value: str, axes: list[int]) -> str:
    if g.opset >= 13:
        return g.op("Unsqueeze", value, g.const(axes))
    return g.op("Unsqueeze", value, axes=axes)


def _flatten(g: GraphBuilder, value: str, how: str) -> str:
    if how == "Flatten":
        return g.op("Flatten", value, axis=1)
    if how == "Reshape":
        return g.op("Reshape", value, g.const([0, -1]))
    # the exporters' pattern: Reshape(x, Concat(Unsqueeze(Gather(Shape(x), 0)), [-1]))
    batch = g.op("Gather", g.op("Shape", value), g.const(np.array(0)), axis=0)
    return g.op("Reshape", value, g.op("Concat", _unsqueeze(g, batch, [0]), g.const([-1]), axis=0))


def unsupported_op_model(op_type: str = "Erf", node_name: str = "the_strange_node") -> bytes:
    """x → Relu → `op_type` (a unary op verikit does not translate) → y, with a batch dim."""
    g = GraphBuilder()
    value = g.op(op_type, g.op("Relu", "x"), name=node_name)
    return g.build((1, 4), value)


# ---- one small model per supported op (and variants) ----
# A case is a function (builder, batch) -> (input shape, output name); `_o(batch)` is the axis offset
# of the batch dim (1 when declared, 0 without one).

Case = Callable[[GraphBuilder, Batch], tuple[tuple, str]]
_CASES: dict[str, tuple[Case, tuple[Batch, ...], int]] = {}
_NO_BATCHING: tuple[Batch, ...] = ("fixed", "none")  # for graphs that move or mix the batch axis


def _case(name: str, modes: tuple[Batch, ...] = BATCH_MODES, opset: int = 13):
    def decorate(function: Case) -> Case:
        _CASES[name] = (function, modes, opset)
        return function

    return decorate


def op_model(case: str, *, seed: int = 0, batch: Batch = "fixed") -> bytes:
    """The model of one case of `OP_CASES` (`case_batch_modes(case)` lists the batch modes it has)."""
    function, modes, opset = _CASES[case]
    if batch not in modes:
        raise ValueError(f"case {case} has no batch mode {batch!r} (has {modes})")
    g = GraphBuilder(seed, opset)
    input_shape, output = function(g, batch)
    return g.build(input_shape, output, output_shape=_output_shapes(case, batch))


def case_batch_modes(case: str) -> tuple[Batch, ...]:
    return _CASES[case][1]


def _o(batch: Batch) -> int:
    return len(lead(batch))


def _on_image(g: GraphBuilder, batch: Batch, chw: tuple[int, ...], make: Callable[[str], str]) -> tuple[tuple, str]:
    """`make(x)` on an image input; without a batch dim, an Unsqueeze first adds the N image ops need."""
    return (*lead(batch), *chw), make("x" if batch != "none" else _unsqueeze(g, "x", [0]))


def _f32(value: float) -> np.ndarray:
    return np.float32(value)


_CONSTANT_K = helper.make_tensor("k", TensorProto.FLOAT, [3], [0.5, -1.0, 2.0])
_all, _unbatched = BATCH_MODES, _NO_BATCHING
for _name, _make, _modes, _opset in [
    ("Gemm", lambda g, b: ((*(lead(b) or (2,)), 4),  # without a batch dim A is a 2x4 matrix
                           g.op("Gemm", "x", g.weight(3, 4), g.weight(3), alpha=0.7, beta=1.3, transB=1)), _all, 13),
    ("Gemm_transA_matrixC", lambda g, b: ((4, 2), g.op("Gemm", "x", g.weight(4, 3), g.weight(2, 3), transA=1)),
     _unbatched, 13),
    ("MatMul", lambda g, b: ((*lead(b), 2, 4), g.op("MatMul", "x", g.weight(4, 3))), _all, 13),
    ("MatMul_const_left_vector", lambda g, b: ((4,), g.op("MatMul", g.weight(3, 4), "x")), ("none",), 13),
    ("MatMul_stacked_weight", lambda g, b: ((*lead(b), 2, 4), g.op("MatMul", "x", g.weight(3, 4, 5))), _unbatched, 13),
    ("MatMul_two_inputs", lambda g, b: ((*lead(b), 2, 3), g.op(
        "MatMul", "x", g.op("Transpose", "x", perm=[*range(_o(b)), _o(b) + 1, _o(b)]))), _all, 13),
    ("Add", lambda g, b: ((*lead(b), 3, 4), g.op("Add", "x", g.weight(4))), _all, 13),
    ("Add_rank_growing", lambda g, b: ((*lead(b), 4), g.op("Add", g.weight(2, 1, 4), "x")), _unbatched, 13),
    ("Sub_const_first", lambda g, b: ((*lead(b), 3, 4), g.op("Sub", g.weight(3, 1), "x")), _all, 13),
    ("Mul_two_inputs", lambda g, b: ((*lead(b), 3, 4), g.op("Mul", g.op("Mul", "x", "x"), g.weight(1, 4))), _all, 13),
    ("Div", lambda g, b: ((*lead(b), 3, 4), g.op("Div", "x", g.const(g.rng.uniform(1.0, 2.0, 4)))), _all, 13),
    ("Neg", lambda g, b: ((*lead(b), 5), g.op("Neg", "x")), _all, 13),
    ("Max_Min", lambda g, b: ((*lead(b), 3, 4), g.op("Min", g.op("Max", "x", g.weight(4)),
                                                     g.op("Neg", "x"))), _all, 13),
    ("Relu", lambda g, b: ((*lead(b), 2, 3), g.op("Relu", "x")), _all, 13),
    ("Sigmoid", lambda g, b: ((*lead(b), 2, 3), g.op("Sigmoid", "x")), _all, 13),
    ("Tanh", lambda g, b: ((*lead(b), 2, 3), g.op("Tanh", "x")), _all, 13),
    ("Identity", lambda g, b: ((*lead(b), 2, 3), g.op("Identity", "x")), _all, 13),
    ("LeakyRelu", lambda g, b: ((*lead(b), 6), g.op("LeakyRelu", "x", alpha=0.2)), _all, 13),
    ("Clip", lambda g, b: ((*lead(b), 6), g.op("Clip", "x", g.const(_f32(-0.5)), g.const(_f32(0.7)))), _all, 13),
    ("Dropout", lambda g, b: ((*lead(b), 6), g.op("Dropout", "x", g.const(_f32(0.3)))), _all, 13),
    ("Cast", lambda g, b: ((*lead(b), 6), g.op("Cast", "x", to=TensorProto.FLOAT)), _all, 13),
    ("Softmax", lambda g, b: ((*lead(b), 2, 3), g.op("Softmax", "x", axis=-2)), _all, 13),
    ("Softmax_opset11_flattening", lambda g, b: ((*lead(b), 2, 3), g.op("Softmax", "x", axis=_o(b))), _all, 11),
    ("Conv_pads_strides", lambda g, b: _on_image(g, b, (2, 6, 5), lambda x: g.op(
        "Conv", x, g.weight(3, 2, 3, 3), g.weight(3), pads=[1, 0, 2, 1], strides=[2, 1], dilations=[1, 2])), _all, 13),
    ("Conv_group_valid", lambda g, b: _on_image(g, b, (4, 5, 5), lambda x: g.op(
        "Conv", x, g.weight(6, 2, 2, 2), group=2, auto_pad="VALID")), _all, 13),
    ("Conv_same_upper", lambda g, b: _on_image(g, b, (2, 5, 6), lambda x: g.op(
        "Conv", x, g.weight(2, 2, 2, 3), g.weight(2), strides=[2, 2], auto_pad="SAME_UPPER")), _all, 13),
    ("Conv1d", lambda g, b: _on_image(g, b, (2, 7), lambda x: g.op(
        "Conv", x, g.weight(3, 2, 3), g.weight(3), pads=[1, 1])), _all, 13),
    ("BatchNormalization", lambda g, b: _on_image(g, b, (3, 4, 4), lambda x: g.op(
        "BatchNormalization", x, g.const(g.rng.uniform(0.5, 1.5, 3)), g.weight(3), g.weight(3),
        g.const(g.rng.uniform(0.5, 2.0, 3)), epsilon=1e-3)), _all, 13),
    ("MaxPool", lambda g, b: _on_image(g, b, (2, 6, 6), lambda x: g.op(
        "MaxPool", x, kernel_shape=[2, 2], strides=[2, 2])), _all, 13),
    ("MaxPool_pads", lambda g, b: _on_image(g, b, (2, 5, 5), lambda x: g.op(
        "MaxPool", x, kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])), _all, 13),
    ("MaxPool_asymmetric_pads", lambda g, b: _on_image(g, b, (1, 5, 6), lambda x: g.op(
        "MaxPool", x, kernel_shape=[3, 2], strides=[1, 2], pads=[0, 1, 2, 0])), _all, 13),
    ("MaxPool_ceil", lambda g, b: _on_image(g, b, (2, 5, 5), lambda x: g.op(
        "MaxPool", x, kernel_shape=[2, 2], strides=[2, 2], ceil_mode=1)), _all, 13),
    ("MaxPool_ceil_pads_dilations", lambda g, b: _on_image(g, b, (1, 7, 6), lambda x: g.op(
        "MaxPool", x, kernel_shape=[2, 3], strides=[3, 2], dilations=[2, 1], pads=[1, 0, 0, 1], ceil_mode=1)),
        _all, 13),
    ("AveragePool", lambda g, b: _on_image(g, b, (2, 6, 6), lambda x: g.op(
        "AveragePool", x, kernel_shape=[3, 3], pads=[1, 1, 1, 1])), _all, 13),
    ("AveragePool_count_pads", lambda g, b: _on_image(g, b, (2, 5, 5), lambda x: g.op(
        "AveragePool", x, kernel_shape=[2, 2], pads=[0, 1, 1, 0], count_include_pad=1)), _all, 13),
    ("Pad_zero_spatial", lambda g, b: _on_image(g, b, (2, 4, 5), lambda x: g.op(
        "Pad", x, g.const([0, 0, 1, 2, 0, 0, 2, 0]))), _all, 13),
    ("Pad_zero_symmetric", lambda g, b: _on_image(g, b, (2, 4, 5), lambda x: g.op(
        "Pad", x, g.const([0, 0, 1, 2, 0, 0, 1, 2]))), _all, 13),
    ("Pad_opset9_all_zero", lambda g, b: _on_image(g, b, (2, 4, 5), lambda x: g.op(
        "Pad", x, mode="constant", pads=[0] * 8, value=0.0)), _all, 9),
    ("Pad_value_and_crop", lambda g, b: ((*lead(b), 3, 4), g.op(
        "Pad", "x", g.const([0] * _o(b) + [1, -1] + [0] * _o(b) + [-1, 2]), g.const(_f32(-0.75)))), _all, 13),
    ("Pad_reflect", lambda g, b: _on_image(g, b, (2, 4, 5), lambda x: g.op(
        "Pad", x, g.const([0, 0, 2, 1, 0, 1, 3, 0]), mode="reflect")), _all, 13),
    ("Pad_edge_axes", lambda g, b: ((*lead(b), 3, 4), g.op(
        "Pad", "x", g.const([2, 0, 1, 3]), g.const(_f32(0.0)), g.const([-1, -2]), mode="edge")), _all, 18),
    ("Pad_wrap", lambda g, b: ((*lead(b), 3, 4), g.op(
        "Pad", "x", g.const([0] * _o(b) + [1, 2] + [0] * _o(b) + [2, 3]), mode="wrap")), _all, 19),
    ("ReduceSum", lambda g, b: ((*lead(b), 3, 4), g.op("ReduceSum", "x", g.const([-1]), keepdims=0)), _all, 13),
    # with a dynamic batch, onnxruntime's ReduceSum over all axes sums the whole batch
    ("ReduceSum_all", lambda g, b: ((*lead(b), 3, 4), g.op("ReduceSum", "x")), _unbatched, 13),
    ("ConstantOfShape", lambda g, b: ((*lead(b), 2, 3), g.op("Add", "x", g.op(
        "ConstantOfShape", g.const([2, 3]), value=helper.make_tensor("v", TensorProto.FLOAT, [1], [0.5])))), _all, 13),
    ("ReduceMean", lambda g, b: ((*lead(b), 3, 4), g.op("ReduceMean", "x", axes=[_o(b)])), _all, 13),
    ("Expand", lambda g, b: ((*lead(b), 3, 1), g.op("Expand", "x", g.const([3, 4]))), _all, 13),
    ("Expand_rank_growing", lambda g, b: ((3, 1), g.op("Expand", "x", g.const([2, 3, 4]))), ("none",), 13),
    ("Split_first", lambda g, b: ((*lead(b), 5, 2), g.op(
        "Split", "x", g.const([2, 3]), axis=_o(b), outputs=2)), _all, 13),
    ("Pow", lambda g, b: ((*lead(b), 2, 3), g.op("Pow", "x", g.const(_f32(2.0)))), _all, 13),
    ("Pow_per_element", lambda g, b: ((*lead(b), 2, 4), g.op("Pow", "x", g.const([[0.0, 1.0, 2.0, 3.0]]))),
     _all, 13),
    ("Pow_zero", lambda g, b: ((*lead(b), 3), g.op("Pow", "x", g.const(_f32(0.0)))), _all, 13),
    ("Pow_odd_five", lambda g, b: ((*lead(b), 3), g.op("Pow", "x", g.const(_f32(5.0)))), _all, 13),
    ("Pow_fractional", lambda g, b: ((*lead(b), 3), g.op("Pow", g.op("Add", g.op("Mul", "x", "x"), g.const(
        _f32(1.0))), g.const(_f32(-0.5)))), _all, 13),
    ("Pow_negative_whole", lambda g, b: ((*lead(b), 3), g.op("Pow", g.op("Add", g.op("Mul", "x", "x"), g.const(
        _f32(1.0))), g.const(_f32(-2.0)))), _all, 13),
    ("Pow_square_root", lambda g, b: ((*lead(b), 3), g.op("Pow", g.op("Relu", "x"), g.const(_f32(0.5)))), _all, 13),
    ("Pow_constant_base", lambda g, b: ((*lead(b), 3), g.op("Pow", g.const(_f32(2.0)), "x")), _all, 13),
    ("Div_input_dependent", lambda g, b: ((*lead(b), 3), g.op("Div", "x", g.op("Add", g.op("Mul", "x", "x"), g.const(
        _f32(1.0))))), _all, 13),
    ("Div_negative_divisor", lambda g, b: ((*lead(b), 3), g.op("Div", g.const(_f32(2.0)), g.op("Sub", g.op(
        "Neg", g.op("Relu", "x")), g.const(_f32(1.0))))), _all, 13),
    ("Greater", lambda g, b: ((*lead(b), 2, 3), g.op("Cast", g.op("Greater", "x", g.const(_f32(0.25))),
                                                        to=TensorProto.FLOAT)), _all, 13),
    ("Less", lambda g, b: ((*lead(b), 4), g.op("Cast", g.op("Less", "x", g.op("Neg", "x")), to=TensorProto.FLOAT)),
     _all, 13),
    ("GreaterOrEqual", lambda g, b: ((*lead(b), 4), g.op("Cast", g.op(
        "GreaterOrEqual", g.const(np.array([0.0, 0.5, -0.5, 1.0])), "x"), to=TensorProto.FLOAT)), _all, 13),
    ("LessOrEqual", lambda g, b: ((*lead(b), 4), g.op("Cast", g.op("LessOrEqual", "x", g.const(_f32(0.0))),
                                                     to=TensorProto.FLOAT)), _all, 13),
    ("Equal", lambda g, b: ((*lead(b), 4), g.op("Cast", g.op("Equal", g.op("Relu", "x"), g.const(_f32(0.0))),
                                               to=TensorProto.FLOAT)), _all, 13),
    ("Where", lambda g, b: ((*lead(b), 2, 3), g.op("Where", g.op("Greater", "x", g.const(_f32(0.1))), "x",
                                                  g.const(np.full((2, 3), -0.5)))), _all, 13),
    ("Where_dynamic_branches", lambda g, b: ((*lead(b), 3), g.op("Where", g.op("Less", "x", g.const(_f32(0.0))),
                                                                g.op("Neg", "x"), g.op("Mul", "x", "x"))), _all, 13),
    ("Cast_bool", lambda g, b: ((*lead(b), 4), g.op("Cast", g.op("Cast", g.op("Relu", "x"), to=TensorProto.BOOL),
                                                   to=TensorProto.FLOAT)), _all, 13),
    ("GlobalAveragePool", lambda g, b: _on_image(g, b, (3, 4, 5), lambda x: g.op("GlobalAveragePool", x)), _all, 13),
    ("Flatten", lambda g, b: ((*lead(b), 2, 3, 4), g.op("Flatten", "x", axis=_o(b) + 1)), _all, 13),
    ("Flatten_axis0", lambda g, b: ((*lead(b), 2, 3), g.op("Flatten", "x", axis=0)), _unbatched, 13),
    ("Reshape_zero_minus_one", lambda g, b: ((*lead(b), 2, 3, 4), g.op(
        "Reshape", "x", g.const([0] * _o(b) + [-1, 4]))), _all, 13),
    ("Reshape_flatten_chain", lambda g, b: ((*lead(b), 2, 3), _flatten(g, "x", "ShapeChain")), _all, 13),
    # with a dynamic batch, onnxruntime's Size counts the whole batch
    ("Size", lambda g, b: ((*lead(b), 2, 3), g.op(
        "Div", "x", g.op("Cast", g.op("Size", "x"), to=TensorProto.FLOAT))), _unbatched, 13),
    ("Transpose", lambda g, b: ((*lead(b), 2, 3, 4), g.op(
        "Transpose", "x", perm=[*range(_o(b)), _o(b) + 2, _o(b), _o(b) + 1])), _all, 13),
    ("Transpose_moving_batch", lambda g, b: ((*lead(b), 2, 3), g.op("Transpose", "x")), _unbatched, 13),
    ("Squeeze", lambda g, b: ((*lead(b), 1, 3, 1), g.op("Squeeze", "x", g.const([_o(b), -1]))), _all, 13),
    ("Squeeze_opset11", lambda g, b: ((*lead(b), 3, 1), g.op("Squeeze", "x", axes=[-1])), _all, 11),
    ("Unsqueeze", lambda g, b: ((*lead(b), 3), g.op("Unsqueeze", "x", g.const([-1, _o(b)]))), _all, 13),
    ("Unsqueeze_opset11", lambda g, b: ((*lead(b), 3), g.op("Unsqueeze", "x", axes=[_o(b) + 1])), _all, 11),
    ("Constant", lambda g, b: ((*lead(b), 3), g.op("Mul", "x", g.op("Constant", value=_CONSTANT_K))), _all, 13),
    ("Concat", lambda g, b: ((*lead(b), 2, 3), g.op("Concat", "x", g.op("Relu", "x"), axis=-1)), _all, 13),
    # onnxruntime cannot batch a Concat with a constant (Concat does not broadcast)
    ("Concat_constant", lambda g, b: ((*lead(b), 2, 3), g.op(
        "Concat", "x", g.weight(*(1,) * _o(b), 1, 3), "x", axis=_o(b))), _unbatched, 13),
    ("Gather", lambda g, b: ((*lead(b), 4, 3), g.op("Gather", "x", g.const([[2, 0], [-1, 1]]), axis=_o(b))), _all, 13),
    ("Gather_repeated_indices", lambda g, b: ((*lead(b), 3, 4), g.op(
        "Gather", "x", g.const([[0, 0], [2, 0]]), axis=_o(b))), _all, 13),
    ("Gather_scalar_index", lambda g, b: ((*lead(b), 4, 3), g.op("Gather", "x", g.const(np.array(1)), axis=-1)),
     _all, 13),
    ("Slice", lambda g, b: ((*lead(b), 4, 6), g.op(
        "Slice", "x", g.const([1, -1]), g.const([3, -100]), g.const([_o(b), _o(b) + 1]), g.const([1, -2]))), _all, 13),
]:
    _case(_name, _modes, _opset)(_make)


def _output_shapes(case: str, batch: Batch) -> tuple | None:
    """Output shapes that shape inference cannot find."""
    return {"Reshape_flatten_chain": (*lead(batch), 6) if batch != "none" else (2, 3)}.get(case)


OP_CASES: tuple[str, ...] = tuple(_CASES)
