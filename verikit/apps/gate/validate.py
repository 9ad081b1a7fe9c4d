"""Typed access to a TOML table that names the key of every problem (for verikit.apps.gate.policy)."""

from __future__ import annotations

import math
import os
from pathlib import Path

from verikit.core.errors import PolicyError


def resolve(base: Path, value: str) -> Path:
    """`value` relative to the policy's folder (kept tidy: no `dir/../`)."""
    return Path(value) if Path(value).is_absolute() else Path(os.path.normpath(base / value))


class Table:
    """A TOML table plus its key path, with typed getters that raise PolicyError naming the key."""

    def __init__(self, data: object, key: str, source: str, base: Path, known: tuple[str, ...]):
        self.key, self.source, self.base = key, source, base
        if not isinstance(data, dict):
            self.fail("", "must be a table")
        self.data = data
        for name in data:
            if name not in known:
                self.fail(name, f"unknown key; known keys: {', '.join(known)}")

    def fail(self, name: str, problem: str):
        where = f"{self.key}.{name}" if self.key and name else (self.key or name)
        raise PolicyError(f"{where}: {problem}", where=self.source)

    def has(self, name: str) -> bool:
        return name in self.data

    def string(self, name: str, default: str | None = None, choices: tuple[str, ...] = ()) -> str | None:
        value = self.data.get(name, default)
        if value is None:
            return None
        if not isinstance(value, str) or not value:
            self.fail(name, "must be a non-empty string")
        if choices and value not in choices:
            self.fail(name, f"must be one of {', '.join(repr(c) for c in choices)}, got {value!r}")
        return value

    def required(self, name: str) -> object:
        if name not in self.data:
            self.fail(name, "is required")
        return self.data[name]

    def number(self, name: str, default: float | None = None, *, positive: bool = False,
               minimum: float | None = None, maximum: float | None = None) -> float | None:
        value = self.data.get(name, default)
        if value is None:
            return None
        return self.check_number(name, value, positive=positive, minimum=minimum, maximum=maximum)

    def check_number(self, name: str, value: object, *, positive: bool = False, minimum: float | None = None,
                     maximum: float | None = None) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            self.fail(name, "must be a finite number")
        if positive and not value > 0:
            self.fail(name, "must be a positive number")
        if minimum is not None and value < minimum:
            self.fail(name, f"must be at least {minimum:g}")
        if maximum is not None and value > maximum:
            self.fail(name, f"must be at most {maximum:g}")
        return float(value)

    def integer(self, name: str, default: int | None = None, *, minimum: int | None = None) -> int | None:
        value = self.data.get(name, default)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int):
            self.fail(name, "must be an integer")
        if minimum is not None and value < minimum:
            self.fail(name, f"must be an integer >= {minimum}")
        return value

    def boolean(self, name: str, default: bool) -> bool:
        value = self.data.get(name, default)
        if not isinstance(value, bool):
            self.fail(name, "must be true or false")
        return value

    def numbers(self, name: str, default=None, **limits) -> tuple[float, ...] | None:
        """A number or a non-empty array of numbers."""
        value = self.data.get(name, default)
        if value is None:
            return None
        values = value if isinstance(value, list) else [value]
        if not values:
            self.fail(name, "must be a number or a non-empty array of numbers")
        return tuple(self.check_number(f"{name}[{i + 1}]" if isinstance(value, list) else name, v, **limits)
                     for i, v in enumerate(values))

    def strings(self, name: str, default=None, choices: tuple[str, ...] = ()) -> tuple[str, ...] | None:
        value = self.data.get(name, default)
        if value is None:
            return None
        values = list(value) if isinstance(value, (list, tuple)) else [value]
        if not values or not all(isinstance(v, str) and v for v in values):
            self.fail(name, "must be a string or a non-empty array of strings")
        for v in values:
            if choices and v not in choices:
                self.fail(name, f"{v!r} is not one of {', '.join(repr(c) for c in choices)}")
        return tuple(values)

    def file(self, name: str, value: object | None = None) -> Path:
        value = self.data.get(name) if value is None else value
        if not isinstance(value, str) or not value:
            self.fail(name, "must be a file path (a string)")
        path = resolve(self.base, value)
        if not path.is_file():
            self.fail(name, f"file not found: {path}")
        return path
