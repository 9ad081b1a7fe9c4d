"""What an engine is given: the network, how to replay and judge witnesses, and the network's other forms.

The forms (the piecewise-linear IR, the auto_LiRPA model) are built once, on first use, and a failure to
build one is remembered as a reason, so no engine pays for it twice and every engine reports the same why.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from verikit.core.errors import EngineLimitation
from verikit.core.network import Network
from verikit.core.property import Case
from verikit.core.pwl import NotPiecewiseLinear, PiecewiseLinear
from verikit.witness.replay import STRICT, Tolerances


@dataclass(eq=False)
class Problem:
    """One network under verification. `device` is where torch-based engines may compute."""

    network: Network
    seed: int = 0
    tolerances: Tolerances = STRICT
    device: str = "cpu"
    _forms: dict[str, Any] = field(default_factory=dict, repr=False)

    def form(self, name: str, build: Callable[[], Any]) -> Any:
        """`build()` once per name; an EngineLimitation it raised is remembered and raised again."""
        if name not in self._forms:
            try:
                self._forms[name] = build()
            except EngineLimitation as limitation:
                self._forms[name] = limitation
        value = self._forms[name]
        if isinstance(value, EngineLimitation):
            raise value
        return value

    def piecewise_linear(self) -> PiecewiseLinear:
        """The network as Affine/Relu/MaxGroups layers (EngineLimitation with the reason if it has none)."""

        def build() -> PiecewiseLinear:
            from verikit.onnx.pwl import to_piecewise_linear

            try:
                return to_piecewise_linear(self.network)
            except NotPiecewiseLinear as reason:
                raise EngineLimitation(f"complete engines need a piecewise-linear network: {reason}") from None

        return self.form("piecewise-linear", build)

    def checked_piecewise_linear(self, case: Case) -> PiecewiseLinear:
        """The piecewise-linear form, checked against onnxruntime on the case's box first: it is a second
        translation, and a wrong op in it would be proven about silently (EngineLimitation on a mismatch)."""

        def check() -> PiecewiseLinear:
            from verikit.core.errors import ModelError
            from verikit.onnx.pwl import check_piecewise_linear

            pwl = self.piecewise_linear()
            try:
                check_piecewise_linear(self.network, pwl, case.box, seed=self.seed)
            except ModelError as error:
                raise EngineLimitation(str(error)) from None
            return pwl

        return self.form(f"piecewise-linear checked on case {id(case)}", check)

    def piecewise_linear_reason(self) -> str | None:
        """Why the network has no piecewise-linear form, or None when it has one."""
        try:
            self.piecewise_linear()
        except EngineLimitation as limitation:
            return str(limitation)
        return None

    def relu_count(self) -> int:
        """Number of ReLU units of the piecewise-linear form (0 when it has none)."""
        if self.piecewise_linear_reason() is not None:
            return 0
        layers = self.piecewise_linear().layers
        return sum(layer.out_features for layer in layers[:-1] if hasattr(layer, "out_features"))

    def lirpa(self):
        """The network traced into auto_LiRPA on `device` (EngineLimitation when it cannot be)."""

        def build():
            from verikit.engines.lirpa.engine import prepare

            try:  # the confirming float64 CROWN reuses this problem's piecewise-linear form
                pwl = self.piecewise_linear()
            except EngineLimitation as reason:
                pwl = str(reason)
            return prepare(self.network, device=self.device, pwl=pwl)

        return self.form(f"auto_LiRPA:{self.device}", build)

    def hidden_phases(self, case: Case) -> dict:
        """The case's hidden patterns as ReLU phases of the checked piecewise-linear form
        (verikit.engines.hidden; {} without patterns, EngineLimitation when they cannot be placed)."""
        if not case.hidden:
            return {}

        def build() -> dict:
            from verikit.engines.hidden import case_phases

            return case_phases(self.network, self.checked_piecewise_linear(case), case, seed=self.seed)

        return self.form(f"hidden phases of case {id(case)}", build)
