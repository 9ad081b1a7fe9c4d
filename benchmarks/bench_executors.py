"""`verikit bench` on one VNN-COMP family through the local executor and through Ray, same instances.

    python benchmarks/bench_executors.py acasxu --jobs 2 [--every 6 [--offset 3]] [--ray-first]

Runs the local process pool, then a local Ray with the same worker count (--ray-first: the other way
round), each from an empty --out folder (nothing is resumed), and writes both wall times (Ray's
includes starting Ray) and whether every instance got the same answer to
benchmarks/results/executors_FAMILY[TAG].json.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("SHARED_BENCHMARKS", ROOT.parent / "shared" / "benchmarks"))


def subset(family: Path, every: int, offset: int, folder: Path) -> Path:
    """Every `every`-th row of the family's instances CSV(s) from row `offset`, paths made absolute."""
    rows = []
    for listing in sorted(family.rglob("*instances*.csv")):
        with listing.open(newline="") as handle:
            rows += [[str(listing.parent / r[0].strip()), str(listing.parent / r[1].strip()), r[2]]
                     for r in csv.reader(handle) if r and not r[0].startswith("#")]
    target = folder / family.name / "instances.csv"
    target.parent.mkdir(parents=True, exist_ok=True)
    with target.open("w", newline="") as handle:
        csv.writer(handle).writerows(rows[offset::every])
    return target


def run(executor: str, instances: Path, truth: Path, out: Path, jobs: int) -> dict:
    shutil.rmtree(out, ignore_errors=True)
    command = [sys.executable, "-m", "verikit", "bench", str(instances), "--ground-truth", str(truth), "--out",
               str(out), "--jobs", str(jobs), "--executor", executor, "--json"]
    started = time.monotonic()
    done = subprocess.run(command, capture_output=True, text=True)
    wall = time.monotonic() - started
    if done.returncode not in (0, 1):
        sys.exit(f"{executor}: exit {done.returncode}: {done.stderr[-2000:]}")
    summary = json.loads(done.stdout)
    with (out / "results.csv").open(newline="") as handle:
        answers = {(r["onnx"], r["vnnlib"]): r["result"] for r in csv.DictReader(handle)}
    return {"wall_s": round(wall, 2), "counts": summary["counts"], "correct": summary["correct"],
            "wrong": len(summary["wrong"]), "sum_instance_s": round(summary["total_s"], 2), "answers": answers}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("family")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--every", type=int, default=1, help="Run every N-th instance only.")
    parser.add_argument("--offset", type=int, default=0, help="With --every: start at this row.")
    parser.add_argument("--ray-first", action="store_true", help="Run Ray before local (order bias check).")
    parser.add_argument("--tag", default="", help="Suffix of the JSON file name (several runs side by side).")
    args = parser.parse_args()
    family = SHARED / args.family
    results = ROOT / "benchmarks" / "results"
    with tempfile.TemporaryDirectory() as scratch:
        instances = family if args.every == 1 else subset(family, args.every, args.offset, Path(scratch))
        runs = {kind: run(kind, instances, SHARED / "ground_truth" / f"{args.family}.csv",
                          results / f"executors_{args.family}_{kind}", args.jobs)
                for kind in (("ray", "local") if args.ray_first else ("local", "ray"))}
    local, ray = runs["local"]["answers"], runs["ray"]["answers"]
    differ = sorted(f"{Path(k[0]).name} {Path(k[1]).name}: {local.get(k)} vs {ray.get(k)}"
                    for k in set(local) | set(ray) if local.get(k) != ray.get(k))
    record = {"family": args.family, "every": args.every, "offset": args.offset, "instances": len(local),
              "jobs": args.jobs,
              "order": list(runs),
              "nproc": os.cpu_count(), **{kind: {k: v for k, v in r.items() if k != "answers"}
                                          for kind, r in runs.items()},
              "ray_over_local": round(runs["ray"]["wall_s"] / runs["local"]["wall_s"], 3),
              "same_answers": not differ, "differences": differ}
    path = results / f"executors_{args.family}{args.tag}.json"
    path.write_text(json.dumps(record, indent=2) + "\n")
    print(json.dumps(record, indent=2))


if __name__ == "__main__":
    main()
