"""Run VNN-COMP style instance lists, write results CSV rows and witnesses, score against ground truth.

Instances CSV rows: `onnx,vnnlib,timeout_s` relative to the CSV's folder (the VNN-COMP layout).
Ground truth CSV: a header with `onnx`, `vnnlib` and `truth` (sat/unsat/unknown) columns; rows are
matched to instances by the sha256 of the model and spec bytes, never by file name.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import statistics
import tempfile
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Callable, Iterable

from verikit.apps.executors import Executor, Failed, FileRef, Task, make_executor
from verikit.core import limits, output
from verikit.core.errors import SpecError, VerikitError
from verikit.portfolio.options import Options

RESULT_FIELDS = ("category", "onnx", "vnnlib", "prepare_s", "result", "run_s")
SCORE = {"correct": 10, "wrong": -150}


@dataclass(frozen=True)
class Instance:
    category: str
    onnx: Path
    vnnlib: Path
    timeout: float

    @property
    def key(self) -> tuple[str, str]:
        return (str(self.onnx), str(self.vnnlib))


@dataclass
class Row:
    """One results-file row (VNN-COMP results.csv columns) plus where its witness went."""

    category: str
    onnx: str
    vnnlib: str
    prepare_s: float
    result: str
    run_s: float
    witness: str = ""
    message: str = ""
    engine: str = ""  # the engine that decided (empty when undecided)


@dataclass
class Summary:
    counts: dict[str, int] = field(default_factory=dict)
    correct: int = 0
    wrong: list[dict] = field(default_factory=list)
    unchecked: int = 0
    score: int = 0
    total_s: float = 0.0
    median_s: float = 0.0
    by_category: dict[str, dict[str, int]] = field(default_factory=dict)


def file_sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def read_instances(source: str | Path) -> list[Instance]:
    """Instances from a CSV file, or from every `*instances*.csv` under a folder."""
    source = Path(source)
    if source.is_dir():
        files = sorted(source.rglob("*instances*.csv"))
        if not files:
            raise SpecError(f"no *instances*.csv file under {source}")
        return [instance for path in files for instance in read_instances(path)]
    instances = []
    for line_number, row in _csv_rows(source, "instances"):
        if not row or row[0].strip().startswith("#"):
            continue
        if len(row) < 3:
            raise SpecError("expected 'onnx,vnnlib,timeout' columns", where=f"{source}:{line_number}")
        try:
            timeout = float(row[2])
        except ValueError:
            raise SpecError(f"timeout {row[2][:40]!r} is not a number", where=f"{source}:{line_number}") from None
        if not (math.isfinite(timeout) and timeout > 0):
            raise SpecError(f"timeout {row[2][:40]!r} must be a finite number of seconds > 0",
                            where=f"{source}:{line_number}")
        instances.append(Instance(source.parent.name, source.parent / row[0].strip(),
                                  source.parent / row[1].strip(), timeout))
    return instances


def _csv_rows(path: Path, what: str) -> list[tuple[int, list[str]]]:
    """(line number, cells) of a CSV file read through verikit.core.limits (size, UTF-8, regular file)."""
    text = limits.read_text(path, "csv", SpecError)
    try:
        return list(enumerate(csv.reader(io.StringIO(text, newline="")), start=1))
    except csv.Error as error:
        raise SpecError(f"not a readable {what} CSV: {error}", where=str(path)) from None


def resolve_listed(base: Path, relative: str) -> Path | None:
    """A path listed in a CSV at `base`: relative to its folder, or to the folder above (VNN-COMP layout)."""
    for folder in (base, base.parent):
        candidate = folder / relative
        if candidate.is_file():
            return candidate
    return None


def read_ground_truth(path: str | Path) -> dict[tuple[str, str], str]:
    """{(model sha256, spec sha256): truth} from a ground-truth CSV (paths relative to it or its parent)."""
    path = Path(path)
    truths: dict[tuple[str, str], str] = {}
    hashes: dict[Path, str] = {}
    text = limits.read_text(path, "csv", SpecError)
    try:
        reader = csv.DictReader(io.StringIO(text, newline=""))
        missing = {"onnx", "vnnlib", "truth"} - set(reader.fieldnames or ())
        if missing:
            raise SpecError(f"ground-truth CSV lacks column(s) {sorted(missing)}", where=str(path))
        for row in reader:
            if None in (row["onnx"], row["vnnlib"], row["truth"]):
                raise SpecError("a row has fewer cells than the header", where=f"{path}:{reader.line_num}")
            onnx, vnnlib = resolve_listed(path.parent, row["onnx"]), resolve_listed(path.parent, row["vnnlib"])
            if onnx is None or vnnlib is None:
                continue
            for file in (onnx, vnnlib):
                hashes.setdefault(file, file_sha256(file))
            truths[(hashes[onnx], hashes[vnnlib])] = row["truth"].strip().lower()
    except csv.Error as error:
        raise SpecError(f"not a readable ground-truth CSV: {error}", where=str(path)) from None
    return truths


def read_results(path: Path) -> dict[tuple[str, str], Row]:
    """Rows already in a results file, keyed by (onnx, vnnlib) as written."""
    if not path.exists():
        return {}
    rows = {}
    for _line_number, record in _csv_rows(path, "results"):
        if len(record) >= 6 and record[0] != "category":
            try:
                row = Row(record[0], record[1], record[2], float(record[3]), record[4], float(record[5]))
            except ValueError:
                continue  # a line cut short by an interruption: its instance runs again
            rows[(row.onnx, row.vnnlib)] = row
    return rows


def run_row(instance: Instance, witness_dir: Path, options: Options, timeout_scale: float = 1.0,
            started: float | None = None) -> Row:
    """Verify one instance through the one run path (verikit.run) and record it; never raises."""
    from verikit.report import vnncomp
    from verikit.run import run_instance

    options = replace(options, timeout=instance.timeout * timeout_scale)
    started = time.monotonic() if started is None else started
    result = run_instance(instance.onnx, instance.vnnlib, options, started=started)
    elapsed = time.monotonic() - started
    if result.verdict.value == "error":
        return Row(instance.category, str(instance.onnx), str(instance.vnnlib), elapsed, "error", 0.0,
                   message=result.reason)
    row = Row(instance.category, str(instance.onnx), str(instance.vnnlib), elapsed - result.seconds,
              result.verdict.vnncomp, result.seconds, message=result.reason, engine=result.engine or "")
    if result.counterexample is not None:
        witness = witness_dir / f"{instance.category}_{instance.onnx.stem}_{instance.vnnlib.stem}.counterexample"
        vnncomp.write(result, witness)
        row.witness = str(witness)
    return row


DETAILS = "details.jsonl"  # beside results.csv: what its VNN-COMP columns cannot hold (engine, message, witness)


def _append(path: Path, row: Row) -> None:
    """One results.csv line (and its details line), each written whole, so an interrupted run loses no row."""
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    if not path.is_file() or path.stat().st_size == 0:
        writer.writerow(RESULT_FIELDS)
    writer.writerow([row.category, row.onnx, row.vnnlib, f"{row.prepare_s:.4f}", row.result, f"{row.run_s:.4f}"])
    for target, line in ((path, text.getvalue()), (path.with_name(DETAILS), json.dumps(asdict(row)) + "\n")):
        data = line.encode()
        with target.open("ab+") as handle:
            size = handle.seek(0, 2)
            if size:
                handle.seek(size - 1)
                if handle.read(1) != b"\n":
                    data = b"\n" + data  # the last run died mid-line: never glue a row onto its remains
            handle.write(data)


def read_details(out_dir: Path) -> dict[tuple[str, str], dict]:
    """{(onnx, vnnlib): row as a dict} from details.jsonl (the last line per instance wins)."""
    details = {}
    path = Path(out_dir) / DETAILS
    if path.is_file():
        for line in path.read_text().splitlines():
            try:
                record = json.loads(line)
                details[(record["onnx"], record["vnnlib"])] = record
            except (ValueError, KeyError, TypeError):
                continue  # a line cut short by an interruption; its instance reruns
    return details


def run(
    instances: list[Instance],
    out_dir: Path,
    *,
    options: Options,
    timeout_scale: float = 1.0,
    jobs: int = 1,
    on_row: Callable[[Row], None] = lambda row: None,
    executor: Executor | None = None,
    threads: int | None = None,
) -> list[Row]:
    """Run every instance not already in `out_dir/results.csv`; returns all rows (old and new).

    Instances run on `executor` (default: the local pool of `jobs` workers), each with a hard limit of its
    timeout (plus grace) and `threads` torch threads; rows are appended as they arrive, in any order.
    """
    output.ensure_dir(out_dir)
    results_path = out_dir / "results.csv"
    done = read_results(results_path)
    todo = [i for i in instances if (str(i.onnx), str(i.vnnlib)) not in done]
    witness_dir = out_dir / "witnesses"
    rows = [done[i.key] for i in instances if i.key in done]
    for row in rows:
        on_row(row)
    owned = executor is None
    executor = executor or make_executor("local", jobs=jobs)
    try:
        for row in _execute(todo, witness_dir, options, timeout_scale, executor, threads):
            _append(results_path, row)
            rows.append(row)
            on_row(row)
    finally:
        if owned:
            executor.close()
    return rows


def instance_task(instance: Instance, model: FileRef, spec: FileRef, options: Options,
                  scale: float) -> tuple[Row, str]:
    """One instance on any worker: the row (named by the instance's own paths) and its witness text."""
    local = replace(instance, onnx=model.local_path(), vnnlib=spec.local_path())
    with tempfile.TemporaryDirectory(prefix="verikit-witness-") as scratch:
        row = run_row(local, Path(scratch), options, scale)
        witness = Path(row.witness).read_text() if row.witness else ""
    row.onnx, row.vnnlib = str(instance.onnx), str(instance.vnnlib)
    return row, witness


def sized_instance_task(instance: Instance, model: FileRef, spec: FileRef, options: Options,
                        scale: float) -> tuple[Row, str]:
    """`instance_task` on torch threads chosen from the model's size and the CPUs free now, as `verikit
    verify` chooses them: torch's own default (every core) ran MNIST-FC 256x6 in process 78 s past its budget
    beside one busy process (its root α-CROWN 80 s instead of 3 s)."""
    from verikit.core.threads import apply_threads

    apply_threads(Path(model.local_path()).stat().st_size // 4)
    return instance_task(instance, model, spec, options, scale)


def _execute(todo: list[Instance], witness_dir: Path, options: Options, scale: float, executor: Executor,
             threads: int | None) -> Iterable[Row]:
    function = instance_task if threads is not None else sized_instance_task
    tasks = [Task(f"{i.onnx}|{i.vnnlib}", function,
                  (i, executor.ship(i.onnx), executor.ship(i.vnnlib), options, scale),
                  timeout=i.timeout * scale, threads=threads) for i in todo]
    for task, value in executor.run(tasks):
        instance = task.args[0]
        if isinstance(value, Failed):
            yield Row(instance.category, str(instance.onnx), str(instance.vnnlib), 0.0,
                      "timeout" if value.timed_out else "error", 0.0, message=value.reason)
            continue
        row, witness = value
        if witness:
            witness_dir.mkdir(parents=True, exist_ok=True)
            path = witness_dir / Path(row.witness).name
            path.write_text(witness)
            row.witness = str(path)
        yield row


def summarise(rows: list[Row], instances: list[Instance], truths: dict[tuple[str, str], str] | None) -> Summary:
    """Counts per result, and with ground truth: correct, wrong (each listed) and the VNN-COMP score."""
    summary = Summary()
    by_key = {i.key: i for i in instances}
    hashes: dict[Path, str] = {}
    for row in rows:
        summary.counts[row.result] = summary.counts.get(row.result, 0) + 1
        category = summary.by_category.setdefault(Path(row.onnx).name, {})
        category[row.result] = category.get(row.result, 0) + 1
        if truths is None or row.result not in ("sat", "unsat"):
            continue
        instance = by_key.get((row.onnx, row.vnnlib))
        if instance is None:
            continue
        for file in (instance.onnx, instance.vnnlib):
            hashes.setdefault(file, file_sha256(file))
        truth = truths.get((hashes[instance.onnx], hashes[instance.vnnlib]), "unknown")
        if truth not in ("sat", "unsat"):
            summary.unchecked += 1
        elif truth == row.result:
            summary.correct += 1
        else:
            summary.wrong.append({"onnx": row.onnx, "vnnlib": row.vnnlib, "answer": row.result, "truth": truth})
    summary.score = SCORE["correct"] * summary.correct + SCORE["wrong"] * len(summary.wrong)
    times = [row.prepare_s + row.run_s for row in rows]
    summary.total_s = sum(times)
    summary.median_s = statistics.median(times) if times else 0.0
    return summary


def summary_dict(summary: Summary) -> dict:
    return asdict(summary)
