"""Old vs new verikit on oval21-like CIFAR-10 CNNs, one `verikit verify` process per instance and checkout.

    .venv/bin/python benchmarks/regress_cnn.py                         # this checkout only
    git worktree add --detach /tmp/old 217733c                         # the version of 2026-11-29
    .venv/bin/python benchmarks/regress_cnn.py --old /tmp/old          # both, on the same instances

Builds the instances with benchmarks/oval21_like.py when absent (benchmarks/results/oval21_like/), then runs
`python -m verikit verify M S --timeout T --json` with PYTHONPATH set to each checkout, one process at a time,
and prints per instance the verdict, the wall-clock seconds and the seconds of each stage that ran.
Writes benchmarks/results/regress_cnn.json. `--max-ratio R` exits 1 when a verdict the old version reached
is lost, or the new one takes more than R times as long (plus 2 s) on an instance: the regression this
guards against had bab/crown run 31 s after α-CROWN on a 20 s timeout.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import oval21_like  # noqa: E402

PYTHON = sys.executable


def run_one(checkout: Path, onnx: Path, spec: Path, timeout: float, extra: list[str]) -> dict:
    """One verify process of `checkout` on the instance: verdict, wall seconds and seconds per stage that ran."""
    env = dict(os.environ, PYTHONPATH=str(checkout))
    command = [PYTHON, "-m", "verikit", "verify", str(onnx), str(spec), "--timeout", f"{timeout:g}", "--json",
               *extra]
    start = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True, cwd=checkout)
    wall = time.perf_counter() - start
    try:
        report = json.loads(done.stdout)
    except json.JSONDecodeError:
        return {"verdict": f"error rc={done.returncode}", "wall_s": round(wall, 2), "stages": {},
                "stderr": done.stderr[-400:]}
    stages = {s["stage"]: s["seconds"] for s in report.get("schedule", []) if s.get("seconds")}
    return {"verdict": report["verdict"], "wall_s": round(wall, 2), "stages": stages,
            "reason": report.get("reason", "")[:160]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--old", type=Path, help="another checkout to run on the same instances")
    parser.add_argument("--timeout", type=float, default=20.0)
    parser.add_argument("--filter", default="", help="comma-separated substrings of the spec name")
    parser.add_argument("--max-ratio", type=float, default=None)
    parser.add_argument("--set", action="append", default=[], help="passed to verify as --set")
    args = parser.parse_args()
    folder = oval21_like.OUT
    if not (folder / "instances.csv").exists():
        oval21_like.build(folder, images_per_net=4, epochs=400, seed=0)
    with open(folder / "instances.csv") as handle:
        rows = [row for row in csv.reader(handle)]
    wanted = [w for w in args.filter.split(",") if w]
    rows = [r for r in rows if not wanted or any(w in r[1] for w in wanted)]
    extra = [x for s in args.set for x in ("--set", s)]
    checkouts = {"new": ROOT} | ({"old": args.old.resolve()} if args.old else {})
    results, failed = [], []
    for onnx, spec, _ in rows:
        entry = {"spec": spec}
        for name, checkout in checkouts.items():
            entry[name] = run_one(checkout, folder / onnx, folder / spec, args.timeout, extra)
        results.append(entry)
        line = "  ".join(f"{n}: {entry[n]['verdict']:<10} {entry[n]['wall_s']:6.2f} s "
                         f"{ {k: round(v, 1) for k, v in entry[n]['stages'].items()} }" for n in checkouts)
        print(f"{spec:<28} {line}", flush=True)
        if args.max_ratio and "old" in entry:
            old, new = entry["old"], entry["new"]
            lost = old["verdict"] in ("verified", "falsified") and new["verdict"] != old["verdict"]
            if lost or new["wall_s"] > args.max_ratio * old["wall_s"] + 2:
                failed.append(spec)
    out = ROOT / "benchmarks" / "results" / "regress_cnn.json"
    out.write_text(json.dumps({"timeout_s": args.timeout, "checkouts": {k: str(v) for k, v in checkouts.items()},
                               "results": results}, indent=1))
    print(f"wrote {out}")
    if failed:
        print(f"slower or lost: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
