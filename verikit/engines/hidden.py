"""A case's hidden constraints (`case.hidden`, NeuronPattern on ONNX tensors) as ReLU phases of the
piecewise-linear form, the one map every engine that takes them uses.

A pattern names the ONNX tensor that feeds a Relu node. The k-th Relu node of the graph (in the graph's
topological order) is taken to be the k-th Relu layer of the piecewise-linear form; that guess is then
checked on points of the case's box: onnxruntime's values of the tensor must match the form's
pre-activations of that layer, else the map is refused (EngineLimitation) and the engine says unknown.
Phases are {index of a Relu layer in pwl.layers: (active mask, inactive mask)}, active meaning a
pre-activation >= 0 (the pattern's `> 0`, relaxed: a larger set, so a proof over it stays a proof).
"""

from __future__ import annotations

import numpy as np

from verikit.core.errors import EngineLimitation
from verikit.core.network import Network
from verikit.core.property import Case
from verikit.core.pwl import Affine, PiecewiseLinear, Relu

Phases = dict[int, tuple[np.ndarray, np.ndarray]]
_SAMPLES = 8


def relu_inputs(network: Network) -> list[str]:
    """The ONNX tensors that feed Relu nodes, in the graph's (topological) order."""
    import onnx

    model = onnx.load_model_from_string(network.onnx_bytes)
    return [node.input[0] for node in model.graph.node if node.op_type == "Relu"]


def pre_activations(pwl: PiecewiseLinear, x: np.ndarray) -> dict[int, np.ndarray]:
    """Per Relu layer index of `pwl`, its input (B, width) in float64 for points x (B, n_inputs)."""
    values = np.asarray(x, dtype=np.float64).reshape(-1, pwl.n_inputs)
    found: dict[int, np.ndarray] = {}
    for index, layer in enumerate(pwl.layers):
        if isinstance(layer, Affine):
            values = values @ layer.weight.T + layer.bias
        elif isinstance(layer, Relu):
            found[index] = values
            values = np.maximum(values, 0.0)
        else:
            values = values[:, layer.groups].max(axis=2)
    return found


def case_phases(network: Network, pwl: PiecewiseLinear, case: Case, *, seed: int = 0) -> Phases:
    """The case's patterns as phases of `pwl`'s Relu layers ({} without hidden constraints); an
    EngineLimitation when a pattern's tensor cannot be matched to a layer (and checked on the box)."""
    if not case.hidden:
        return {}
    tensors = relu_inputs(network)
    layers = [i for i, layer in enumerate(pwl.layers) if isinstance(layer, Relu)]
    if len(tensors) != len(layers):
        raise EngineLimitation(f"hidden constraints: the ONNX graph has {len(tensors)} Relu nodes, its "
                               f"piecewise-linear form {len(layers)} Relu layers; cannot place the pattern")
    rng = np.random.default_rng(seed)
    box = case.box
    points = box.sample(_SAMPLES, rng) if np.isfinite(box.lower).all() and np.isfinite(box.upper).all() \
        else np.zeros((1, box.size))
    points = points.astype(np.float32)
    ours = pre_activations(pwl, points.astype(np.float64))
    theirs = network.replay_hidden(points, tuple(p.tensor for p in case.hidden))
    phases: Phases = {}
    for pattern in case.hidden:
        if pattern.tensor not in tensors:
            raise EngineLimitation(f"hidden constraint on {pattern.tensor!r}: not the input of a Relu node")
        index = layers[tensors.index(pattern.tensor)]
        width = ours[index].shape[1]
        values = theirs[pattern.tensor]
        if values.shape[1] != width:
            raise EngineLimitation(f"hidden constraint on {pattern.tensor!r}: {values.shape[1]} elements, "
                                   f"the matching layer {width}")
        gap = np.abs(values - ours[index]).max(initial=0.0)
        if gap > 1e-4 * (1.0 + np.abs(ours[index]).max(initial=0.0)):
            raise EngineLimitation(f"hidden constraint on {pattern.tensor!r}: onnxruntime's values differ from "
                                   f"the piecewise-linear layer by {gap:.3g}; the map is not trusted")
        active, inactive = phases.get(index, (np.zeros(width, bool), np.zeros(width, bool)))
        active, inactive = active.copy(), inactive.copy()
        if pattern.size and max(pattern.active.max(initial=-1), pattern.inactive.max(initial=-1)) >= width:
            raise EngineLimitation(f"hidden constraint on {pattern.tensor!r} names a neuron beyond its {width}")
        active[pattern.active] = True
        inactive[pattern.inactive] = True
        phases[index] = (active, inactive)
    return phases


def conflicting(phases: Phases) -> bool:
    """Whether some neuron is asked to be both active (> 0) and inactive (<= 0): no input follows that."""
    return any(bool((active & inactive).any()) for active, inactive in phases.values())
