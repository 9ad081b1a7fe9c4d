"""Audit reports: JSON (schema "verikit-audit/1", docs/audit.md), a per-sample CSV, witnesses, a curve PNG."""

from __future__ import annotations

import csv
import datetime as _dt
import io
import json
import math
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from verikit.core import output
from verikit.report.json import versions

if TYPE_CHECKING:  # renderers only read these results; they do not depend on the audit
    from verikit.apps.audit import AuditResult, EpsResult

SCHEMA = "verikit-audit/1"
CSV_FIELDS = ("index", "label", "prediction", "clean_correct", "eps", "status", "certified", "falsified",
              "certified_margin", "attack_margin")


def _number(value: float) -> float | None:
    """JSON has no NaN or infinity: a step that did not run (or found no finite bound) is null."""
    value = float(value)
    return value if math.isfinite(value) else None


def summary(outcome: EpsResult) -> dict:
    """Accuracies and counts at one ε."""
    statuses = [outcome.status(i) for i in range(outcome.clean_correct.size)]
    return {
        "eps": outcome.eps,
        "clean_accuracy": outcome.clean_accuracy,
        "empirical_robust_accuracy": outcome.empirical_robust_accuracy,
        "certified_robust_accuracy": outcome.certified_robust_accuracy,
        "counts": {name: statuses.count(name) for name in ("certified", "falsified", "unknown", "misclassified")},
        "seconds": {k: round(v, 6) for k, v in outcome.seconds.items()},
        "timed_out": outcome.timed_out,
        **({} if outcome.certified_by_lipschitz is None else
           {"certified_by_lipschitz_accuracy": float(np.mean(outcome.certified_by_lipschitz))}),
        **({} if outcome.certified_by_ball is None else
           {"certified_by_ball_accuracy": float(np.mean(outcome.certified_by_ball))}),
    }


def to_dict(result: AuditResult) -> dict:
    """The audit as JSON-ready data (per-sample table included)."""
    samples = []
    for i in range(result.samples):
        samples.append({
            "index": i, "label": int(result.labels[i]), "prediction": int(result.predictions[i]),
            "clean_margin": _number(result.clean_margin[i]),
            "results": [{"eps": o.eps, "status": o.status(i), "certified_margin": _number(o.certified_margin[i]),
                         "attack_margin": _number(o.attack_margin[i])} for o in result.per_eps],
        })  # fmt: skip
    return {
        "schema": SCHEMA,
        "model": {"path": result.model_path, "sha256": result.model_sha256},
        "data": {"path": result.data_path, "sha256": result.data_sha256, "samples": result.samples},
        "settings": result.settings.as_dict(),
        "seconds": round(result.seconds, 6),
        "timed_out": result.timed_out,
        "notes": list(result.notes),
        "clean_accuracy": result.clean_accuracy,
        "results": [summary(o) for o in result.per_eps],
        "samples": samples,
        "versions": versions(),
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }


def write_json(result: AuditResult, path: str | Path) -> Path:
    return output.write_text(path, json.dumps(to_dict(result), indent=2) + "\n")


def write_csv(result: AuditResult, path: str | Path) -> Path:
    """One row per (sample, ε): columns CSV_FIELDS; empty margins where that step did not run."""
    handle = io.StringIO(newline="")
    writer = csv.writer(handle, lineterminator="\n")
    writer.writerow(CSV_FIELDS)
    for outcome in result.per_eps:
        for i in range(result.samples):
            margins = [outcome.certified_margin[i], outcome.attack_margin[i]]
            writer.writerow([i, int(result.labels[i]), int(result.predictions[i]),
                             int(outcome.clean_correct[i]), f"{outcome.eps:g}", outcome.status(i),
                             int(outcome.certified[i]), int(outcome.broken[i]),
                             *(f"{m:.6g}" if math.isfinite(m) else "" for m in margins)])
    return output.write_text(path, handle.getvalue())


def write_witnesses(result: AuditResult, path: str | Path) -> Path | None:
    """Replayed counterexamples as .npz: `index` (W,), `eps` (W,), `x` (W, n_inputs) float32 model inputs."""
    rows = [(i, o.eps, x) for o in result.per_eps for i, x in sorted(o.witnesses.items())]
    if not rows:
        return None
    with output.atomic_writer(path) as handle:
        np.savez_compressed(handle, index=np.array([r[0] for r in rows], dtype=np.int64),
                            eps=np.array([r[1] for r in rows]), x=np.stack([r[2] for r in rows]).astype(np.float32))
    return Path(path)


def plot_curve(result: AuditResult, path: str | Path) -> Path:
    """Certified and empirical robust accuracy against ε (clean accuracy dashed), as a PNG."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    order = np.argsort([o.eps for o in result.per_eps])
    eps = [result.per_eps[i].eps for i in order]
    figure = Figure(figsize=(6, 4), dpi=120)
    axes = figure.add_subplot()
    axes.plot(eps, [result.per_eps[i].empirical_robust_accuracy for i in order], "o-",
              label="empirical robust (upper bound, PGD)")
    axes.plot(eps, [result.per_eps[i].certified_robust_accuracy for i in order], "s-",
              label=f"certified robust (lower bound, {result.settings.method})")
    if all(o.certified_by_lipschitz is not None for o in result.per_eps):
        axes.plot(eps, [float(np.mean(result.per_eps[i].certified_by_lipschitz)) for i in order], "^:",
                  label=f"certified by the Lipschitz bound ({result.settings.lipschitz})")
        axes.plot(eps, [float(np.mean(np.nan_to_num(result.per_eps[i].certified_margin, nan=-np.inf) > 0))
                        for i in order], "v:", label=f"certified by {result.settings.method} on the ball's box")
    if all(o.certified_by_ball is not None for o in result.per_eps):
        axes.plot(eps, [float(np.mean(result.per_eps[i].certified_by_ball)) for i in order], "d:",
                  label="certified by CROWN on the ball (rigorous float64)")
    axes.axhline(result.clean_accuracy, linestyle="--", color="gray", label="clean")
    axes.fill_between(eps, [result.per_eps[i].certified_robust_accuracy for i in order],
                      [result.per_eps[i].empirical_robust_accuracy for i in order], alpha=0.15,
                      label="true robust accuracy lies here")
    norm = "L∞" if result.settings.norm == "inf" else "L2"
    axes.set_xlabel(f"ε ({norm}, raw input units)")
    axes.set_ylabel("accuracy" if result.settings.top_k == 1 else f"top-{result.settings.top_k} accuracy")
    axes.set_ylim(-0.02, 1.02)
    axes.set_title(f"{Path(result.model_path).name}: {result.samples} samples")
    axes.grid(alpha=0.3)
    axes.legend(fontsize="small")
    with output.atomic_writer(path) as handle:
        figure.savefig(handle, format="png", bbox_inches="tight")
    return Path(path)


def write_all(result: AuditResult, out: str | Path) -> dict[str, Path]:
    """audit.json, samples.csv, witnesses.npz (when any) and, for several ε, curve.png under `out`."""
    out = Path(out)
    written = {"json": write_json(result, out / "audit.json"), "csv": write_csv(result, out / "samples.csv")}
    witnesses = write_witnesses(result, out / "witnesses.npz")
    if witnesses is not None:
        written["witnesses"] = witnesses
    if len(result.per_eps) > 1:
        written["curve"] = plot_curve(result, out / "curve.png")
    return written
