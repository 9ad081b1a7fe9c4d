"""The SMT engine's settings and constants (no z3 here: scheduling the engine must not load it)."""

from __future__ import annotations

from dataclasses import dataclass

RELU_ENCODINGS = ("if", "if-triangle", "bool-triangle")  # see verikit.engines.smt.encoding
DEFAULT_RELU_ENCODING = "if-triangle"

AUTOMATIC_MAX_RELUS = 40
"""In a portfolio, z3 (exact, slow) is tried only on networks with at most this many ReLUs, unless
`max_relus` is set; run alone, it always runs."""


@dataclass(frozen=True)
class SmtSettings:
    """`max_relus`: refuse larger networks (None: automatic); `relu_encoding`: see smt.encoding; `use_crown`:
    tighten the encoding's bounds with float-safe CROWN first."""

    max_relus: int | None = None
    relu_encoding: str = DEFAULT_RELU_ENCODING
    use_crown: bool = True

    def __post_init__(self) -> None:
        from verikit.core.settings import SettingError

        if self.relu_encoding not in RELU_ENCODINGS:
            raise SettingError(f"setting smt.relu_encoding: {self.relu_encoding!r} is not one of "
                               f"{', '.join(RELU_ENCODINGS)}")
