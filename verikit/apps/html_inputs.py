"""Gather what the HTML reports show from the files verikit writes, and render them (verikit.report.html).

`render(path)` takes a bench folder (results.csv, details.jsonl, summary.json), an audit.json or a
gate.json. Audit pictures need the model and the dataset the report names: they are loaded only when
their bytes still match the report's sha256, never trusted by file name.
"""

from __future__ import annotations

import csv
import hashlib
import json
from pathlib import Path
from typing import Sequence

import numpy as np

from verikit.apps.bench import DETAILS, read_details, read_results
from verikit.core.errors import DataError
from verikit.report import html

MAX_PICTURES = 12


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def decided_times(path: Path) -> list[float]:
    """Seconds (prepare + run) of every sat/unsat row of a VNN-COMP results CSV."""
    times = []
    with Path(path).open(newline="") as handle:
        for record in csv.reader(handle):
            if len(record) >= 6 and record[4].strip().lower() in ("sat", "unsat", "holds", "violated"):
                try:
                    times.append(float(record[3]) + float(record[5]))
                except ValueError:
                    continue
    return times


def tool_name(path: Path) -> str:
    path = Path(path)
    return path.parent.name if path.stem in ("results", "result") else path.stem


def bench_html(out_dir: Path, compare: Sequence[Path] = (), ground_truth: Path | None = None) -> str:
    """The bench report of an --out folder; `ground_truth` (a CSV, matched by content hash) adds a truth column."""
    from verikit.apps.bench import file_sha256, read_ground_truth

    out_dir = Path(out_dir)
    results = read_results(out_dir / "results.csv")
    if not results:
        raise DataError("no results.csv rows to report", where=str(out_dir))
    details = read_details(out_dir)
    summary_path = out_dir / "summary.json"
    summary = json.loads(summary_path.read_text()) if summary_path.is_file() else {}
    wrong = {(w["onnx"], w["vnnlib"]): w["truth"] for w in summary.get("wrong", [])}
    if not summary:
        summary = {"counts": {}, "total_s": 0.0}
        for row in results.values():
            summary["counts"][row.result] = summary["counts"].get(row.result, 0) + 1
            summary["total_s"] += row.prepare_s + row.run_s
    truths = read_ground_truth(ground_truth) if ground_truth else {}
    hashes: dict[str, str] = {}

    def truth(onnx: str, vnnlib: str) -> str:
        if not truths or not (Path(onnx).is_file() and Path(vnnlib).is_file()):
            return ""
        for file in (onnx, vnnlib):
            hashes.setdefault(file, file_sha256(Path(file)))
        return truths.get((hashes[onnx], hashes[vnnlib]), "")

    rows = []
    for key, row in results.items():
        extra = details.get(key, {})
        rows.append({"onnx": row.onnx, "vnnlib": row.vnnlib, "result": row.result,
                     "seconds": row.prepare_s + row.run_s, "engine": extra.get("engine", ""),
                     "message": extra.get("message", ""), "truth": wrong.get(key) or truth(*key),
                     "wrong": key in wrong})
    others = {tool_name(path): decided_times(path) for path in compare}
    return html.bench_page(f"verikit bench: {out_dir.name}", summary, rows, others)


def _image_shape(n_inputs: int, input_shape: Sequence[int]) -> tuple[int, ...] | None:
    """(H, W) or (3, H, W) when the model's input looks like an image, else None."""
    dims = [d for d in input_shape if isinstance(d, int) and d > 1]  # symbolic (batch) and unit axes dropped
    if len(dims) == 2:
        return tuple(dims)
    if len(dims) == 3 and dims[0] == 3:
        return tuple(dims)
    side = int(round(np.sqrt(n_inputs)))
    return (side, side) if side * side == n_inputs and side >= 4 else None


def audit_pictures(report: dict, witnesses: list[tuple[int, float, np.ndarray]], network=None,
                   dataset=None) -> list[dict]:
    """Original/counterexample pairs for up to MAX_PICTURES witnesses (model-unit inputs), with predictions."""
    from verikit.apps.data import Normalization, load_dataset
    from verikit.onnx.load import load_network

    if not witnesses:
        return []
    if network is None:
        model = Path(report["model"]["path"])
        if not model.is_file() or _sha256(model) != report["model"]["sha256"]:
            return []
        network = load_network(model)
    if dataset is None:
        data = Path(report["data"]["path"])
        if not data.is_file():
            return []
        dataset = load_dataset(str(data))
        if dataset.sha256 != report["data"]["sha256"]:
            return []
    shape = _image_shape(network.n_inputs, tuple(network.input_shape))
    if shape is None:
        return []
    mean, std, _, _ = Normalization(**report["settings"]["normalization"]).vectors(network.n_inputs,
                                                                                 network.input_shape)
    chosen = witnesses[:MAX_PICTURES]
    raw = np.stack([dataset.x[index] for index, _, _ in chosen])
    adversarial = np.stack([x.astype(np.float64) * std + mean for _, _, x in chosen])
    before = network.replay(((raw - mean) / std).astype(np.float32)).argmax(axis=1)
    after = network.replay(np.stack([x for _, _, x in chosen]).astype(np.float32)).argmax(axis=1)
    return [{"index": index, "eps": eps, "label": int(dataset.y[index]), "original": raw[k].reshape(shape),
             "witness": adversarial[k].reshape(shape), "original_prediction": int(before[k]),
             "witness_prediction": int(after[k])} for k, (index, eps, _) in enumerate(chosen)]


def audit_html(report: dict, witnesses: list[tuple[int, float, np.ndarray]], network=None, dataset=None) -> str:
    return html.audit_page(report, audit_pictures(report, witnesses, network, dataset))


def nap_html(report: dict, network=None) -> str:
    """The `nap verify` report as HTML, counterexamples drawn when the inputs look like images."""
    pictures = []
    n_inputs = len(next((e["counterexample"]["x"] for e in report["entries"] if "counterexample" in e), []))
    input_shape = tuple(network.input_shape) if network is not None else ()
    shape = _image_shape(n_inputs, input_shape) if n_inputs else None
    for e in report["entries"]:
        if "counterexample" in e and shape is not None and len(pictures) < MAX_PICTURES:
            pictures.append({"title": f"{e['question']} {e['labels']} {e['region']}",
                             "witness": np.asarray(e["counterexample"]["x"]).reshape(shape),
                             "prediction": e["counterexample"]["prediction"]})
    return html.nap_page(report, pictures)


def _witnesses_file(path: Path) -> list[tuple[int, float, np.ndarray]]:
    if not path.is_file():
        return []
    with np.load(path) as data:
        return [(int(i), float(e), x) for i, e, x in zip(data["index"], data["eps"], data["x"])]


def render(path: str | Path, compare: Sequence[Path] = (), ground_truth: Path | None = None) -> str:
    """The HTML report of a bench folder (or its results.csv / summary.json), an audit.json or a gate.json."""
    path = Path(path)
    if path.is_dir():
        return bench_html(path, compare, ground_truth)
    if not path.is_file():
        raise DataError("results not found", where=str(path))
    if path.suffix == ".csv" or path.name in ("summary.json", DETAILS):
        return bench_html(path.parent, compare, ground_truth)
    try:
        report = json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise DataError(f"not a verikit report: {error}", where=str(path)) from None
    schema = report.get("schema") if isinstance(report, dict) else None
    if schema == "verikit-audit/1":
        return audit_html(report, _witnesses_file(path.with_name("witnesses.npz")))
    if schema == "verikit-gate/1":
        return html.gate_page(report)
    if schema == "verikit-nap-verify/1":
        return nap_html(report)
    if isinstance(report, dict) and report.get("format") == "verikit-soundness-run/1":
        return html.soundness_page(report)
    raise DataError(f"not a bench folder, audit.json, gate.json or soundness.json (schema {schema!r})",
                    where=str(path))
