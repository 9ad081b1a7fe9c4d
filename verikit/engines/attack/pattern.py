"""A penalty for breaking a case's hidden pattern, added to the attack's loss: PGD then looks for points
that follow the pattern and violate the output condition. The penalty only steers the search; every
candidate is still replayed and checked to follow the pattern on onnxruntime's values (witness.replay)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from verikit.core.pwl import Affine, PiecewiseLinear, Relu

WEIGHT = 10.0  # penalty per unit of pre-activation on the wrong side
MARGIN = 1e-3  # asked of every constrained pre-activation, so float32 replay keeps the strict `> 0`


def pattern_penalty(pwl: PiecewiseLinear, phases: dict) -> Callable[[torch.Tensor], torch.Tensor]:
    """x (B, n_inputs) -> (B,) >= 0, zero where every phase of `phases` ({Relu layer index of pwl:
    (active, inactive)}) holds with margin MARGIN."""
    layers = []
    for index, layer in enumerate(pwl.layers):
        if isinstance(layer, Affine):
            layers.append(("affine", torch.tensor(layer.weight, dtype=torch.float32),
                           torch.tensor(layer.bias, dtype=torch.float32)))
        elif isinstance(layer, Relu):
            active, inactive = phases.get(index, (None, None))
            layers.append(("relu", None if active is None else torch.as_tensor(np.asarray(active, bool)),
                           None if inactive is None else torch.as_tensor(np.asarray(inactive, bool))))
        else:
            layers.append(("max", torch.as_tensor(layer.groups), None))
    last = max(i for i, layer in enumerate(pwl.layers) if isinstance(layer, Relu) and i in phases)

    def penalty(x: torch.Tensor) -> torch.Tensor:
        values, total = x.float(), torch.zeros(x.shape[0], dtype=torch.float32)
        for index, (kind, a, b) in enumerate(layers[: last + 1]):
            if kind == "affine":
                values = values @ a.T + b
            elif kind == "relu":
                if a is not None:
                    total = total + (MARGIN - values[:, a]).clamp(min=0).sum(dim=1)
                    total = total + (values[:, b] + MARGIN).clamp(min=0).sum(dim=1)
                values = values.clamp(min=0)
            else:
                values = values[:, a].max(dim=2).values
        return WEIGHT * total

    return penalty
