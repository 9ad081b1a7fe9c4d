"""α/β optimisation for the activation branch and bound, by gradient ascent on the bound (as α,β-CROWN do
for ReLU networks):

- β: multipliers of the domains' interval constraints. Without them a domain's constraints act only
  through the relaxation lines and the final bound is still minimised over the whole input box; with
  β >= 0 the constraint lower <= z <= upper enters as β_lo·(z - lower) + β_up·(upper - z) >= 0, which
  cuts away inputs outside the domain;
- α (θ here): where the tangent lines of sigmoid/tanh touch, within the range each interval allows
  (verikit.engines.bab.activation_relax.tangents), per output row.

Every iterate is a sound bound (β clamped to >= 0, θ to [0, 1]), so the best per row and domain is kept.
Children start from the parameters their parent ended with (warm start); the search passes them in.
"""

from __future__ import annotations

import torch

from verikit.engines.bab.activation_bounds import ActivationNet, DomainBounds, RowBounds, row_bounds
from verikit.engines.bab.activation_relax import relax, tangents

Betas = list[tuple[torch.Tensor, torch.Tensor]]


def optimised_rows(net: ActivationNet, lower: torch.Tensor, upper: torch.Tensor, bounds: DomainBounds,
                   C: torch.Tensor, d: torch.Tensor, *, steps: int, lr: float,
                   start: torch.Tensor | None = None) -> tuple[RowBounds, torch.Tensor | None]:
    """The best row bounds over `steps` Adam steps, and the final parameters (B, R, 4·S) for warm starts:
    β_lo, β_up, θ_lo, θ_up of every hidden neuron (S of them), in that order.

    `start` (B, R, 4·S): initial parameters (e.g. the parent's; NaN θ: the fixed relaxation's).
    """
    with torch.no_grad():
        best = row_bounds(net, lower, upper, bounds, C, d)
    if steps <= 0:
        return best, None
    sizes = net.hidden_sizes
    total = sum(sizes)
    batch, rows = bounds.infeasible.shape[0], C.shape[0]
    with torch.no_grad():
        # ReLU layers keep their fixed lines (no tangent points; their θ entries stay unused)
        sides = [None if kind == "relu" else (tangents(kind, lo, up), tangents(kind, -up, -lo))
                 for kind, lo, up in zip(net.kinds, bounds.lower, bounds.upper)]
        default = torch.cat([torch.zeros(batch, 2 * lo.shape[1], dtype=torch.float64) if side is None
                             else torch.cat([side[0].default, side[1].default], dim=1)
                             for side, lo in zip(sides, bounds.lower)], dim=1)
        theta0 = default.unsqueeze(1).expand(batch, rows, 2 * total)
        if start is None:
            params = torch.cat([torch.zeros(batch, rows, 2 * total, dtype=torch.float64), theta0], dim=2)
        else:
            params = start.clone()
            params[..., 2 * total :] = torch.where(torch.isnan(params[..., 2 * total :]), theta0,
                                                   params[..., 2 * total :])
    params.requires_grad_(True)
    optimiser = torch.optim.Adam([params], lr=lr)
    feasible = ~bounds.infeasible.unsqueeze(1)
    lower_best, coeff_best = best.lower.clone(), best.coeff.clone()
    on_layers = best.on_layers
    for _ in range(steps):
        betas = _per_layer(params[..., : 2 * total].clamp(min=0), sizes)
        thetas = _per_layer(params[..., 2 * total :], sizes)
        lines = [relax(kind, lo, up, side, theta_lo, theta_up) for kind, lo, up, side, (theta_lo, theta_up)
                 in zip(net.kinds, bounds.lower, bounds.upper, sides, thetas)]
        current = row_bounds(net, lower, upper, DomainBounds(bounds.lower, bounds.upper, bounds.magnitude, lines,
                                                             bounds.infeasible), C, d, betas)
        objective = torch.where(feasible & torch.isfinite(current.lower), current.lower, torch.zeros(()))
        optimiser.zero_grad()
        (-objective.sum()).backward()
        with torch.no_grad():
            better = current.lower > lower_best  # (B, R)
            lower_best = torch.where(better, current.lower, lower_best)
            coeff_best = torch.where(better.T.unsqueeze(-1), current.coeff, coeff_best)
            on_layers = [lam.detach() for lam in current.on_layers]
        optimiser.step()
        with torch.no_grad():
            params[..., : 2 * total].clamp_(min=0)
            params[..., 2 * total :].clamp_(0, 1)
    return RowBounds(lower_best.detach(), coeff_best.detach(), on_layers), params.detach()


def _per_layer(flat: torch.Tensor, sizes: tuple[int, ...]) -> Betas:
    """(B, R, 2·S) as per-layer pairs (R, B, n_i): the first S values, then the second S."""
    halves = flat.transpose(0, 1).chunk(2, dim=-1)
    lows, ups = (half.split(list(sizes), dim=-1) for half in halves)
    return list(zip(lows, ups))
