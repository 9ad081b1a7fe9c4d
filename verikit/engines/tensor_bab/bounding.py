"""Bounds of a batch of ReLU-split domains on auto_LiRPA's graph, on tensors (no densifying).

A domain is the input box intersected with sign constraints on some ReLU pre-activations. Its bound is
CROWN's final backward pass with the intermediate (pre-activation) bounds fixed to the root's, tightened
by the domain's splits: an "active" split raises the lower bound to 0, an "inactive" one lowers the
upper bound to 0. Bounds valid on the whole box stay valid on any subset of it, and the clamps hold on
the domain by its definition, so every relaxation used is valid on the domain, and so is the bound.
The ReLU lower slopes are the root's α (optimised once for the final spec; any slope in [0, 1] is
sound). With `beta_steps` > 0 the batch's bound is β-CROWN's: each split z_j >= 0 (s_j = +1) or
z_j <= 0 (s_j = -1) gets a multiplier β_j >= 0 that adds -β_j·s_j·z_j to the bound (<= 0 on the domain,
so the bound stays valid for every β >= 0), carried by auto_LiRPA's sparse β of each ReLU node; β and
the domains' own copies of α climb the bound by a few Adam steps, each row keeping its best step's
bound and multipliers (every step's bound is valid, so the best is too). Nothing here decides a
verdict: the caller widens the raw float32 bounds by the driver's slack
(verikit.engines.lirpa.driver.widen) and re-proves closed domains rigorously with the multipliers
returned (verikit.engines.tensor_bab.confirm).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from verikit.core.result import Budget, StepTimer
from verikit.engines.crown.propagate import round_outward
from verikit.engines.lirpa import support
from verikit.engines.lirpa.compat import import_auto_lirpa
from verikit.engines.lirpa.driver import _dense_spec_alpha, limitation


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
    a candidate input per domain and row (B, R, n): the box corner minimising that row's linear bound.
    With β: per split layer the multipliers behind each row's bound, dense (B, R, size) (`beta`), the
    lower slopes (B, R, size) (`alpha`, None: the root's), and per domain its β in split order, to warm-start
    its children (`split_beta`, (depth,) each)."""

    raw_lower: np.ndarray
    layer_bounds: list[tuple[torch.Tensor, torch.Tensor]]
    relu_coefficients: list[torch.Tensor | None]
    candidates: torch.Tensor | None
    beta: list[torch.Tensor | None] | None = None
    alpha: list[torch.Tensor | None] | None = None
    split_beta: list[np.ndarray] | None = None


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


def _alpha_crown(module, x, spec: torch.Tensor, steps: int, lr: float, stop_alpha, timer: StepTimer,
                 intermediate: dict | None, reference: dict | None = None) -> torch.Tensor:
    """auto_LiRPA's α-CROWN raw lower bound (1, R) of `spec` (R, K) over x, at most `steps` steps of size
    `lr`, ended early by `stop_alpha(raw (1, R)) -> bool` or a step that would overrun `timer`'s budget;
    `intermediate` fixes those nodes' bounds (None: the hidden layers' bounds are optimised too);
    `reference` (valid bounds of those nodes) tells auto_LiRPA which neurons are unstable, so it bounds
    only those (by default it asks IBP, far looser on deep networks), and each new bound keeps the
    tighter of the two."""
    _dense_spec_alpha(module)

    def criterion(value: torch.Tensor) -> torch.Tensor:
        done = timer.out_of_time() or bool(stop_alpha(value.detach().double().cpu().numpy().reshape(1, -1)))
        return torch.full((value.shape[0], 1), done, dtype=torch.bool, device=value.device)

    module.set_bound_opts({"optimize_bound_args": {"iteration": int(steps), "lr_alpha": float(lr),
                                                   "stop_criterion_func": criterion}})
    with support.quiet_lirpa():
        raw, _ = module.compute_bounds(x=(x,), C=spec[None], method="CROWN-Optimized", bound_upper=False,
                                       intermediate_layer_bounds=intermediate, reference_bounds=reference)
    return raw


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
        optimised = _alpha_crown(module, x, spec, alpha_steps, alpha_lr, stop_alpha, timer, intermediate)
        raw = np.maximum(raw, optimised.detach().double().cpu().numpy().reshape(-1))
        final = module.final_name
        alpha = {node.name: node.alpha[final].detach().clone() for node in relus
                 if final in getattr(node, "alpha", {})}
    return Root(low.to(device), high.to(device), spec, intermediate, layers, relus, alpha,
                np.where(np.isnan(raw), -np.inf, raw))


@dataclass(frozen=True, eq=False)
class HiddenAlpha:
    """α-CROWN over every layer at once (auto_LiRPA optimising the hidden layers' bounds too): the raw
    final bound (R,), the final spec's α per ReLU node name (as `Root.alpha`), and per ReLU node name and
    start node name (a later ReLU input) the lower slopes (2, size of start, *shape) behind that start's
    bounds, [0] for its lower bounds and [1] for its upper ones."""

    raw_lower: np.ndarray
    alpha: dict[str, torch.Tensor]
    slopes: dict[str, dict[str, torch.Tensor]]


def optimise_hidden(bounded, root: Root, *, steps: int, lr: float, stop_alpha, budget: Budget | None) -> HiddenAlpha:
    """α-CROWN with the hidden layers' bounds optimised too (nothing fixed), from the box of `root`, for at
    most `steps` steps within `budget`; `stop_alpha(raw (1, R)) -> bool` ends it early. Only the slopes
    are kept: bounds are derived from them again, rigorously, by the caller (any slope in [0, 1] is
    sound, so nothing of auto_LiRPA's float32 arithmetic is trusted)."""
    module = bounded.module
    raw = _alpha_crown(module, _lirpa_input(root, 1), root.C, steps, lr, stop_alpha, StepTimer(budget), None,
                       reference=root.intermediate)
    final = module.final_name
    starts = {layer.name for layer in root.layers}
    alpha, slopes = {}, {}
    for node in root.relu_nodes:
        found = getattr(node, "alpha", None) or {}
        lookup = getattr(node, "alpha_lookup_idx", None) or {}
        if final in found:
            alpha[node.name] = found[final].detach().clone()
        slopes[node.name] = {start: value.detach()[:, :, 0].clone() for start, value in found.items()
                             if start in starts and lookup.get(start) is None and value.dim() >= 3
                             and value.shape[2] == 1}  # dense, batch 1: (2, size of start, *shape)
    values = raw.detach().double().cpu().numpy().reshape(-1)
    return HiddenAlpha(np.where(np.isnan(values), -np.inf, values), alpha, slopes)


def hidden_alpha_bytes(module, root: Root) -> int:
    """Estimated bytes of `optimise_hidden`: auto_LiRPA's α-CROWN matrices, and per ReLU and later
    start node the dense slopes (2 x start size x ReLU size), kept four times (value, Adam's two moments,
    the best copy), in float32."""
    from verikit.engines.lirpa.memory import crown_matrix_bytes

    slopes = sum(2 * later.size * layer.size for i, layer in enumerate(root.layers) for later in root.layers[i + 1:])
    return crown_matrix_bytes(module, "alpha-crown") + 4 * 4 * slopes


def with_hidden_bounds(root: Root, bounds: dict[str, tuple[torch.Tensor, torch.Tensor]], hidden: HiddenAlpha) -> Root:
    """`root` with its split layers' bounds replaced by `bounds` (name -> float64 (lower, upper) of the
    layer's shape, rigorous), rounded outward to float32, the final α of `hidden` and the better raw bound."""
    intermediate = dict(root.intermediate)
    for layer in root.layers:
        low, high = bounds[layer.name]
        old = root.intermediate[layer.name][0]
        low, high = round_outward(low.reshape(old.shape), high.reshape(old.shape), torch.float32)
        intermediate[layer.name] = (low.to(old.device), high.to(old.device))
    raw = np.maximum(root.raw_lower, hidden.raw_lower)
    return Root(root.x_lower, root.x_upper, root.C, intermediate, root.layers, root.relu_nodes,
                hidden.alpha or root.alpha, raw)


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


def lower_slopes(alpha: torch.Tensor | None, layer: SplitLayer, rows: int) -> torch.Tensor | None:
    """auto_LiRPA's lower-bound α of one ReLU for the final spec, (rows, B, *shape), as float64 (B, rows,
    size) on the CPU; None when absent, sparse (unstable neurons only) or of another shape."""
    if alpha is None or alpha.dim() < 2 or alpha.shape[0] != rows or tuple(alpha.shape[2:]) != layer.shape:
        return None
    return alpha.detach().double().cpu().transpose(0, 1).reshape(alpha.shape[1], rows, layer.size)


@dataclass(eq=False)
class _SparseBeta:
    """One split layer's β for a batch, as auto_LiRPA's sparse β wants it: (B, m) locations (flat neuron),
    signs (+1 for z >= 0, -1 for z <= 0, 0 for padding) and values; `order[b][t]` is the position in
    domain b's split list of its t-th split on this layer."""

    loc: torch.Tensor
    sign: torch.Tensor
    value: torch.Tensor
    order: list[list[int]]


def _sparse_betas(root: Root, splits: list[list[tuple[int, int, bool]]], warm: list[np.ndarray | None] | None,
                  device) -> list[_SparseBeta | None]:
    batch = len(splits)
    out: list[_SparseBeta | None] = []
    for k in range(len(root.layers)):
        entries = [[(i, j, active) for i, (layer, j, active) in enumerate(domain) if layer == k] for domain in splits]
        width = max((len(e) for e in entries), default=0)
        if width == 0:
            out.append(None)
            continue
        loc = torch.zeros(batch, width, dtype=torch.long)
        sign = torch.zeros(batch, width)
        value = torch.zeros(batch, width)
        for b, found in enumerate(entries):
            for t, (i, j, active) in enumerate(found):
                loc[b, t], sign[b, t] = j, (1.0 if active else -1.0)
                if warm is not None and warm[b] is not None and i < len(warm[b]):
                    value[b, t] = float(max(warm[b][i], 0.0))
        out.append(_SparseBeta(loc.to(device), sign.to(device), value.to(device), [[i for i, _, _ in e] for e in entries]))
    return out


def bound_batch(bounded, root: Root, splits: list[list[tuple[int, int, bool]]], *,
                refine_layers: int = 0, beta_steps: int = 0, beta_lr: float = 0.05, alpha_lr: float = 0.1,
                warm_beta: list[np.ndarray | None] | None = None) -> BatchBounds:
    """CROWN (the root's α reused) on each domain of the batch, intermediate bounds
    fixed to the root's as clamped by the domain's splits (the last `refine_layers` re-derived first);
    with `beta_steps` > 0, β-CROWN (module doc), β warm-started from `warm_beta` (per domain, in split
    order; None: zero).

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
    final = module.final_name
    alphas = {}
    reuse = root.alpha is not None
    if reuse:
        for node in root.relu_nodes:
            if node.name in root.alpha:
                alpha = root.alpha[node.name]  # (2, spec, 1, *shape): repeat along the batch
                alphas[node.name] = alpha.expand(-1, -1, batch, *alpha.shape[3:]).contiguous()
    betas = _sparse_betas(root, splits, warm_beta, root.C.device) if beta_steps > 0 else [None] * len(root.layers)
    use_beta = any(b is not None for b in betas)

    def one_pass(grad: bool):
        for node in root.relu_nodes:
            if node.name in alphas:
                node.alpha = {final: alphas[node.name]}
                node.alpha_lookup_idx = {final: None}
        for node, beta in zip(root.relu_nodes, betas):
            node.sparse_beta = None if beta is None else beta.value
            node.sparse_beta_loc = None if beta is None else beta.loc
            node.sparse_beta_sign = None if beta is None else beta.sign
        with support.quiet_lirpa(), (torch.enable_grad() if grad else torch.no_grad()):
            return module.compute_bounds(x=(x,), C=C, method="CROWN", bound_upper=False, reuse_alpha=reuse,
                                         intermediate_layer_bounds=intermediate, return_A=not grad,
                                         needed_A_dict=None if grad else needed)

    best_beta = best_alpha = None
    if use_beta:
        raw_best, best_beta, best_alpha = _optimise_beta(module, root, alphas, betas, one_pass, beta_steps,
                                                         beta_lr, alpha_lr)
        for node, beta in zip(root.relu_nodes, betas):
            if beta is not None:
                beta.value = best_beta[node.name][0]  # the worst row's best β, for the A pass and warm starts
    module.set_bound_opts({"optimize_bound_args": {"enable_beta_crown": use_beta, "single_node_split": True}})
    try:
        raw, _, A = one_pass(grad=False)
    finally:
        module.set_bound_opts({"optimize_bound_args": {"enable_beta_crown": False}})
        for node in root.relu_nodes:
            node.sparse_beta = node.sparse_beta_loc = node.sparse_beta_sign = None
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
    if not use_beta:
        return BatchBounds(values, layer_bounds, coefficients, candidates)
    values = np.maximum(values, raw_best)
    dense_beta, dense_alpha, split_beta = [], [], [np.zeros(len(domain)) for domain in splits]
    rows = C.shape[1]
    for layer, node, beta in zip(root.layers, root.relu_nodes, betas):
        if beta is None:
            dense_beta.append(None)
        else:
            per_row = best_beta[node.name][1]  # (B, R, m)
            dense = torch.zeros(batch, rows, layer.size, dtype=torch.float64)
            dense.scatter_add_(2, beta.loc.cpu()[:, None, :].expand(-1, rows, -1),
                               (per_row.detach().double().cpu() * beta.sign.cpu()[:, None, :].abs()))
            dense_beta.append(dense)
            final_value = beta.value.detach().double().cpu().numpy()
            for b, order in enumerate(beta.order):
                for t, i in enumerate(order):
                    split_beta[b][i] = final_value[b, t]
        dense_alpha.append(lower_slopes(best_alpha.get(node.name), layer, rows))
    return BatchBounds(values, layer_bounds, coefficients, candidates, dense_beta, dense_alpha, split_beta)


def _optimise_beta(module, root: Root, alphas: dict, betas: list, one_pass, steps: int, beta_lr: float,
                   alpha_lr: float):
    """Adam on β (kept >= 0) and the batch's α (kept in [0, 1]) for `steps` steps, maximising the rows'
    lower bounds. Returns (the best bound per row (B, R) float64, per ReLU name (β of the worst row's best
    step (B, m), β of each row's best step (B, R, m)), per ReLU name α of each row's best step
    (spec, B, *shape))."""
    params_beta = [b.value.requires_grad_() for b in betas if b is not None]
    params_alpha = [a[0].clone().requires_grad_() for a in alphas.values()]
    names = list(alphas)
    for name, leaf in zip(names, params_alpha):
        alphas[name] = torch.stack([leaf, alphas[name][1]])  # the lower-bound slopes are optimised
    groups = [{"params": params_beta, "lr": beta_lr}]
    if params_alpha:
        groups.append({"params": params_alpha, "lr": alpha_lr})
    optimiser = torch.optim.Adam(groups)
    best = None
    best_beta = {node.name: (b.value.detach().clone(), None) for node, b in zip(root.relu_nodes, betas) if b is not None}
    best_alpha = {name: leaf.detach().clone() for name, leaf in zip(names, params_alpha)}
    module.set_bound_opts({"optimize_bound_args": {"enable_beta_crown": True, "single_node_split": True}})
    try:
        for step in range(steps):
            for name, leaf in zip(names, params_alpha):
                alphas[name] = torch.stack([leaf, alphas[name][1].detach()])
            raw, _ = one_pass(grad=True)
            values = raw.detach().double()
            values = torch.where(torch.isnan(values), torch.full_like(values, -torch.inf), values)
            if best is None:
                better = torch.ones_like(values, dtype=torch.bool)
                best = values.clone()
            else:
                better = values > best
                best = torch.where(better, values, best)
            domain_better = better[torch.arange(values.shape[0]), values.argmin(dim=1)]  # at its worst row
            for node, beta in zip(root.relu_nodes, betas):
                if beta is None:
                    continue
                current = beta.value.detach()[:, None, :].expand(-1, values.shape[1], -1)
                old = best_beta[node.name][1]
                per_row = current.clone() if old is None else torch.where(better.to(current.device)[:, :, None], current, old)
                shared = torch.where(domain_better.to(current.device)[:, None], beta.value.detach(), best_beta[node.name][0])
                best_beta[node.name] = (shared.clone(), per_row)
            for name, leaf in zip(names, params_alpha):
                mask = better.T.to(leaf.device).reshape(*better.T.shape, *([1] * (leaf.dim() - 2)))
                best_alpha[name] = torch.where(mask, leaf.detach(), best_alpha[name])
            if step == steps - 1:
                break
            loss = -torch.nan_to_num(raw, nan=0.0, neginf=0.0).sum()
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            with torch.no_grad():
                for value in params_beta:
                    value.clamp_(min=0.0)
                for leaf in params_alpha:
                    leaf.clamp_(0.0, 1.0)
    finally:
        module.set_bound_opts({"optimize_bound_args": {"enable_beta_crown": False}})
    for beta in betas:
        if beta is not None:
            beta.value = beta.value.detach()
    for name in names:
        alphas[name] = torch.stack([best_alpha[name], alphas[name][1].detach()])
    return best.cpu().numpy(), best_beta, best_alpha
