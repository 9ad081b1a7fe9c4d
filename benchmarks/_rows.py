"""What the benchmarks share: the `--only` row filter over an instances CSV and the JSON the root-bound
benchmarks (bench_hull.py, bench_tighten.py) write, and the instances CSV the generated families
(oval21_like.py, rul_like.py) write."""

from __future__ import annotations

import argparse
import csv
import json
import platform
from collections.abc import Iterator
from pathlib import Path

from verikit.apps.bench import read_instances


def add_only(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--only", action="append", default=[],
                        help="ONNX:VNNLIB name fragments of the rows to run (repeatable; default every row)")


def chosen(instances: str, only: list[str]) -> Iterator:
    """The rows of `instances` whose ONNX:VNNLIB name contains one of `only` (every row when empty)."""
    for instance in read_instances(instances):
        name = f"{instance.onnx.name}:{instance.vnnlib.name}"
        if not only or any(fragment in name for fragment in only):
            yield instance


def write_rows(out: str, args: argparse.Namespace, rows: list[dict]) -> None:
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    Path(out).write_text(json.dumps({"args": vars(args), "machine": platform.node(), "rows": rows}, indent=1))


def write_instances(out: Path, rows: list[tuple[str, str, float]]) -> Path:
    """`out`/instances.csv, one (onnx, vnnlib, timeout_s) row per instance, as VNN-COMP lays it out; its path."""
    csv_path = out / "instances.csv"
    with open(csv_path, "w", newline="") as handle:
        csv.writer(handle).writerows(rows)
    return csv_path
