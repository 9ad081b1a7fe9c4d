"""Bounds of a batch of ReLU-split domains on auto_LiRPA's graph, on tensors (no densifying).

A domain is the input box intersected with sign constraints on some ReLU pre-activations. Its bound is
CROWN's final backward pass with the intermediate (pre-activation) bounds fixed to the root's, tightened
by the domain's splits: an "active" split raises the lower bound to 0, an "inactive" one lowers the
upper bound to 0. Bounds valid on the whole box stay valid on any subset of it, and the clamps hold on
the domain by its definition, so every relaxation used is valid on the domain, and so is the bound.
The ReLU lower slopes are the root's α (optimised once for the final spec; any slope in [0, 1] is
sound). Nothing here decides a verdict: the caller widens the raw
float32 bounds by the driver's slack (verikit.engines.lirpa.driver.widen).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from verikit.core.result import Budget, StepTimer
from verikit.engines.crown.propagate import round_outward
from verikit.engines.lirpa import support
from verikit.engines.lirpa.compat import import_auto_lirpa
from verikit.engines.lirpa.driver import limitation


@dataclass(frozen=True, eq=False)
class SplitLayer:
    """One ReLU whose input (pre-activation) node can be split: `name` of that input node, its shape."""

    name: str
    shape: tuple[int, ...]

    @property
    def size(self) -> int:
        return int(np.prod(self.shape))


@dataclass(frozen=True, eq=False)
class Root:
    """What every domain starts from: the box (float32, outward rounded, (1, n)), the spec C (R, K) on the
    module's device, the intermediate bounds of every node some operator needs bounds of (batch 1), the
    ReLU layers that can be split (in graph order), and the root α per ReLU node name (or None)."""

    x_lower: torch.Tensor
    x_upper: torch.Tensor
    C: torch.Tensor
    intermediate: dict[str, tuple[torch.Tensor, torch.Tensor]]
    layers: tuple[SplitLayer, ...]
    relu_nodes: tuple[object, ...]  # auto_LiRPA BoundRelu nodes, aligned with `layers`
    alpha: dict[str, torch.Tensor] | None
    raw_lower: np.ndarray  # the root's own raw bound (R,), float64


@dataclass(frozen=True, eq=False)
class BatchBounds:
    """Raw (unwidened) lower bounds (B, R); per split layer the domain's clamped pre-activation bounds
    (B, size) each and the final pass's coefficients at the ReLU outputs (B, R, size) (None when absent);
    a candidate input per domain and row (B, R, n): the box corner minimising that row's linear bound."""

    raw_lower: np.ndarray
    layer_bounds: list[tuple[torch.Tensor, torch.Tensor]]
    relu_coefficients: list[torch.Tensor | None]
    candidates: torch.Tensor | None


def _lirpa_input(root: Root, batch: int):
    lirpa = import_auto_lirpa()
    low, high = root.x_lower.expand(batch, -1), root.x_upper.expand(batch, -1)
    center = torch.minimum(torch.maximum((low + high) / 2, low), high)
    return lirpa.BoundedTensor(center, lirpa.PerturbationLpNorm(norm=float("inf"), x_L=low, x_U=high))


def _required_bounds(module) -> list[str]:
    """Names of the input-dependent nodes whose bounds some operator needs (ReLU inputs, pool inputs)."""
    names: list[str] = []
    for node in module._modules.values():  # noqa: SLF001 - auto_LiRPA keeps its nodes there, in order
        for index in getattr(node, "requires_input_bounds", None) or []:
            source = node.inputs[index] if index < len(node.inputs) else None
            if source is not None and getattr(source, "from_input", False) and source.name not in names:
                names.append(source.name)
    return names


def split_layers(module) -> tuple[tuple[SplitLayer, ...], tuple[object, ...]]:
    """The ReLU nodes of a traced BoundedModule and their input nodes, in graph order."""
    from auto_LiRPA.operators import BoundRelu

    layers, relus = [], []
    for node in module._modules.values():  # noqa: SLF001
        if isinstance(node, BoundRelu) and getattr(node.inputs[0], "from_input", False):
            shape = tuple(int(s) for s in node.inputs[0].output_shape[1:])
            layers.append(SplitLayer(node.inputs[0].name, shape))
            relus.append(node)
    return tuple(layers), tuple(relus)


def prepare_root(bounded, lower: np.ndarray, upper: np.ndarray, C: np.ndarray, *, alpha_steps: int,
                 alpha_lr: float, stop_alpha, budget: Budget | None = None) -> Root:
    """CROWN on the box for the intermediate bounds, then (alpha_steps > 0) α-CROWN on the final spec
    with those fixed; the α found is kept for every domain. `stop_alpha(raw (1, R)) -> bool` ends α early,
    and so does a step that would overrun `budget`."""
    timer = StepTimer(budget)
    import_auto_lirpa()
    module, device = bounded.module, bounded.device
    low, high = round_outward(torch.tensor(lower)[None], torch.tensor(upper)[None], torch.float32)
    spec = torch.as_tensor(C, dtype=torch.float32, device=device)
    layers, relus = split_layers(module)
    partial = Root(low.to(device), high.to(device), spec, {}, layers, relus, None, np.zeros(0))
    x = _lirpa_input(partial, 1)
    with support.quiet_lirpa(), torch.no_grad():
        try:
            raw, _ = module.compute_bounds(x=(x,), C=spec[None], method="CROWN", bound_upper=False)
        except Exception as error:  # noqa: BLE001 - re-raised unless it is a known auto_LiRPA limitation
            known = limitation(error, "compute CROWN bounds for branch and bound", bounded.network.source)
            if known is None:
                raise
            raise known from error
    intermediate = {}
    for name in _required_bounds(module):
        node = module[name]
        intermediate[name] = (node.lower.detach().clone(), node.upper.detach().clone())
    raw = raw.detach().double().cpu().numpy().reshape(-1)
    alpha = None
    if alpha_steps > 0 and relus:
        for node in module.optimizable_activations:
            if hasattr(node, "use_sparse_spec_alpha"):
                node.use_sparse_spec_alpha = False  # see driver._dense_spec_alpha

        def criterion(value: torch.Tensor) -> torch.Tensor:
            done = timer.out_of_time() or bool(stop_alpha(value.detach().double().cpu().numpy().reshape(1, -1)))
            return torch.full((value.shape[0], 1), done, dtype=torch.bool, device=value.device)

        module.set_bound_opts({"optimize_bound_args": {"iteration": int(alpha_steps), "lr_alpha": float(alpha_lr),
                                                       "stop_criterion_func": criterion}})
        with support.quiet_lirpa():
            optimised, _ = module.compute_bounds(x=(x,), C=spec[None], method="CROWN-Optimized", bound_upper=False,
                                                 intermediate_layer_bounds=intermediate)
        raw = np.maximum(raw, optimised.detach().double().cpu().numpy().reshape(-1))
        final = module.final_name
        alpha = {node.name: node.alpha[final].detach().clone() for node in relus
                 if final in getattr(node, "alpha", {})}
    return Root(low.to(device), high.to(device), spec, intermediate, layers, relus, alpha,
                np.where(np.isnan(raw), -np.inf, raw))


def domain_bounds(root: Root, splits: list[list[tuple[int, int, bool]]]) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Per split layer, (lower, upper) of shape (B, size): the root's bounds clamped by each domain's splits
    (layer index, flat neuron index, active?)."""
    batch = len(splits)
    out = []
    for layer in root.layers:
        low, high = root.intermediate[layer.name]
        out.append((low.reshape(1, -1).repeat(batch, 1), high.reshape(1, -1).repeat(batch, 1)))
    for b, domain in enumerate(splits):
        for k, j, active in domain:
            if active:
                out[k][0][b, j] = torch.clamp(out[k][0][b, j], min=0.0)
            else:
                out[k][1][b, j] = torch.clamp(out[k][1][b, j], max=0.0)
    return out


def _fixed_bounds(root: Root, layer_bounds: list[tuple[torch.Tensor, torch.Tensor]], batch: int) -> dict:
    """auto_LiRPA's `intermediate_layer_bounds` for a batch: the root's, the split layers' clamped."""
    fixed = {}
    for name, (low, high) in root.intermediate.items():
        fixed[name] = (low.expand(batch, *low.shape[1:]), high.expand(batch, *high.shape[1:]))
    for layer, (low, high) in zip(root.layers, layer_bounds):
        fixed[layer.name] = (low.reshape(batch, *layer.shape), high.reshape(batch, *layer.shape))
    return fixed


def refine(bounded, root: Root, layer_bounds: list[tuple[torch.Tensor, torch.Tensor]], layers: int) -> np.ndarray | None:
    """Re-derive (CROWN) the pre-activation bounds of the last `layers` split layers (never the first, which
    no split precedes) from the domains' clamped bounds before them, keeping the tighter of old and new (in
    place). Splits in earlier layers then tighten later layers, which fixed bounds never do. Every bound
    is valid on its domain. Returns the raw final bounds (B, R) that call found on the way, or None."""
    chosen = list(range(max(1, len(root.layers) - layers), len(root.layers)))
    if not chosen:
        return None
    module = bounded.module
    batch = layer_bounds[0][0].shape[0]
    fixed = _fixed_bounds(root, layer_bounds, batch)
    reference = {root.layers[k].name: fixed.pop(root.layers[k].name) for k in chosen}
    # auto_LiRPA derives the bounds of nodes missing from `fixed` itself, with its own (sparse) specs, on
    # the way to the final node; α is not reused here (it exists for the final node only).
    with support.quiet_lirpa(), torch.no_grad():
        raw, _ = module.compute_bounds(x=(_lirpa_input(root, batch),), C=root.C[None].expand(batch, -1, -1),
                                       method="CROWN", bound_upper=False, intermediate_layer_bounds=fixed,
                                       reference_bounds=reference)
    for k in chosen:
        node = module[root.layers[k].name]
        old_low, old_high = layer_bounds[k]
        layer_bounds[k] = (torch.maximum(old_low, node.lower.detach().reshape(batch, -1)),
                           torch.minimum(old_high, node.upper.detach().reshape(batch, -1)))
    values = raw.detach().double().cpu().numpy().reshape(batch, -1)
    return np.where(np.isnan(values), -np.inf, values)


def bound_batch(bounded, root: Root, splits: list[list[tuple[int, int, bool]]], *,
                refine_layers: int = 0) -> BatchBounds:
    """CROWN (the root's α reused) on each domain of the batch, intermediate bounds
    fixed to the root's as clamped by the domain's splits (the last `refine_layers` re-derived first).

    Crossed bounds (lower > upper) do not close a domain: float32 CROWN bounds of a neuron that is nearly
    constant cross by rounding alone (seen on sri_resnet_b: -9.17e-10 > -9.17e-10 in the last bit), so a
    crossing is no proof that the domain is empty. ReLU relaxations stay valid with them."""
    module = bounded.module
    batch = len(splits)
    layer_bounds = domain_bounds(root, splits)
    refined = refine(bounded, root, layer_bounds, refine_layers)
    intermediate = _fixed_bounds(root, layer_bounds, batch)
    x = _lirpa_input(root, batch)
    C = root.C[None].expand(batch, -1, -1)
    input_name = module.input_name[0]
    needed = {module.final_name: [input_name]}
    with support.quiet_lirpa(), torch.no_grad():
        reuse = root.alpha is not None
        if reuse:
            for node in root.relu_nodes:
                if node.name in root.alpha:
                    alpha = root.alpha[node.name]  # (2, spec, 1, *shape): repeat along the batch
                    node.alpha = {module.final_name: alpha.expand(-1, -1, batch, *alpha.shape[3:]).contiguous()}
                    node.alpha_lookup_idx = {module.final_name: None}
        raw, _, A = module.compute_bounds(x=(x,), C=C, method="CROWN", bound_upper=False, reuse_alpha=reuse,
                                          intermediate_layer_bounds=intermediate, return_A=True,
                                          needed_A_dict=needed)
    coefficients = []
    for node in root.relu_nodes:
        lA = getattr(node, "lA", None)
        coefficients.append(None if lA is None or not isinstance(lA, torch.Tensor)
                            else lA.detach().transpose(0, 1).reshape(batch, lA.shape[0], -1))
    candidates = None
    record = (A or {}).get(module.final_name, {}).get(input_name)
    if record is not None and isinstance(record.get("lA"), torch.Tensor):
        coeff = record["lA"].detach().reshape(batch, C.shape[1], -1)
        low, high = root.x_lower.reshape(1, 1, -1), root.x_upper.reshape(1, 1, -1)
        candidates = torch.where(coeff > 0, low, high)
    values = raw.detach().double().cpu().numpy().reshape(batch, -1)
    values = np.where(np.isnan(values), -np.inf, values)
    if refined is not None:
        values = np.maximum(values, refined)
    return BatchBounds(values, layer_bounds, coefficients, candidates)
