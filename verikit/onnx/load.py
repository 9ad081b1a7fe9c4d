"""Loading ONNX models as `Network`s, and checking the torch translation against onnxruntime.

    network = load_network("model.onnx")
    check_translation(network, box)   # before trusting any bound computed on network.module
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
from google.protobuf.message import DecodeError

from verikit.core import limits
from verikit.core.errors import ModelError
from verikit.core.network import Network
from verikit.onnx.graph import build_graph
from verikit.onnx.reading import one_line
from verikit.core.property import Box

#: check_translation's default: allowed |torch - onnxruntime| on output j = TRANSLATION_RTOL * max(1, max |y_j|),
#: each output on its own scale (one large output must not loosen the check of a small one). Both compute
#: in float32 with different summation orders, which moves outputs by about 1e-6 of their scale on deep
#: nets; a mistranslation (wrong axis, pad, transpose) moves them by about their scale.
TRANSLATION_RTOL = 1e-4


def load_network(path: str | Path) -> Network:
    """Read an .onnx file and translate it; ModelError says what is wrong with the file."""
    path = Path(path)
    return load_network_bytes(limits.read_file(path, "model", ModelError), str(path))


def load_network_bytes(data: bytes, source: str = "<bytes>") -> Network:
    """Translate ONNX bytes (`source` names them in messages); the Network is identified by their sha256."""
    data = bytes(data)
    model = _parse(data, source)
    translation = build_graph(model, source)
    module = translation.module
    return Network(
        module=module,
        onnx_bytes=data,
        input_name=translation.input_name,
        input_shape=translation.input_shape,
        output_name=translation.output_name,
        n_inputs=module.n_inputs,
        n_outputs=module.n_outputs,
        op_types=translation.op_types,
        source=source,
        opset=translation.opset,
        extra={"ir_version": int(model.ir_version), "producer": model.producer_name},
    )


def _parse(data: bytes, source: str) -> onnx.ModelProto:
    if not data:
        raise ModelError("the model file is empty; export the model again", where=source)
    try:
        model = onnx.load_model_from_string(data)
    except DecodeError as error:
        raise ModelError(
            f"not a readable ONNX model (truncated or not ONNX: {one_line(error)}); export it again",
            where=source,
        ) from error
    if not model.HasField("graph") or not model.graph.node:
        raise ModelError("not an ONNX model with a graph (no nodes found); check the file", where=source)
    try:
        onnx.checker.check_model(model)
    except onnx.checker.ValidationError as error:
        raise ModelError(f"onnx.checker rejects the model: {one_line(error)}", where=source) from error
    return model


def evaluation_points(box: Box, *, samples: int = 64, seed: int = 0) -> np.ndarray:
    """Points of the box to compare on, (k, n) float64: center, lower and upper corners, `samples`
    further corners (all of them when there are fewer) and `samples` uniform points.

    Infinite sides are replaced by a unit interval next to the finite side (or [-1, 1]).
    """
    if box.is_empty:
        raise ValueError("cannot sample an empty box")
    lower, upper = _finite(box.lower, box.upper)
    rng = np.random.default_rng(seed)
    n = lower.size
    if n <= 16 and 2**n <= samples:
        pattern = np.array(list(itertools.product((0.0, 1.0), repeat=n))).reshape(-1, n)
    else:
        pattern = rng.integers(0, 2, size=(samples, n)).astype(np.float64)
    corners = lower + pattern * (upper - lower)
    uniform = rng.uniform(lower, upper, size=(samples, n))
    return np.vstack([(lower + upper) / 2.0, lower, upper, corners, uniform])


def _finite(lower: np.ndarray, upper: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    low_ok, up_ok = np.isfinite(lower), np.isfinite(upper)
    new_lower = np.where(low_ok, lower, np.where(up_ok, upper - 1.0, -1.0))
    new_upper = np.where(up_ok, upper, np.where(low_ok, lower + 1.0, 1.0))
    return new_lower, new_upper


def crosscheck(network: Network, box: Box, *, samples: int = 64, seed: int = 0) -> float:
    """max |torch module - onnxruntime| over `evaluation_points` of the box (inf where only one is NaN/inf)."""
    return float(_compare(network, box, samples, seed)[0].max())


def check_translation(
    network: Network, box: Box, *, tol: float = TRANSLATION_RTOL, samples: int = 64, seed: int = 0
) -> float:
    """Raise ModelError unless the torch translation matches onnxruntime on the box, each output j within
    `tol * max(1, max |y_j|)` (onnxruntime's y_j over the points); returns the max |diff| found."""
    return check_evaluator(network, box, None, "torch translation", tol=tol, samples=samples, seed=seed)


def check_evaluator(network: Network, box: Box, evaluate: Callable[[np.ndarray], np.ndarray] | None, what: str,
                    *, tol: float = TRANSLATION_RTOL, samples: int = 64, seed: int = 0) -> float:
    """Like `check_translation`, for another form of the network (`what` names it in the message; `evaluate`
    None: the torch module)."""
    diff, where, scale = _compare(network, box, samples, seed, evaluate)
    allowed = tol * np.maximum(1.0, scale)
    excess = diff / allowed
    worst = np.unravel_index(int(np.argmax(np.where(np.isnan(excess), np.inf, excess))), diff.shape)
    if not diff[worst] <= allowed[worst[1]]:
        raise ModelError(
            f"{what} disagrees with onnxruntime: max |diff| = {float(diff.max()):.3g}; on {where(*worst)} "
            f"|diff| = {diff[worst]:.3g}, allowed {allowed[worst[1]]:.3g} on that output's scale; "
            "please report this model",
            where=network.source or None,
        )
    return float(diff.max())


def _compare(network: Network, box: Box, samples: int, seed: int,
             evaluate: Callable[[np.ndarray], np.ndarray] | None = None
             ) -> tuple[np.ndarray, Callable[[int, int], str], np.ndarray]:
    """(|diff| per point and output (k, n_out), the name of a (point, output) pair, max |y_j| per output of
    onnxruntime's finite outputs (n_out,)) between onnxruntime and `evaluate` (points (k, n) float32 ->
    outputs (k, n_out); default: the torch module)."""
    if box.size != network.n_inputs:
        raise ValueError(f"box has {box.size} inputs, the network {network.n_inputs}")
    points = evaluation_points(box, samples=samples, seed=seed).astype(np.float32)
    try:
        expected = network.replay(points).astype(np.float64)
    except Exception as error:  # onnxruntime's errors share no base class below Exception; re-raised
        raise ModelError(
            f"onnxruntime cannot run the model on points of the box: {one_line(error)}", where=network.source or None
        ) from error
    if evaluate is None:
        actual = network.forward(points).numpy().astype(np.float64)
    else:
        actual = np.asarray(evaluate(points), dtype=np.float64).reshape(expected.shape)
    same = (expected == actual) | (np.isnan(expected) & np.isnan(actual))
    diff = np.where(same, 0.0, np.abs(expected - actual))
    diff = np.where(np.isnan(diff), np.inf, diff)
    scale = np.where(np.isfinite(expected), np.abs(expected), 0.0).max(axis=0, initial=0.0)
    labels = ["the box center", "the lower corner", "the upper corner"]

    def where(row: int, column: int) -> str:
        return f"{labels[row] if row < 3 else f'sample point {row}'}, output {column}"

    return diff, where, scale
