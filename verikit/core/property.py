"""Properties in normal form: cases of an input set, hidden-neuron constraints and an output DNF.

A property is *violated* (VNN-LIB: sat) iff some case has an input x in its set, whose hidden neurons
follow the case's patterns, and whose output y satisfies every row of some disjunct `C @ y <= d`.
Arrays are float64 and flat (C order of the ONNX tensors).

Every kind of question verikit answers lands in these three parts, so every engine sees it one way:

- the input set: always `case.box` (an axis-aligned box), optionally narrowed by `case.region` — an
  `L2Ball`, or a `Manipulated` image `x = T(theta) (+ delta)`, theta in a parameter box. The box
  always encloses the region, so a bound proven over the box is proven over the region; an engine that
  cannot use the region still proves soundly, only more weakly.
- hidden constraints: `case.hidden`, patterns of ReLU phases (`NeuronPattern`) that an input must follow
  to belong to the case (neural activation patterns). They only shrink the set: a proof that ignores
  them is still a proof, and one that uses them (fixed phases, split constraints) may be stronger.
- the output condition: the disjunction of `Conjunction`s (robustness, top-k, targeted order, VNN-LIB).

A counterexample must lie in the box, in the region, follow the patterns (checked on the ONNX model's
own hidden values) and satisfy a disjunct: `verikit.witness.replay` is the one place that checks it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import numpy as np


def _as_vector(values, name: str) -> np.ndarray:
    array = np.ascontiguousarray(np.asarray(values, dtype=np.float64).reshape(-1))
    array.setflags(write=False)
    return array


def _as_mask(values, size: int, name: str) -> np.ndarray:
    """A read-only bool vector of `size` (all False when values is None)."""
    mask = np.zeros(size, dtype=bool) if values is None else np.asarray(values, dtype=bool).reshape(-1).copy()
    if mask.size != size:
        raise ValueError(f"{name} has {mask.size} entries, expected {size}")
    mask.setflags(write=False)
    return mask


@dataclass(frozen=True, eq=False)
class Box:
    """An axis-aligned input region `lower <= x <= upper`, shape (n_inputs,).

    `open_lower[i]` / `open_upper[i]` make that side strict (`lower < x`, from a VNN-LIB `<`/`>`). The
    engines search the closed box, which contains the open one, so a proof covers both; `contains` (and
    so the witness check) honours the strict sides.
    """

    lower: np.ndarray
    upper: np.ndarray
    open_lower: np.ndarray | None = None
    open_upper: np.ndarray | None = None

    def __post_init__(self) -> None:
        lower = _as_vector(self.lower, "lower")
        upper = _as_vector(self.upper, "upper")
        if lower.shape != upper.shape:
            raise ValueError(f"box bounds differ in size: {lower.size} vs {upper.size}")
        if np.isnan(lower).any() or np.isnan(upper).any():
            raise ValueError("box bounds contain NaN")
        object.__setattr__(self, "lower", lower)
        object.__setattr__(self, "upper", upper)
        object.__setattr__(self, "open_lower", _as_mask(self.open_lower, lower.size, "open_lower"))
        object.__setattr__(self, "open_upper", _as_mask(self.open_upper, lower.size, "open_upper"))

    @property
    def size(self) -> int:
        return int(self.lower.size)

    @property
    def is_empty(self) -> bool:
        """No point lies inside (an open side makes `lower == upper` empty too)."""
        touching = (self.lower == self.upper) & (self.open_lower | self.open_upper)
        return bool((self.lower > self.upper).any() or touching.any())

    @property
    def center(self) -> np.ndarray:
        return (self.lower + self.upper) / 2.0

    @property
    def radius(self) -> np.ndarray:
        return (self.upper - self.lower) / 2.0

    def violation(self, x: np.ndarray) -> float:
        """How far x (n_inputs,) lies outside the closed box, max over coordinates (0.0 when inside)."""
        x = np.asarray(x, dtype=np.float64).reshape(-1)
        return float(max(0.0, np.max(self.lower - x), np.max(x - self.upper)))

    def contains(self, x: np.ndarray, tol: float = 0.0) -> bool:
        """x within `tol` of the box, strictly on the open sides (x > lower - tol there)."""
        x = np.asarray(x, dtype=np.float64).reshape(-1)
        above = np.where(self.open_lower, x > self.lower - tol, x >= self.lower - tol)
        below = np.where(self.open_upper, x < self.upper + tol, x <= self.upper + tol)
        return bool(above.all() and below.all())

    def sample(self, count: int, rng: np.random.Generator) -> np.ndarray:
        """`count` points drawn uniformly from the box, shape (count, n_inputs)."""
        return rng.uniform(self.lower, self.upper, size=(count, self.size))

    def intersect(self, other: "Box") -> "Box":
        """The intersection; a side is open where the tighter bound comes from an open side."""
        lower = np.maximum(self.lower, other.lower)
        upper = np.minimum(self.upper, other.upper)
        open_lower = (self.open_lower & (self.lower == lower)) | (other.open_lower & (other.lower == lower))
        open_upper = (self.open_upper & (self.upper == upper)) | (other.open_upper & (other.upper == upper))
        return Box(lower, upper, open_lower, open_upper)

    def holding_float32(self) -> tuple["Box", np.ndarray]:
        """(the box with every coordinate whose interval holds no float32 number widened to take in the
        float32 number nearest it, the indices widened).

        Models read their inputs as float32, so a spec's `X_i = 0.123456789` (a decimal no float32 equals)
        leaves no input the model can receive, and no counterexample could ever be replayed. The widened
        box contains the spec's own box, so a proof over it still covers the spec; the widening is at most
        one float32 spacing (about 6e-8 relative), and the side it moves becomes closed. Unbounded or
        beyond-float32 coordinates are left as they are."""
        f32 = np.float32
        with np.errstate(over="ignore"):
            first, last = self.lower.astype(f32), self.upper.astype(f32)
        first64, last64 = first.astype(np.float64), last.astype(np.float64)
        up = (first64 < self.lower) | (self.open_lower & (first64 == self.lower))
        first[up] = np.nextafter(first[up], f32(np.inf))  # the smallest float32 the lower side admits
        down = (last64 > self.upper) | (self.open_upper & (last64 == self.upper))
        last[down] = np.nextafter(last[down], f32(-np.inf))  # the largest float32 the upper side admits
        first64, last64 = first.astype(np.float64), last.astype(np.float64)
        empty = (first64 > self.upper) | (self.open_upper & (first64 == self.upper))
        finite = np.isfinite(first64) & np.isfinite(last64) & np.isfinite(self.lower) & np.isfinite(self.upper)
        widened = np.flatnonzero(empty & finite)
        if widened.size == 0:
            return self, widened
        lower, upper = self.lower.copy(), self.upper.copy()
        open_lower, open_upper = self.open_lower.copy(), self.open_upper.copy()
        raise_upper = (first64 - upper)[widened] <= (lower - last64)[widened]
        grow, shrink = widened[raise_upper], widened[~raise_upper]
        upper[grow], open_upper[grow] = first64[grow], False
        lower[shrink], open_lower[shrink] = last64[shrink], False
        return Box(lower, upper, open_lower, open_upper), widened

    def same_as(self, other: "Box") -> bool:
        return bool(np.array_equal(self.lower, other.lower) and np.array_equal(self.upper, other.upper)
                    and np.array_equal(self.open_lower, other.open_lower)
                    and np.array_equal(self.open_upper, other.open_upper))


@dataclass(frozen=True, eq=False)
class Conjunction:
    """`C @ y <= d`, every row must hold. C has shape (rows, n_outputs), d shape (rows,).

    `strict[r]` makes row r `C[r] @ y < d[r]` (a VNN-LIB `<`/`>`). Engines bound the closed rows, whose
    violation set contains the strict one, so a proof covers both; `holds` honours strictness.
    """

    C: np.ndarray
    d: np.ndarray
    strict: np.ndarray | None = None

    def __post_init__(self) -> None:
        C = np.ascontiguousarray(np.asarray(self.C, dtype=np.float64))
        if C.ndim != 2:
            raise ValueError(f"C must be 2-D, got shape {C.shape}")
        d = _as_vector(self.d, "d")
        if C.shape[0] != d.size:
            raise ValueError(f"C has {C.shape[0]} rows but d has {d.size}")
        C.setflags(write=False)
        object.__setattr__(self, "C", C)
        object.__setattr__(self, "d", d)
        object.__setattr__(self, "strict", _as_mask(self.strict, d.size, "strict"))

    @property
    def rows(self) -> int:
        return int(self.d.size)

    def margins(self, y: np.ndarray) -> np.ndarray:
        """`C @ y - d` for y (n_outputs,); the conjunction holds iff every entry is <= 0 (< 0 on strict rows)."""
        return self.C @ np.asarray(y, dtype=np.float64).reshape(-1) - self.d

    def holds(self, y: np.ndarray, tol: float = 0.0) -> bool:
        """Every row within `tol`: margin <= tol, and margin < tol on strict rows."""
        margins = self.margins(y)
        return bool(np.all(np.where(self.strict, margins < tol, margins <= tol)))

    def violation(self, y: np.ndarray) -> float:
        """The largest positive margin (0.0 when every closed row holds)."""
        margins = self.margins(y)
        return float(max(0.0, margins.max())) if margins.size else 0.0


@dataclass(frozen=True, eq=False)
class L2Ball:
    """The inputs within `radius` of `center` (n_inputs,) in the Euclidean norm; a case intersects it
    with its box (the valid range), and the box encloses it."""

    center: np.ndarray
    radius: float
    kind = "l2-ball"

    def __post_init__(self) -> None:
        object.__setattr__(self, "center", _as_vector(self.center, "center"))
        radius = float(self.radius)
        if not (np.isfinite(radius) and radius >= 0.0):
            raise ValueError(f"an L2 ball needs a finite radius >= 0, got {self.radius!r}")
        object.__setattr__(self, "radius", radius)

    def distance(self, x: np.ndarray) -> float:
        """||x - center||_2, computed in float64."""
        return float(np.linalg.norm(np.asarray(x, dtype=np.float64).reshape(-1) - self.center))

    def distance_upper(self, x: np.ndarray) -> float:
        """An upper bound of the real ||x - center||_2: the float64 distance raised by its rounding error
        (differences, squares and their sum each within (n + 2) u, the square root within u)."""
        n = self.center.size
        unit = np.finfo(np.float64).eps / 2
        return float(self.distance(x) * (1.0 + 4.0 * (n + 4) * unit) + np.sqrt(n) * 1e-300)

    def contains(self, x: np.ndarray, tol: float = 0.0, params: np.ndarray | None = None) -> bool:
        """Whether x lies in the ball (within `tol`), decided on an upper bound of its distance: a point
        the float64 distance cannot place inside is outside."""
        return self.distance_upper(x) <= self.radius + tol

    def enclosing_box(self, lower=-np.inf, upper=np.inf) -> Box:
        """The ball's bounding box `center ± radius`, clipped to [lower, upper]."""
        return Box(np.maximum(self.center - self.radius, lower), np.minimum(self.center + self.radius, upper))

    def describe(self) -> dict:
        return {"kind": self.kind, "norm": 2, "radius": self.radius}


@runtime_checkable
class Transform(Protocol):
    """A family of manipulated images `theta (n_params,) -> x (n_inputs,)` (brightness, rotation, ...).

    `apply` is the reference: plain numpy in float64, the one a counterexample is recomputed with.
    `enclose` gives sound per-pixel bounds of `apply` over a parameter box (Box over the image).
    `onnx_prefix` is an ONNX model (input theta (1, n_params), output x (1, n_inputs)) equal to `apply`,
    when the transform has one that engines can bound exactly (affine with clipping); else None.
    """

    name: str
    n_params: int

    def apply(self, theta: np.ndarray) -> np.ndarray: ...

    def enclose(self, params: Box) -> Box: ...

    def onnx_prefix(self): ...

    def describe(self) -> dict: ...


@dataclass(frozen=True, eq=False)
class Manipulated:
    """The images `T(theta) + delta`: theta in the box `params`, `|delta|_inf <= eps`, within the case's
    box (the valid range). A member is named by its theta, so a counterexample carries theta and is
    recomputed with `transform.apply`."""

    transform: Transform
    params: Box
    eps: float = 0.0
    kind = "manipulated"

    def __post_init__(self) -> None:
        if self.params.size != self.transform.n_params:
            raise ValueError(f"{self.transform.name} takes {self.transform.n_params} parameters, "
                             f"the parameter box has {self.params.size}")
        eps = float(self.eps)
        if not (np.isfinite(eps) and eps >= 0.0):
            raise ValueError(f"eps must be finite and >= 0, got {self.eps!r}")
        object.__setattr__(self, "eps", eps)

    def image(self, theta: np.ndarray) -> np.ndarray:
        """The manipulated image for theta (n_params,), float64 (n_inputs,)."""
        return np.asarray(self.transform.apply(np.asarray(theta, dtype=np.float64).reshape(-1)),
                          dtype=np.float64).reshape(-1)

    def contains(self, x: np.ndarray, tol: float = 0.0, params: np.ndarray | None = None) -> bool:
        """x is within eps (+ tol) of `image(params)`, and params lie in the parameter box; without
        params no membership can be shown (False). The image's rounding to float32 (what the model
        consumes: one float32 spacing per pixel) is allowed on top."""
        if params is None:
            return False
        theta = np.asarray(params, dtype=np.float64).reshape(-1)
        if theta.size != self.params.size or not self.params.contains(theta):
            return False
        x = np.asarray(x, dtype=np.float64).reshape(-1)
        image = self.image(theta)
        if image.shape != x.shape:
            return False
        rounding = np.spacing(np.abs(image).astype(np.float32)).astype(np.float64)
        return bool(np.all(np.abs(x - image) <= self.eps + tol + rounding))

    def enclosing_box(self, lower=-np.inf, upper=np.inf) -> Box:
        """Sound per-pixel bounds of the region, clipped to [lower, upper]."""
        enclosure = self.transform.enclose(self.params)
        return Box(np.maximum(enclosure.lower - self.eps, lower), np.minimum(enclosure.upper + self.eps, upper))

    def describe(self) -> dict:
        return {"kind": self.kind, "transform": self.transform.describe(), "eps": self.eps,
                "params_lower": self.params.lower.tolist(), "params_upper": self.params.upper.tolist()}


Region = L2Ball | Manipulated


@dataclass(frozen=True, eq=False)
class NeuronPattern:
    """A ReLU phase pattern on one hidden tensor: the ONNX tensor `tensor` (the input of a Relu node),
    flattened in C order, has `value > 0` at every flat index of `active` and `value <= 0` at every index
    of `inactive` (a neural activation pattern). Indices are sorted and disjoint."""

    tensor: str
    active: np.ndarray
    inactive: np.ndarray

    def __post_init__(self) -> None:
        active = np.unique(np.asarray(self.active, dtype=np.int64).reshape(-1))
        inactive = np.unique(np.asarray(self.inactive, dtype=np.int64).reshape(-1))
        if (active < 0).any() or (inactive < 0).any():
            raise ValueError(f"pattern on {self.tensor!r}: neuron indices must be >= 0")
        both = np.intersect1d(active, inactive)
        if both.size:
            raise ValueError(f"pattern on {self.tensor!r}: neuron {int(both[0])} is both active and inactive")
        for array in (active, inactive):
            array.setflags(write=False)
        object.__setattr__(self, "active", active)
        object.__setattr__(self, "inactive", inactive)

    @property
    def size(self) -> int:
        return int(self.active.size + self.inactive.size)

    def misses(self, values: np.ndarray) -> int:
        """How many constrained neurons `values` (the tensor, flat) breaks; 0 when it follows the pattern."""
        values = np.asarray(values).reshape(-1)
        if self.size and max(self.active.max(initial=-1), self.inactive.max(initial=-1)) >= values.size:
            raise ValueError(f"pattern on {self.tensor!r} names neuron beyond its {values.size} elements")
        return int((values[self.active] <= 0).sum() + (values[self.inactive] > 0).sum())

    def describe(self) -> dict:
        return {"tensor": self.tensor, "active": self.active.tolist(), "inactive": self.inactive.tolist()}


@dataclass(frozen=True, eq=False)
class Case:
    """Violated iff some x in `box` (and in `region`, when set) whose hidden neurons follow every pattern
    of `hidden` makes some disjunct hold. `box` always encloses `region`."""

    box: Box
    disjuncts: tuple[Conjunction, ...]
    region: Region | None = None
    hidden: tuple[NeuronPattern, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "disjuncts", tuple(self.disjuncts))
        object.__setattr__(self, "hidden", tuple(self.hidden))
        if isinstance(self.region, L2Ball) and self.region.center.size != self.box.size:
            raise ValueError(f"the L2 ball's centre has {self.region.center.size} inputs, the box {self.box.size}")

    @property
    def is_box(self) -> bool:
        """Just a box and an output condition: no region, no hidden constraints."""
        return self.region is None and not self.hidden

    def admits_input(self, x: np.ndarray, tol: float = 0.0, params: np.ndarray | None = None) -> bool:
        """x lies in the box and in the region (`params`: the theta that names x in a Manipulated region);
        the hidden patterns need the network's values and are checked by verikit.witness.replay."""
        if not self.box.contains(x, tol):
            return False
        return self.region is None or self.region.contains(x, tol, params)

    def describe(self) -> dict:
        """The input set and hidden constraints, as reports record them."""
        described: dict = {"input_set": "box" if self.region is None else self.region.kind}
        if self.region is not None:
            described["region"] = self.region.describe()
        if self.hidden:
            described["hidden"] = [{"tensor": p.tensor, "active": int(p.active.size),
                                    "inactive": int(p.inactive.size)} for p in self.hidden]
        return described

    def satisfied_disjunct(self, y: np.ndarray, tol: float = 0.0) -> int | None:
        """Index of the first disjunct that y satisfies (within tol), or None."""
        for index, conjunction in enumerate(self.disjuncts):
            if conjunction.holds(y, tol):
                return index
        return None


@dataclass(frozen=True, eq=False)
class Property:
    """Violated (sat) iff some case is violated. `sha256` identifies the spec's bytes."""

    cases: tuple[Case, ...]
    n_inputs: int
    n_outputs: int
    source: str = ""
    sha256: str = ""
    notes: tuple[str, ...] = field(default=())
    kind: str = "vnnlib"  # what question it asks: "vnnlib", "robustness", "perturbation", "nap", "top-k", ...
    details: dict = field(default_factory=dict)  # the question in the spec's own terms, for reports

    def __post_init__(self) -> None:
        object.__setattr__(self, "cases", tuple(self.cases))
        for index, case in enumerate(self.cases):
            if case.box.size != self.n_inputs:
                raise ValueError(f"case {index}: box has {case.box.size} inputs, expected {self.n_inputs}")
            for conjunction in case.disjuncts:
                if conjunction.C.shape[1] != self.n_outputs:
                    raise ValueError(
                        f"case {index}: C has {conjunction.C.shape[1]} columns, expected {self.n_outputs}"
                    )
