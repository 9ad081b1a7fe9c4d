"""A Network as a plain sequence of piecewise-linear layers (Affine, Relu, MaxGroups), when it is one.

The translated graph must be a chain: each op reads only the previous op's output. Runs of affine ops
(Gemm, MatMul/Add/Sub/Mul/Div by constants, Conv, BatchNormalization, reshapes, Transpose, AveragePool,
…) collapse into one dense `Affine` per run, measured in float64 on zero and on the basis vectors.
Relu gives `Relu`, MaxPool gives `MaxGroups` (padding left out of the groups), LeakyRelu and Clip give
`Affine, Relu, Affine` (relu(x) - a*relu(-x); lo + relu(x-lo) - relu(x-hi)). The result always starts
and ends with an Affine (an identity where the network starts or ends otherwise).
"""

from __future__ import annotations

from collections import Counter
from typing import Callable

import numpy as np
import onnx
import torch

from verikit.core.pwl import Affine, Layer, NotPiecewiseLinear, PiecewiseLinear, Relu
from verikit.core.network import Network
from verikit.onnx.graph import GraphModule, Step, build_graph
from verikit.onnx.layout import Meta
from verikit.onnx.load import check_evaluator
from verikit.core.property import Box
from verikit.onnx.ops import Op

MAX_DENSE_ENTRIES = 50_000_000  # one affine segment's W may hold at most this many float64s (400 MB)
_CHUNK = 256  # basis vectors pushed through a segment at once


def to_piecewise_linear(network: Network, *, max_dense_entries: int = MAX_DENSE_ENTRIES) -> PiecewiseLinear:
    """The network as PiecewiseLinear layers; NotPiecewiseLinear(reason) when it is not such a chain."""
    module = network.module
    if not isinstance(module, GraphModule):
        module = build_graph(onnx.load_model_from_string(network.onnx_bytes), network.source).module
    layers = collapse_chain(module, _chain(module), lambda op, size: op.pwl_layers(size), max_dense_entries)
    layers = _tidy(layers, module.n_inputs, module.n_outputs)
    return PiecewiseLinear(tuple(layers), module.n_inputs, module.n_outputs)


def collapse_chain(module: GraphModule, chain: list[tuple[Op, Step]], nonlinear: Callable[[Op, int], list],
                   max_dense_entries: int = MAX_DENSE_ENTRIES) -> list:
    """The layers of a chain of ops: each run of affine/relayout ops collapsed into one dense Affine
    (NotPiecewiseLinear when one would exceed `max_dense_entries`), every other op turned into layers by
    `nonlinear(op, input_size)`."""
    layers: list = []
    segment: list[Op] = []
    segment_start = module.metas[module.input_name]
    for op, step in chain:
        if op.pwl_role in ("affine", "relayout"):
            if not segment:
                segment_start = module.metas[step.inputs[0]]
            segment.append(op)
            continue
        if segment:
            layers += _collapse(segment, segment_start, module.metas[step.inputs[0]], max_dense_entries)
            segment = []
        layers += nonlinear(op, module.metas[step.inputs[0]].size)
    if segment:
        layers += _collapse(segment, segment_start, module.metas[module.output_name], max_dense_entries)
    return layers


def check_piecewise_linear(network: Network, pwl: PiecewiseLinear, box: Box, *, seed: int = 0) -> float:
    """Raise ModelError unless `pwl` (a second translation, made op by op) matches onnxruntime on the box
    as closely as the torch module must (`check_translation`); returns the max |diff| found."""
    return check_evaluator(network, box, pwl.evaluate, "the piecewise-linear form", seed=seed)


def _chain(module: GraphModule) -> list[tuple[Op, Step]]:
    """The module's (op, step) pairs, checked to form a chain of piecewise-linear ops."""
    uses = Counter(name for step in module.steps for name in step.inputs)
    current = module.input_name
    chain = []
    for op, step in zip(module.ops, module.steps):
        where = f"node '{op.node_name}' ({op.op_type})"
        if len(step.inputs) != 1:
            raise NotPiecewiseLinear(f"{where} combines several input-dependent tensors (a branching graph)")
        if op.pwl_role == "other":
            raise NotPiecewiseLinear(f"{where} is not piecewise linear (or not with constant parameters)")
        if step.inputs[0] != current or uses[current] > 1:
            raise NotPiecewiseLinear(f"{where}: the graph branches at tensor '{step.inputs[0]}'")
        chain.append((op, step))
        current = step.output
    if current != module.output_name:
        raise NotPiecewiseLinear(f"the graph branches: the output '{module.output_name}' is not the last op's")
    return chain


def _collapse(ops: list[Op], start: Meta, end: Meta, max_entries: int) -> list[Layer]:
    """One Affine for a run of affine ops from a tensor held as `start` to one held as `end` (none for
    pure reshapes, which keep the flat order)."""
    if all(op.pwl_role == "relayout" for op in ops):
        return []
    if start.size * end.size > max_entries:
        raise NotPiecewiseLinear(
            f"an affine segment ending at node '{ops[-1].node_name}' maps {start.size} to {end.size} values, "
            f"too many to hold densely (limit {max_entries} entries)"
        )
    copies = [op.exact_copy() for op in ops]

    def run(flat: np.ndarray) -> np.ndarray:
        values = torch.from_numpy(flat).reshape(-1, *start.torch_shape)
        with torch.no_grad():
            for op in copies:
                values = op(values)
        return values.reshape(flat.shape[0], end.size).numpy()

    bias = run(np.zeros((1, start.size)))[0]
    weight = np.empty((end.size, start.size))
    for first in range(0, start.size, _CHUNK):
        count = min(_CHUNK, start.size - first)
        basis = np.zeros((count, start.size))
        basis[np.arange(count), first + np.arange(count)] = 1.0
        weight[:, first : first + count] = (run(basis) - bias).T
    return [Affine(weight, bias)]


def _tidy(layers: list[Layer], n_inputs: int, n_outputs: int) -> list[Layer]:
    """Merge adjacent Affines and adjacent Relus; make the sequence start and end with an Affine."""
    if not layers or not isinstance(layers[0], Affine):
        layers.insert(0, Affine(np.eye(n_inputs), np.zeros(n_inputs)))
    if not isinstance(layers[-1], Affine):
        layers.append(Affine(np.eye(n_outputs), np.zeros(n_outputs)))
    tidy: list[Layer] = []
    for layer in layers:
        previous = tidy[-1] if tidy else None
        if isinstance(layer, Affine) and isinstance(previous, Affine):
            tidy[-1] = Affine(layer.weight @ previous.weight, layer.weight @ previous.bias + layer.bias)
        elif isinstance(layer, Relu) and isinstance(previous, Relu):
            continue
        else:
            tidy.append(layer)
    return tidy


__all__ = ["NotPiecewiseLinear", "check_piecewise_linear", "to_piecewise_linear"]
