"""Batched linear-relaxation bounds for ReLU MLPs (`PiecewiseLinear` of shape `Affine (Relu Affine)*`).

Bounds a batch of B input boxes at once, in torch:

1. hidden pre-activation bounds layer by layer: forward linear bounds (symbolic intervals in terms of x,
   cheap when the input is low-dimensional) intersected with interval bounds, then CROWN (backward
   substitution) only for the neurons still unstable — a stable neuron's relaxation is exact, so CROWN
   on the others loses nothing against CROWN on every neuron and costs a fraction;
2. lower bounds of the rows of `C @ y - d` by CROWN, with optional α lower slopes and β multipliers of
   split constraints (see `verikit.engines.crown.optimise`).

Layer numbering: hidden layer i has pre-activation z_i = W_i a_{i-1} + b_i (a_{-1} = x), a_i = relu(z_i);
the output is y = W_H a_{H-1} + b_H, H = number of ReLU layers. Splits are per hidden layer int8 (B, n_i)
tensors in {ACTIVE, FREE, INACTIVE}.

Floating point: every bound is loosened by `gamma * magnitude`, where magnitude bounds the sum of the
absolute values of the products it was computed from (the classical error bound of a dot product,
γ_n = n·u, with a safety factor). This keeps float32 bounds sound; see ReluMlp.gamma.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from verikit.core.errors import InternalError
from verikit.engines.crown.forward import ForwardBounds
from verikit.engines.crown.input_set import InputBall, box_or_ball_min
from verikit.engines.crown.interval import affine_interval, rounding_gamma
from verikit.core.pwl import Affine, NotPiecewiseLinear, PiecewiseLinear

ACTIVE, FREE, INACTIVE = 1, 0, -1
FORWARD_ELEMENT_CAP = 4_000_000  # largest B·(n_inputs+1)·width for forward linear bounds
PAIR_CHUNK = 2048  # (domain, neuron) pairs refined per backward pass: keeps tensors in cache


@dataclass(frozen=True, eq=False)
class ReluMlp:
    """Weights of a ReLU MLP as torch tensors; W_i has shape (out_i, in_i)."""

    weights: tuple[torch.Tensor, ...]
    biases: tuple[torch.Tensor, ...]
    weights_t: tuple[torch.Tensor, ...]  # W_i.T (in_i, out_i)
    positive_t: tuple[torch.Tensor, ...]  # max(W_i, 0).T
    negative_t: tuple[torch.Tensor, ...]  # min(W_i, 0).T
    abs_weights_t: tuple[torch.Tensor, ...]  # |W_i|.T
    abs_biases: tuple[torch.Tensor, ...]
    gamma: float  # relative floating-point error allowance of one bound

    @classmethod
    def from_pwl(cls, pwl: PiecewiseLinear, dtype: torch.dtype = torch.float32,
                 device: torch.device | str = "cpu") -> "ReluMlp":
        """Torch copy of `pwl` (which must satisfy `is_relu_mlp`) in `dtype` on `device`; every tensor the
        bounds create follows the weights' device."""
        if not pwl.is_relu_mlp:
            raise NotPiecewiseLinear("the CROWN engine needs layers Affine (Relu Affine)*")
        affines = [layer for layer in pwl.layers if isinstance(layer, Affine)]
        weights = tuple(torch.as_tensor(a.weight, dtype=dtype, device=device).contiguous() for a in affines)
        biases = tuple(torch.as_tensor(a.bias, dtype=dtype, device=device).contiguous() for a in affines)
        gamma = rounding_gamma(max(max(w.shape) for w in weights), len(weights), dtype)
        return cls(
            weights=weights,
            biases=biases,
            weights_t=tuple(w.T.contiguous() for w in weights),
            positive_t=tuple(w.clamp(min=0).T.contiguous() for w in weights),
            negative_t=tuple(w.clamp(max=0).T.contiguous() for w in weights),
            abs_weights_t=tuple(w.abs().T.contiguous() for w in weights),
            abs_biases=tuple(b.abs() for b in biases),
            gamma=gamma,
        )

    @property
    def dtype(self) -> torch.dtype:
        return self.weights[0].dtype

    @property
    def device(self) -> torch.device:
        return self.weights[0].device

    @property
    def depth(self) -> int:
        """Number of ReLU layers H."""
        return len(self.weights) - 1

    @property
    def n_inputs(self) -> int:
        return int(self.weights[0].shape[1])

    @property
    def n_outputs(self) -> int:
        return int(self.weights[-1].shape[0])

    @property
    def hidden_sizes(self) -> tuple[int, ...]:
        return tuple(int(w.shape[0]) for w in self.weights[:-1])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Outputs (B, n_outputs) for inputs (B, n_inputs)."""
        values = x
        for index, (weight_t, bias) in enumerate(zip(self.weights_t, self.biases)):
            values = values @ weight_t + bias
            if index < self.depth:
                values = values.clamp(min=0)
        return values


@dataclass(eq=False)
class Relaxation:
    """slope_lo·z <= relu(z) <= slope_up·z + intercept_up for one ReLU layer, tensors (B, n).

    `packed` (4, B, n) stacks [slope_up, slope_lo - slope_up, intercept_up, magnitude] so that a batch
    of (domain, neuron) pairs gathers everything it needs with one index_select per layer.
    """

    slope_lo: torch.Tensor
    slope_up: torch.Tensor
    intercept_up: torch.Tensor
    unstable: torch.Tensor  # bool
    packed: torch.Tensor

    @classmethod
    def of(cls, lower: torch.Tensor, upper: torch.Tensor, magnitude: torch.Tensor) -> "Relaxation":
        """CROWN relaxation of pre-activation bounds (B, n): chord above, adaptive 0/1 slope below."""
        active = (lower >= 0).to(upper.dtype)
        unstable = (lower < 0) & (upper > 0)
        width = torch.where(unstable, upper - lower, torch.ones_like(upper))
        chord = torch.where(unstable, upper / width, active)
        intercept = torch.where(unstable, -chord * lower, torch.zeros_like(upper))
        slope_lo = torch.where(unstable, (upper > -lower).to(upper.dtype), active)
        packed = torch.stack([chord, slope_lo - chord, intercept, magnitude.expand_as(chord)])
        return cls(slope_lo, chord, intercept, unstable, packed)


@dataclass(eq=False)
class LayerBounds:
    """Sound bounds (B, n_i) of every hidden pre-activation of a batch of domains.

    `magnitude[i]` (B, n_i) bounds |W_i|·max|a_{i-1}| + |b_i| (for rounding allowances); `infeasible` (B,)
    marks domains whose split constraints contradict each other (empty domains).
    """

    lower: list[torch.Tensor]
    upper: list[torch.Tensor]
    magnitude: list[torch.Tensor]
    infeasible: torch.Tensor
    relaxations: list[Relaxation]
    # per layer, the x-coefficients (B|1, n_inputs, n_i) of the forward linear lower/upper bounds
    input_coefficients: list[tuple[torch.Tensor, torch.Tensor]] = field(default_factory=list)

    @property
    def batch(self) -> int:
        return int(self.infeasible.shape[0])

    def select(self, index: torch.Tensor) -> "LayerBounds":
        """The bounds of domains `index` (K,)."""
        def pick(t: torch.Tensor) -> torch.Tensor:
            return t if t.shape[0] == 1 else t.index_select(0, index)

        relaxations = [Relaxation(pick(r.slope_lo), pick(r.slope_up), pick(r.intercept_up), pick(r.unstable),
                                  r.packed if r.packed.shape[1] == 1 else r.packed.index_select(1, index))
                       for r in self.relaxations]
        coefficients = [(pick(a), pick(b)) for a, b in self.input_coefficients]
        return LayerBounds([pick(t) for t in self.lower], [pick(t) for t in self.upper],
                           [pick(t) for t in self.magnitude], pick(self.infeasible), relaxations, coefficients)

    def unstable_count(self) -> torch.Tensor:
        """Unstable neurons per domain (B,)."""
        return sum(relax.unstable.sum(dim=1) for relax in self.relaxations)


@dataclass(eq=False)
class SpecBounds:
    """Lower bounds (B, R) of `C @ y - d`, from linear functions of x: for every x in domain b,
    (C y - d)[r] >= coeff[b, r] @ x + const[b, r] >= lower[b, r]; lower is +inf on infeasible domains."""

    lower: torch.Tensor
    coeff: torch.Tensor  # (B, R, n_inputs)
    const: torch.Tensor  # (B, R)
    slack: torch.Tensor  # (B, R) floating-point allowance already subtracted from `lower`


@dataclass(eq=False)
class InputBox:
    """A batch of input sets: boxes (B|1, n_inputs), each intersected with an ℓ2 ball when `ball` is given
    (verikit.engines.crown.input_set), with the derived terms every bound needs."""

    lower: torch.Tensor
    upper: torch.Tensor
    ball: InputBall | None = None

    def __post_init__(self) -> None:
        self.center = (self.lower + self.upper) / 2
        self.radius = (self.upper - self.lower) / 2
        self.magnitude = torch.maximum(self.lower.abs(), self.upper.abs())

    def select(self, index: torch.Tensor) -> "InputBox":
        if self.lower.shape[0] == 1 and (self.ball is None or self.ball.center.shape[0] == 1):
            return self
        lower = self.lower if self.lower.shape[0] == 1 else self.lower.index_select(0, index)
        upper = self.upper if self.upper.shape[0] == 1 else self.upper.index_select(0, index)
        return InputBox(lower, upper, None if self.ball is None else self.ball.select(index))

    def linear_min(self, lam: torch.Tensor) -> torch.Tensor:
        """Lower bound (R, B) of min over the set of lam·x for lam (R, B|1, n_inputs), before the rounding
        allowance of lam itself (the caller's γ·|lam|·magnitude): the box's, or the larger of box and ball."""
        box_min = _dot(lam, self.center) - _dot(lam.abs(), self.radius)
        return box_or_ball_min(box_min, lam, self.ball)


def round_outward(lower: torch.Tensor, upper: torch.Tensor, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """lower and upper cast to `dtype`, lower rounded down and upper rounded up (the box only grows)."""
    low, high = lower.to(dtype), upper.to(dtype)
    low = torch.where(low.double() > lower.double(), torch.nextafter(low, torch.full_like(low, -torch.inf)), low)
    high = torch.where(high.double() < upper.double(), torch.nextafter(high, torch.full_like(high, torch.inf)), high)
    return low, high


def _dot(lam: torch.Tensor, vector: torch.Tensor) -> torch.Tensor:
    """Σ_n lam[r, b, n]·vector[b, n] for lam (R, B|1, n), vector (B|1, n) → (R, B)."""
    if vector.shape[0] == 1:
        return lam @ vector[0]
    return (lam * vector).sum(dim=-1)


def substitute(
    net: ReluMlp,
    lam: torch.Tensor,
    const: torch.Tensor,
    magnitude: torch.Tensor,
    below: int,
    packed: list[torch.Tensor],
    box: InputBox,
    *,
    slopes_lo: list[torch.Tensor | None] | None = None,
    betas: list[torch.Tensor] | None = None,
    splits: list[torch.Tensor] | None = None,
    record: dict[int, torch.Tensor] | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Lower bound (R, B) over the boxes of `lam @ a_below + const` by backward substitution.

    lam: (R, B|1, n) coefficients on the post-activation of hidden layer `below` (-1: on x itself);
    const, magnitude: (R, B|1); packed[i]: Relaxation.packed of layer i (4, B, n_i). Optional per-layer
    lower slopes (R, B, n_i) (α, already clamped where unstable) and multipliers β >= 0 (R, B, n_i) of
    the split constraints splits[i] (B, n_i). Returns (bound, its rounding allowance (already subtracted),
    coefficients on x (R, B, n_in), constant). `record`, when given, receives lam on a_i per layer i.
    """
    for i in range(below, -1, -1):
        if record is not None:
            record[i] = lam
        slope_up, slope_gap, intercept, zabs = packed[i].unbind(dim=0)
        positive = lam.clamp(min=0)
        negative = lam - positive
        # negative coefficients meet the upper relaxation (and its intercept)
        const = const + _dot(negative, intercept)
        # |lam| on z_i <= |lam| on a_i since slopes lie in [0, 1]
        magnitude = magnitude + _dot(positive - negative, zabs)
        if slopes_lo is not None and slopes_lo[i] is not None:
            slope_gap = slopes_lo[i] - slope_up
        lam = torch.addcmul(lam * slope_up, positive, slope_gap)
        if betas is not None and splits is not None:
            # f >= f - β·z on {z >= 0} (active) and f >= f + β·z on {z <= 0} (inactive)
            beta_term = betas[i].clamp(min=0) * splits[i].to(lam.dtype)
            lam = lam - beta_term
            magnitude = magnitude + _dot(beta_term.abs(), zabs)
        const = const + lam @ net.biases[i]
        lam = lam @ net.weights[i]
    absolute = lam.abs()
    value = const + box.linear_min(lam)
    slack = net.gamma * (magnitude + _dot(absolute, box.magnitude))
    return value - slack, slack, lam, const


def _tighten(lower: torch.Tensor, upper: torch.Tensor, split: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    """Apply split constraints (B, n): active → lower >= 0, inactive → upper <= 0."""
    if split is None:
        return lower, upper
    lower = torch.where(split == ACTIVE, lower.clamp(min=0), lower)
    upper = torch.where(split == INACTIVE, upper.clamp(max=0), upper)
    return lower, upper


def _refine_unstable(net: ReluMlp, i: int, bounds: LayerBounds, lower: torch.Tensor, upper: torch.Tensor,
                     zabs: torch.Tensor, box: InputBox) -> tuple[torch.Tensor, torch.Tensor]:
    """CROWN bounds for the unstable neurons of layer i >= 1 only, gathered across the batch."""
    unstable = (lower < 0) & (upper > 0) & ~bounds.infeasible.unsqueeze(1)
    domain, neuron = unstable.nonzero(as_tuple=True)
    if domain.numel() == 0:
        return lower, upper
    lower = lower.clone()
    upper = upper.clone()
    weights, biases = net.weights[i], net.biases[i]
    shared = bounds.relaxations[0].packed.shape[1] == 1 and box.lower.shape[0] == 1
    for start in range(0, domain.numel(), PAIR_CHUNK):
        d, j = domain[start : start + PAIR_CHUNK], neuron[start : start + PAIR_CHUNK]
        rows = weights.index_select(0, j)
        lam = torch.stack([rows, -rows])  # (2, P, n_{i-1}) on a_{i-1}
        bias = biases.index_select(0, j)
        const = torch.stack([bias, -bias])
        magnitude = zabs[d, j].unsqueeze(0).expand(2, -1)
        if shared:
            packed = [r.packed for r in bounds.relaxations[:i]]
        else:
            packed = [r.packed.index_select(1, d) if r.packed.shape[1] > 1 else r.packed
                      for r in bounds.relaxations[:i]]
        both, _, _, _ = substitute(net, lam, const, magnitude, i - 1, packed, box.select(d))
        lower[d, j] = torch.maximum(lower[d, j], both[0])
        upper[d, j] = torch.minimum(upper[d, j], -both[1])
    return lower, upper


def _first_layer_over_ball(net: ReluMlp, box: InputBox, lower: torch.Tensor, upper: torch.Tensor,
                          zabs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The first pre-activation's interval bounds (B, n_0) intersected with its bounds over the ball
    (W_0 x + b_0 >= W_0 c + b_0 - ρ‖W_0 row‖₂), widened by the same rounding allowance."""
    lam = torch.cat([net.weights[0], -net.weights[0]]).unsqueeze(1)  # (2 n_0, 1, n_in)
    const = torch.cat([net.biases[0], -net.biases[0]]).unsqueeze(1)
    value = const + box.linear_min(lam) - net.gamma * (zabs.T.repeat(2, 1))  # (2 n_0, B)
    count = net.weights[0].shape[0]
    return torch.maximum(lower, value[:count].T), torch.minimum(upper, -value[count:].T)


def layer_bounds(net: ReluMlp, x_lower: torch.Tensor, x_upper: torch.Tensor,
                 splits: list[torch.Tensor] | None = None, *, refine: bool = True,
                 forward: bool | None = None, interval: bool = True, ball: InputBall | None = None) -> LayerBounds:
    """Bounds of every hidden pre-activation for boxes x_lower, x_upper (B|1, n_inputs).

    Interval bounds ∩ forward linear bounds (when `forward`; default: when B·(n_inputs+1)·width is at
    most FORWARD_ELEMENT_CAP), then CROWN for the neurons still unstable (when `refine`).
    Splits (B, n_i) tighten each layer as soon as it is bounded. With forward=False, interval=False
    every layer >= 1 gets plain CROWN on every neuron (what auto_LiRPA's "CROWN" computes).
    With `ball`, the input set is each box ∩ the ball: the first layer is bounded over the ball too, and
    every CROWN bound is concretised over both (forward linear bounds stay box-only: still sound).
    """
    x_lower, x_upper = x_lower.to(net.device, net.dtype), x_upper.to(net.device, net.dtype)
    box = InputBox(x_lower, x_upper, None if ball is None else ball.to(net.device, net.dtype))
    batch = max(x_lower.shape[0], 1 if splits is None else splits[0].shape[0])
    if forward is None:
        forward = batch * (net.n_inputs + 1) * max(net.hidden_sizes, default=1) <= FORWARD_ELEMENT_CAP
    bounds = LayerBounds([], [], [], torch.zeros(batch, dtype=torch.bool, device=net.device), [])
    symbolic = ForwardBounds.first_layer(net.weights_t[0], net.biases[0]) if forward else None
    for i in range(net.depth):
        if i == 0:
            a_lo, a_up = box.lower, box.upper
        else:
            a_lo, a_up = bounds.lower[i - 1].clamp(min=0), bounds.upper[i - 1].clamp(min=0)
        lower, upper, zabs = affine_interval(a_lo, a_up, net.weights_t[i], net.abs_weights_t[i], net.biases[i],
                                             net.abs_biases[i], net.gamma)
        if not interval and i > 0:
            lower, upper = torch.full_like(lower, -torch.inf), torch.full_like(upper, torch.inf)
        if i == 0 and box.ball is not None:
            lower, upper = _first_layer_over_ball(net, box, lower, upper, zabs)
        if symbolic is not None:
            if i > 0:
                relax = bounds.relaxations[i - 1]
                symbolic = symbolic.through(relax.slope_lo, relax.slope_up, relax.intercept_up, nu_lower,
                                            nu_upper, net.positive_t[i], net.negative_t[i],
                                            net.abs_weights_t[i], net.biases[i], net.gamma)
            f_lower, f_upper, nu_lower, nu_upper = symbolic.concrete(box.center, box.radius, box.magnitude,
                                                                     net.gamma)
            lower, upper = torch.maximum(lower, f_lower), torch.minimum(upper, f_upper)
            bounds.input_coefficients.append(symbolic.coefficients)
        lower, upper = _tighten(lower, upper, None if splits is None else splits[i])
        if refine and i > 0:
            lower, upper = _refine_unstable(net, i, bounds, lower, upper, zabs, box)
        crossed = (lower > upper).any(dim=1)
        if splits is None and bool(crossed.any()):
            # Sound bounds of one neuron over a non-empty box cannot cross; only split constraints can
            # make a domain empty. Counting this as a refutation would turn a bug into `unsat`.
            raise InternalError(f"CROWN layer {i}: a lower bound exceeds its upper bound without splits "
                                f"(unsound bounds; please report this network)")
        bounds.infeasible = bounds.infeasible | crossed
        bounds.lower.append(lower)
        bounds.upper.append(upper)
        bounds.magnitude.append(zabs.expand_as(lower))
        bounds.relaxations.append(Relaxation.of(lower, upper, zabs))
    return bounds


def spec_bounds(
    net: ReluMlp,
    x_lower: torch.Tensor,
    x_upper: torch.Tensor,
    C: torch.Tensor,
    d: torch.Tensor,
    bounds: LayerBounds | None = None,
    *,
    splits: list[torch.Tensor] | None = None,
    slopes_lo: list[torch.Tensor | None] | None = None,
    betas: list[torch.Tensor] | None = None,
    record: dict[int, torch.Tensor] | None = None,
    ball: InputBall | None = None,
) -> SpecBounds:
    """Sound lower bounds (B, R) of `C @ y - d` over boxes x_lower, x_upper (B|1, n_inputs).

    C: (R, n_outputs), d: (R,). Layer bounds are computed (with `splits`) unless given. Optional per
    layer: lower slopes (R, B, n_i) replacing the adaptive ones (α, see crown_opt) and multipliers
    β >= 0 (R, B, n_i) of the split constraints. With `ball`, over each box ∩ the ball (input_set).
    """
    if bounds is None:
        bounds = layer_bounds(net, x_lower, x_upper, splits, ball=ball)
    box = InputBox(x_lower.to(net.device, net.dtype), x_upper.to(net.device, net.dtype),
                   None if ball is None else ball.to(net.device, net.dtype))
    C = C.to(net.device, net.dtype)
    d = d.to(net.device, net.dtype)
    H = net.depth
    lam = (C @ net.weights[H]).unsqueeze(1)  # (R, 1, n_{H-1})
    const = (C @ net.biases[H] - d).unsqueeze(1)
    zabs = bounds.upper[H - 1].clamp(min=0) @ net.abs_weights_t[H] + net.abs_biases[H]
    magnitude = (zabs @ C.abs().T + d.abs()).T
    lower, slack, coeff, const = substitute(
        net, lam, const, magnitude, H - 1, [r.packed for r in bounds.relaxations], box,
        slopes_lo=slopes_lo, betas=betas, splits=splits, record=record,
    )
    lower = torch.where(bounds.infeasible.unsqueeze(0), torch.full_like(lower, float("inf")), lower)
    return SpecBounds(lower.T, coeff.transpose(0, 1), const.T, slack.T)
