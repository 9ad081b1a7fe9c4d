"""The checker's own reading of an ONNX file: a chain of affine ops and ReLUs, in float64.

Deliberately small and separate from verikit's import (no torch): it knows MatMul and Gemm with a
constant weight, Add/Sub with a constant, Relu, and the layout no-ops Flatten, Reshape and Identity.
Asked to (`activations` with "MaxMin"), it also reads a MaxMin activation: the last axis cut in two halves
(two Slices or one Split), then Max and Min of the halves, concatenated (verikit.checker.maxmin); shape
arithmetic on static shapes (what torch exports for `chunk`) is folded to constants first.
Consecutive affine ops are kept apart (not multiplied together), so no rounding enters the weights:
every value is an ONNX float32, held exactly in float64.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx
from onnx import numpy_helper

from verikit.checker.errors import UnsupportedNetwork
from verikit.checker.maxmin import fold_shape_arithmetic, read_maxmin


@dataclass(frozen=True, eq=False)
class AffineOp:
    """y = A x + b; A None means the identity, b None means zero. A (out, in), b (out,), float64."""

    A: np.ndarray | None
    b: np.ndarray | None
    n_in: int
    n_out: int


@dataclass(frozen=True, eq=False)
class Chain:
    """segments[i] maps a_{i-1} (a_{-1} = the input) to z_i; a_i = relu(z_i); the last segment gives y."""

    segments: tuple[tuple[AffineOp, ...], ...]
    hidden_sizes: tuple[int, ...]
    n_inputs: int
    n_outputs: int
    kinds: tuple[str, ...] = ()  # each hidden layer's activation ("relu", "tanh", "sigmoid", "maxmin"); () = all relu
    pairs: tuple[np.ndarray | None, ...] = ()  # per hidden layer: for "maxmin", (m, 2) index pairs (p, q),
    # out[p] = max(z[p], z[q]), out[q] = min(z[p], z[q]), every neuron in one pair; else None

    def evaluate(self, x: np.ndarray) -> np.ndarray:
        """Float64 outputs (k, n_outputs) for inputs (k, n_inputs) (for the checker's own self-test)."""
        values = np.atleast_2d(np.asarray(x, dtype=np.float64))
        for i, segment in enumerate(self.segments):
            for op in segment:
                values = values if op.A is None else values @ op.A.T
                values = values if op.b is None else values + op.b
            if i < len(self.segments) - 1:
                kind = self.kinds[i] if self.kinds else "relu"
                if kind == "maxmin":
                    values = maxmin(values, self.pairs[i])
                    continue
                values = (np.maximum(values, 0.0) if kind == "relu" else np.tanh(values) if kind == "tanh"
                          else 0.5 * (1.0 + np.tanh(0.5 * values)))
        return values


#: the ONNX activations read_chain may be asked to accept, and their Chain kinds
ACTIVATIONS = {"Relu": "relu", "Tanh": "tanh", "Sigmoid": "sigmoid"}


def maxmin(values: np.ndarray, pairs: np.ndarray) -> np.ndarray:
    """MaxMin of values (k, n) over index pairs (m, 2): out[:, p] = max, out[:, q] = min of z[:, p], z[:, q]."""
    out = values.copy()
    p, q = pairs[:, 0], pairs[:, 1]
    out[:, p] = np.maximum(values[:, p], values[:, q])
    out[:, q] = np.minimum(values[:, p], values[:, q])
    return out


def read_chain(data: bytes, activations: tuple[str, ...] = ("Relu",)) -> Chain:
    """The network in `data` (ONNX bytes) as a Chain; UnsupportedNetwork with the reason otherwise.

    `activations`: the ONNX activation operators accepted between affine segments (keys of ACTIVATIONS);
    the certificate checker accepts Relu only."""
    try:
        model = onnx.load_model_from_string(data)
    except Exception as error:  # noqa: BLE001 - protobuf's decode errors share no useful base class
        raise UnsupportedNetwork(f"not a readable ONNX model ({type(error).__name__})") from error
    graph = model.graph
    constants = {t.name: numpy_helper.to_array(t).astype(np.float64) for t in graph.initializer}
    for node in graph.node:
        if node.op_type == "Constant":
            constants[node.output[0]] = numpy_helper.to_array(node.attribute[0].t).astype(np.float64)
    inputs = [i for i in graph.input if i.name not in constants]
    if len(inputs) != 1 or len(graph.output) != 1:
        raise UnsupportedNetwork("the checker reads networks with one input and one output")
    for tensor in list(graph.initializer) + [i for i in inputs]:
        kind = tensor.data_type if hasattr(tensor, "data_type") else tensor.type.tensor_type.elem_type
        if kind not in (onnx.TensorProto.FLOAT, onnx.TensorProto.INT64):
            raise UnsupportedNetwork(f"tensor '{tensor.name}' is not float32 (type {kind})")
    if "MaxMin" in activations:
        model, nodes = fold_shape_arithmetic(model, constants, lambda m: _shapes(m, symbolic=None))
    else:
        nodes = [node for node in graph.node if node.op_type != "Constant"]
    shapes = _shapes(model)
    n_inputs = int(np.prod(shapes.get(inputs[0].name, (0,))))
    if n_inputs == 0:
        raise UnsupportedNetwork("the input's shape is not known")
    current, size = inputs[0].name, n_inputs
    segments: list[list[AffineOp]] = [[]]
    hidden: list[int] = []
    kinds: list[str] = []
    pairs: list[np.ndarray | None] = []
    i = 0
    while i < len(nodes):
        node = nodes[i]
        data_inputs = [name for name in node.input if name and name not in constants]
        if "MaxMin" in activations and node.op_type in ("Slice", "Split") and data_inputs == [current]:
            found, used, output = read_maxmin(nodes, i, current, shapes.get(current), constants)
            shapes[output], current = shapes[current], output  # MaxMin keeps the shape
            kinds.append("maxmin")
            pairs.append(found)
            segments.append([])
            hidden.append(size)
            i += used
            continue
        if data_inputs != [current] or len(node.output) != 1:
            raise UnsupportedNetwork(f"node '{node.name}' ({node.op_type}) does not continue a single chain")
        if node.op_type in activations and node.op_type in ACTIVATIONS:
            op = "activation"
            kinds.append(ACTIVATIONS[node.op_type])
        else:
            op, size = _read_op(node, constants, size, shapes.get(current))
        if op == "relu":
            kinds.append("relu")
        if op in ("relu", "activation"):
            pairs.append(None)
            segments.append([])
            hidden.append(size)
        elif op is not None:
            segments[-1].append(op)
        current = node.output[0]
        i += 1
    if current != graph.output[0].name:
        raise UnsupportedNetwork("the graph's output is not the end of its chain")
    kinds_field = () if all(k == "relu" for k in kinds) else tuple(kinds)
    pairs_field = tuple(pairs) if "maxmin" in kinds else ()
    return Chain(tuple(tuple(s) for s in segments), tuple(hidden), n_inputs, size, kinds_field, pairs_field)


def _shapes(model, symbolic: int | None = 1) -> dict[str, tuple]:
    """Every tensor's shape as ONNX shape inference gives it; a symbolic dimension (a batch) counts as
    `symbolic` (1, or None to tell static shapes apart)."""
    try:
        inferred = onnx.shape_inference.infer_shapes(model)
    except Exception:  # noqa: BLE001 - an unreadable graph simply has no known shapes
        inferred = model
    found = {}
    graph = inferred.graph
    for info in list(graph.value_info) + list(graph.input) + list(graph.output):
        if info.type.HasField("tensor_type") and info.type.tensor_type.HasField("shape"):
            found[info.name] = tuple(d.dim_value if d.HasField("dim_value") else symbolic
                                     for d in info.type.tensor_type.shape.dim)
    return found


def _attribute(node, name: str, default):
    for attribute in node.attribute:
        if attribute.name == name:
            return onnx.helper.get_attribute_value(attribute)
    return default


def _read_op(node, constants: dict[str, np.ndarray], size: int, shape: tuple[int, ...] | None):
    """(AffineOp, "relu" or None for a layout no-op, output size) of one node whose data input has
    `size` values of `shape` (as shape inference gives it; None when unknown)."""
    kind, where = node.op_type, f"node '{node.name}' ({node.op_type})"
    if kind in ("Add", "Sub", "MatMul", "Gemm") and (shape is None or int(np.prod(shape)) != size):
        raise UnsupportedNetwork(f"{where}: the shape of its input is not known")
    if kind == "Relu":
        return "relu", size
    if kind in ("Flatten", "Reshape", "Identity"):
        return None, size
    if kind in ("Add", "Sub"):
        first = node.input[0] not in constants
        constant = constants[node.input[1] if first else node.input[0]]
        try:
            grows = np.broadcast_shapes(shape, constant.shape) != tuple(shape)
        except ValueError:
            grows = True
        if grows:
            raise UnsupportedNetwork(f"{where}: a constant of shape {constant.shape} that does not broadcast "
                                     f"onto the input's shape {shape}")
        constant = np.broadcast_to(constant, shape).reshape(-1).copy()
        if kind == "Add":
            return AffineOp(None, constant, size, size), size
        if first:  # x - c
            return AffineOp(None, -constant, size, size), size
        return AffineOp(-np.eye(size), constant, size, size), size  # c - x
    if kind == "MatMul":
        if node.input[0] in constants:  # W @ x with x a column (size, 1): y = W x
            weight = constants[node.input[0]]
            if weight.ndim != 2 or weight.shape[1] != size or tuple(shape) not in ((size,), (size, 1)):
                raise UnsupportedNetwork(f"{where}: weight of shape {weight.shape} on {size} values")
            return AffineOp(weight.copy(), None, size, weight.shape[0]), weight.shape[0]
        if node.input[1] not in constants:
            raise UnsupportedNetwork(f"{where}: the weight is not a constant")
        weight = constants[node.input[1]]
        if weight.ndim != 2 or weight.shape[0] != size or shape[-1] != size:
            raise UnsupportedNetwork(f"{where}: weight of shape {weight.shape} on {size} values")
        return AffineOp(weight.T.copy(), None, size, weight.shape[1]), weight.shape[1]
    if kind == "Gemm":
        if _attribute(node, "alpha", 1.0) != 1.0 or _attribute(node, "beta", 1.0) != 1.0 or _attribute(node, "transA", 0):
            raise UnsupportedNetwork(f"{where}: alpha, beta other than 1 or transA")
        if node.input[1] not in constants or (len(node.input) > 2 and node.input[2] and node.input[2] not in constants):
            raise UnsupportedNetwork(f"{where}: the weight or bias is not a constant")
        weight = constants[node.input[1]]
        weight = weight if _attribute(node, "transB", 0) else weight.T
        if weight.ndim != 2 or weight.shape[1] != size or tuple(shape) != (1, size):
            raise UnsupportedNetwork(f"{where}: weight of shape {weight.shape} on {size} values")
        bias = None
        if len(node.input) > 2 and node.input[2]:
            bias = np.broadcast_to(constants[node.input[2]].reshape(-1), (weight.shape[0],)).copy()
        return AffineOp(weight.copy(), bias, size, weight.shape[0]), weight.shape[0]
    raise UnsupportedNetwork(f"{where}: the certificate checker does not read this operator")
