"""`verikit audit` of 500 digits samples, sharded, through the local executor and through Ray.

    python benchmarks/bench_audit_executors.py [--jobs 2] [--shard-size 100]

The samples: the 450 held-out test digits of the example models' split (models/example_nets.py) and the
first 50 training digits, pixels/16 in [0, 1]. Both runs use the same shards, so every sample's status
and margins must agree; the script writes both wall times and the comparison to
benchmarks/results/executors_audit.json.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
sys.path.insert(0, str(ROOT / "models"))


def digits_500(path: Path) -> Path:
    from example_nets import load_digits_split

    x_train, y_train, x_test, y_test = load_digits_split()
    x = np.concatenate([x_test, x_train[:500 - len(x_test)]]).astype(np.float32)
    y = np.concatenate([y_test, y_train[:500 - len(y_test)]]).astype(np.int64)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, x=x, y=y)
    return path


def run(kind: str, data: Path, jobs: int, shard_size: int) -> tuple[float, list[list[str]], dict]:
    out = RESULTS / f"executors_audit_{kind}"
    shutil.rmtree(out, ignore_errors=True)
    command = [sys.executable, "-m", "verikit", "audit", str(ROOT / "models" / "digits_mlp.onnx"), "--data",
               str(data), "--eps", "0.01", "--eps", "0.03", "--eps", "0.05", "--clip-min", "0", "--clip-max", "1",
               "--jobs", str(jobs), "--executor", kind, "--shard-size", str(shard_size), "--out", str(out), "--json"]
    started = time.monotonic()
    done = subprocess.run(command, capture_output=True, text=True)
    wall = time.monotonic() - started
    if done.returncode != 0:
        sys.exit(f"{kind}: exit {done.returncode}: {done.stderr[-2000:]}")
    report = json.loads(done.stdout)
    with (out / "samples.csv").open(newline="") as handle:
        rows = list(csv.reader(handle))
    return wall, rows, {str(r["eps"]): r["counts"] for r in report["results"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--shard-size", type=int, default=100)
    args = parser.parse_args()
    data = digits_500(RESULTS / "digits_500.npz")
    local_wall, local_rows, local_counts = run("local", data, args.jobs, args.shard_size)
    ray_wall, ray_rows, ray_counts = run("ray", data, args.jobs, args.shard_size)
    differ = [(a, b) for a, b in zip(local_rows, ray_rows) if a != b]
    record = {"samples": 500, "eps": [0.01, 0.03, 0.05], "jobs": args.jobs, "shard_size": args.shard_size,
              "nproc": os.cpu_count(), "local": {"wall_s": round(local_wall, 2), "counts": local_counts},
              "ray": {"wall_s": round(ray_wall, 2), "counts": ray_counts},
              "rows_compared": len(local_rows) - 1, "same_rows": len(local_rows) == len(ray_rows) and not differ,
              "differences": differ[:10]}
    (RESULTS / "executors_audit.json").write_text(json.dumps(record, indent=2) + "\n")
    print(json.dumps(record, indent=2))


if __name__ == "__main__":
    main()
