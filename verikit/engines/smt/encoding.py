"""The SMT engine's query: float64 CROWN layer bounds and the exact z3 encoding of a PiecewiseLinear network
(the interval bounds it intersects them with come from verikit.engines.crown.interval).

Numbers. Every float64 weight, bias, box bound and spec coefficient enters z3 as the rational it denotes
exactly (`fractions.Fraction(value)`, never its shortest decimal). Bounds are only over-approximations,
so they are rounded outward to a few significant bits (`coarsen`): z3's simplex is exact, and long
rationals in bounds and in the triangle relaxation slowed it down by 10-100x in our measurements.

Encoding. One real variable per affine output; a ReLU that the bounds prove stable is the identity or
zero; an unstable one is `h = If(z >= 0, z, 0)` (or, "bool-triangle", a Boolean phase with two
implications), plus the triangle relaxation `h >= 0, h >= z, (u - l) h <= u (z - l)` that lets the
simplex prune (redundant, exact either way). A max over a group is `m >= v_j` for every candidate and
`OR_j m = v_j`, after dropping the candidates whose upper bound lies below another's lower bound.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from fractions import Fraction

import numpy as np
import torch
import z3

from verikit.engines.crown import propagate as crown
from verikit.engines.crown.interval import Interval
from verikit.core.pwl import Affine, MaxGroups, PiecewiseLinear, Relu
from verikit.core.property import Box, Case

from verikit.engines.smt.settings import RELU_ENCODINGS  # noqa: E402  (one list, kept light for the scheduler)

Phases = Mapping[int, tuple[np.ndarray, np.ndarray]]


def crown_bounds(pwl: PiecewiseLinear, box: Box, phases: Phases | None = None) -> list[Interval | None] | None:
    """Float64 CROWN bounds (verikit.engines.crown.propagate, float-safe) of every layer's output; None if the
    network is not a ReLU MLP with a hidden layer, or the box is unbounded."""
    bounded = np.isfinite(box.lower).all() and np.isfinite(box.upper).all()
    if not pwl.is_relu_mlp or len(pwl.layers) < 3 or not bounded:
        return None
    net = crown.ReluMlp.from_pwl(pwl, torch.float64)
    splits = None
    if phases:
        splits = []
        for hidden, width in enumerate(net.hidden_sizes):
            split = torch.zeros(1, width, dtype=torch.int8)
            if 2 * hidden + 1 in phases:
                active, inactive = (torch.tensor(np.asarray(m, bool).reshape(-1)) for m in phases[2 * hidden + 1])
                split[0, inactive] = crown.INACTIVE
                split[0, active] = crown.ACTIVE  # both set: pinned to 0; ACTIVE alone stays sound
            splits.append(split)
    lower = torch.tensor(box.lower, dtype=torch.float64)[None, :]
    upper = torch.tensor(box.upper, dtype=torch.float64)[None, :]
    hidden_bounds = crown.layer_bounds(net, lower, upper, splits)
    result: list[Interval | None] = [None] * len(pwl.layers)
    for hidden in range(net.depth):
        low = hidden_bounds.lower[hidden][0].numpy().astype(np.float64)
        high = hidden_bounds.upper[hidden][0].numpy().astype(np.float64)
        result[2 * hidden] = (low, high)
        result[2 * hidden + 1] = (np.maximum(low, 0.0), np.maximum(high, 0.0))
    return result


def intersect_bounds(own: list[Interval], given: Sequence[Interval | None],
                     relative: float, absolute: float) -> list[Interval]:
    """own ∩ given, every given bound first widened by `relative`·|bound| + `absolute`."""
    if len(given) != len(own):
        raise ValueError(f"bounds has {len(given)} entries, the network has {len(own)} layers")
    merged = []
    for (lower, upper), other in zip(own, given):
        if other is not None:
            other_lower = np.asarray(other[0], np.float64).reshape(-1)
            other_upper = np.asarray(other[1], np.float64).reshape(-1)
            lower = np.maximum(lower, other_lower - relative * np.abs(other_lower) - absolute)
            upper = np.minimum(upper, other_upper + relative * np.abs(other_upper) + absolute)
        merged.append((lower, upper))
    return merged


def coarsen(bounds: list[Interval], bits: int) -> list[Interval]:
    """Bounds rounded outward to `bits` significant bits (never tighter; short rationals for z3)."""
    result = []
    for lower, upper in bounds:
        magnitude = np.maximum(np.maximum(np.abs(lower), np.abs(upper)), 2.0**-30)
        magnitude = np.where(np.isfinite(magnitude), magnitude, 1.0)
        step = np.exp2(np.floor(np.log2(magnitude)) - bits)
        result.append((np.floor(lower / step) * step, np.ceil(upper / step) * step))
    return result


@dataclass
class Encoding:
    """The query: network constraints, input variables, and per disjunct its rows `lhs <= rhs` as
    (lhs, rhs) pairs of z3 terms (kept apart: z3 may reorder the arguments of a built `<=`)."""

    ctx: z3.Context
    constraints: list = field(default_factory=list)
    inputs: list = field(default_factory=list)
    disjuncts: list = field(default_factory=list)
    unstable: list = field(default_factory=list)  # pre-activation terms of the encoded (unstable) ReLUs
    relus: int = 0
    fixed_by_bounds: int = 0
    fixed_by_phases: int = 0
    max_candidates_pruned: int = 0

    def number(self, value: float | Fraction) -> z3.ArithRef:
        """The exact rational of a finite float (or of a Fraction)."""
        fraction = Fraction(value) if isinstance(value, Fraction) else Fraction(float(value))
        return z3.RealVal(f"{fraction.numerator}/{fraction.denominator}", self.ctx)

    def bound(self, term, lower: float, upper: float) -> None:
        if np.isfinite(lower):
            self.constraints.append(term >= self.number(lower))
        if np.isfinite(upper):
            self.constraints.append(term <= self.number(upper))

    def linear(self, coefficients: np.ndarray, terms: list, constant: float):
        """sum_k coefficients[k]·terms[k] + constant, skipping zero coefficients and zero terms (None)."""
        parts = [self.number(c) * t for c, t in zip(coefficients, terms) if c != 0.0 and t is not None]
        if constant != 0.0 or not parts:
            parts.append(self.number(constant))
        return parts[0] if len(parts) == 1 else z3.Sum(parts)

    def holds(self, disjunct: int, slack=None):
        """Disjunct `disjunct` as a z3 Bool: every row's lhs (+ slack, when given) <= rhs."""
        if slack is None:
            return z3.And([lhs <= rhs for lhs, rhs in self.disjuncts[disjunct]])
        return z3.And([lhs + slack <= rhs for lhs, rhs in self.disjuncts[disjunct]])

    def violation(self):
        """The property's violation: OR over disjuncts of AND over their rows."""
        if not self.disjuncts:
            return z3.BoolVal(False, self.ctx)
        return z3.Or([self.holds(k) for k in range(len(self.disjuncts))])


def encode(pwl: PiecewiseLinear, box: Box, case: Case, bounds: list[Interval], phases: Phases,
           relu_encoding: str) -> Encoding:
    """The exact query for `case` over `box` (bounds: one (lower, upper) per layer output)."""
    enc = Encoding(z3.Context())
    enc.inputs = [z3.Real(f"x{k}", enc.ctx) for k in range(pwl.n_inputs)]
    for k, term in enumerate(enc.inputs):
        enc.bound(term, box.lower[k], box.upper[k])
    values: list = list(enc.inputs)  # z3 terms; None stands for the constant 0
    previous: Interval = (box.lower, box.upper)
    for index, layer in enumerate(pwl.layers):
        if isinstance(layer, Affine):
            values = _affine(enc, index, layer, values, bounds[index])
        elif isinstance(layer, Relu):
            values = _relu(enc, index, values, previous, phases.get(index), relu_encoding)
        else:
            values = _max(enc, index, layer, values, previous)
        previous = bounds[index]
    for conjunction in case.disjuncts:
        enc.disjuncts.append([(enc.linear(row, values, 0.0), enc.number(rhs))
                              for row, rhs in zip(conjunction.C, conjunction.d)])
    return enc


def _affine(enc: Encoding, index: int, layer: Affine, values: list, bounds: Interval) -> list:
    outputs = []
    for j in range(layer.out_features):
        term = z3.Real(f"a{index}_{j}", enc.ctx)
        enc.constraints.append(term == enc.linear(layer.weight[j], values, layer.bias[j]))
        enc.bound(term, bounds[0][j], bounds[1][j])
        outputs.append(term)
    return outputs


def _relu(enc: Encoding, index: int, values: list, pre: Interval, phase, relu_encoding: str) -> list:
    width = len(values)
    active = np.zeros(width, bool) if phase is None else np.asarray(phase[0], bool).reshape(-1)
    inactive = np.zeros(width, bool) if phase is None else np.asarray(phase[1], bool).reshape(-1)
    if active.size != width or inactive.size != width:
        raise ValueError(f"phase masks of layer {index} must have {width} entries")
    zero = enc.number(0.0)
    outputs: list = []
    for j, term in enumerate(values):
        enc.relus += 1
        if term is None:
            outputs.append(None)
            continue
        if active[j]:
            enc.constraints.append(term >= zero)
        if inactive[j]:
            enc.constraints.append(term <= zero)
        low, high = pre[0][j], pre[1][j]
        if active[j] or inactive[j]:
            enc.fixed_by_phases += 1
            outputs.append(None if inactive[j] else term)
        elif low >= 0.0 or high <= 0.0:
            enc.fixed_by_bounds += 1
            outputs.append(term if low >= 0.0 else None)
        else:
            outputs.append(_unstable_relu(enc, f"h{index}_{j}", term, low, high, relu_encoding))
    return outputs


def _unstable_relu(enc: Encoding, name: str, term, low: float, high: float, relu_encoding: str):
    zero = enc.number(0.0)
    out = z3.Real(name, enc.ctx)
    enc.unstable.append(term)
    if relu_encoding == "bool-triangle":
        phase = z3.Bool(f"p_{name}", enc.ctx)
        enc.constraints += [z3.Implies(phase, z3.And(term >= zero, out == term)),
                            z3.Implies(z3.Not(phase), z3.And(term <= zero, out == zero))]
    else:
        enc.constraints.append(out == z3.If(term >= zero, term, zero))
    enc.constraints.append(out >= zero)
    if np.isfinite(high):
        enc.constraints.append(out <= enc.number(high))
    if relu_encoding != "if" and np.isfinite(low) and np.isfinite(high):
        # out <= high·(term - low)/(high - low), multiplied out
        width = enc.number(Fraction(high) - Fraction(low))
        enc.constraints += [out >= term, width * out <= enc.number(high) * (term - enc.number(low))]
    return out


def _max(enc: Encoding, index: int, layer: MaxGroups, values: list, pre: Interval) -> list:
    outputs = []
    for j, group in enumerate(np.asarray(layer.groups)):
        best_lower = pre[0][group].max()
        candidates = [int(k) for k in group if pre[1][k] >= best_lower]
        enc.max_candidates_pruned += len(group) - len(candidates)
        if len(candidates) == 1:
            outputs.append(values[candidates[0]])
            continue
        terms = [values[k] if values[k] is not None else enc.number(0.0) for k in candidates]
        out = z3.Real(f"m{index}_{j}", enc.ctx)
        enc.constraints += [out >= t for t in terms]
        enc.constraints.append(z3.Or([out == t for t in terms]))
        outputs.append(out)
    return outputs
