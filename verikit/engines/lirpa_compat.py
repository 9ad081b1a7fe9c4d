"""Make auto_LiRPA 0.3 importable on current numpy and torch.

auto_LiRPA 0.3 was written for torch < 1.13 and numpy 1.x. Each fix below is applied only when the
thing it provides is missing, so on an environment that already has it nothing changes.
Call `import_auto_lirpa()` instead of `import auto_LiRPA`.
"""

from __future__ import annotations

import sys
import types

import numpy as np
import torch

APPLIED: list[str] = []


def _ensure_numpy_arraysetops() -> None:
    """numpy 2 removed the `numpy.lib.arraysetops` module; auto_LiRPA imports `isin` from it."""
    try:
        import numpy.lib.arraysetops  # noqa: F401
    except ImportError:
        module = types.ModuleType("numpy.lib.arraysetops")
        module.isin = np.isin
        sys.modules["numpy.lib.arraysetops"] = module
        APPLIED.append("numpy.lib.arraysetops")


def _ensure_set_opset_version() -> None:
    """torch 2.x dropped `symbolic_helper._set_opset_version`; auto_LiRPA calls it before tracing."""
    import torch.onnx.symbolic_helper as helper

    if hasattr(helper, "_set_opset_version"):
        return
    from torch.onnx._internal.torchscript_exporter._globals import GLOBALS

    def _set_opset_version(opset_version: int) -> None:
        GLOBALS.export_onnx_opset_version = opset_version

    helper._set_opset_version = _set_opset_version
    APPLIED.append("torch.onnx.symbolic_helper._set_opset_version")


def _ensure_node_item_access() -> None:
    """torch._C.Node lost `node[attribute]`; auto_LiRPA reads attributes that way."""
    if hasattr(torch._C.Node, "__getitem__"):
        return
    import torch.onnx.symbolic_helper as helper

    torch._C.Node.__getitem__ = lambda node, key: helper._node_get(node, key)
    APPLIED.append("torch._C.Node.__getitem__")


def apply() -> list[str]:
    """Apply the missing fixes (idempotent); returns the names of those applied so far."""
    _ensure_numpy_arraysetops()
    _ensure_set_opset_version()
    _ensure_node_item_access()
    return list(APPLIED)


def import_auto_lirpa():
    """The `auto_LiRPA` module, importable after the fixes."""
    apply()
    import auto_LiRPA

    return auto_LiRPA
