"""The error hierarchy and the one place where errors map to exit codes."""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    """Process exit codes of the `verikit` CLI (documented in README.md)."""

    VERIFIED = 0
    FALSIFIED = 1
    USAGE = 2
    BAD_INPUT = 3
    INTERNAL = 4
    UNKNOWN = 5


def _one_line(text: str) -> str:
    return str(text).replace("\r", "\\r").replace("\n", "\\n")


class VerikitError(Exception):
    """Base of every error verikit raises on purpose; `str()` is one line for the user."""

    exit_code: ExitCode = ExitCode.INTERNAL

    def __init__(self, message: str, *, where: str | None = None):
        self.message = _one_line(message)  # user text (a key, a file name) may hold line breaks
        self.where = None if where is None else _one_line(where)
        super().__init__(f"{self.where}: {self.message}" if where else self.message)


class ModelError(VerikitError):
    """The ONNX model is missing, corrupt, unsupported or disagrees with onnxruntime."""

    exit_code = ExitCode.BAD_INPUT


class UnsupportedOperatorError(ModelError):
    """A node uses an operator (or attribute) verikit cannot translate."""


class SpecError(VerikitError):
    """The spec file is missing, malformed, or does not fit the model."""

    exit_code = ExitCode.BAD_INPUT


class PolicyError(VerikitError):
    """A policy file (verikit.toml) is invalid."""

    exit_code = ExitCode.BAD_INPUT


class DataError(VerikitError):
    """A dataset file is missing or has the wrong layout."""

    exit_code = ExitCode.BAD_INPUT


class EngineLimitation(VerikitError):
    """An engine cannot handle this network or case; the portfolio records `unknown` with the reason."""


class UsageError(VerikitError):
    """A request verikit cannot serve as asked (an option that needs a missing optional extra)."""

    exit_code = ExitCode.USAGE


class OutputError(VerikitError):
    """An output file (report, result file, witness) cannot be written where the user asked."""

    exit_code = ExitCode.BAD_INPUT


class InternalError(VerikitError):
    """An invariant of verikit's own computation failed (a bug): never turned into a verdict."""
