"""Properties in normal form: cases of an input box and a disjunction of output conjunctions.

A property is *violated* (VNN-LIB: sat) iff some case has an x in its box whose output y satisfies
every row of some disjunct `C @ y <= d`. Arrays are float64 and flat (C order of the ONNX tensors).
"""

from __future__ import annotations

from dataclasses import dataclass, field

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
class Case:
    """Violated iff some x in `box` makes some disjunct hold."""

    box: Box
    disjuncts: tuple[Conjunction, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "disjuncts", tuple(self.disjuncts))

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
