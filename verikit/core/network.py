"""The Network type: a torch translation of an ONNX model plus onnxruntime replay of the original bytes."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # torch takes about a second to import; `verikit --help` must not pay for it
    import torch


def sha256_of(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass(frozen=True, eq=False)
class Network:
    """A model ready for verification.

    `module` maps a float32 batch (B, n_inputs) (flat, C order of the ONNX input) to (B, n_outputs).
    `replay` runs the original ONNX bytes through onnxruntime on the same flat layout.
    `op_types` lists the ONNX operator types in the graph (engines use it to refuse what they can't do).
    """

    module: torch.nn.Module
    onnx_bytes: bytes
    input_name: str
    input_shape: tuple  # the ONNX input's declared shape; ints, or str/None for symbolic dims
    output_name: str
    n_inputs: int
    n_outputs: int
    op_types: frozenset[str]
    source: str = ""
    opset: int = 0
    extra: dict = field(default_factory=dict)

    @cached_property
    def sha256(self) -> str:
        return sha256_of(self.onnx_bytes)

    @cached_property
    def _session(self):
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.log_severity_level = 3
        options.intra_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        return ort.InferenceSession(self.onnx_bytes, options, providers=["CPUExecutionProvider"])

    def _feed_shape(self, batch: int) -> tuple[int, ...] | None:
        """The shape to feed onnxruntime for `batch` points at once, or None to feed one at a time."""
        dims = [d if isinstance(d, int) and d > 0 else None for d in self.input_shape]
        if dims and dims[0] is None and int(np.prod([d or 1 for d in dims[1:]])) == self.n_inputs:
            return (batch, *[d or 1 for d in dims[1:]])
        filled = tuple(d or 1 for d in dims)
        if int(np.prod(filled)) != self.n_inputs:
            raise ValueError(f"cannot feed input of shape {self.input_shape} with {self.n_inputs} elements")
        return filled if batch == 1 else None

    def replay(self, x: np.ndarray) -> np.ndarray:
        """onnxruntime outputs for flat inputs x (B, n_inputs) → (B, n_outputs) float32."""
        x = np.ascontiguousarray(np.asarray(x, dtype=np.float32).reshape(-1, self.n_inputs))
        batch = x.shape[0]
        shape = self._feed_shape(batch)
        if shape is not None:
            (out,) = self._session.run([self.output_name], {self.input_name: x.reshape(shape)})
            return np.asarray(out, dtype=np.float32).reshape(batch, self.n_outputs)
        rows = [self.replay(row[None, :]) for row in x]
        return np.concatenate(rows, axis=0) if rows else np.zeros((0, self.n_outputs), np.float32)

    def _hidden_session(self, tensors: tuple[str, ...]):
        """An onnxruntime session on the original bytes with `tensors` added as graph outputs (cached)."""
        sessions = self.extra.setdefault("_hidden_sessions", {})
        if tensors not in sessions:
            import onnx
            import onnxruntime as ort

            model = onnx.load_model_from_string(self.onnx_bytes)
            known = {out for node in model.graph.node for out in node.output} | {i.name for i in model.graph.input}
            missing = [name for name in tensors if name not in known]
            if missing:
                raise KeyError(f"the model has no tensor named {missing[0]!r}")
            present = {o.name for o in model.graph.output}
            for name in tensors:
                if name not in present:
                    model.graph.output.append(onnx.ValueInfoProto(name=name))
            options = ort.SessionOptions()
            options.log_severity_level = 3
            options.intra_op_num_threads = 1
            options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
            sessions[tensors] = ort.InferenceSession(model.SerializeToString(), options,
                                                     providers=["CPUExecutionProvider"])
        return sessions[tensors]

    def replay_hidden(self, x: np.ndarray, tensors: tuple[str, ...]) -> dict[str, np.ndarray]:
        """onnxruntime's values of the named intermediate tensors for flat inputs x (B, n_inputs), each
        flattened per point to (B, size); computed on the original ONNX bytes, not the torch translation."""
        tensors = tuple(dict.fromkeys(tensors))
        x = np.ascontiguousarray(np.asarray(x, dtype=np.float32).reshape(-1, self.n_inputs))
        session = self._hidden_session(tensors)
        values: dict[str, list[np.ndarray]] = {name: [] for name in tensors}
        for row in x:  # one point at a time: hidden tensors' batch axis is not always the first
            outputs = session.run(list(tensors), {self.input_name: row.reshape(self._feed_shape(1))})
            for name, value in zip(tensors, outputs):
                values[name].append(np.asarray(value, dtype=np.float32).reshape(-1))
        return {name: np.stack(rows) if rows else np.zeros((0, 0), np.float32) for name, rows in values.items()}

    def forward(self, x: np.ndarray | torch.Tensor) -> torch.Tensor:
        """Torch translation's outputs for flat inputs (B, n_inputs), without gradients."""
        import torch

        tensor = torch.as_tensor(np.asarray(x, dtype=np.float32)) if not torch.is_tensor(x) else x
        with torch.no_grad():
            return self.module(tensor.reshape(-1, self.n_inputs).float())
