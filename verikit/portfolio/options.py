"""Options: everything a verification run depends on, engine settings included, all written into the report.

    Options(timeout=30).with_settings(["bab.batch_size=512", "attack.restarts=16"])
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, replace

from verikit.core.settings import SettingError, settings_dict, with_assignment
from verikit.engines.attack.engine import AttackSettings
from verikit.engines.bab.common import BabSettings
from verikit.engines.lirpa.engine import BoundsSettings
from verikit.engines.smt.settings import SmtSettings
from verikit.engines.tensor_bab.settings import TensorBabSettings
from verikit.portfolio import ENGINES, METHODS
from verikit.witness.replay import STRICT, Tolerances

DEVICES = ("cpu", "cuda")


@dataclass(frozen=True)
class PortfolioSettings:
    """How the portfolio shares the budget. In a portfolio the first attack stops after
    `min(attack.rounds, attack_rounds)` rounds of restarts or `attack_share` of the budget, so bounds start
    at once; an attack run alone searches for the whole budget with `attack.rounds`."""

    attack_share: float = 0.1
    attack_rounds: int = 2
    schedule: str = "adaptive"  # "adaptive": skip stages this problem does not need (schedule.py); "full": all
    topk: str = "direct"  # a top-k case (spec/topk.py normal form): "direct" runs verikit.engines.topk first;
    # "normal-form" leaves it to the other engines, disjunct by disjunct

    def __post_init__(self) -> None:
        if not 0.0 < self.attack_share <= 1.0:
            raise SettingError(f"setting portfolio.attack_share must be in (0, 1], got {self.attack_share}")
        if self.schedule not in ("adaptive", "full"):
            raise SettingError(f"setting portfolio.schedule must be adaptive or full, got {self.schedule!r}")
        if self.topk not in ("direct", "normal-form"):
            raise SettingError(f"setting portfolio.topk must be direct or normal-form, got {self.topk!r}")


#: The settings groups `--set GROUP.FIELD=VALUE` reaches, by the Options field that holds each.
SETTING_GROUPS = ("portfolio", "attack", "bounds", "bab", "tensor_bab", "smt")


@dataclass(frozen=True)
class Options:
    """Everything a verification run depends on; `as_dict()` is what the report records."""

    timeout: float = 60.0
    engines: tuple[str, ...] = ENGINES
    methods: tuple[str, ...] = METHODS
    seed: int = 0
    device: str = "cpu"
    tolerances: Tolerances = STRICT
    portfolio: PortfolioSettings = PortfolioSettings()
    attack: AttackSettings = AttackSettings()
    bounds: BoundsSettings = BoundsSettings()
    bab: BabSettings = BabSettings()
    tensor_bab: TensorBabSettings = TensorBabSettings()
    smt: SmtSettings = SmtSettings()

    def __post_init__(self) -> None:
        if not (math.isfinite(self.timeout) and self.timeout >= 0):
            raise SettingError(f"timeout must be a finite number of seconds >= 0, got {self.timeout}")
        unknown = [name for name in self.engines if name not in ENGINES]
        if unknown or not self.engines:
            raise SettingError(f"unknown engine(s) {unknown or 'none given'}; choose from {', '.join(ENGINES)}")
        bad = [name for name in self.methods if name not in METHODS]
        if bad or not self.methods:
            raise SettingError(f"unknown bound method(s) {bad or 'none given'}; choose from {', '.join(METHODS)}")
        if not (self.device in DEVICES or self.device.startswith("cuda:")):
            raise SettingError(f"unknown device {self.device!r}; use cpu or cuda")

    def with_settings(self, assignments: Iterable[str]) -> "Options":
        """A copy with each `GROUP.FIELD=VALUE` applied (GROUP in SETTING_GROUPS); SettingError if invalid."""
        options = self
        for assignment in assignments:
            name, sep, value = assignment.partition("=")
            group, dot, field = name.strip().partition(".")
            if not sep or not dot or group not in SETTING_GROUPS:
                raise SettingError(f"cannot read setting {assignment!r}: write GROUP.FIELD=VALUE with GROUP one of "
                                   f"{', '.join(SETTING_GROUPS)} (e.g. bab.batch_size=512)")
            updated = with_assignment(getattr(options, group), field, value, prefix=f"{group}.")
            options = replace(options, **{group: updated})
        return options

    def as_dict(self) -> dict:
        """Every setting of the run, engine settings included (the report's `settings`)."""
        recorded = {
            "timeout_s": self.timeout,
            "engines": list(self.engines),
            "methods": list(self.methods),
            "seed": self.seed,
            "device": self.device,
            "tolerances": {"box": self.tolerances.box, "formula": self.tolerances.formula},
        }
        recorded.update({group: settings_dict(getattr(self, group)) for group in SETTING_GROUPS})
        return recorded

