"""The ReLU search's attack rounds (bab.relu_attack_every) on and off, as users run it: one `verikit verify`
process per instance and setting, the two settings side by side at the same time (1 thread each).

    .venv/bin/python benchmarks/relu_attack_rounds.py --timeout 30            # rul_like joint specs + MNIST-FC

Sat side: the rul_like `joint` specs at margins 0.05 and 0.01 (benchmarks/rul_like.py builds them when
absent), where the portfolio's first attack often stops short. Unsat side: the MNIST-FC instances that
the fewest VNN-COMP tools proved, where the rounds are pure overhead. Writes
benchmarks/results/relu_attack_rounds.json.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
SHARED = HERE.parent.parent / "shared" / "benchmarks"
MNIST_HARD = [("mnist-net_256x4", "prop_3_0.03"), ("mnist-net_256x4", "prop_9_0.03"),
              ("mnist-net_256x4", "prop_4_0.05"), ("mnist-net_256x6", "prop_0_0.03"),
              ("mnist-net_256x6", "prop_5_0.03"), ("mnist-net_256x6", "prop_12_0.03")]
SETTINGS = {"off": "bab.relu_attack_every=0", "on": "bab.relu_attack_every=4"}


def instances() -> list[tuple[str, Path, Path, str]]:
    """(name, onnx, vnnlib, expected) per instance."""
    rul = RESULTS / "rul_like"
    if not (rul / "rul_like.onnx").exists():
        subprocess.run([sys.executable, str(HERE / "rul_like.py")], check=True)
    found = [(f"rul_like/joint_w{w}_slack{s}", rul / "rul_like.onnx", rul / f"joint_w{w}_slack{s}.vnnlib", "sat")
             for s in ("0.05", "0.01") for w in range(4)]
    if (SHARED / "mnistfc").is_dir():
        found += [(f"mnistfc/{net}/{prop}", SHARED / "mnistfc" / f"{net}.onnx", SHARED / "mnistfc" / f"{prop}.vnnlib",
                   "unsat") for net, prop in MNIST_HARD]
    return found


def run_one(onnx: Path, vnnlib: Path, setting: str, timeout: float) -> dict:
    report = RESULTS / f"relu_attack_rounds_{os.getpid()}_{setting.split('=')[1]}_{vnnlib.stem}.json"
    started = time.monotonic()
    subprocess.run([sys.executable, "-m", "verikit", "verify", str(onnx), str(vnnlib), "--timeout", str(timeout),
                    "--set", setting, "--report", str(report)], capture_output=True,
                   env={**os.environ, "OMP_NUM_THREADS": "1"})
    wall = time.monotonic() - started
    verdict = json.loads(report.read_text())["verdict"] if report.exists() else "no report"
    report.unlink(missing_ok=True)
    return {"verdict": verdict, "wall_s": round(wall, 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--timeout", type=float, default=30.0)
    args = parser.parse_args()
    rows = []
    for name, onnx, vnnlib, expected in instances():
        with ThreadPoolExecutor(2) as pool:
            futures = {key: pool.submit(run_one, onnx, vnnlib, setting, args.timeout)
                       for key, setting in SETTINGS.items()}
            row = {"instance": name, "expected": expected, **{key: f.result() for key, f in futures.items()}}
        rows.append(row)
        print(json.dumps(row), flush=True)
    decided = {key: sum(r[key]["verdict"] in ("falsified", "verified") for r in rows) for key in SETTINGS}
    wrong = {key: sum((r[key]["verdict"], r["expected"]) in (("falsified", "unsat"), ("verified", "sat"))
                      for r in rows) for key in SETTINGS}
    summary = {"timeout_s": args.timeout, "decided": decided, "wrong": wrong, "rows": rows}
    (RESULTS / "relu_attack_rounds.json").write_text(json.dumps(summary, indent=2))
    print(json.dumps({"decided": decided, "wrong": wrong}))


if __name__ == "__main__":
    main()
