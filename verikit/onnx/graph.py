"""The ONNX graph as one torch module: constants folded at load time, one `Op` per remaining node."""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass

import numpy as np

import onnx
import torch
from torch import nn

from verikit.core import limits
from verikit.core.errors import ModelError, UnsupportedOperatorError
from verikit.onnx.layout import Meta, preferred
from verikit.onnx.ops import REGISTRY, Const, Dyn, Op, Value, supported_ops
from verikit.onnx.ops.base import NodeInfo
from verikit.onnx.ops.shape import Reshaping
from verikit.onnx.reading import (
    DEFAULT_DOMAINS,
    declared_shape,
    default_opset,
    fold_node,
    node_info,
    one_line,
    per_sample_shape,
    read_initializers,
)

PROBE_BATCH = 2  # every op runs once at load on a seeded probe batch, which checks shapes node by node
FLOAT_TYPES = (onnx.TensorProto.FLOAT,)


@dataclass(frozen=True)
class Step:
    """One op of the module: the names of its input-dependent inputs (node order) and of its output."""

    inputs: tuple[str, ...]
    output: str


class GraphModule(nn.Module):
    """float32 (B, n_inputs) → (B, n_outputs), both flat in the C order of the ONNX tensors.

    Runs `ops` in topological order on a dict of named tensors, each held as its `metas` entry says
    (see `verikit.onnx.layout`).
    """

    def __init__(
        self,
        ops: list[Op],
        steps: list[Step],
        input_name: str,
        output_name: str,
        metas: dict[str, Meta],
        *,
        reshape_input: bool = True,
    ) -> None:
        super().__init__()
        self.reshape_input = reshape_input  # False when the first op reshapes the flat input itself
        self.ops = nn.ModuleList(ops)
        self.steps = tuple(steps)
        self.input_name = input_name
        self.output_name = output_name
        self.metas = dict(metas)
        self.n_inputs = metas[input_name].size
        self.n_outputs = metas[output_name].size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = self.metas[self.input_name].torch_shape
        reshape = self.reshape_input and shape != (self.n_inputs,)
        values = {self.input_name: x.reshape(-1, *shape) if reshape else x}
        for op, step in zip(self.ops, self.steps):
            values[step.output] = op(*(values[name] for name in step.inputs))
        out = values[self.output_name]
        return out if self.metas[self.output_name].torch_shape == (self.n_outputs,) else out.reshape(-1, self.n_outputs)


@dataclass(frozen=True, eq=False)
class Translation:
    """A built module plus what `Network` records about the model's interface."""

    module: GraphModule
    input_name: str
    input_shape: tuple
    output_name: str
    op_types: frozenset[str]
    opset: int


def build_graph(model: onnx.ModelProto, source: str = "") -> Translation:
    """Translate a checked ModelProto; ModelError (or UnsupportedOperatorError) says what blocks it."""
    graph = model.graph
    opset = default_opset(model, source)
    constants = read_initializers(graph, source)
    input_info = _the_input(graph, constants, source)
    output_name = _the_output(graph, source)
    declared = declared_shape(input_info)
    if declared is None:
        raise ModelError(f"input '{input_info.name}' declares no shape; re-export with a shape", where=source)
    if 0 in declared:  # some exporters meant "dynamic", but onnxruntime holds the model to size 0
        raise ModelError(
            f"input '{input_info.name}' declares shape {list(declared)}, which has no elements (onnxruntime "
            "reads 0 as size 0); re-export with a symbolic batch dim",
            where=source,
        )
    input_meta = preferred(per_sample_shape(declared, input_info.name, source))
    elements, most = math.prod(per_sample_shape(declared, input_info.name, source)), limits.current().max_elements
    if elements > most:
        raise ModelError(f"input '{input_info.name}' has {elements} elements per sample, more than the limit of "
                         f"{most} (VERIKIT_MAX_ELEMENTS)", where=source)

    builder = _Builder(model, constants, input_info.name, input_meta, output_name)
    for index, node in builder.needed:
        builder.add(node, node_info(node, index, opset, source))
    if not isinstance(builder.values.get(output_name), Dyn):
        raise ModelError(f"output '{output_name}' does not depend on the input", where=source)
    ops, steps = builder.ops, builder.steps
    metas = {name: value.meta for name, value in builder.values.items() if isinstance(value, Dyn)}
    reshape_input = _merge_reshapes(ops, steps, input_info.name, output_name)
    module = GraphModule(ops, steps, input_info.name, output_name, metas, reshape_input=reshape_input).eval()
    module.requires_grad_(False)
    return Translation(
        module=module,
        input_name=input_info.name,
        input_shape=declared,
        output_name=output_name,
        op_types=frozenset(node.op_type for node in graph.node),
        opset=opset,
    )


class _Builder:
    """Walks the nodes the output needs: folds constant ones, builds an Op for the others and runs it
    on a seeded probe batch (which gives its output shape and checks it node by node)."""

    def __init__(
        self, model: onnx.ModelProto, constants: dict, input_name: str, input_meta: Meta, output_name: str
    ) -> None:
        self.model = model
        self.values: dict[str, Value] = {name: Const(array) for name, array in constants.items()}
        self.values[input_name] = Dyn(input_meta)
        generator = torch.Generator().manual_seed(0)
        self.probes = {input_name: torch.randn(PROBE_BATCH, *input_meta.torch_shape, generator=generator)}
        self.needed = _needed_nodes(model.graph, output_name)
        self.uses = Counter(name for _, node in self.needed for name in node.input)
        self.uses[output_name] += 1
        self.ops: list[Op] = []
        self.steps: list[Step] = []

    def add(self, node: onnx.NodeProto, info: NodeInfo) -> None:
        inputs = [_lookup(self.values, name, info) for name in node.input]
        if not any(isinstance(value, Dyn) for value in inputs):
            arrays = [None if value is None else value.value for value in inputs]
            for name, array in zip(node.output, fold_node(node, info, arrays, self.model)):
                self.values[name] = Const(array)
            return
        cls = _operator_class(node, info)
        cls.validate(info)
        if _absorb_bias(node, inputs, self.ops, self.steps, self.uses):
            del self.values[self.steps[-1].output]
            self.steps[-1] = Step(self.steps[-1].inputs, node.output[0])
            self._record(self.ops[-1], info, node.output[0])
            return
        extras = [k for k, extra in enumerate(node.output) if k and extra and self.uses[extra]]
        if extras and not cls.per_output:
            raise info.unsupported(f"using output '{node.output[extras[0]]}'")
        folded = cls.fold(info, inputs)
        if folded is not None:
            self.values[node.output[0]] = Const(folded)
            return
        for part in [0, *extras]:  # one op per used output, each on the same inputs
            try:
                op = cls(info, inputs, part=part) if part else cls(info, inputs)
            except (ValueError, IndexError, TypeError, KeyError) as error:
                raise ModelError(f"{info.where}: invalid attributes or inputs: {one_line(error)}") from error
            self.ops.append(op)
            self.steps.append(Step(tuple(n for n, v in zip(node.input, inputs) if isinstance(v, Dyn)),
                                   node.output[part]))
            self._record(op, info, node.output[part])

    def _record(self, op: Op, info: NodeInfo, output: str) -> None:
        """Run `op` on the probes of its inputs; keep its probe output and its Meta."""
        probe = _run_probe(op, info, [self.probes[name] for name in self.steps[-1].inputs])
        self.probes[output] = probe
        self.values[output] = Dyn(_meta_of(probe, op.out_merged, info))


def _the_input(graph: onnx.GraphProto, constants: dict, source: str) -> onnx.ValueInfoProto:
    inputs = [value for value in graph.input if value.name not in constants]
    if not inputs:
        raise ModelError("the model has no input (every graph input has an initializer)", where=source)
    if len(inputs) > 1:
        names = ", ".join(repr(value.name) for value in inputs)
        raise ModelError(
            f"the model has {len(inputs)} inputs ({names}); verikit handles models with exactly one input",
            where=source,
        )
    elem_type = inputs[0].type.tensor_type.elem_type
    if elem_type not in FLOAT_TYPES:
        name = onnx.TensorProto.DataType.Name(elem_type) if elem_type else "no type"
        raise ModelError(f"input '{inputs[0].name}' is {name}; verikit needs a float32 input", where=source)
    return inputs[0]


def _the_output(graph: onnx.GraphProto, source: str) -> str:
    if len(graph.output) != 1:
        raise ModelError(
            f"the model has {len(graph.output)} outputs; verikit handles models with exactly one output",
            where=source,
        )
    return graph.output[0].name


def _needed_nodes(graph: onnx.GraphProto, output_name: str) -> list[tuple[int, onnx.NodeProto]]:
    """Nodes the output depends on, in graph order (ONNX requires topological order; checked later)."""
    producer = {name: index for index, node in enumerate(graph.node) for name in node.output if name}
    needed, stack = set(), [output_name]
    while stack:
        index = producer.get(stack.pop())
        if index is not None and index not in needed:
            needed.add(index)
            stack.extend(name for name in graph.node[index].input if name)
    return [(index, graph.node[index]) for index in sorted(needed)]


def _lookup(values: dict[str, Value], name: str, info: NodeInfo) -> Value:
    if not name:
        return None
    if name not in values:
        raise ModelError(f"{info.where}: input '{name}' is not produced before this node (graph not sorted?)")
    return values[name]


def _operator_class(node: onnx.NodeProto, info: NodeInfo) -> type[Op]:
    if node.domain not in DEFAULT_DOMAINS:
        raise UnsupportedOperatorError(f"{info.where}: operator domain '{node.domain}' is not supported")
    cls = REGISTRY.get(node.op_type)
    if cls is None:
        raise UnsupportedOperatorError(
            f"{info.where}: operator '{node.op_type}' is not supported; supported: {', '.join(supported_ops())}"
        )
    return cls


def _absorb_bias(node: onnx.NodeProto, inputs: list[Value], ops: list[Op], steps: list[Step], uses: Counter) -> bool:
    """Fold `y + c` / `y - c` into the op that made y (a MatMul or Gemm feeding only this node), so that
    auto_LiRPA sees one Linear: its bound code rejects a bias Add on a 2-D tensor before a Relu."""
    if node.op_type not in ("Add", "Sub") or not steps or len(inputs) != 2:
        return False
    dynamic = [isinstance(value, Dyn) for value in inputs]
    if sorted(dynamic) != [False, True] or (node.op_type == "Sub" and dynamic[1]):
        return False
    position = dynamic.index(True)
    source = node.input[position]
    absorb = getattr(ops[-1], "absorb_bias", None)
    if absorb is None or steps[-1].output != source or uses[source] != 1:
        return False
    meta, addend = inputs[position].meta, np.asarray(inputs[1 - position].value)
    return absorb(-addend if node.op_type == "Sub" else addend, meta)


def _merge_reshapes(ops: list[Op], steps: list[Step], input_name: str, output_name: str) -> bool:
    """Drop a reshape whose only use is another reshape (auto_LiRPA's conv bounds fail on such chains);
    returns whether the module must still reshape its flat input (not when a reshape takes it directly)."""
    merged = True
    while merged:
        merged = False
        uses = Counter(name for step in steps for name in step.inputs)
        uses[output_name] += 1
        producers = {step.output: index for index, step in enumerate(steps)}
        for index, (op, step) in enumerate(zip(ops, steps)):
            source = step.inputs[0] if isinstance(op, Reshaping) else None
            before = producers.get(source)
            if before is not None and isinstance(ops[before], Reshaping) and uses[source] == 1:
                op.accept_any_layout()
                steps[index] = Step(steps[before].inputs, step.output)
                del ops[before], steps[before]
                merged = True
                break
    takers = [op for op, step in zip(ops, steps) if input_name in step.inputs]
    if len(takers) == 1 and isinstance(takers[0], Reshaping) and input_name != output_name:
        takers[0].accept_any_layout()
        return False
    return True


def _run_probe(op: Op, info: NodeInfo, probes: list[torch.Tensor]) -> torch.Tensor:
    try:
        with torch.no_grad():
            out = op(*probes)
    except (RuntimeError, ValueError, IndexError) as error:
        shapes = ", ".join(str(tuple(probe.shape[1:])) for probe in probes)
        raise ModelError(f"{info.where}: cannot run on inputs of shape {shapes}: {one_line(error)}") from error
    if not torch.is_tensor(out) or out.dim() == 0 or out.shape[0] != PROBE_BATCH:
        raise ModelError(f"{info.where}: translation lost the batch axis (internal error)")
    return out


def _meta_of(probe: torch.Tensor, merged: bool, info: NodeInfo) -> Meta:
    rest = tuple(int(d) for d in probe.shape[1:])
    meta = Meta((1, *rest), merged=True) if merged else Meta(rest, merged=False)
    if meta.size == 0:
        raise ModelError(f"{info.where}: produces an empty tensor of shape {meta.shape}")
    return meta
