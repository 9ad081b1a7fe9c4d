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

    def forward(self, x: np.ndarray | torch.Tensor) -> torch.Tensor:
        """Torch translation's outputs for flat inputs (B, n_inputs), without gradients."""
        import torch

        tensor = torch.as_tensor(np.asarray(x, dtype=np.float32)) if not torch.is_tensor(x) else x
        with torch.no_grad():
            return self.module(tensor.reshape(-1, self.n_inputs).float())
