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


@dataclass(frozen=True, eq=False)
class Box:
    """An axis-aligned input region `lower <= x <= upper`, shape (n_inputs,)."""

    lower: np.ndarray
    upper: np.ndarray

    def __post_init__(self) -> None:
        lower = _as_vector(self.lower, "lower")
        upper = _as_vector(self.upper, "upper")
        if lower.shape != upper.shape:
            raise ValueError(f"box bounds differ in size: {lower.size} vs {upper.size}")
        if np.isnan(lower).any() or np.isnan(upper).any():
            raise ValueError("box bounds contain NaN")
        object.__setattr__(self, "lower", lower)
        object.__setattr__(self, "upper", upper)

    @property
    def size(self) -> int:
        return int(self.lower.size)

    @property
    def is_empty(self) -> bool:
        return bool((self.lower > self.upper).any())

    @property
    def center(self) -> np.ndarray:
        return (self.lower + self.upper) / 2.0

    @property
    def radius(self) -> np.ndarray:
        return (self.upper - self.lower) / 2.0

    def violation(self, x: np.ndarray) -> float:
        """How far x (n_inputs,) lies outside the box, max over coordinates (0.0 when inside)."""
        x = np.asarray(x, dtype=np.float64).reshape(-1)
        return float(max(0.0, np.max(self.lower - x), np.max(x - self.upper)))

    def contains(self, x: np.ndarray, tol: float = 0.0) -> bool:
        return self.violation(x) <= tol

    def sample(self, count: int, rng: np.random.Generator) -> np.ndarray:
        """`count` points drawn uniformly from the box, shape (count, n_inputs)."""
        return rng.uniform(self.lower, self.upper, size=(count, self.size))

    def intersect(self, other: "Box") -> "Box":
        return Box(np.maximum(self.lower, other.lower), np.minimum(self.upper, other.upper))

    def same_as(self, other: "Box") -> bool:
        return bool(np.array_equal(self.lower, other.lower) and np.array_equal(self.upper, other.upper))


@dataclass(frozen=True, eq=False)
class Conjunction:
    """`C @ y <= d`, every row must hold. C has shape (rows, n_outputs), d shape (rows,)."""

    C: np.ndarray
    d: np.ndarray

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

    @property
    def rows(self) -> int:
        return int(self.d.size)

    def margins(self, y: np.ndarray) -> np.ndarray:
        """`C @ y - d` for y (n_outputs,); the conjunction holds iff every entry is <= 0."""
        return self.C @ np.asarray(y, dtype=np.float64).reshape(-1) - self.d

    def holds(self, y: np.ndarray, tol: float = 0.0) -> bool:
        return bool(np.all(self.margins(y) <= tol))


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
