"""The auto_LiRPA compatibility fixes: applied only when missing, idempotent, and enough to bound a net."""

from __future__ import annotations

import sys
import types

import numpy as np
import pytest
import torch
import torch.onnx.symbolic_helper as symbolic_helper

from verikit.engines.lirpa import compat as lirpa_compat


@pytest.fixture(scope="module")
def lirpa():
    """auto_LiRPA, imported (with every fix applied) before a test swaps APPLIED for a fresh list."""
    return lirpa_compat.import_auto_lirpa()


@pytest.fixture
def fresh_applied(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """A private APPLIED list, so a test sees only the fixes it triggered."""
    applied: list[str] = []
    monkeypatch.setattr(lirpa_compat, "APPLIED", applied)
    return applied


def test_arraysetops_present_is_left_alone(monkeypatch, fresh_applied):
    existing = types.ModuleType("numpy.lib.arraysetops")
    monkeypatch.setitem(sys.modules, "numpy.lib.arraysetops", existing)
    lirpa_compat._ensure_numpy_arraysetops()
    assert sys.modules["numpy.lib.arraysetops"] is existing
    assert fresh_applied == []


def test_arraysetops_missing_is_provided(monkeypatch, fresh_applied):
    monkeypatch.setitem(sys.modules, "numpy.lib.arraysetops", None)  # makes the import fail
    lirpa_compat._ensure_numpy_arraysetops()
    module = sys.modules["numpy.lib.arraysetops"]
    assert module.isin is np.isin
    assert fresh_applied == ["numpy.lib.arraysetops"]


def test_set_opset_version_present_is_left_alone(monkeypatch, fresh_applied):
    def existing(opset_version: int) -> None:
        raise AssertionError("never called here")

    monkeypatch.setattr(symbolic_helper, "_set_opset_version", existing, raising=False)
    lirpa_compat._ensure_set_opset_version()
    assert symbolic_helper._set_opset_version is existing
    assert fresh_applied == []


def test_set_opset_version_missing_is_provided(monkeypatch, fresh_applied):
    from torch.onnx._internal.torchscript_exporter._globals import GLOBALS

    monkeypatch.delattr(symbolic_helper, "_set_opset_version", raising=False)
    monkeypatch.setattr(GLOBALS, "export_onnx_opset_version", GLOBALS.export_onnx_opset_version)
    lirpa_compat._ensure_set_opset_version()
    symbolic_helper._set_opset_version(11)
    assert GLOBALS.export_onnx_opset_version == 11
    assert fresh_applied == ["torch.onnx.symbolic_helper._set_opset_version"]


def test_node_item_access_present_is_left_alone(monkeypatch, fresh_applied):
    def existing(node, key):
        return "existing"

    monkeypatch.setattr(torch._C.Node, "__getitem__", existing, raising=False)
    lirpa_compat._ensure_node_item_access()
    assert torch._C.Node.__getitem__ is existing
    assert fresh_applied == []


def test_node_item_access_missing_is_provided(monkeypatch, fresh_applied):
    monkeypatch.delattr(torch._C.Node, "__getitem__", raising=False)
    lirpa_compat._ensure_node_item_access()
    assert hasattr(torch._C.Node, "__getitem__")
    assert fresh_applied == ["torch._C.Node.__getitem__"]
    graph = torch.jit.trace(lambda x: torch.nn.functional.leaky_relu(x, 0.25), torch.zeros(2)).graph
    node = next(n for n in graph.nodes() if n.kind() == "prim::Constant" and n.hasAttribute("value"))
    assert node["value"] is not None


def test_apply_is_idempotent():
    first = lirpa_compat.apply()
    patched = (
        sys.modules.get("numpy.lib.arraysetops"),
        getattr(symbolic_helper, "_set_opset_version", None),
        getattr(torch._C.Node, "__getitem__", None),
    )
    second = lirpa_compat.apply()
    assert first == second
    assert len(set(second)) == len(second)
    assert patched == (
        sys.modules.get("numpy.lib.arraysetops"),
        getattr(symbolic_helper, "_set_opset_version", None),
        getattr(torch._C.Node, "__getitem__", None),
    )


def test_auto_lirpa_bounds_a_tiny_net_after_apply():
    """y = relu(x1 - x2) on [0, 1]^2: exact range [0, 1]; IBP and CROWN both give it."""
    lirpa = lirpa_compat.import_auto_lirpa()
    net = torch.nn.Sequential(torch.nn.Linear(2, 1), torch.nn.ReLU())
    with torch.no_grad():
        net[0].weight.copy_(torch.tensor([[1.0, -1.0]]))
        net[0].bias.zero_()
    x = torch.full((1, 2), 0.5)
    module = lirpa.BoundedModule(net, (x,), device="cpu", bound_opts={"verbosity": 0})
    perturbation = lirpa.PerturbationLpNorm(norm=float("inf"), x_L=torch.zeros(1, 2), x_U=torch.ones(1, 2))
    bounded_x = lirpa.BoundedTensor(x, perturbation)
    for method in ("IBP", "CROWN"):
        lower, upper = module.compute_bounds(x=(bounded_x,), method=method)
        assert lower.item() == pytest.approx(0.0, abs=1e-6)
        assert upper.item() == pytest.approx(1.0, abs=1e-6)


def test_torch_six_present_is_left_alone(monkeypatch, fresh_applied):
    existing = types.ModuleType("torch._six")
    monkeypatch.setitem(sys.modules, "torch._six", existing)
    lirpa_compat._ensure_torch_six()
    assert sys.modules["torch._six"] is existing
    assert fresh_applied == []


def test_torch_six_missing_is_provided(monkeypatch, fresh_applied):
    monkeypatch.setitem(sys.modules, "torch._six", None)
    monkeypatch.delattr(torch, "_six", raising=False)
    lirpa_compat._ensure_torch_six()
    assert sys.modules["torch._six"].string_classes == (str,)
    assert torch._six is sys.modules["torch._six"]
    assert fresh_applied == ["torch._six"]


def _bounded_tiny_net(lirpa):
    net = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.ReLU(), torch.nn.Linear(2, 1))
    return lirpa.BoundedModule(net, (torch.zeros(1, 2),), device="cpu", bound_opts={"verbosity": 0})


def test_named_members_with_remove_duplicate_is_left_alone(lirpa, monkeypatch, fresh_applied):
    from auto_LiRPA.bound_general import BoundedModule

    def existing(self, get_members_fn, prefix="", recurse=True, remove_duplicate=True):
        return iter(())

    monkeypatch.setattr(BoundedModule, "_named_members", existing)
    lirpa_compat._ensure_named_members_remove_duplicate()
    assert BoundedModule._named_members is existing
    assert fresh_applied == []


def test_named_members_without_remove_duplicate_is_wrapped(lirpa, monkeypatch, fresh_applied):
    from auto_LiRPA.bound_general import BoundedModule

    def old_style(self, get_members_fn, prefix="", recurse=True):
        yield from torch.nn.Module._named_members(self, get_members_fn, prefix=prefix, recurse=recurse)

    monkeypatch.setattr(BoundedModule, "_named_members", old_style)
    with pytest.raises(TypeError):
        list(_bounded_tiny_net(lirpa).parameters())
    lirpa_compat._ensure_named_members_remove_duplicate()
    assert BoundedModule._named_members is not old_style
    assert len(list(_bounded_tiny_net(lirpa).parameters())) == 4
    assert fresh_applied == ["auto_LiRPA.BoundedModule._named_members(remove_duplicate)"]


class _ParameterStatsBatchNorm(torch.nn.Module):
    """Inference batch norm whose running statistics are (frozen) parameters, as verikit translates it."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(1, 2, 3, padding=1)
        for name, value in {"scale": 1.5, "shift": 0.1, "mean": 0.2, "var": 2.0}.items():
            self.register_parameter(name, torch.nn.Parameter(torch.full((2,), value), requires_grad=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        images = self.conv(x.reshape(-1, 1, 3, 3))
        out = torch.nn.functional.batch_norm(images, self.mean, self.var, self.scale, self.shift, False, 0.0, 1e-5)
        return out.reshape(x.shape[0], -1)


def test_batch_norm_fix_is_skipped_when_torch_accepts_grad_stats(lirpa, monkeypatch, fresh_applied):
    from auto_LiRPA.operators.normalization import BoundBatchNormalization

    current = BoundBatchNormalization.forward
    monkeypatch.setattr(lirpa_compat, "_torch_refuses_batch_norm_stats_with_grad", lambda: False)
    monkeypatch.setattr(BoundBatchNormalization, "forward", lambda self, x, w, b, m, v: x)
    replaced = BoundBatchNormalization.forward
    lirpa_compat._ensure_batch_norm_constant_stats()
    assert BoundBatchNormalization.forward is replaced and replaced is not current
    assert fresh_applied == []


def test_batch_norm_stats_are_detached_when_torch_refuses_them(lirpa, monkeypatch, fresh_applied):
    from auto_LiRPA.operators.normalization import BoundBatchNormalization

    original = getattr(BoundBatchNormalization.forward, "__wrapped__", None)
    monkeypatch.setattr(lirpa_compat, "_torch_refuses_batch_norm_stats_with_grad", lambda: True)
    if original is not None:
        monkeypatch.setattr(BoundBatchNormalization, "forward", original)
    lirpa_compat._ensure_batch_norm_constant_stats()
    assert getattr(BoundBatchNormalization.forward, "detaches_stats", False)
    assert fresh_applied == ["auto_LiRPA.BoundBatchNormalization.forward(detached stats)"]
    model = _ParameterStatsBatchNorm().eval()
    x = torch.linspace(-1, 1, 9).reshape(1, 9)
    with torch.no_grad():
        expected = model(x)
    module = lirpa.BoundedModule(model, (x,), device="cpu", bound_opts={"verbosity": 0})
    torch.testing.assert_close(module(x), expected)
