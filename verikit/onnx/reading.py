"""Reading an ONNX ModelProto: opset, constants, the one input and output, node attributes, constant folding."""

from __future__ import annotations

from typing import Any

import numpy as np
import onnx
from onnx import helper, numpy_helper
from onnx.external_data_helper import uses_external_data

from verikit.core.errors import ModelError
from verikit.onnx.ops.base import NodeInfo

DEFAULT_DOMAINS = ("", "ai.onnx")


def one_line(text: object) -> str:
    """The first non-empty line of an error text, for one-line messages."""
    lines = [line.strip() for line in str(text).splitlines() if line.strip()]
    return lines[0] if lines else type(text).__name__


def default_opset(model: onnx.ModelProto, source: str = "") -> int:
    versions = [entry.version for entry in model.opset_import if entry.domain in DEFAULT_DOMAINS]
    if not versions:
        raise ModelError("the model imports no default-domain opset; re-export it with an ai.onnx opset",
                         where=source or None)
    newest = onnx.defs.onnx_opset_version()
    if not 1 <= versions[0] <= newest:
        raise ModelError(f"the model uses opset {versions[0]}, but the installed onnx knows opsets 1 to {newest}; "
                         "re-export it with a released opset", where=source or None)
    return int(versions[0])


def read_initializers(graph: onnx.GraphProto, source: str) -> dict[str, np.ndarray]:
    """Initializers by name as numpy arrays; external or sparse data is refused."""
    if len(graph.sparse_initializer):
        raise ModelError("sparse initializers are not supported; re-export with dense weights", where=source)
    constants = {}
    for tensor in graph.initializer:
        if uses_external_data(tensor):
            raise ModelError(
                f"initializer '{tensor.name}' is stored in an external data file; "
                "save the model as one self-contained .onnx file",
                where=source,
            )
        constants[tensor.name] = check_finite_tensor(numpy_helper.to_array(tensor), f"initializer '{tensor.name}'",
                                                     source)
    return constants


def check_finite_tensor(array: np.ndarray, what: str, source: str) -> np.ndarray:
    """`array` unless it holds NaN or infinite values: no bound or attack means anything on such weights."""
    if array.dtype.kind in "fc" and not np.isfinite(array).all():
        bad = int(np.size(array) - np.count_nonzero(np.isfinite(array)))
        raise ModelError(f"{what} holds {bad} NaN or infinite value(s); a network with them cannot be "
                         "verified (check the export or training)", where=source)
    return array


def declared_shape(value: onnx.ValueInfoProto) -> tuple[int | str | None, ...] | None:
    """A tensor's declared shape: ints, dim_param names, None for unknown (or negative) dims; None if no
    shape. A dim_value of 0 stays 0: onnxruntime holds the model to it."""
    tensor_type = value.type.tensor_type
    if not tensor_type.HasField("shape"):
        return None
    dims: list[int | str | None] = []
    for dim in tensor_type.shape.dim:
        if dim.HasField("dim_value") and dim.dim_value >= 0:
            dims.append(int(dim.dim_value))
        elif dim.HasField("dim_param") and dim.dim_param:
            dims.append(dim.dim_param)
        else:
            dims.append(None)
    return tuple(dims)


def per_sample_shape(declared: tuple, name: str, source: str) -> tuple[int, ...]:
    """The input's shape for one sample: a non-fixed first (batch) dim becomes 1; other dims must be fixed."""
    shape = []
    for index, dim in enumerate(declared):
        if isinstance(dim, int):
            shape.append(dim)
        elif index == 0:
            shape.append(1)
        else:
            raise ModelError(
                f"input '{name}' has shape {list(declared)} with non-fixed dim {index} ({dim!r}); "
                "only the first (batch) dim may be dynamic — re-export with fixed sizes",
                where=source,
            )
    return tuple(shape)


def node_info(node: onnx.NodeProto, index: int, opset: int, source: str) -> NodeInfo:
    return NodeInfo(
        name=node.name or f"#{index}",
        op_type=node.op_type,
        attributes={attribute.name: _checked(_decode(attribute), node, index, attribute.name, source)
                    for attribute in node.attribute},
        opset=opset,
        source=source,
        inputs=tuple(node.input),
        outputs=tuple(node.output),
    )


def _checked(value: Any, node: onnx.NodeProto, index: int, name: str, source: str) -> Any:
    if isinstance(value, np.ndarray):
        check_finite_tensor(value, f"node '{node.name or f'#{index}'}' ({node.op_type}) attribute '{name}'", source)
    return value


def _decode(attribute: onnx.AttributeProto) -> Any:
    value = helper.get_attribute_value(attribute)
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    if isinstance(value, onnx.TensorProto):
        return numpy_helper.to_array(value)
    if isinstance(value, list) and value and isinstance(value[0], bytes):
        return [item.decode("utf-8", errors="replace") for item in value]
    return value


def fold_node(
    node: onnx.NodeProto, info: NodeInfo, inputs: list[np.ndarray | None], model: onnx.ModelProto
) -> list[np.ndarray]:
    """Outputs of a node whose inputs are all constants, computed by onnx's reference evaluator."""
    from onnx.reference import ReferenceEvaluator

    feeds = {name: array for name, array in zip(node.input, inputs) if name}
    graph_inputs = [
        helper.make_tensor_value_info(name, helper.np_dtype_to_tensor_dtype(array.dtype), array.shape)
        for name, array in feeds.items()
    ]
    graph_outputs = [helper.make_empty_tensor_value_info(name) for name in node.output if name]
    single = helper.make_model(
        helper.make_graph([node], "fold", graph_inputs, graph_outputs),
        opset_imports=list(model.opset_import),
        ir_version=model.ir_version or onnx.IR_VERSION,
    )
    try:
        results = ReferenceEvaluator(single).run(None, feeds)
    except Exception as error:  # the evaluator raises many types; re-raised with the node named
        raise ModelError(f"{info.where}: cannot evaluate this constant node: {one_line(error)}") from error
    return [np.asarray(result) for result in results]
