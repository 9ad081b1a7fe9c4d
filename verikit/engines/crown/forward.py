"""Forward linear bounds ("symbolic intervals"): each hidden pre-activation bounded by linear functions
of the input, propagated layer by layer.

Cheap when the input is low-dimensional (a (n_inputs+1) x width matrix per domain and layer), and a good
first filter before CROWN: neurons these bounds already prove stable need no backward pass.

Rounding: the functions are computed in floating point, so `error` (B, n) accumulates a bound on how far
the computed functions may be from exact ones anywhere in the box (γ·|W|·magnitude per layer, with
magnitude = |coefficients|·|x| + |constant|), and concrete bounds are widened by it.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(eq=False)
class ForwardBounds:
    """Linear lower/upper bounds of one layer's pre-activation: G (B|1, n_in+1, n) whose last row is the
    constant; `error` (B|1, n) bounds the accumulated rounding error of both."""

    lower_fn: torch.Tensor
    upper_fn: torch.Tensor
    error: torch.Tensor

    @classmethod
    def first_layer(cls, weight_t: torch.Tensor, bias: torch.Tensor) -> "ForwardBounds":
        """z_0 = W_0 x + b_0 exactly (weight_t is W_0.T, (n_in, n))."""
        G = torch.cat([weight_t, bias.unsqueeze(0)]).unsqueeze(0)
        return cls(G, G, torch.zeros(1, weight_t.shape[1], dtype=weight_t.dtype, device=weight_t.device))

    @property
    def coefficients(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The x-coefficients (B|1, n_in, n) of the lower and upper functions."""
        return self.lower_fn[:, :-1, :], self.upper_fn[:, :-1, :]

    def concrete(self, center: torch.Tensor, radius: torch.Tensor, magnitude: torch.Tensor,
                 gamma: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Sound (lower, upper) over boxes given by center, radius, max|x| (B|1, n_in), and the two
        functions' magnitudes (for the next layer's error); all (B, n)."""
        lower, nu_lower = _extreme(self.lower_fn, center, radius, magnitude, -1.0)
        upper, nu_upper = _extreme(self.upper_fn, center, radius, magnitude, 1.0)
        lower = lower - self.error - gamma * nu_lower
        upper = upper + self.error + gamma * nu_upper
        return lower, upper, nu_lower, nu_upper

    def through(self, slope_lo: torch.Tensor, slope_up: torch.Tensor, intercept_up: torch.Tensor,
                nu_lower: torch.Tensor, nu_upper: torch.Tensor, positive_t: torch.Tensor,
                negative_t: torch.Tensor, abs_weight_t: torch.Tensor, bias: torch.Tensor,
                gamma: float) -> "ForwardBounds":
        """Bounds of the next pre-activation W relu(z) + b, given this layer's ReLU relaxation (B, n)
        (relu(z) >= slope_lo·z >= slope_lo·lower_fn, relu(z) <= slope_up·upper_fn + intercept_up) and
        W split into positive_t = max(W, 0).T and negative_t = min(W, 0).T."""
        a_lower = self.lower_fn * slope_lo.unsqueeze(1)
        a_upper = self.upper_fn * slope_up.unsqueeze(1)
        a_upper[:, -1, :] += intercept_up
        error = self.error + gamma * (nu_lower + nu_upper + intercept_up.abs())
        lower_fn = a_lower @ positive_t + a_upper @ negative_t
        upper_fn = a_upper @ positive_t + a_lower @ negative_t
        lower_fn[:, -1, :] += bias
        upper_fn[:, -1, :] += bias
        return ForwardBounds(lower_fn, upper_fn, error @ abs_weight_t)


def _extreme(G: torch.Tensor, center: torch.Tensor, radius: torch.Tensor, magnitude: torch.Tensor,
             sign: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Min (sign -1) or max (+1) over the boxes of the functions G (B|1, n_in+1, n), and their magnitude
    |coefficients|·|x| + |constant|; both (B, n)."""
    coeff, const = G[:, :-1, :], G[:, -1, :]
    absolute = coeff.abs()
    if G.shape[0] > 1:
        value = torch.einsum("bk,bkn->bn", center, coeff)
        spread = torch.einsum("bk,bkn->bn", radius, absolute)
        size = torch.einsum("bk,bkn->bn", magnitude, absolute)
    else:
        value, spread, size = center @ coeff[0], radius @ absolute[0], magnitude @ absolute[0]
    return value + const + sign * spread, size + const.abs()
