"""A Network as an `ActivationChain` (Affine / elementwise activation layers, float64), when it is one.

Made like the piecewise-linear form (verikit.onnx.pwl): the graph must be a chain, runs of affine ops
collapse into one dense Affine, Relu-built ops (Relu, LeakyRelu, Clip) give their Affine/Relu layers, and
Sigmoid and Tanh give an Activation layer. Anything else (MaxPool, Exp, Softmax, ...) has no relaxation
in branch and bound here, and NoActivationChain says which node.
"""

from __future__ import annotations

import numpy as np
import onnx

from verikit.core.activations import Activation, ActivationChain, NoActivationChain
from verikit.core.network import Network
from verikit.core.property import Box
from verikit.core.pwl import Affine, MaxGroups, NotPiecewiseLinear, Relu
from verikit.onnx.graph import GraphModule, build_graph
from verikit.onnx.load import check_evaluator
from verikit.onnx.ops import Op
from verikit.onnx.ops.elementwise import Sigmoid, Tanh
from verikit.onnx.pwl import MAX_DENSE_ENTRIES, _tidy, collapse_chain

_S_SHAPED_OPS = {Sigmoid: "sigmoid", Tanh: "tanh"}


def to_activation_chain(network: Network, *, max_dense_entries: int = MAX_DENSE_ENTRIES) -> ActivationChain:
    """The network as an ActivationChain; NoActivationChain(reason) when it is not such a chain."""
    module = network.module
    if not isinstance(module, GraphModule):
        module = build_graph(onnx.load_model_from_string(network.onnx_bytes), network.source).module
    current = module.input_name
    uses: dict[str, int] = {}
    for step in module.steps:
        for name in step.inputs:
            uses[name] = uses.get(name, 0) + 1
    chain = []
    for op, step in zip(module.ops, module.steps):
        if len(step.inputs) != 1 or step.inputs[0] != current or uses[current] > 1:
            raise NoActivationChain(f"{_where(op)}: the graph is not a chain of single-input layers")
        current = step.output
        chain.append((op, step))
    if current != module.output_name:
        raise NoActivationChain(f"the graph branches: the output '{module.output_name}' is not the last op's")
    try:
        layers = collapse_chain(module, chain, lambda op, size: _activation_layers(op, size, _where(op)),
                                max_dense_entries)
    except NotPiecewiseLinear as reason:  # a too large dense segment
        raise NoActivationChain(str(reason)) from None
    layers = _tidy(layers, module.n_inputs, module.n_outputs)
    chain = [Activation("relu") if isinstance(layer, Relu) else layer for layer in layers]
    merged: list = []
    for layer in chain:  # _tidy merged adjacent Relus only; two activations in a row need an identity between
        if isinstance(layer, Activation) and merged and isinstance(merged[-1], Activation):
            size = merged[-2].out_features
            merged.append(Affine(np.eye(size), np.zeros(size)))
        merged.append(layer)
    return ActivationChain(tuple(merged), module.n_inputs, module.n_outputs)


def _where(op: Op) -> str:
    return f"node '{op.node_name}' ({op.op_type})"


def check_activation_chain(network: Network, chain: ActivationChain, box: Box, *, seed: int = 0) -> float:
    """Raise ModelError unless `chain` matches onnxruntime on the box (as closely as the torch module must)."""
    return check_evaluator(network, box, chain.evaluate, "the activation-chain form", seed=seed)


def _activation_layers(op: Op, size: int, where: str) -> list:
    kind = _S_SHAPED_OPS.get(type(op))
    if kind is not None:
        return [Activation(kind)]
    if op.pwl_role == "piecewise":
        layers = list(op.pwl_layers(size))
        if any(isinstance(layer, MaxGroups) for layer in layers):
            raise NoActivationChain(f"{where}: max-pooling has no relaxation in this branch and bound")
        return layers
    raise NoActivationChain(f"{where} has no sound relaxation in branch and bound (it handles affine ops, "
                            "Relu, LeakyRelu, Clip, Sigmoid and Tanh)")


__all__ = ["NoActivationChain", "check_activation_chain", "to_activation_chain"]
