"""Proof search that leaves a checkable trace: a split tree per disjunct whose every leaf the independent
checker (verikit.checker) can re-derive.

The search bounds each node the way the checker will (float64; interval bounds, then CROWN for the
neurons still unstable; the split constraints tighten each layer), so a leaf proven here is a leaf the
checker proves, up to rounding. A node plain CROWN leaves open gets α-CROWN (and β for ReLU splits);
the leaf records the row, and the final α and β that prove it. Otherwise the node is split: input
coordinates (few inputs) or unstable ReLUs (many inputs), as in verikit.engines.bab.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from verikit.core.result import Budget
from verikit.engines.bab.branching import autograd_face_gradients, bisection_scores, relu_scores
from verikit.engines.bab.common import SpecRows
from verikit.engines.crown.optimise import lower_slopes, optimise_spec
from verikit.engines.crown.propagate import (
    ACTIVE, INACTIVE, LayerBounds, Relaxation, ReluMlp, SpecBounds, layer_bounds, spec_bounds,
)


def _detached(bounds: LayerBounds) -> LayerBounds:
    """The same bounds without the autograd graph."""
    lower = [t.detach() for t in bounds.lower]
    upper = [t.detach() for t in bounds.upper]
    magnitude = [t.detach() for t in bounds.magnitude]
    return LayerBounds(lower, upper, magnitude, bounds.infeasible.clone(),
                       [Relaxation.of(lo, up, m) for lo, up, m in zip(lower, upper, magnitude)])


@dataclass(frozen=True)
class ProofSettings:
    """Knobs of the certifying search."""

    input_split_max_dims: int = 16  # input splitting up to this many inputs, ReLU splitting above
    batch_size: int = 256
    alpha_steps: int = 20  # ReLU splitting: α/β-CROWN iterations on every open node
    input_alpha_steps: int = 5  # input splitting: α-CROWN iterations on open boxes...
    input_alpha_after: int = 2000  # ...once this many boxes were bounded (as verikit.engines.bab does)
    alpha_lr: float = 0.5
    relu_lr: float = 0.1
    max_leaves: int = 200_000


class ProofFailed(Exception):
    """The search did not close the tree (budget, leaf limit, or a leaf it cannot split)."""


@dataclass
class _Open:
    lower: torch.Tensor  # (n,)
    upper: torch.Tensor
    splits: list[torch.Tensor]  # (n_i,) int8 per hidden layer
    node: dict


def prove_disjunct(net: ReluMlp, C: np.ndarray, d: np.ndarray, lower: np.ndarray, upper: np.ndarray,
                   budget: Budget, settings: ProofSettings = ProofSettings()) -> tuple[dict, int]:
    """The split tree (a JSON-ready dict) refuting `C @ y <= d` on the box, and its leaf count.

    C (R, n_out), d (R,) float64 (the case's own values). Raises ProofFailed."""
    relu_mode = net.n_inputs > settings.input_split_max_dims
    C_t, d_t = torch.tensor(C, dtype=torch.float64), torch.tensor(d, dtype=torch.float64)
    root: dict = {}
    sizes = list(net.hidden_sizes)
    stack = [_Open(torch.tensor(lower, dtype=torch.float64), torch.tensor(upper, dtype=torch.float64),
                   [torch.zeros(s, dtype=torch.int8) for s in sizes], root)]
    leaves = bounded = 0
    while stack:
        if budget.expired():
            raise ProofFailed("time budget spent")
        batch, stack = stack[-settings.batch_size:], stack[: -settings.batch_size]
        steps = settings.alpha_steps if relu_mode else (
            settings.input_alpha_steps if bounded > settings.input_alpha_after else 0)
        children = _bound_batch(net, C_t, d_t, batch, relu_mode, settings, steps)
        bounded += len(batch)
        leaves += len(batch) - len(children) // 2
        if leaves > settings.max_leaves:
            raise ProofFailed(f"more than {settings.max_leaves} leaves")
        stack.extend(children)
    return root, leaves


def _bound_batch(net: ReluMlp, C: torch.Tensor, d: torch.Tensor, batch: list[_Open], relu_mode: bool,
                 settings: ProofSettings, alpha_steps: int) -> list[_Open]:
    """Bound a batch of nodes; fill in the leaves, split the rest; returns the children."""
    x_lower = torch.stack([item.lower for item in batch])
    x_upper = torch.stack([item.upper for item in batch])
    splits = [torch.stack([item.splits[i] for item in batch]) for i in range(net.depth)] if relu_mode else None
    gradients = None
    if relu_mode:
        with torch.no_grad():
            bounds = layer_bounds(net, x_lower, x_upper, splits, forward=False)
            plain = spec_bounds(net, x_lower, x_upper, C, d, bounds, splits=splits)
    else:  # the bound's gradient w.r.t. the box faces scores the coordinates to bisect
        with torch.enable_grad():
            x_lower.requires_grad_(True)
            x_upper.requires_grad_(True)
            bounds = layer_bounds(net, x_lower, x_upper, forward=False)
            plain = spec_bounds(net, x_lower, x_upper, C, d, bounds)
            rows = SpecRows(C, d, torch.zeros(C.shape[0], dtype=torch.long), 1)
            gradients = autograd_face_gradients(plain.lower, rows, x_lower, x_upper)
        x_lower, x_upper = x_lower.detach(), x_upper.detach()
        plain = SpecBounds(plain.lower.detach(), plain.coeff.detach(), plain.const.detach(), plain.slack.detach())
        bounds = _detached(bounds)
    lower = plain.lower.clone()
    alphas: list[torch.Tensor] | None = None
    betas: list[torch.Tensor] | None = None
    open_ = ~((lower > 0).any(dim=1) | bounds.infeasible)
    index = open_.nonzero().squeeze(1)
    if index.numel() and alpha_steps > 0:
        sub = bounds.select(index)
        sub_splits = None if splits is None else [s[index] for s in splits]
        _, params = optimise_spec(net, x_lower[index], x_upper[index], C, d, sub, splits=sub_splits,
                                  steps=alpha_steps,
                                  lr=settings.relu_lr if relu_mode else settings.alpha_lr)
        slopes = lower_slopes(sub, params.alphas)
        with torch.no_grad():  # the final α, β are what the certificate records: re-bound with them
            again = spec_bounds(net, x_lower[index], x_upper[index], C, d, sub, splits=sub_splits,
                                slopes_lo=slopes, betas=params.betas)
        better = again.lower.max(dim=1).values > lower[index].max(dim=1).values
        lower[index[better]] = again.lower[better]
        alphas = [torch.zeros(C.shape[0], len(batch), s.shape[-1], dtype=torch.float64) for s in slopes]
        for full, part in zip(alphas, slopes):
            full[:, index[better]] = part[:, better]
        if params.betas is not None:
            betas = [torch.zeros_like(a) for a in alphas]
            for full, part in zip(betas, params.betas):
                full[:, index[better]] = part[:, better].clamp(min=0)
        optimised = torch.zeros(len(batch), dtype=torch.bool)
        optimised[index[better]] = True
    else:
        optimised = torch.zeros(len(batch), dtype=torch.bool)
    children: list[_Open] = []
    still_open = []
    for b, item in enumerate(batch):
        if bool(bounds.infeasible[b]):
            item.node["empty"] = True
        elif bool((lower[b] > 0).any()):
            row = int(lower[b].argmax())
            item.node["row"] = row
            if bool(optimised[b]):
                item.node["alpha"] = [a[row, b].tolist() for a in alphas]
                if betas is not None:
                    item.node["beta"] = [t[row, b].tolist() for t in betas]
        else:
            still_open.append(b)
    if not still_open:
        return children
    rows = torch.tensor(still_open)
    if relu_mode:
        record: dict[int, torch.Tensor] = {}
        sub = bounds.select(rows)
        sub_splits = [s[rows] for s in splits]
        with torch.no_grad():
            spec_bounds(net, x_lower[rows], x_upper[rows], C, d, sub, splits=sub_splits, record=record)
        scores = relu_scores(sub, record, torch.ones(len(still_open), C.shape[0], dtype=torch.bool), sub_splits)
        best = scores.max(dim=1)
        offsets = np.cumsum([0] + list(net.hidden_sizes))
        for j, b in enumerate(still_open):
            if not torch.isfinite(best.values[j]):
                raise ProofFailed("a domain with every ReLU fixed stayed open")
            flat = int(best.indices[j])
            layer = int(np.searchsorted(offsets, flat, side="right") - 1)
            neuron = flat - int(offsets[layer])
            item = batch[b]
            item.node.update(split="relu", layer=layer, neuron=neuron, children=[{}, {}])
            for child, phase in zip(item.node["children"], (INACTIVE, ACTIVE)):
                child_splits = [s.clone() for s in item.splits]
                child_splits[layer][neuron] = phase
                children.append(_Open(item.lower, item.upper, child_splits, child))
        return children
    width = x_upper[rows] - x_lower[rows]
    dims = bisection_scores(gradients[0][rows], gradients[1][rows], width).argmax(dim=1)
    for j, b in enumerate(still_open):
        item, dim = batch[b], int(dims[j])
        at = float((item.lower[dim] + item.upper[dim]) / 2)
        if not float(item.lower[dim]) < at < float(item.upper[dim]):
            raise ProofFailed("a box too narrow to bisect stayed open")
        item.node.update(split="input", dim=dim, at=at, children=[{}, {}])
        left_upper, right_lower = item.upper.clone(), item.lower.clone()
        left_upper[dim], right_lower[dim] = at, at
        children.append(_Open(right_lower, item.upper, item.splits, item.node["children"][1]))
        children.append(_Open(item.lower, left_upper, item.splits, item.node["children"][0]))
    return children
