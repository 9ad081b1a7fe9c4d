"""`verikit audit MODEL --data D --perturbation KIND:MAGNITUDES`: accuracy under semantic manipulations.

Per manipulation and magnitude, every clean-correct sample becomes a `verikit-perturbation/1` property
(verikit/spec/perturbation.py) decided by the portfolio (`portfolio.runner.verify`) within a per-sample
timeout: certified = verified for every member / every theta; broken = falsified, with the manipulated
image replayed through onnxruntime. Clean, empirical (clean-correct and not broken: an upper bound) and
certified accuracy (a lower bound) follow, `certified <= empirical <= clean` checked as in apps/audit.py.

KIND:MAGNITUDES, magnitudes comma-separated (several give a curve):
brightness:B (b in [-B, B]), contrast:C (c in [1-C, 1+C]), rotation:D (degrees in [-D, D], one theta
split per degree), translation:S (every shift up to S pixels), occlusion:K (K x K patches of 0), scratch:L
(segments of L pixels).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from verikit.apps.audit import AuditInvariantError
from verikit.apps.data import Dataset, Normalization
from verikit.core.errors import DataError, UsageError
from verikit.core.network import Network
from verikit.core.result import Budget, Falsified, Verdict

SCHEMA = "verikit-perturbation-audit/1"
KINDS = ("brightness", "contrast", "rotation", "translation", "occlusion", "scratch")
MAX_PICTURES = 12

Progress = Callable[[str, int, int], None]


@dataclass(frozen=True)
class Perturbation:
    """One manipulation at one magnitude, as the audit and the gate name it (e.g. rotation:15)."""

    kind: str
    magnitude: float

    @property
    def label(self) -> str:
        return f"{self.kind}:{self.magnitude:g}"

    def entry(self) -> dict:
        """The manipulation object of a verikit-perturbation/1 spec."""
        size = self.magnitude
        if self.kind == "brightness":
            return {"kind": "brightness", "range": [-size, size]}
        if self.kind == "contrast":
            return {"kind": "contrast", "range": [max(0.0, 1.0 - size), 1.0 + size]}
        if self.kind == "rotation":
            return {"kind": "rotation", "range": [-size, size], "splits": max(1, math.ceil(2 * size))}
        if self.kind == "translation":
            return {"kind": "translation", "shift": int(size)}
        if self.kind == "occlusion":
            return {"kind": "occlusion", "size": int(size)}
        return {"kind": "scratch", "length": size}


def parse_perturbations(texts) -> tuple[Perturbation, ...]:
    """KIND:M1,M2,... strings -> Perturbations; UsageError naming the bad text."""
    found = []
    for text in texts:
        kind, _, values = str(text).partition(":")
        kind = kind.strip().lower()
        if kind not in KINDS or not values:
            raise UsageError(f"--perturbation {text!r}: expected KIND:MAGNITUDE[,MAGNITUDE...] with KIND one of "
                             f"{', '.join(KINDS)} (e.g. rotation:5,15)")
        for value in values.split(","):
            try:
                magnitude = float(value)
            except ValueError:
                raise UsageError(f"--perturbation {text!r}: {value!r} is not a number") from None
            integral = kind in ("translation", "occlusion")
            if not (math.isfinite(magnitude) and magnitude > 0) or (integral and magnitude != int(magnitude)):
                raise UsageError(f"--perturbation {text!r}: {value!r} must be a "
                                 f"{'positive integer' if integral else 'positive number'}")
            found.append(Perturbation(kind, magnitude))
    return tuple(found)


@dataclass(frozen=True)
class PerturbationAuditSettings:
    perturbations: tuple[Perturbation, ...]
    normalization: Normalization = Normalization(clip_min=0.0, clip_max=1.0)
    image_shape: tuple[int, ...] | None = None  # (H, W) or (C, H, W); default from the model's input
    sample_timeout: float = 10.0  # seconds per sample and perturbation
    timeout: float | None = None  # the whole audit
    seed: int = 0

    def as_dict(self) -> dict:
        return {"perturbations": [p.label for p in self.perturbations], "normalization":
                self.normalization.as_dict(), "image_shape": list(self.image_shape or ()),
                "sample_timeout_s": self.sample_timeout, "timeout_s": self.timeout, "seed": self.seed}


@dataclass
class PerturbationResult:
    """One perturbation over the dataset: per-sample status and the broken samples' images (raw)."""

    perturbation: Perturbation
    status: list[str]  # misclassified | certified | falsified | unknown | timeout
    seconds: list[float]
    witnesses: dict[int, dict] = field(default_factory=dict)  # sample -> {image, member, prediction}

    def count(self, status: str) -> int:
        return sum(s == status for s in self.status)

    def as_dict(self) -> dict:
        n = max(1, len(self.status))
        clean = sum(s != "misclassified" for s in self.status)
        return {"perturbation": self.perturbation.label, "kind": self.perturbation.kind,
                "magnitude": self.perturbation.magnitude, "clean_accuracy": clean / n,
                "empirical_accuracy": (clean - self.count("falsified")) / n,
                "certified_accuracy": self.count("certified") / n,
                "counts": {s: self.count(s) for s in ("certified", "falsified", "unknown", "timeout",
                                                      "misclassified")},
                "seconds": round(sum(self.seconds), 4),
                "seconds_per_sample": round(sum(self.seconds) / n, 4),
                "broken": [{"index": i, "member": w["member"], "prediction": w["prediction"]}
                           for i, w in sorted(self.witnesses.items())]}


def image_shape_of(network: Network, given: tuple[int, ...] | None) -> tuple[int, ...]:
    """(C, H, W) of the model's input: `given`, else its shape without unit axes, else a square."""
    n = network.n_inputs
    if given:
        shape = tuple(given)
    else:
        dims = [d for d in network.input_shape if isinstance(d, int) and d > 1]
        side = int(round(math.sqrt(n)))
        shape = tuple(dims) if len(dims) in (2, 3) else ((side, side) if side * side == n else ())
    if not shape or math.prod(shape) != n:
        raise UsageError(f"the model's {n} inputs are not an image of a known shape; give --image-shape H,W")
    return shape if len(shape) == 3 else (1,) + tuple(shape)


def _scalar_clip(normalization: Normalization) -> tuple[float, float]:
    values = []
    for value, default in ((normalization.clip_min, 0.0), (normalization.clip_max, 1.0)):
        array = np.asarray(default if value is None else value, dtype=np.float64).reshape(-1)
        if np.ptp(array) > 0:
            raise UsageError("a perturbation audit needs one clip range for every pixel (--clip-min/--clip-max)")
        values.append(float(array[0]))
    return values[0], values[1]


def perturbation_audit(network: Network, dataset: Dataset, settings: PerturbationAuditSettings,
                       progress: Progress | None = None) -> dict:
    """The audit report (schema verikit-perturbation-audit/1) with witness images under "_pictures"."""
    from verikit.portfolio.options import Options
    from verikit.portfolio.runner import verify
    from verikit.spec.perturbation import perturbation_property

    started = time.monotonic()
    if len(dataset) == 0:
        raise DataError("the dataset has no samples", where=dataset.source or None)
    dataset.check_fits(network.n_inputs, network.n_outputs)
    shape = image_shape_of(network, settings.image_shape)
    lo, hi = _scalar_clip(settings.normalization)
    mean, std, _, _ = settings.normalization.vectors(network.n_inputs, network.input_shape)
    if ((dataset.x < lo) | (dataset.x > hi)).any():
        raise DataError(f"a sample lies outside the clip range [{lo:g}, {hi:g}]", where=dataset.source or None)
    inputs = ((dataset.x - mean) / std).astype(np.float32)
    predictions = network.replay(inputs).argmax(axis=1)
    budget = Budget.seconds(settings.timeout) if settings.timeout is not None else Budget(float("inf"))
    results = []
    for perturbation in settings.perturbations:
        outcome = PerturbationResult(perturbation, [], [])
        for index in range(len(dataset)):
            label = int(dataset.y[index])
            if predictions[index] != label:
                outcome.status.append("misclassified")
                outcome.seconds.append(0.0)
                continue
            if budget.expired():
                outcome.status.append("timeout")
                outcome.seconds.append(0.0)
                continue
            prop = perturbation_property(dataset.x[index].reshape(shape), label, [perturbation.entry()],
                                         num_classes=network.n_outputs, clip=(lo, hi), mean=mean.reshape(shape),
                                         std=std.reshape(shape), source=f"{dataset.source}[{index}]")
            timeout = min(settings.sample_timeout, budget.remaining()) if settings.timeout else settings.sample_timeout
            result = verify(network, prop, Options(timeout=max(0.0, timeout), seed=settings.seed))
            outcome.seconds.append(result.seconds)
            status = {Verdict.VERIFIED: "certified", Verdict.FALSIFIED: "falsified",
                      Verdict.TIMEOUT: "timeout"}.get(result.verdict, "unknown")
            outcome.status.append(status)
            if status == "falsified":
                case = next(c for c in result.cases if isinstance(c.outcome, Falsified))
                found = case.outcome.counterexample
                member = dict(prop.details["cases"][case.index])
                if found.params is not None:
                    member["params"] = found.params.tolist()
                outcome.witnesses[index] = {
                    "image": (found.x.astype(np.float64) * std + mean).reshape(shape),
                    "member": member, "prediction": int(np.argmax(found.y))}
            if progress:
                progress(perturbation.label, index + 1, len(dataset))
        results.append(outcome)
    report = {"schema": SCHEMA, "model": {"path": network.source, "sha256": network.sha256},
              "data": {"path": dataset.source, "sha256": dataset.sha256, "samples": len(dataset)},
              "clean_accuracy": float(np.mean(predictions == dataset.y)),
              "settings": settings.as_dict(), "results": [r.as_dict() for r in results],
              "seconds": round(time.monotonic() - started, 4)}
    _check_invariant(report)
    per_perturbation = [[{"index": i, "perturbation": r.perturbation.label, "label": int(dataset.y[i]),
                          "original": dataset.x[i].reshape(shape), "witness": w["image"],
                          "original_prediction": int(predictions[i]), "witness_prediction": w["prediction"],
                          "member": w["member"]} for i, w in sorted(r.witnesses.items())] for r in results]
    longest = max((len(p) for p in per_perturbation), default=0)  # taken in turn, so every manipulation shows
    report["_pictures"] = [p[k] for k in range(longest) for p in per_perturbation if k < len(p)][:MAX_PICTURES]
    return report


def _check_invariant(report: dict) -> None:
    for row in report["results"]:
        if not row["certified_accuracy"] <= row["empirical_accuracy"] <= row["clean_accuracy"]:
            raise AuditInvariantError(f"{row['perturbation']}: certified <= empirical <= clean does not hold: a "
                                      "soundness bug, please report it")
