"""Adversarial training of the base network: every instance box robust to PGD, with a margin.

The loss of a point is a hinge on the label's margin, `relu(margin - (y_label - max_other y))`, over
PGD points (sign steps, cosine schedule, like `verikit.engines.attack.engine`) and uniform points of each box.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from verikit.apps.soundness.layers import LayeredNet, from_torch, to_torch


@dataclass(frozen=True)
class TrainSettings:
    """Adam for `steps` steps; each step attacks `points` starts per box with `pgd_steps` PGD steps."""

    steps: int = 600
    lr: float = 3e-3
    points: int = 64
    pgd_steps: int = 10
    margin: float = 1.0


def label_margin(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """y_label - max_{j != label} y_j for logits (B, K) and labels (B,) → (B,)."""
    others = logits.scatter(1, labels[:, None], -math.inf)
    return logits.gather(1, labels[:, None])[:, 0] - others.max(dim=1).values


def _pgd(module, x, lower, upper, labels, steps: int) -> torch.Tensor:
    """Push points x (M, P, n) inside their boxes towards a smaller label margin."""
    flat_labels = labels[:, None].expand(x.shape[0], x.shape[1]).reshape(-1)
    width = upper - lower
    for step in range(steps):
        x = x.detach().requires_grad_(True)
        margin = label_margin(module(x.reshape(-1, x.shape[-1])), flat_labels)
        (gradient,) = torch.autograd.grad(margin.sum(), x)
        fraction = 0.1 * 0.5 * (1 + math.cos(math.pi * step / steps))
        with torch.no_grad():
            x = torch.minimum(torch.maximum(x - fraction * width * gradient.sign(), lower), upper)
    return x.detach()


def adversarially_train(
    net: LayeredNet, centres: np.ndarray, labels: np.ndarray, eps: float, settings: TrainSettings, seed: int
) -> LayeredNet:
    """Train `net` so that every box `centres[i] ± eps` (centres (M, n)) keeps `labels[i]` under PGD."""
    generator = torch.Generator().manual_seed(seed)
    module = to_torch(net)
    optimizer = torch.optim.Adam(module.parameters(), lr=settings.lr)
    centre = torch.as_tensor(centres, dtype=torch.float32)[:, None, :]
    lower, upper = centre - eps, centre + eps
    label_tensor = torch.as_tensor(labels, dtype=torch.long)
    count, points = centre.shape[0], settings.points
    both_labels = label_tensor[:, None].expand(count, 2 * points).reshape(-1)

    def uniform() -> torch.Tensor:
        return lower + (upper - lower) * torch.rand((count, points, centre.shape[-1]), generator=generator)

    for _ in range(settings.steps):
        attacked = _pgd(module, uniform(), lower, upper, label_tensor, settings.pgd_steps)
        batch = torch.cat([attacked, uniform()], dim=1).reshape(-1, centre.shape[-1])
        loss = torch.relu(settings.margin - label_margin(module(batch), both_labels)).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return from_torch(module, net)
