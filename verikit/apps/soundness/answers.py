"""The answers file of a benchmark: the truth of each instance, kept apart from instances.csv.

    onnx,vnnlib,truth,basis,witness,notes
    onnx/net0.onnx,vnnlib/net0_prop1.vnnlib,sat,planted_counterexample,witnesses/net0_prop1.counterexample,...

`onnx`/`vnnlib` are relative to the CSV's folder or its parent, `witness` (optional) to the CSV's folder.
Rows are matched to instances by the sha256 of the model and spec bytes (the ground-truth CSVs of
../shared/benchmarks, with their extra columns, read the same way).
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path

from verikit.core import limits, output
from verikit.apps.bench import file_sha256, read_ground_truth, resolve_listed
from verikit.core.errors import SpecError

FIELDS = ("onnx", "vnnlib", "truth", "basis", "witness", "notes")
TRUTHS = ("sat", "unsat", "unknown")


@dataclass(frozen=True)
class Answer:
    """What is known about one instance: `truth` sat/unsat/unknown, why, and a witness file if any."""

    truth: str
    basis: str = ""
    witness: Path | None = None


Key = tuple[str, str]  # (model sha256, spec sha256)


def read_answers(path: str | Path) -> dict[Key, Answer]:
    """{(model sha256, spec sha256): Answer}; the truth column is read by verikit.apps.bench.read_ground_truth."""
    path = Path(path)
    truths = read_ground_truth(path)
    answers = {key: Answer(truth if truth in TRUTHS else "unknown") for key, truth in truths.items()}
    hashes: dict[Path, str] = {}
    text = limits.read_text(path, "csv", SpecError)  # read_ground_truth checked it: size, UTF-8, row widths
    for line, row in enumerate(csv.DictReader(io.StringIO(text, newline="")), start=2):
        onnx, vnnlib = resolve_listed(path.parent, row["onnx"]), resolve_listed(path.parent, row["vnnlib"])
        if onnx is None or vnnlib is None:
            continue
        for file in (onnx, vnnlib):
            hashes.setdefault(file, file_sha256(file))
        key = (hashes[onnx], hashes[vnnlib])
        witness = None
        if (row.get("witness") or "").strip():
            witness = path.parent / row["witness"].strip()
            if not witness.is_file():
                raise SpecError(f"witness file {witness} not found", where=f"{path}:{line}")
        answers[key] = Answer(answers[key].truth, (row.get("basis") or "").strip(), witness)
    return answers


def write_answers(path: Path, rows: list[dict]) -> None:
    """Write rows (dicts with FIELDS keys; missing ones empty) as an answers CSV."""
    handle = io.StringIO(newline="")
    writer = csv.DictWriter(handle, fieldnames=FIELDS, extrasaction="ignore")
    writer.writeheader()
    for row in rows:
        writer.writerow({field: row.get(field, "") for field in FIELDS})
    output.write_text(path, handle.getvalue())
