"""How verikit drives auto_LiRPA: its options, its silence, its graph fixes and its known limitations.

auto_LiRPA 0.3 supports each operator through one `Bound*` class; when an operator (or one
configuration of it, e.g. a MaxPool whose stride differs from its kernel) is beyond it, the failure is
raised from inside that class. `limitation_of(error)` recognises auto_LiRPA's NotImplementedErrors and
the failures listed in KNOWN_LIMITATIONS, so the engine can answer unknown naming the operator; any
other error propagates (a new one is triaged: a bug to fix, or a limitation to list).
"""

from __future__ import annotations

import contextlib
import io
import logging
import re
import traceback
import warnings
from collections.abc import Iterator
from pathlib import PurePath

import torch

from verikit.core.errors import EngineLimitation


class BoundsError(EngineLimitation):
    """The bounds engine met a known limitation (the portfolio answers unknown with this reason)."""


class UnsupportedByBoundsError(BoundsError):
    """auto_LiRPA cannot handle an operator of the network; `operators` names those it reported."""

    def __init__(self, message: str, *, operators: tuple[str, ...] = (), where: str | None = None):
        self.operators = operators
        super().__init__(message, where=where)


def bound_opts() -> dict:
    """auto_LiRPA options, chosen for the graphs verikit's ONNX translation produces.

    - conv_mode "matrix": auto_LiRPA 0.3's "patches" mode (faster on large CNNs) assumes 4-D constants
      and image-shaped Add nodes; it fails on the bias Add after a MatMul and on (C, 1, 1) constants.
    - sparse feature α off: it mis-sizes α for ReLUs fed by an Add node (MatMul + Add dense layers).
    - sparse spec α off: α kept from an earlier call breaks (an assertion in BoundRelu) when a later
      box bounds an intermediate layer densely; full α is always valid.
    """
    return {"verbosity": 0, "conv_mode": "matrix", "sparse_features_alpha": False, "sparse_spec_alpha": False}


@contextlib.contextmanager
def quiet_lirpa() -> Iterator[list[logging.LogRecord]]:
    """Keep auto_LiRPA's prints, log lines and "identity matrix" performance warnings (convolutions bounded
    with a dense C) off the terminal; yields its captured log records."""
    logger = logging.getLogger("auto_LiRPA.utils")
    records: list[logging.LogRecord] = []

    class _Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    handler = _Collect()
    propagate = logger.propagate
    logger.addHandler(handler)
    logger.propagate = False
    try:
        with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Creating an identity matrix", category=UserWarning)
            # torch's exporter, tracing a 1-D convolution run as a 2-D one (verikit.onnx.ops.linear.Conv)
            warnings.filterwarnings("ignore", message="This model contains a squeeze operation", category=UserWarning)
            yield records
    finally:
        logger.removeHandler(handler)
        logger.propagate = propagate


def unsupported_operators(records: list[logging.LogRecord]) -> tuple[str, ...]:
    """ONNX op names auto_LiRPA logged as unsupported while converting a model (e.g. "onnx::Elu")."""
    names: list[str] = []
    for record in records:
        match = re.match(r"Name: (\S+),", record.getMessage())
        if match and match.group(1) not in names:
            names.append(match.group(1))
    return tuple(names)


# Failures of auto_LiRPA 0.3 operators seen on graphs verikit produces, that are limitations of the
# library rather than bugs to report: (operator, exception type) -> what it cannot do.
KNOWN_LIMITATIONS: dict[tuple[str, type[BaseException]], str] = {
    ("Pad", TypeError): "explicit padding (asymmetric or SAME pads) is not supported",
    ("Conv", IndexError): "only 2-D convolutions are supported",
    ("MaxPool", ValueError): "CROWN needs MaxPool stride == kernel and no padding",
    ("Reshape", RuntimeError): "cannot back-substitute through this reshape (e.g. MatMul with a stacked weight)",
    ("Div", AssertionError): "needs a divisor bounded away from 0 (e.g. Softmax over a wide range, where exp "
                             "underflows)",
}


def _positive_by_construction(node) -> bool:
    """An Exp, or a ReduceSum of an Exp (the numerator and divisor of auto_LiRPA's own Softmax)."""
    kind = type(node).__name__
    return kind == "BoundExp" or (kind == "BoundReduceSum" and type(node.inputs[0]).__name__ == "BoundExp")


def unsound_operators(bounded: torch.nn.Module) -> list[tuple[str, str]]:
    """(operator, why) for each node of a traced BoundedModule whose auto_LiRPA 0.3 bounds are not sound.

    A Div with both operands input-dependent: its interval bound is x_l / y_u .. x_u / y_l (wrong for a
    negative numerator: x in [-1, 1], y in [1, 2] gives -0.5 where -1 is reached) and its CROWN relaxation
    takes a reciprocal relaxation valid for y > 0 only. Sound where both operands are positive by
    construction (Softmax's exp over a sum of exps), so that one is kept.
    """
    found = []
    for node in bounded.modules():
        if type(node).__name__ != "BoundDiv" or getattr(node, "is_constant_op", True):
            continue
        if all(_positive_by_construction(operand) for operand in node.inputs[:2]):
            continue
        found.append(("Div", f"division by an input-dependent tensor (node {node.name}) is bounded unsoundly "
                             "by auto_LiRPA 0.3 (x_l / y_u for a negative numerator; a reciprocal relaxation "
                             "valid for y > 0 only)"))
    return found


def _is_lirpa_operator(value: object) -> bool:
    return any(cls.__module__.startswith("auto_LiRPA.operators") for cls in type(value).__mro__)


def _failing_operator(error: BaseException) -> str | None:
    """The auto_LiRPA operator whose method is the innermost auto_LiRPA frame of `error`'s traceback
    (or whose evaluation it is: a wrong-arity call fails in the caller), without its Bound prefix."""
    frames = [frame for frame, _ in traceback.walk_tb(error.__traceback__)
              if "auto_LiRPA" in PurePath(frame.f_code.co_filename).parts]
    for frame in reversed(frames):
        owner = frame.f_locals.get("self")
        if not _is_lirpa_operator(owner) and frame.f_code.co_name in ("get_forward_value", "not_implemented_op"):
            owner = frame.f_locals.get("node")
        if _is_lirpa_operator(owner):
            return type(owner).__name__.removeprefix("Bound")
        if not isinstance(error, NotImplementedError):
            return None  # only the innermost frame counts
    return None


def limitation_of(error: BaseException) -> str | None:
    """What auto_LiRPA cannot do, when `error` is one of its known limitations; else None (propagate).

    Known: any NotImplementedError raised in auto_LiRPA (its own word for "not supported"), and the
    operator failures listed in KNOWN_LIMITATIONS. Returns e.g. "MaxPool: CROWN needs ...".
    """
    if not any("auto_LiRPA" in PurePath(frame.f_code.co_filename).parts
               for frame, _ in traceback.walk_tb(error.__traceback__)):
        return None
    operator = _failing_operator(error)
    if isinstance(error, NotImplementedError):
        return f"{operator or 'an operator'}: not implemented"
    for (name, kind), what in KNOWN_LIMITATIONS.items():
        if operator == name and isinstance(error, kind):
            return f"{name}: {what}"
    return None


def fix_maxpool_relaxation(bounded: torch.nn.Module) -> None:
    """α-CROWN optimizes ReLU/S-shaped relaxations only; MaxPool keeps its CROWN relaxation.

    auto_LiRPA 0.3 cannot size MaxPool's α when a bound starts from a multi-dimensional node (its
    `init_opt_parameters` fails); a fixed valid relaxation is still sound.
    """
    bounded.optimizable_activations = [
        node for node in bounded.optimizable_activations if type(node).__name__ != "BoundMaxPool"
    ]


def ensure_parameter(bounded: torch.nn.Module, device: str) -> None:
    """auto_LiRPA reads its float dtype from its first parameter; weights held as buffers give none."""
    if next(bounded.parameters(), None) is None:
        anchor = torch.nn.Parameter(torch.zeros(1, device=device), requires_grad=False)
        bounded.register_parameter("verikit_dtype_anchor", anchor)


def final_node_is_matmul(bounded: torch.nn.Module) -> bool:
    """auto_LiRPA's IBP merges C into a final linear node, which fails for its MatMul node."""
    return type(bounded.final_node()).__name__ == "BoundMatMul"
