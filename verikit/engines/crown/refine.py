"""Intermediate bounds of split domains, refined below their latest split.

A split makes its neuron's relaxation exact, which tightens every later layer; bounds inherited from
the root do not see that. `refine_after` re-runs CROWN (adaptive slopes, the domains' own relaxations)
for the neurons still unstable in the layers after `start`, and keeps the tighter of old and new.
"""

from __future__ import annotations

import torch

from verikit.engines.crown.propagate import (
    ACTIVE, INACTIVE, InputBox, LayerBounds, Relaxation, ReluMlp, _refine_unstable,
)


def restrict(base: LayerBounds, splits: list[torch.Tensor]) -> LayerBounds:
    """Bounds `base` (1 or B domains) tightened by split assignments (B, n_i)."""
    lower, upper, magnitude, relaxations = [], [], [], []
    for lo, up, zabs, split in zip(base.lower, base.upper, base.magnitude, splits):
        lo = torch.where(split == ACTIVE, lo.clamp(min=0), lo)
        up = torch.where(split == INACTIVE, up.clamp(max=0), up)
        lower.append(lo)
        upper.append(up)
        magnitude.append(zabs.expand_as(lo))
        relaxations.append(Relaxation.of(lo, up, magnitude[-1]))
    infeasible = base.infeasible.expand(splits[0].shape[0]).clone()
    for lo, up in zip(lower, upper):
        infeasible |= (lo > up).any(dim=1)
    return LayerBounds(lower, upper, magnitude, infeasible, relaxations)


def tightest(a: LayerBounds, b: LayerBounds) -> LayerBounds:
    """The intersection of two sound bounds of the same domains, in a's dtype (b is converted, exactly
    when it is the narrower float type)."""
    lower = [torch.maximum(x, y.to(x.dtype)) for x, y in zip(a.lower, b.lower)]
    upper = [torch.minimum(x, y.to(x.dtype)) for x, y in zip(a.upper, b.upper)]
    relaxations = [Relaxation.of(lo, up, m) for lo, up, m in zip(lower, upper, a.magnitude)]
    infeasible = a.infeasible | b.infeasible
    for lo, up in zip(lower, upper):
        infeasible = infeasible | (lo > up).any(dim=1)
    return LayerBounds(lower, upper, list(a.magnitude), infeasible, relaxations)


def refine_after(net: ReluMlp, bounds: LayerBounds, splits: list[torch.Tensor], box: InputBox,
                 start: int) -> LayerBounds:
    """`bounds` (B domains, already tightened by `splits`) with layers start+1.. re-bounded by CROWN.

    Sound for any `start`; a split in layer `start` can only change layers after it.
    """
    lower, upper = list(bounds.lower), list(bounds.upper)
    relaxations = list(bounds.relaxations)
    refined = LayerBounds(lower, upper, list(bounds.magnitude), bounds.infeasible.clone(), relaxations,
                          list(bounds.input_coefficients))
    for i in range(max(1, start + 1), net.depth):
        lo, up = _refine_unstable(net, i, refined, lower[i], upper[i], refined.magnitude[i], box)
        lo = torch.where(splits[i] == ACTIVE, lo.clamp(min=0), lo)
        up = torch.where(splits[i] == INACTIVE, up.clamp(max=0), up)
        lower[i], upper[i] = lo, up
        relaxations[i] = Relaxation.of(lo, up, refined.magnitude[i])
        refined.infeasible = refined.infeasible | (lo > up).any(dim=1)
    return refined
