"""Reading a MaxMin activation out of an ONNX chain, and folding the shape arithmetic around it.

MaxMin (Anil et al. 2019; GroupSort with groups of two) cuts the last axis into halves a, b and returns
[max(a, b), min(a, b)] (or [min, max]). In ONNX it is two Slices (or one Split) of the same tensor, a Max
and a Min of the two halves, and a Concat of those along the last axis; torch's `chunk` computes the
slice ends from `Shape` at run time, which is folded here when every shape involved is static.

A MaxMin layer is held as index pairs (p, q) of its input: out[p] = max(z[p], z[q]), out[q] = min(...).
"""

from __future__ import annotations

import numpy as np
import onnx
import onnx.numpy_helper

from verikit.checker.errors import UnsupportedNetwork

_FOLDABLE = frozenset({"Shape", "Gather", "Add", "Sub", "Mul", "Div", "Unsqueeze", "Squeeze", "Concat", "Cast",
                       "Identity"})
_INT64_MAX = 2**63 - 1


def _attribute(node, name: str, default):
    for attribute in node.attribute:
        if attribute.name == name:
            return onnx.helper.get_attribute_value(attribute)
    return default


def fold_shape_arithmetic(model, constants: dict[str, np.ndarray], shapes_of) -> tuple[object, list]:
    """(model, its non-Constant nodes) with the shape arithmetic folded: a node whose inputs are all
    constants (or a Shape of a statically shaped tensor) and whose operator is plain arithmetic on them
    becomes a constant (added to `constants`, float64, and to the model as an initializer), until nothing
    more folds — each round's constants let shape inference see through the next Slice (torch's `chunk`
    computes a MaxMin's cut from the Shape of the layer before). `shapes_of(model)`: static shapes."""
    nodes = [node for node in model.graph.node if node.op_type != "Constant"]
    for _ in range(len(nodes) + 1):
        static = shapes_of(model)
        kept, folded = [], {}
        for node in nodes:
            value = _fold_node(node, constants, static)
            if value is None:
                kept.append(node)
            else:
                constants[node.output[0]] = folded[node.output[0]] = value
        if not folded:
            return model, nodes
        nodes = kept
        model = _with_constants(model, kept, folded)
    return model, nodes


def _fold_node(node, constants: dict, static: dict) -> np.ndarray | None:
    inputs = [name for name in node.input if name]
    if len(node.output) != 1:
        return None
    if node.op_type == "Shape" and len(inputs) == 1 and inputs[0] not in constants and not node.attribute:
        shape = static.get(inputs[0])
        if shape is not None and all(d is not None for d in shape):
            return np.asarray(shape, dtype=np.float64)
        return None
    if node.op_type in _FOLDABLE and inputs and all(name in constants for name in inputs):
        return _fold(node, [constants[name] for name in inputs])
    return None


def _with_constants(model, nodes: list, folded: dict[str, np.ndarray]):
    """A copy of `model` whose graph is `nodes`, with the folded values as initializers (int64 where
    integral, as shape arithmetic is, else float32)."""
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    constant_nodes = [node for node in model.graph.node if node.op_type == "Constant"]
    del copy.graph.node[:]
    copy.graph.node.extend(constant_nodes + nodes)
    for name, value in folded.items():
        kind = np.int64 if np.all(value == np.round(value)) else np.float32
        copy.graph.initializer.append(onnx.numpy_helper.from_array(value.astype(kind), name))
    return copy


def _fold(node, values: list[np.ndarray]) -> np.ndarray | None:
    kind = node.op_type
    if kind in ("Identity", "Cast"):
        return values[0]
    if kind in ("Add", "Sub", "Mul") and len(values) == 2:
        return {"Add": np.add, "Sub": np.subtract, "Mul": np.multiply}[kind](*values)
    if kind == "Div" and len(values) == 2:
        a, b = values
        if np.all(a == np.round(a)) and np.all(b == np.round(b)) and np.all(b != 0):
            return np.trunc(a / b)  # integer shape arithmetic (ONNX truncates)
        return None
    if kind == "Gather" and len(values) == 2:
        return np.take(values[0], values[1].astype(np.int64), axis=int(_attribute(node, "axis", 0)))
    if kind == "Concat":
        return np.concatenate([np.atleast_1d(v) for v in values], axis=int(_attribute(node, "axis", 0)))
    if kind in ("Unsqueeze", "Squeeze"):
        axes = _attribute(node, "axes", None)
        axes = values[1].astype(np.int64).tolist() if axes is None and len(values) > 1 else axes
        if kind == "Unsqueeze":
            return np.expand_dims(values[0], tuple(axes)) if axes is not None else None
        return np.squeeze(values[0], tuple(axes) if axes is not None else None)
    return None


def read_maxmin(nodes: list, i: int, current: str, shape: tuple | None,
                constants: dict[str, np.ndarray]) -> tuple[np.ndarray, int, str]:
    """(pairs (m, 2), nodes used, the output tensor) of the MaxMin block starting at nodes[i] on `current`;
    UnsupportedNetwork saying what does not match otherwise."""
    where = f"node '{nodes[i].name}' ({nodes[i].op_type})"
    if shape is None or len(shape) == 0:
        raise UnsupportedNetwork(f"{where}: the shape of its input is not known")
    n = int(shape[-1])
    if int(np.prod(shape)) != n or n % 2:
        raise UnsupportedNetwork(f"{where}: MaxMin needs one row of an even number of values, got shape {shape}")
    half = n // 2
    halves, used = _halves(nodes, i, current, len(shape), n, constants, where)
    if len(nodes) < i + used + 3:
        raise UnsupportedNetwork(f"{where}: a cut of the tensor that is not followed by Max, Min and Concat")
    first, second, concat = nodes[i + used: i + used + 3]
    ops = {first.op_type: first, second.op_type: second}
    if set(ops) != {"Max", "Min"} or any(sorted(op.input) != sorted(halves) for op in ops.values()):
        raise UnsupportedNetwork(f"{where}: the two halves are not followed by Max and Min of both "
                                 f"(found {first.op_type}, {second.op_type})")
    maximum, minimum = ops["Max"].output[0], ops["Min"].output[0]
    axis = int(_attribute(concat, "axis", 0))
    if concat.op_type != "Concat" or axis not in (-1, len(shape) - 1) or list(concat.input) not in (
            [maximum, minimum], [minimum, maximum]):
        raise UnsupportedNetwork(f"node '{concat.name}' ({concat.op_type}): MaxMin's Max and Min are not "
                                 "concatenated along the last axis")
    low, high = np.arange(half), np.arange(half, n)  # positions of halves[0], halves[1] in the input
    if list(concat.input) == [maximum, minimum]:
        pairs = np.stack([low, high], axis=1)  # out[:half] = max(a, b) where a sits
    else:
        pairs = np.stack([high, low], axis=1)  # out[half:] = max(a, b), where b sits
    return pairs, used + 3, concat.output[0]


def _halves(nodes: list, i: int, current: str, rank: int, n: int, constants: dict, where: str):
    """([name of input[:half], name of input[half:]], nodes used) for a Split or two Slices at nodes[i]."""
    half = n // 2
    node = nodes[i]
    last = (-1, rank - 1)
    if node.op_type == "Split":
        axis = int(_attribute(node, "axis", 0))
        split = _attribute(node, "split", None)
        if split is None and len(node.input) > 1 and node.input[1]:
            split = constants.get(node.input[1], np.array([np.nan])).tolist()
        if axis not in last or len(node.output) != 2 or (split is not None and list(split) != [half, half]):
            raise UnsupportedNetwork(f"{where}: not a cut of the last axis into two halves")
        return [node.output[0], node.output[1]], 1
    cuts = {}
    for node in nodes[i:i + 2]:
        if node.op_type != "Slice" or [x for x in node.input if x and x not in constants] != [current]:
            raise UnsupportedNetwork(f"{where}: not two Slices of the same tensor")
        starts, ends, axes, steps = (_slice_argument(node, k, constants) for k in range(1, 5))
        axes = [rank - 1] if axes is None else [int(a) % rank for a in axes]
        if starts is None or ends is None or axes != [rank - 1] or (steps is not None and list(steps) != [1]):
            raise UnsupportedNetwork(f"node '{node.name}' (Slice): not a constant slice of the last axis")
        start, end = (int(v) % n if v < 0 else min(int(v), n) for v in (starts[0], ends[0]))
        cuts[(start, end)] = node.output[0]
    if set(cuts) != {(0, half), (half, n)}:
        raise UnsupportedNetwork(f"{where}: the Slices do not cut the last axis into halves ({sorted(cuts)})")
    return [cuts[(0, half)], cuts[(half, n)]], 2


def _slice_argument(node, k: int, constants: dict) -> list | None:
    """Slice's k-th input (1 starts, 2 ends, 3 axes, 4 steps) as a list, or its opset-1 attribute."""
    if len(node.input) > k and node.input[k]:
        return constants[node.input[k]].tolist() if node.input[k] in constants else None
    name = {1: "starts", 2: "ends", 3: "axes", 4: None}[k]
    value = _attribute(node, name, None) if name else None
    return None if value is None else list(value)
