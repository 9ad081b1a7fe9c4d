"""Settings are frozen dataclasses of plain values; this module records them and sets them from text.

    settings_dict(BabSettings())                    -> {"branching": "auto", "batch_size": 1024, ...}
    with_assignment(BabSettings(), "batch_size", "512")
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from verikit.core.errors import ExitCode, VerikitError


class SettingError(VerikitError):
    """A `--set name=value` (or policy `settings`) entry names no setting or gives a value it cannot take."""

    exit_code = ExitCode.USAGE


def _plain(value: Any) -> Any:
    if isinstance(value, (bool, int, float, str)) or value is None:
        return value
    if isinstance(value, tuple):
        return [_plain(item) for item in value]
    if type(value).__module__ == "torch":  # a torch.dtype
        return str(value).removeprefix("torch.")
    return str(value)


def settable_fields(settings: Any) -> dict[str, Any]:
    """The fields of a settings dataclass that hold plain values (nested dataclasses are set elsewhere)."""
    return {f.name: getattr(settings, f.name) for f in dataclasses.fields(settings)
            if not f.name.startswith("_") and not dataclasses.is_dataclass(getattr(settings, f.name))}


def settings_dict(settings: Any) -> dict:
    """Every plain field of a settings dataclass, JSON-ready (a torch dtype becomes its name)."""
    return {name: _plain(value) for name, value in settable_fields(settings).items()}


def parse_value(current: Any, text: str, name: str) -> Any:
    """`text` read as a value of the type of `current` (the setting's present value)."""
    text = text.strip()
    try:
        if isinstance(current, bool):
            if text.lower() not in ("true", "false", "1", "0", "yes", "no"):
                raise ValueError("expected true or false")
            return text.lower() in ("true", "1", "yes")
        if isinstance(current, int):
            value = int(text)
            if value < 0:
                raise ValueError("expected a non-negative integer")
            return value
        if isinstance(current, float):
            value = float(text)
            if not math.isfinite(value) or value < 0:
                raise ValueError("expected a finite non-negative number")
            return value
        if type(current).__module__ == "torch":
            import torch

            dtype = getattr(torch, text, None)
            if not isinstance(dtype, torch.dtype) or dtype not in (torch.float32, torch.float64):
                raise ValueError("expected float32 or float64")
            return dtype
        if isinstance(current, str) or current is None:
            return text
    except ValueError as error:
        raise SettingError(f"setting {name}: cannot use {text!r}: {error}") from None
    raise SettingError(f"setting {name} cannot be set from text")


def with_assignment(settings: Any, field: str, text: str, *, prefix: str = "") -> Any:
    """A copy of `settings` with `field` set from `text`; SettingError names the valid fields."""
    fields = settable_fields(settings)
    name = f"{prefix}{field}"
    if field not in fields:
        valid = ", ".join(f"{prefix}{key}" for key in fields)
        raise SettingError(f"unknown setting {name!r}; valid: {valid}")
    current = fields[field]
    if current is None:  # an optional setting left unset: read the value as the type its annotation names
        declared = str(next(f.type for f in dataclasses.fields(settings) if f.name == field))
        if text.strip().lower() == "none":
            return dataclasses.replace(settings, **{field: None})
        current = 0 if "int" in declared else 0.0 if "float" in declared else ""
    return dataclasses.replace(settings, **{field: parse_value(current, text, name)})
