"""The operator interface: one ONNX op type, one small `Op` class, found through `REGISTRY`.

An `Op` is built from one node and its inputs — constants already folded in as numpy arrays, the
input-dependent ones described by their `Meta` — and its `forward` takes the input-dependent inputs
(torch, batch first, in node order) and returns the node's first output, held as `out_merged` says
(see `verikit.onnx.layout`); a class with `per_output` is built once per used output (`part=k`). Optional: `fold` (an output known at load time, like Shape's) and
`pwl_layers` (for `pwl_role == "piecewise"`). A new op is one new class with `@register("OpType")`.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from verikit.core.errors import ModelError, UnsupportedOperatorError
from verikit.onnx.layout import Meta


@dataclass(frozen=True, eq=False)
class Const:
    """A tensor known at load time."""

    value: np.ndarray


@dataclass(frozen=True)
class Dyn:
    """A tensor that depends on the model input."""

    meta: Meta


Value = Const | Dyn | None  # None: an optional input left out


@dataclass(frozen=True)
class NodeInfo:
    """What an Op needs to know about its node: names, attributes (decoded), opset, and where it is."""

    name: str
    op_type: str
    attributes: dict[str, Any]
    opset: int
    source: str = ""
    inputs: tuple[str, ...] = field(default=())
    outputs: tuple[str, ...] = field(default=())

    @property
    def where(self) -> str:
        prefix = f"{self.source}: " if self.source else ""
        return f"{prefix}node '{self.name}' ({self.op_type})"

    def attr(self, name: str, default: Any = None) -> Any:
        return self.attributes.get(name, default)

    def unsupported(self, what: str) -> UnsupportedOperatorError:
        """The error for an attribute value or input pattern this translation does not handle."""
        return UnsupportedOperatorError(f"{self.where}: {what} is not supported")

    def invalid(self, what: str) -> ModelError:
        return ModelError(f"{self.where}: {what}")


class Op(nn.Module):
    """Base of every operator translation (see the module doc)."""

    #: attribute names the class understands; any other attribute is refused rather than ignored
    attributes: ClassVar[frozenset[str]] = frozenset()
    #: how `to_piecewise_linear` reads the op: "affine" (in its one input-dependent input), "relayout"
    #: (a reshape: flat order unchanged), "piecewise" (the op gives its layers: `pwl_layers(size)`),
    #: or "other" (not piecewise linear)
    pwl_role: str = "other"
    #: whether the class builds one op per used output (`cls(node, inputs, part=k)`); otherwise the graph
    #: builder refuses a model that uses any output but the first
    per_output: ClassVar[bool] = False

    def __init__(self, node: NodeInfo, inputs: Sequence[Value]) -> None:
        super().__init__()
        self.node_name = node.name
        self.op_type = node.op_type
        self.in_metas = tuple(value.meta for value in inputs if isinstance(value, Dyn))
        self.out_merged = self.in_metas[0].merged  # subclasses set the layout of their output

    @classmethod
    def validate(cls, node: NodeInfo) -> None:
        unknown = sorted(set(node.attributes) - cls.attributes)
        if unknown:
            raise node.unsupported(f"attribute '{unknown[0]}'")

    @classmethod
    def fold(cls, node: NodeInfo, inputs: Sequence[Value]) -> np.ndarray | None:
        """The output when it is known without the input values (e.g. Shape), else None."""
        return None

    def add_constant(self, name: str, array: np.ndarray | None) -> None:
        """Hold a constant as a frozen float32 nn.Parameter (auto_LiRPA expects weights as parameters);
        one that float32 does not hold exactly (a folded bias 1 + 2^-30, Gemm's alpha·B) is also kept
        in float64 for `exact_copy`."""
        tensor = None if array is None else nn.Parameter(as_float(array), requires_grad=False)
        self.register_parameter(name, tensor)
        exact = self.__dict__.setdefault("exact_constants", {})
        exact.pop(name, None)
        if array is not None and np.asarray(array).dtype.kind == "f":
            wide = np.array(array, dtype=np.float64, copy=True)
            if not np.array_equal(wide, tensor.detach().numpy().astype(np.float64), equal_nan=True):
                exact[name] = wide

    def exact_copy(self) -> Op:
        """A float64 copy of the op whose constants are the network's own values, not their float32
        roundings: the piecewise-linear form (and so z3's exact proof) is measured on it."""
        twin = copy.deepcopy(self).double()
        for name, array in self.__dict__.get("exact_constants", {}).items():
            getattr(twin, name).data = torch.from_numpy(array.copy())
        return twin

    def extra_repr(self) -> str:
        return f"node={self.node_name!r}, op_type={self.op_type!r}"


REGISTRY: dict[str, type[Op]] = {}


def register(op_type: str):
    """Class decorator: make the class the translation of `op_type`."""

    def decorate(cls: type[Op]) -> type[Op]:
        if op_type in REGISTRY:
            raise ValueError(f"operator {op_type} registered twice")
        REGISTRY[op_type] = cls
        return cls

    return decorate


def supported_ops() -> list[str]:
    """Op types with a translation, sorted."""
    return sorted(REGISTRY)


def constant(node: NodeInfo, inputs: Sequence[Value], index: int, what: str) -> np.ndarray:
    """Input `index` as a constant array; refuses an input-dependent one."""
    value = inputs[index] if index < len(inputs) else None
    if value is None:
        raise node.invalid(f"missing input {index} ({what})")
    if isinstance(value, Dyn):
        raise node.unsupported(f"input-dependent {what} (input {index})")
    return value.value


def optional_constant(node: NodeInfo, inputs: Sequence[Value], index: int, what: str) -> np.ndarray | None:
    if index >= len(inputs) or inputs[index] is None:
        return None
    return constant(node, inputs, index, what)


def axes_of(node: NodeInfo, inputs: Sequence[Value], index: int, since_opset: int) -> list[int] | None:
    """An `axes` list given as attribute (opset < since_opset) or as constant input `index`."""
    if node.opset < since_opset:
        axes = node.attr("axes")
        return None if axes is None else [int(a) for a in axes]
    array = optional_constant(node, inputs, index, "axes")
    return None if array is None else [int(a) for a in np.asarray(array).reshape(-1)]


def as_float(array: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.array(array, dtype=np.float32, copy=True, order="C"))
