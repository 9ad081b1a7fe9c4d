"""The versioned JSON report (schema: docs/report-schema.md)."""

from __future__ import annotations

import datetime as _dt
import json
import platform
from importlib import metadata
from pathlib import Path

import numpy as np

import verikit
from verikit.core import output
from verikit.core.result import Certificate, CaseResult, DisjunctBounds, Falsified, Proven, Result, Unknown

SCHEMA = "verikit-report/1"


def _floats(array: np.ndarray) -> list[float]:
    return [float(v) for v in np.asarray(array, dtype=np.float64).reshape(-1)]


def versions() -> dict[str, str]:
    """Versions of the packages a verdict depends on."""
    found = {"verikit": verikit.__version__, "python": platform.python_version()}
    for package in ("torch", "numpy", "onnx", "onnxruntime", "auto-lirpa", "z3-solver"):
        try:
            found[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            found[package] = "absent"
    return found


def _bounds(bounds: tuple[DisjunctBounds, ...]) -> list[dict]:
    return [
        {"disjunct": index, "method": b.method, "refuted": b.refuted, "margin_lower_bounds": _floats(b.lower)}
        for index, b in enumerate(bounds)
    ]


def _certificate(certificate: Certificate) -> dict:
    return {"method": certificate.method, "disjuncts": _bounds(certificate.disjuncts),
            "detail": certificate.detail}


def case_to_dict(case: CaseResult) -> dict:
    outcome = case.outcome
    entry: dict = {"index": case.index, "engine": case.engine, "method": case.method,
                   "seconds": round(case.seconds, 6), "attempts": case.attempts}
    if case.described:
        entry["input"] = case.described
    if isinstance(outcome, Proven):
        entry.update(status="proven", arithmetic=outcome.certificate.arithmetic,
                     certificate=_certificate(outcome.certificate))
    elif isinstance(outcome, Falsified):
        entry.update(status="falsified", disjunct=outcome.counterexample.disjunct)
    elif isinstance(outcome, Unknown):
        entry.update(status="unknown", reason=outcome.reason, timed_out=outcome.timed_out,
                     bounds=_bounds(outcome.bounds))
    return entry


def counterexample_to_dict(result: Result) -> dict | None:
    for case in result.cases:
        if isinstance(case.outcome, Falsified):
            cex = case.outcome.counterexample
            return {"case": case.index, "disjunct": cex.disjunct, "x": _floats(cex.x), "y": _floats(cex.y),
                    "x_dtype": "float32", "box_violation": cex.box_violation,
                    "formula_violation": cex.formula_violation, "tolerance": cex.tolerance,
                    "params": None if cex.params is None else _floats(cex.params),
                    "replayed_with": "onnxruntime " + versions()["onnxruntime"]}
    return None


def to_dict(result: Result) -> dict:
    """The report as plain JSON-ready data."""
    model = {"path": result.model_path, "sha256": result.model_sha256, **result.model_info}
    return {
        "schema": SCHEMA,
        "verdict": result.verdict.value,
        "vnncomp": result.verdict.vnncomp,
        "reason": result.reason,
        "engine": result.engine,
        "method": result.method,
        "seconds": round(result.seconds, 6),
        "model": model,
        "spec": {"path": result.spec_path, "sha256": result.spec_sha256, "cases": len(result.cases),
                 "notes": list(result.spec_notes), "kind": result.spec_kind, "details": result.spec_details},
        "seed": result.seed,
        "settings": result.settings,
        "schedule": result.schedule,
        "error_kind": result.error_kind,
        "cases": [case_to_dict(case) for case in result.cases],
        "counterexample": counterexample_to_dict(result),
        "versions": versions(),
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }


def dumps(result: Result) -> str:
    return json.dumps(to_dict(result), indent=2, default=str)


def write(result: Result, path: str | Path) -> Path:
    return output.write_text(path, dumps(result) + "\n")
