"""One entry point for spec files: detect the format, read it, and check it fits the network.

Formats: a JSON object is a `verikit-perturbation/1` spec when its "format" says so (see
`verikit.spec.perturbation`), else a `verikit-robustness/1` spec (see `verikit.spec.robustness`); text whose first
command is `vnnlib-version` or `declare-network` is VNN-LIB 2.0 (see `verikit.spec.vnnlib2`, needs the
optional `vnnlib` package); anything else is read as VNN-LIB 1.0 text. Plain or gzip-compressed.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from verikit.core.errors import SpecError
from verikit.spec.formula import MAX_TERMS
from verikit.core.property import Property
from verikit.spec.perturbation import FORMAT as PERTURBATION_FORMAT
from verikit.spec.perturbation import read_perturbation_spec
from verikit.spec.robustness import read_robustness_spec
from verikit.spec.vnnlib import parse_vnnlib, read_spec_text
from verikit.spec.vnnlib2 import looks_like_vnnlib2


def load_spec(
    path: str | Path,
    *,
    n_inputs: int | None = None,
    n_outputs: int | None = None,
    model_name: str = "the model",
    max_terms: int = MAX_TERMS,
    network=None,
) -> Property:
    """Read the spec at `path` in whatever supported format it is; check its sizes when given.

    `network` (a `Network`), when given, is checked against a VNN-LIB 2.0 query's declaration (ONNX names,
    element types, sizes). A 2.0 query verikit cannot answer raises `UnsupportedQuery` (unknown, exit 5).
    """
    text, digest = read_spec_text(path)
    if text.lstrip().startswith("{"):
        prop = read_perturbation_spec(path) if _is_perturbation(text) else read_robustness_spec(path)
    elif looks_like_vnnlib2(text):
        from verikit.spec.vnnlib2 import parse_vnnlib2

        query = parse_vnnlib2(text, source=str(path), sha256=digest, max_terms=max_terms)
        if network is not None:
            query.check_network(network)
        prop = query.to_property()
    else:
        prop = parse_vnnlib(text, source=str(path), max_terms=max_terms, sha256=digest)
    check_sizes(prop, n_inputs, n_outputs, model_name=model_name)
    if n_inputs is not None:  # read for a model, whose inputs are float32
        check_float32(prop)
    return prop


FLOAT32_MAX = float(np.finfo(np.float32).max)


def check_float32(prop: Property) -> None:
    """SpecError when an input bound lies beyond the float32 range that ONNX models consume: such a box is no
    region of the model's inputs (and sampling it overflows)."""
    for number, case in enumerate(prop.cases):
        beyond = np.flatnonzero((np.abs(case.box.lower) > FLOAT32_MAX) | (np.abs(case.box.upper) > FLOAT32_MAX))
        if beyond.size:
            i = int(beyond[0])
            raise SpecError(f"case {number}: input {i} (flat) has bounds [{float(case.box.lower[i])!r}, "
                            f"{float(case.box.upper[i])!r}] beyond the float32 range (+-{FLOAT32_MAX:.4g}) that the "
                            "model consumes", where=prop.source or None)


def _is_perturbation(text: str) -> bool:
    """The JSON object's "format" names the perturbation spec (a cheap look before the strict read)."""
    from verikit.core import limits

    try:
        decoded = limits.load_json(text, "spec", SpecError, "spec")
    except SpecError:
        return False  # the robustness reader reports the JSON error
    return isinstance(decoded, dict) and decoded.get("format") == PERTURBATION_FORMAT


def spec_format(path: str | Path) -> str:
    """'perturbation-json', 'robustness-json', 'vnnlib2' or 'vnnlib' — the format `load_spec` would read
    `path` as."""
    text, _ = read_spec_text(path)
    if text.lstrip().startswith("{"):
        return "perturbation-json" if _is_perturbation(text) else "robustness-json"
    return "vnnlib2" if looks_like_vnnlib2(text) else "vnnlib"


def check_sizes(
    prop: Property, n_inputs: int | None, n_outputs: int | None, *, model_name: str = "the model"
) -> None:
    """SpecError when the spec's input/output counts differ from the network's (None skips a check)."""
    problems = []
    if n_inputs is not None and prop.n_inputs != n_inputs:
        problems.append(f"spec declares {prop.n_inputs} inputs but {model_name} has {n_inputs}")
    if n_outputs is not None and prop.n_outputs != n_outputs:
        problems.append(f"spec declares {prop.n_outputs} outputs but {model_name} has {n_outputs}")
    if problems:
        raise SpecError(
            "; ".join(problems) + " (inputs and outputs are counted as flat elements); is this the right spec "
            "for this model?",
            where=prop.source or None,
        )
