"""An audit split into shards of consecutive samples, each one task on an executor, merged into one result.

A shard is audited exactly as `audit()` audits a dataset of its own samples, so its results depend on
the shard boundaries (the attack seeds follow the sample's place in its shard), never on the executor:
the same `shard_size` gives the same per-sample results locally and on Ray. With `out_dir`, each
finished shard is saved under `out_dir/shards/` (named by the model, data and settings hashes) and a
rerun skips it: an interrupted audit resumes. A shard that fails is an error, never a guess: its
samples would otherwise count as not broken and raise the empirical robust accuracy.
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import Callable

import numpy as np

from verikit.apps.audit import AuditResult, AuditSettings, EpsResult, audit, check_invariant
from verikit.apps.data import Dataset
from verikit.apps.executors import Executor, Failed, FileRef, Task
from verikit.core.errors import ExitCode, VerikitError

SHARD_SIZE = 100
_PER_EPS = ("clean_correct", "certified", "broken", "certified_margin", "attack_margin")


class AuditShardError(VerikitError):
    """A shard of samples could not be audited (its worker died or it raised): no result is made up for it."""

    exit_code = ExitCode.INTERNAL


def audit_shard(model: FileRef, data: FileRef, labels: FileRef | None, start: int, stop: int,
                settings: AuditSettings) -> AuditResult:
    """Samples [start, stop) of the dataset, audited on whichever machine runs this."""
    from verikit.apps.data import load_dataset
    from verikit.onnx.load import load_network

    network = load_network(str(model.local_path()))
    dataset = load_dataset(str(data.local_path()), str(labels.local_path()) if labels else None)
    part = Dataset(dataset.x[start:stop], dataset.y[start:stop], dataset.source, dataset.sha256,
                   dataset.sample_shape)
    return audit(network, part, settings)


def merge(parts: list[tuple[int, AuditResult]], model_path: str, data_path: str, seconds: float) -> AuditResult:
    """One result from shards given as (first sample index, result), in sample order."""
    parts = sorted(parts, key=lambda part: part[0])
    first = parts[0][1]
    per_eps = []
    for k, eps in enumerate(first.settings.eps):
        arrays = {name: np.concatenate([getattr(r.per_eps[k], name) for _, r in parts]) for name in _PER_EPS}
        witnesses = {start + i: x for start, r in parts for i, x in r.per_eps[k].witnesses.items()}
        spent: dict[str, float] = {}
        for _, r in parts:
            for step, value in r.per_eps[k].seconds.items():
                spent[step] = spent.get(step, 0.0) + value
        per_eps.append(EpsResult(eps, **arrays, witnesses=witnesses, seconds=spent,
                                 timed_out=any(r.per_eps[k].timed_out for _, r in parts)))
    notes = tuple(dict.fromkeys(note for _, r in parts for note in r.notes))
    merged = AuditResult(model_path, first.model_sha256, data_path, first.data_sha256,
                         np.concatenate([r.labels for _, r in parts]),
                         np.concatenate([r.predictions for _, r in parts]),
                         np.concatenate([r.clean_margin for _, r in parts]), tuple(per_eps), first.settings,
                         seconds, notes)
    check_invariant(merged)
    return merged


def _shard_key(model_sha: str, data_sha: str, settings: AuditSettings, start: int, stop: int) -> str:
    text = json.dumps([model_sha, data_sha, settings.as_dict(), start, stop], sort_keys=True, default=str)
    return f"{start:07d}-{stop:07d}-{hashlib.sha256(text.encode()).hexdigest()[:16]}"


def save_shard(result: AuditResult, path: Path) -> None:
    """The shard's arrays as .npz, written whole (to a scratch name, then renamed)."""
    arrays = {"labels": result.labels, "predictions": result.predictions, "clean_margin": result.clean_margin}
    for k, outcome in enumerate(result.per_eps):
        arrays.update({f"{name}_{k}": getattr(outcome, name) for name in _PER_EPS})
        index = sorted(outcome.witnesses)
        arrays[f"witness_index_{k}"] = np.array(index, dtype=np.int64)
        arrays[f"witness_x_{k}"] = (np.stack([outcome.witnesses[i] for i in index]) if index
                                    else np.zeros((0, 0), dtype=np.float32))
    meta = {"model_sha256": result.model_sha256, "data_sha256": result.data_sha256, "notes": list(result.notes),
            "seconds": [o.seconds for o in result.per_eps], "timed_out": [o.timed_out for o in result.per_eps]}
    arrays["meta"] = np.array(json.dumps(meta))
    path.parent.mkdir(parents=True, exist_ok=True)
    scratch = path.with_name(f".{path.stem}.partial.npz")
    np.savez(scratch, **arrays)
    scratch.replace(path)


def load_shard(path: Path, settings: AuditSettings) -> AuditResult:
    with np.load(path) as data:
        meta = json.loads(str(data["meta"]))
        per_eps = tuple(EpsResult(eps, *(data[f"{name}_{k}"] for name in _PER_EPS),
                                  witnesses=dict(zip(data[f"witness_index_{k}"].tolist(), data[f"witness_x_{k}"])),
                                  seconds=meta["seconds"][k], timed_out=meta["timed_out"][k])
                        for k, eps in enumerate(settings.eps))
        return AuditResult("", meta["model_sha256"], "", meta["data_sha256"], data["labels"], data["predictions"],
                           data["clean_margin"], per_eps, settings, 0.0, tuple(meta["notes"]))


def audit_sharded(model_path: str, data_path: str, settings: AuditSettings, executor: Executor, *,
                  labels_path: str | None = None, limit: int | None = None, shard_size: int = SHARD_SIZE,
                  out_dir: Path | None = None, threads: int | None = None,
                  progress: Callable[[str, int, int], None] | None = None) -> AuditResult:
    """Audit the first `limit` samples in shards of `shard_size` on `executor` (resumable with `out_dir`).

    `settings.timeout` bounds each shard, and each shard is killed past it (plus grace).
    """
    from verikit.apps.data import load_dataset
    from verikit.onnx.load import load_network

    started = time.monotonic()
    network = load_network(model_path)  # here too: bad input fails once, before any task is sent
    dataset = load_dataset(data_path, labels_path).head(limit)
    dataset.check_fits(network.n_inputs, network.n_outputs)
    model, data = executor.ship(model_path), executor.ship(data_path)
    labels = executor.ship(labels_path) if labels_path else None
    bounds = [(start, min(start + shard_size, len(dataset))) for start in range(0, len(dataset), shard_size)]
    folder = Path(out_dir) / "shards" if out_dir is not None else None
    parts: list[tuple[int, AuditResult]] = []
    tasks = []
    for start, stop in bounds:
        saved = folder / f"{_shard_key(network.sha256, dataset.sha256, settings, start, stop)}.npz" if folder else None
        if saved is not None and saved.is_file():
            parts.append((start, load_shard(saved, settings)))
            continue
        tasks.append(Task(f"{start}:{stop}", audit_shard, (model, data, labels, start, stop, settings),
                          timeout=settings.timeout, threads=threads))
    if progress:
        progress("shards", len(parts), len(bounds))
    for task, value in executor.run(tasks):
        start, stop = task.args[3], task.args[4]
        if isinstance(value, Failed):
            raise AuditShardError(f"samples {start}..{stop - 1} could not be audited: {value.reason}")
        if folder is not None:
            save_shard(value, folder / f"{_shard_key(network.sha256, dataset.sha256, settings, start, stop)}.npz")
        parts.append((start, value))
        if progress:
            progress("shards", len(parts), len(bounds))
    return merge(parts, model_path, dataset.source, time.monotonic() - started)
