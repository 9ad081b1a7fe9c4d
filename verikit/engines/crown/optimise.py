"""Optimised CROWN: gradient ascent on the ReLU lower slopes (α) and split multipliers (β).

Any α in [0, 1] (per spec row, domain and unstable neuron) and any β >= 0 (per split neuron) give a
sound bound, so every iterate's bound is valid and the best one per row is kept. β enforces a split
constraint (z >= 0 / z <= 0) on the layers before the split neuron, which the per-neuron tightening of
`crown.layer_bounds` alone cannot do.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from verikit.engines.crown.input_set import InputBall
from verikit.engines.crown.propagate import InputBox, LayerBounds, Relaxation, ReluMlp, SpecBounds, spec_bounds, substitute


@dataclass(eq=False)
class Multipliers:
    """Optimisable parameters, one tensor (R, B, n_i) per hidden layer."""

    alphas: list[torch.Tensor]
    betas: list[torch.Tensor] | None

    def parameters(self) -> list[torch.Tensor]:
        return self.alphas + (self.betas or [])

    def detach(self) -> "Multipliers":
        return Multipliers([a.detach() for a in self.alphas], None if self.betas is None else [b.detach() for b in self.betas])


def initial_alphas(bounds: LayerBounds, rows: int) -> list[torch.Tensor]:
    """α (R, B, n_i) starting at CROWN's adaptive lower slopes."""
    return [relax.slope_lo.unsqueeze(0).expand(rows, -1, -1).clone() for relax in bounds.relaxations]


def lower_slopes(bounds: LayerBounds, alphas: list[torch.Tensor]) -> list[torch.Tensor]:
    """Lower slopes (R, B, n_i): α clamped to [0, 1] on unstable neurons, the exact slope elsewhere."""
    return [
        torch.where(relax.unstable.unsqueeze(0), alpha.clamp(0.0, 1.0), relax.slope_lo.unsqueeze(0))
        for relax, alpha in zip(bounds.relaxations, alphas)
    ]


def optimise_spec(
    net: ReluMlp,
    x_lower: torch.Tensor,
    x_upper: torch.Tensor,
    C: torch.Tensor,
    d: torch.Tensor,
    bounds: LayerBounds,
    *,
    splits: list[torch.Tensor] | None = None,
    steps: int = 20,
    lr: float = 0.1,
    start: Multipliers | None = None,
    use_beta: bool | None = None,
    stop: Callable[[torch.Tensor], torch.Tensor] | None = None,
    ball: InputBall | None = None,
) -> tuple[SpecBounds, Multipliers]:
    """Best bounds (B, R) of `C @ y - d` over `steps` Adam iterations on α (and β when splits are given).

    Returns the best bounds seen per row and the final multipliers (a warm start for children).
    `stop(best lower bounds (B, R))` -> bool tensor ends the iterations early when true. With `ball`, over
    each box ∩ the ℓ2 ball (verikit.engines.crown.input_set).
    """
    rows = C.shape[0]
    use_beta = splits is not None if use_beta is None else use_beta
    if start is None:
        alphas = initial_alphas(bounds, rows)
        betas = [torch.zeros_like(a) for a in alphas] if use_beta else None
    else:
        alphas = [a.clone() for a in start.alphas]
        betas = None if not use_beta else (
            [b.clone() for b in start.betas] if start.betas is not None else [torch.zeros_like(a) for a in alphas]
        )
    params = Multipliers(alphas, betas)
    with torch.no_grad():
        best = spec_bounds(net, x_lower, x_upper, C, d, bounds, splits=splits,
                           slopes_lo=lower_slopes(bounds, params.alphas), betas=params.betas, ball=ball)
    if steps <= 0 or (stop is not None and bool(stop(best.lower))):
        return best, params
    for tensor in params.parameters():
        tensor.requires_grad_(True)
    optimiser = torch.optim.Adam(params.parameters(), lr=lr)
    best_lower, best_coeff, best_const, best_slack = best.lower.clone(), best.coeff.clone(), best.const.clone(), best.slack.clone()
    with torch.enable_grad():
        for _ in range(steps):
            current = spec_bounds(net, x_lower, x_upper, C, d, bounds, splits=splits,
                                  slopes_lo=lower_slopes(bounds, params.alphas), betas=params.betas, ball=ball)
            finite = torch.where(torch.isfinite(current.lower), current.lower, torch.zeros_like(current.lower))
            loss = -finite.sum()
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            with torch.no_grad():
                improved = current.lower > best_lower
                best_lower = torch.where(improved, current.lower.detach(), best_lower)
                best_const = torch.where(improved, current.const.detach(), best_const)
                best_slack = torch.where(improved, current.slack.detach(), best_slack)
                best_coeff = torch.where(improved.unsqueeze(-1), current.coeff.detach(), best_coeff)
                if params.betas is not None:
                    for beta in params.betas:
                        beta.clamp_(min=0)
                if stop is not None and bool(stop(best_lower)):
                    break
    return SpecBounds(best_lower, best_coeff, best_const, best_slack), params.detach()


def optimise_layer_bounds(net: ReluMlp, x_lower: torch.Tensor, x_upper: torch.Tensor, bounds: LayerBounds, *,
                          steps: int = 20, lr: float = 0.1, first: int = 1,
                          stop: Callable[[], bool] | None = None) -> LayerBounds:
    """Hidden bounds tightened by α-CROWN, layer by layer, for the neurons still unstable.

    For layer i, every unstable neuron's lower and upper bound gets its own α on every earlier layer;
    the best bound seen over `steps` Adam iterations replaces the old one where tighter, and layer i's
    relaxation is rebuilt before layer i+1 is optimised. Meant for few domains (the root of ReLU
    branching): the parameters number 2·(unstable neurons)·(earlier neurons) per domain. Layers before
    `first` are kept as they are. `stop()` true ends the work early: the layer being optimised keeps the
    best bounds seen so far (each is a sound bound), later layers stay as they were.
    """
    box = InputBox(x_lower.to(net.device, net.dtype), x_upper.to(net.device, net.dtype))
    lower, upper = list(bounds.lower), list(bounds.upper)
    relaxations = list(bounds.relaxations)
    for i in range(max(1, first), net.depth):
        if stop is not None and stop():
            break
        unstable = relaxations[i].unstable.any(dim=0).nonzero().squeeze(1)  # neurons unstable in some domain
        if unstable.numel() == 0 or steps <= 0:
            continue
        rows = net.weights[i][unstable]
        lam = torch.cat([rows, -rows]).unsqueeze(1)  # (2P, 1, n_{i-1}) on a_{i-1}
        bias = net.biases[i][unstable]
        const = torch.cat([bias, -bias]).unsqueeze(1)
        magnitude = bounds.magnitude[i][:, unstable].T.repeat(2, 1)
        packed = [r.packed for r in relaxations[:i]]
        alphas = [r.slope_lo.unsqueeze(0).expand(lam.shape[0], -1, -1).clone().requires_grad_(True)
                  for r in relaxations[:i]]
        optimiser = torch.optim.Adam(alphas, lr=lr)
        best = torch.full((lam.shape[0], lower[i].shape[0]), -torch.inf, dtype=net.dtype, device=net.device)
        with torch.enable_grad():
            for _ in range(steps + 1):
                slopes = [torch.where(r.unstable.unsqueeze(0), a.clamp(0.0, 1.0), r.slope_lo.unsqueeze(0))
                          for r, a in zip(relaxations[:i], alphas)]
                value, _, _, _ = substitute(net, lam, const, magnitude, i - 1, packed, box, slopes_lo=slopes)
                best = torch.maximum(best, value.detach())
                if stop is not None and stop():
                    break
                optimiser.zero_grad(set_to_none=True)
                (-value.sum()).backward()
                optimiser.step()
        count = unstable.numel()
        lower[i] = lower[i].clone()
        upper[i] = upper[i].clone()
        lower[i][:, unstable] = torch.maximum(lower[i][:, unstable], best[:count].T)
        upper[i][:, unstable] = torch.minimum(upper[i][:, unstable], -best[count:].T)
        relaxations[i] = Relaxation.of(lower[i], upper[i], bounds.magnitude[i])
    infeasible = bounds.infeasible.clone()
    for lo, up in zip(lower, upper):
        infeasible |= (lo > up).any(dim=1)
    return LayerBounds(lower, upper, list(bounds.magnitude), infeasible, relaxations, list(bounds.input_coefficients))
