"""Batched CROWN bounds for MLPs with monotone activations (sigmoid, tanh, ReLU), in float64, over domains.

A domain is the root input box plus an interval constraint [lo_i, hi_i] on every hidden pre-activation
z_i (±inf where none). Its points are the x in the box whose pre-activations satisfy every constraint;
bounds over them:

1. per hidden layer i: interval bounds from the previous layer's image, then (i >= 1) CROWN by backward
   substitution through the relaxations of the layers below, intersected with the domain's constraints
   (sound: every point of the domain satisfies both); crossing bounds mean the domain is empty;
2. the lines of f_i on those intervals (verikit.engines.bab.activation_relax) — valid on the domain only,
   which is what makes splitting an interval tighten the bound;
3. lower bounds of the rows of C y - d by backward substitution.

Rounding: every backward bound is loosened by gamma·magnitude as in verikit.engines.crown.propagate
(magnitude bounds the sum of |products| it was computed from); the relaxation lines carry their own
allowance.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from verikit.core.activations import ActivationChain
from verikit.engines.bab.activation_relax import Lines, image, relax
from verikit.engines.crown.interval import affine_interval, rounding_gamma

PASS_ELEMENT_CAP = 4_000_000  # rows·domains·width of one backward pass (intermediate bounds are chunked)


@dataclass(frozen=True, eq=False)
class ActivationNet:
    """The chain's weights as float64 tensors; W_i (out_i, in_i); kinds[i] is hidden layer i's activation."""

    weights: tuple[torch.Tensor, ...]
    biases: tuple[torch.Tensor, ...]
    weights_t: tuple[torch.Tensor, ...]
    abs_weights_t: tuple[torch.Tensor, ...]
    kinds: tuple[str, ...]
    gamma: float

    @classmethod
    def from_chain(cls, chain: ActivationChain) -> "ActivationNet":
        weights = tuple(torch.as_tensor(a.weight, dtype=torch.float64).contiguous() for a in chain.affines)
        biases = tuple(torch.as_tensor(a.bias, dtype=torch.float64).contiguous() for a in chain.affines)
        gamma = rounding_gamma(max(max(w.shape) for w in weights), len(weights), torch.float64)
        return cls(weights, biases, tuple(w.T.contiguous() for w in weights),
                   tuple(w.abs().T.contiguous() for w in weights), chain.kinds, gamma)

    @property
    def depth(self) -> int:
        return len(self.kinds)

    @property
    def n_inputs(self) -> int:
        return int(self.weights[0].shape[1])

    @property
    def hidden_sizes(self) -> tuple[int, ...]:
        return tuple(int(w.shape[0]) for w in self.weights[:-1])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Outputs (B, n_outputs) for inputs (B, n_inputs) (differentiable)."""
        values = x.to(torch.float64)
        for i, (weight_t, bias) in enumerate(zip(self.weights_t, self.biases)):
            values = values @ weight_t + bias
            if i < self.depth:
                values = {"relu": torch.relu, "sigmoid": torch.sigmoid, "tanh": torch.tanh}[self.kinds[i]](values)
        return values


@dataclass(eq=False)
class DomainBounds:
    """Per hidden layer (B, n_i): sound pre-activation bounds, their magnitudes, the relaxation lines."""

    lower: list[torch.Tensor]
    upper: list[torch.Tensor]
    magnitude: list[torch.Tensor]
    lines: list[Lines]
    infeasible: torch.Tensor  # (B,) the constraints leave no point


@dataclass(eq=False)
class RowBounds:
    """Lower bounds (B, R) of C y - d (+inf on empty domains), the x-coefficients (R, B, n) of the linear
    function they minimise, and per hidden layer the coefficients (R, B, n_i) on a_i."""

    lower: torch.Tensor
    coeff: torch.Tensor
    on_layers: list[torch.Tensor]


def _dot(lam: torch.Tensor, vector: torch.Tensor) -> torch.Tensor:
    """Σ_n lam[r, b, n]·vector[(r,) b, n] for lam (R, B|1, n), vector (B|1, n) or (R, B, n) → (R, B)."""
    return (lam * (vector if vector.dim() == 3 else vector.unsqueeze(0))).sum(dim=-1)


def substitute(net: ActivationNet, lam: torch.Tensor, const: torch.Tensor, magnitude: torch.Tensor, below: int,
               bounds: DomainBounds, lower: torch.Tensor, upper: torch.Tensor,
               record: list[torch.Tensor] | None = None,
               betas: list[tuple[torch.Tensor, torch.Tensor]] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Sound lower bound (R, B) of lam @ a_below + const over the domains, and its x-coefficients (R, B, n).

    lam: (R, B|1, n_below) on the output of hidden layer `below`; const, magnitude (R, B|1); the input box
    lower, upper (1|B, n). `bounds` holds at least layers 0..below. `record` gets lam on a_i, top first.
    `betas[i]` = (β_lo, β_up) >= 0, (R, B, n_i): multipliers of the constraints lower_i <= z_i <= upper_i.
    """
    for i in range(below, -1, -1):
        if record is not None:
            record.append(lam)
        lines = bounds.lines[i]
        positive = lam.clamp(min=0)
        negative = lam - positive
        # a lower bound of lam·a takes the lower line where lam > 0 and the upper one where lam < 0
        const = const + _dot(positive, lines.icpt_lo) + _dot(negative, lines.icpt_up)
        lam = positive * lines.slope_lo + negative * lines.slope_up
        magnitude = (magnitude + _dot(positive, lines.icpt_lo.abs()) - _dot(negative, lines.icpt_up.abs())
                     + _dot(lam.abs(), bounds.magnitude[i]))
        if betas is not None:
            # on the domain β_lo·(z - lower) >= 0 and β_up·(upper - z) >= 0: subtracting both keeps a lower bound
            beta_lo, beta_up = betas[i]
            lam = lam - beta_lo + beta_up
            const = const + _dot(beta_lo, bounds.lower[i]) - _dot(beta_up, bounds.upper[i])
            magnitude = (magnitude + _dot(beta_lo, bounds.lower[i].abs()) + _dot(beta_up, bounds.upper[i].abs())
                         + _dot(beta_lo + beta_up, bounds.magnitude[i]))
        const = const + lam @ net.biases[i]
        lam = lam @ net.weights[i]
    center, radius = (lower + upper) / 2, (upper - lower) / 2
    x_magnitude = torch.maximum(lower.abs(), upper.abs())
    value = const + _dot(lam, center) - _dot(lam.abs(), radius)
    slack = net.gamma * (magnitude + _dot(lam.abs(), x_magnitude))
    return value - slack, lam


def domain_bounds(net: ActivationNet, lower: torch.Tensor, upper: torch.Tensor, con_lower: list[torch.Tensor],
                  con_upper: list[torch.Tensor], *, refine: bool = True) -> DomainBounds:
    """Bounds of every hidden pre-activation over domains: input boxes lower, upper (1|B, n) and per-layer
    constraints con_lower[i], con_upper[i] (B, n_i)."""
    batch = con_lower[0].shape[0]
    bounds = DomainBounds([], [], [], [], torch.zeros(batch, dtype=torch.bool))
    for i in range(net.depth):
        if i == 0:
            a_lo, a_up = lower, upper
        else:
            a_lo, a_up = image(net.kinds[i - 1], bounds.lower[i - 1], bounds.upper[i - 1])
        z_lo, z_up, zabs = affine_interval(a_lo, a_up, net.weights_t[i], net.abs_weights_t[i], net.biases[i],
                                           net.biases[i].abs(), net.gamma)
        z_lo, z_up, zabs = z_lo.expand(batch, -1), z_up.expand(batch, -1), zabs.expand(batch, -1)
        if refine and i > 0:
            crown_lo, crown_up = _crown_layer(net, i, bounds, lower, upper)
            z_lo, z_up = torch.maximum(z_lo, crown_lo), torch.minimum(z_up, crown_up)
        z_lo, z_up = torch.maximum(z_lo, con_lower[i]), torch.minimum(z_up, con_upper[i])
        empty = (z_lo > z_up).any(dim=1)
        bounds.infeasible = bounds.infeasible | empty
        # an empty domain keeps ordered (meaningless) intervals so no relaxation sees lower > upper
        z_up = torch.where(empty.unsqueeze(1), torch.maximum(z_lo, z_up), z_up)
        bounds.lower.append(z_lo)
        bounds.upper.append(z_up)
        bounds.magnitude.append(zabs)
        bounds.lines.append(relax(net.kinds[i], z_lo, z_up))
    return bounds


def _crown_layer(net: ActivationNet, i: int, bounds: DomainBounds, lower: torch.Tensor,
                 upper: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """CROWN bounds (B, n_i) of layer i's pre-activations, in chunks of domains."""
    weights, biases = net.weights[i], net.biases[i]
    rows = weights.shape[0]
    lam = torch.cat([weights, -weights]).unsqueeze(1)  # (2 n_i, 1, n_{i-1})
    const = torch.cat([biases, -biases]).unsqueeze(1)
    batch = bounds.lower[0].shape[0]
    chunk = max(1, PASS_ELEMENT_CAP // max(1, 2 * rows * max(net.hidden_sizes[:i])))
    pieces = []
    for start in range(0, batch, chunk):
        part = slice(start, start + chunk)
        box_lo, box_hi = (lower, upper) if lower.shape[0] == 1 else (lower[part], upper[part])
        value, _ = substitute(net, lam, const, const.abs(), i - 1, select(bounds, part), box_lo, box_hi)
        pieces.append(value)
    both = torch.cat(pieces, dim=1)  # (2 n_i, B)
    return both[:rows].T, -both[rows:].T


def select(bounds: DomainBounds, part: slice | torch.Tensor) -> DomainBounds:
    """The bounds of the domains `part` (a slice or an index tensor)."""
    lines = [Lines(l.slope_lo[part], l.icpt_lo[part], l.slope_up[part], l.icpt_up[part]) for l in bounds.lines]
    return DomainBounds([t[part] for t in bounds.lower], [t[part] for t in bounds.upper],
                        [t[part] for t in bounds.magnitude], lines, bounds.infeasible[part])


def row_bounds(net: ActivationNet, lower: torch.Tensor, upper: torch.Tensor, bounds: DomainBounds,
               C: torch.Tensor, d: torch.Tensor,
               betas: list[tuple[torch.Tensor, torch.Tensor]] | None = None) -> RowBounds:
    """Sound lower bounds of C y - d (C (R, n_out), d (R,) float64) over the domains of `bounds`, with the
    split multipliers `betas` (see `substitute`) when given."""
    H = net.depth
    lam = (C @ net.weights[H]).unsqueeze(1)  # (R, 1, n_{H-1})
    const = (C @ net.biases[H] - d).unsqueeze(1)
    a_lo, a_up = image(net.kinds[H - 1], bounds.lower[H - 1], bounds.upper[H - 1])
    zabs = torch.maximum(a_lo.abs(), a_up.abs()) @ net.abs_weights_t[H] + net.biases[H].abs()
    magnitude = (zabs @ C.abs().T + d.abs()).T  # (R, B)
    record: list[torch.Tensor] = []
    value, coeff = substitute(net, lam, const, magnitude, H - 1, bounds, lower, upper, record, betas)
    value = torch.where(bounds.infeasible.unsqueeze(0), torch.full_like(value, float("inf")), value)
    on_layers = [lam.expand(-1, bounds.infeasible.shape[0], -1) for lam in reversed(record)]
    return RowBounds(value.T, coeff.expand(-1, bounds.infeasible.shape[0], -1), on_layers)
