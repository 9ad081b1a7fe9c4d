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


class VerikitError(Exception):
    """Base of every error verikit raises on purpose; `str()` is one line for the user."""

    exit_code: ExitCode = ExitCode.INTERNAL

    def __init__(self, message: str, *, where: str | None = None):
        self.message = message
        self.where = where
        super().__init__(f"{where}: {message}" if where else message)


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


class InternalError(VerikitError):
    """An invariant of verikit's own computation failed (a bug): never turned into a verdict."""
