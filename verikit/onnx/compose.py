"""A model composed with a prefix: the network whose input is a manipulation's parameters theta.

`compose_prefix` plugs an ONNX prefix (theta (1, p) -> image (1, n), flat) in front of a model, so that
every engine decides "for every theta" on a network with p inputs, as it decides any box. With `eps > 0`
the composed input is (theta, delta), delta (1, n) in [-eps, eps], and the image is
`clip(prefix(theta) + delta, lower, upper)`; the clip is written as `lower + relu(z - lower) -
relu(z - upper)` (an affine-ReLU-affine chain, exact in real arithmetic), which the piecewise-linear form
and auto_LiRPA take as they take any layer. Every name of the prefix gets `verikit_prefix/` in front, so
the model's own tensors (those a hidden pattern names) keep their names.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper

from verikit.core.errors import ModelError
from verikit.core.network import Network

PREFIX = "verikit_prefix/"
INPUT = "verikit_params"


def _renamed(prefix: onnx.ModelProto) -> tuple[list, list, str, str]:
    """The prefix's nodes and initializers with every name prefixed; its input and output names."""
    graph = prefix.graph
    initialised = {init.name for init in graph.initializer}
    inputs = [i.name for i in graph.input if i.name not in initialised]
    if len(inputs) != 1 or len(graph.output) != 1:
        raise ModelError("a manipulation's ONNX prefix needs one input (theta) and one output (the image)")

    def name(value: str) -> str:
        return PREFIX + value if value else value

    nodes = []
    for node in graph.node:
        copy = onnx.NodeProto()
        copy.CopyFrom(node)
        copy.name = name(node.name or f"node{len(nodes)}")
        copy.input[:] = [name(v) for v in node.input]
        copy.output[:] = [name(v) for v in node.output]
        nodes.append(copy)
    initializers = []
    for init in graph.initializer:
        copy = onnx.TensorProto()
        copy.CopyFrom(init)
        copy.name = name(init.name)
        initializers.append(copy)
    return nodes, initializers, name(inputs[0]), name(graph.output[0].name)


def _constant(name: str, value: np.ndarray) -> onnx.TensorProto:
    return numpy_helper.from_array(np.asarray(value, dtype=np.float32), PREFIX + name)


def compose_prefix(network: Network, prefix: onnx.ModelProto, n_params: int, *, eps: float = 0.0,
                   lower: np.ndarray | None = None, upper: np.ndarray | None = None) -> Network:
    """The network `x -> network(image(x))` with input (1, n_params) (+ n_inputs delta entries when eps > 0,
    the image then clipped to [lower, upper] (n_inputs,)), as a Network read from its own ONNX bytes."""
    from verikit.onnx.load import load_network_bytes

    model = onnx.load_model_from_string(network.onnx_bytes)
    nodes, initializers, theta_name, image_name = _renamed(prefix)
    n = network.n_inputs
    width = n_params + (n if eps > 0 else 0)
    if eps > 0:
        if lower is None or upper is None:
            raise ValueError("eps > 0 needs the clip bounds")
        select_theta = np.eye(width, n_params)
        select_delta = np.zeros((width, n))
        select_delta[n_params:, :] = np.eye(n)
        initializers += [_constant("select_theta", select_theta), _constant("select_delta", select_delta),
                         _constant("split", np.concatenate([np.eye(n), np.eye(n)], axis=1)),
                         _constant("shift", np.concatenate([-np.asarray(lower), -np.asarray(upper)])),
                         _constant("join", np.concatenate([np.eye(n), -np.eye(n)], axis=0)),
                         _constant("lower", np.asarray(lower))]
        nodes.insert(0, helper.make_node("MatMul", [INPUT, PREFIX + "select_theta"], [theta_name],
                                         name=PREFIX + "theta"))
        p = PREFIX
        nodes += [
            helper.make_node("MatMul", [INPUT, p + "select_delta"], [p + "delta"], name=p + "delta"),
            helper.make_node("Add", [image_name, p + "delta"], [p + "z"], name=p + "perturb"),
            helper.make_node("MatMul", [p + "z", p + "split"], [p + "z2"], name=p + "split"),
            helper.make_node("Add", [p + "z2", p + "shift"], [p + "z2s"], name=p + "shift"),
            helper.make_node("Relu", [p + "z2s"], [p + "r"], name=p + "clip_relu"),
            helper.make_node("MatMul", [p + "r", p + "join"], [p + "rj"], name=p + "join"),
            helper.make_node("Add", [p + "rj", p + "lower"], [p + "clipped"], name=p + "clipped"),
        ]
        image_name = p + "clipped"
        input_name = INPUT
    else:
        input_name = theta_name
    shape = [d if isinstance(d, int) and d > 0 else 1 for d in network.input_shape] or [n]
    initializers.append(numpy_helper.from_array(np.asarray(shape, dtype=np.int64), PREFIX + "shape"))
    nodes.append(helper.make_node("Reshape", [image_name, PREFIX + "shape"], [network.input_name],
                                  name=PREFIX + "to_model_input"))
    graph = model.graph
    composed = helper.make_graph(
        nodes + list(graph.node), graph.name + "_with_prefix",
        [helper.make_tensor_value_info(input_name, onnx.TensorProto.FLOAT, [1, width])],
        list(graph.output), initializer=initializers + list(graph.initializer))
    out = helper.make_model(composed, opset_imports=list(model.opset_import), ir_version=model.ir_version)
    return load_network_bytes(out.SerializeToString(), f"{network.source} with prefix")
