"""Reusable click parameter types: every number is checked when the command line is parsed (exit 2).

    @click.option("--timeout", type=TIMEOUT)        # finite seconds > 0
    @click.option("--formula-tolerance", type=TOLERANCE)
    @click.option("--mean", type=FloatList(positive=False))

`nan`, `inf`, negative timeouts and seeds beyond 64 bits are refused with click's one-line usage error,
before anything heavy is imported or run.
"""

from __future__ import annotations

import math

import click

#: the largest tolerance a witness may use: beyond this a "counterexample" says nothing (box coordinates and
#: network outputs are float32; a tolerance of 1e9 would accept any point for contradictory formulas)
MAX_TOLERANCE = 1.0
#: the longest budget accepted, in seconds (30 days): larger numbers are typos, and overflow time arithmetic
MAX_SECONDS = 30 * 24 * 3600.0
#: seeds go to numpy (any int >= 0), torch (below 2**64, with room left for per-restart offsets) and z3
MAX_SEED = 2**63 - 1


class FiniteFloat(click.ParamType):
    """A finite float in [minimum, maximum]; `minimum_open` excludes the minimum itself."""

    name = "number"

    def __init__(self, minimum: float | None = None, maximum: float | None = None, *, minimum_open: bool = False,
                 what: str = "a number"):
        self.minimum, self.maximum, self.minimum_open, self.what = minimum, maximum, minimum_open, what

    def convert(self, value, param, ctx) -> float:
        if isinstance(value, float) and math.isfinite(value):
            number = value
        else:
            try:
                number = float(value)
            except (TypeError, ValueError, OverflowError):
                self.fail(f"{value!r} is not {self.what}", param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not {self.what}: it must be finite", param, ctx)
        if self.minimum is not None and (number < self.minimum or (self.minimum_open and number == self.minimum)):
            bound = ">" if self.minimum_open else ">="
            self.fail(f"{value!r} is not {self.what}: it must be {bound} {self.minimum:g}", param, ctx)
        if self.maximum is not None and number > self.maximum:
            self.fail(f"{value!r} is too large: at most {self.maximum:g}", param, ctx)
        return number

    def __repr__(self) -> str:
        return f"FiniteFloat({self.minimum}, {self.maximum})"


class Seed(click.ParamType):
    """An integer seed in 0..2**63-1."""

    name = "integer"

    def convert(self, value, param, ctx) -> int:
        if isinstance(value, int) and not isinstance(value, bool):
            number = value
        else:
            try:
                number = int(str(value).strip(), 10)
            except ValueError:
                self.fail(f"{str(value)[:40]!r} is not an integer seed", param, ctx)
        if not 0 <= number <= MAX_SEED:
            self.fail(f"seed {str(value)[:40]} is out of range 0..2**63-1", param, ctx)
        return number


class FloatList(click.ParamType):
    """A finite number, or comma-separated finite numbers (per channel or per input): '0.5' -> 0.5,
    '0.1,0.2' -> (0.1, 0.2); `positive` requires every value > 0."""

    name = "numbers"

    def __init__(self, *, positive: bool = False):
        self.positive = positive

    def convert(self, value, param, ctx) -> float | tuple[float, ...]:
        if isinstance(value, (float, tuple)):
            return value
        try:
            values = tuple(float(part) for part in str(value).split(","))
        except ValueError:
            self.fail(f"expected a number or comma-separated numbers, got {str(value)[:60]!r}", param, ctx)
        if not all(math.isfinite(v) for v in values):
            self.fail(f"every value must be finite, got {str(value)[:60]!r}", param, ctx)
        if self.positive and not all(v > 0 for v in values):
            self.fail(f"every value must be > 0, got {str(value)[:60]!r}", param, ctx)
        return values[0] if len(values) == 1 else values


#: a wall-clock budget in seconds: finite, > 0
TIMEOUT = FiniteFloat(0.0, MAX_SECONDS, minimum_open=True, what="a timeout in seconds")
#: a budget that may be 0 (skip that step)
SECONDS = FiniteFloat(0.0, MAX_SECONDS, what="a number of seconds")
#: an absolute tolerance for witnesses
TOLERANCE = FiniteFloat(0.0, MAX_TOLERANCE, what="a tolerance")
#: an L-inf or L2 radius, in raw input units
EPS = FiniteFloat(0.0, what="a radius")
#: a radius that must be > 0
POSITIVE_EPS = FiniteFloat(0.0, minimum_open=True, what="a radius")
#: a factor applied to timeouts
SCALE = FiniteFloat(0.0, 1e6, minimum_open=True, what="a scale factor")
SEED = Seed()
