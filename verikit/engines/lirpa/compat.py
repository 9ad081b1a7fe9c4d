"""Make auto_LiRPA 0.3 importable on current numpy and torch.

auto_LiRPA 0.3 was written for torch < 1.13 and numpy 1.x. Each fix below is applied only when the
thing it provides is missing, so on an environment that already has it nothing changes.
Call `import_auto_lirpa()` instead of `import auto_LiRPA`.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import inspect
import sys
import types
import warnings

import numpy as np
import torch

from verikit.core.errors import EngineLimitation

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


def _ensure_torch_six() -> None:
    """torch 2 removed `torch._six`; auto_LiRPA's `register_parameter` checks `torch._six.string_classes`."""
    try:
        importlib.import_module("torch._six")
    except ImportError:
        module = types.ModuleType("torch._six")
        module.string_classes = (str,)
        sys.modules["torch._six"] = module
        torch._six = module
        APPLIED.append("torch._six")


def _ensure_named_members_remove_duplicate() -> None:
    """torch 2 calls `_named_members(..., remove_duplicate=...)`; auto_LiRPA's override lacks it.

    Without this, `BoundedModule.parameters()` raises TypeError (CROWN reads its dtype from there).
    The override always removes duplicates, which is torch's default.
    """
    from auto_LiRPA.bound_general import BoundedModule

    torch_takes_it = "remove_duplicate" in inspect.signature(torch.nn.Module._named_members).parameters
    if not torch_takes_it or "remove_duplicate" in inspect.signature(BoundedModule._named_members).parameters:
        return
    original = BoundedModule._named_members

    def _named_members(self, get_members_fn, prefix="", recurse=True, remove_duplicate=True):
        return original(self, get_members_fn, prefix=prefix, recurse=recurse)

    BoundedModule._named_members = _named_members
    APPLIED.append("auto_LiRPA.BoundedModule._named_members(remove_duplicate)")


def _torch_refuses_batch_norm_stats_with_grad() -> bool:
    stats = torch.zeros(1, requires_grad=True), torch.ones(1, requires_grad=True)
    try:
        torch.nn.functional.batch_norm(torch.zeros(2, 1), *stats, training=False)
    except RuntimeError:
        return True
    return False


def _ensure_batch_norm_constant_stats() -> None:
    """torch 2 refuses batch_norm running stats that require grad; auto_LiRPA's parameters do while it
    converts a model (BatchNormalization with mean/var held as parameters). Stats are constants: detach."""
    from auto_LiRPA.operators.normalization import BoundBatchNormalization

    if getattr(BoundBatchNormalization.forward, "detaches_stats", False):
        return
    if not _torch_refuses_batch_norm_stats_with_grad():
        return
    original = BoundBatchNormalization.forward

    @functools.wraps(original)
    def forward(self, x, w, b, m, v):
        return original(self, x, w, b, m.detach(), v.detach())

    forward.detaches_stats = True
    BoundBatchNormalization.forward = forward
    APPLIED.append("auto_LiRPA.BoundBatchNormalization.forward(detached stats)")


INSTALL_HINT = "pip install --no-deps auto-lirpa==0.3"


class MissingAutoLirpa(EngineLimitation):
    """auto_LiRPA is not installed: the bounds stage answers unknown with this reason."""


@contextlib.contextmanager
def _recursion_limit_kept():
    """Import auto_LiRPA without letting it change process-wide state.

    It sets sys.setrecursionlimit(1000000) when imported; with that, deep recursion in any other code
    (json, tomllib) overflows the C stack and kills the process instead of raising RecursionError. It also
    calls warnings.simplefilter("once"), which turns on every warning everyone else silenced, and its
    @torch.jit.script decorators warn that torch.jit.script is deprecated. The recursion limit and the
    warning filters in force before are put back; only that one deprecation notice is silenced."""
    before = sys.getrecursionlimit()
    try:
        with warnings.catch_warnings(record=True) as caught:  # its own simplefilter call cannot outrank this
            yield
    finally:
        sys.setrecursionlimit(before)
    for message in caught:
        if not (issubclass(message.category, DeprecationWarning) and "torch.jit.script" in str(message.message)):
            warnings.warn_explicit(message.message, message.category, message.filename, message.lineno)


def apply() -> list[str]:
    """Apply the missing fixes (idempotent); returns the names of those applied so far."""
    _ensure_numpy_arraysetops()
    _ensure_set_opset_version()
    _ensure_node_item_access()
    _ensure_torch_six()
    with _recursion_limit_kept():
        try:
            _ensure_named_members_remove_duplicate()  # these import auto_LiRPA, so they come last
        except ModuleNotFoundError as error:
            if error.name is None or not error.name.startswith("auto_LiRPA"):
                raise
            raise MissingAutoLirpa(f"auto_LiRPA is not installed; install it with: {INSTALL_HINT}") from None
        _ensure_batch_norm_constant_stats()
    return list(APPLIED)


def import_auto_lirpa():
    """The `auto_LiRPA` module, importable after the fixes; MissingAutoLirpa (an EngineLimitation) without it."""
    apply()
    with _recursion_limit_kept():
        import auto_LiRPA

    return auto_LiRPA
