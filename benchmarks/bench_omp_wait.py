"""OpenMP's wait policy beside a busy CPU: the root α-CROWN of ReLU branching on MNIST-FC 256x6.

    .venv/bin/python benchmarks/bench_omp_wait.py [--threads 2] [--burners 1] [--repeats 2]

Each measurement is a new process (OMP_WAIT_POLICY is read when torch loads its OpenMP runtime) that
times `optimise_layer_bounds` (20 α steps, float64) on prop_13_0.03, with `--burners` CPU-burning
processes running beside it; ACTIVE (spinning waits, torch's default before verikit set PASSIVE) and
PASSIVE alternate. Writes benchmarks/results/omp_wait.json.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "benchmarks" / "mnistfc"

MEASURE = """
import time, torch
torch.set_num_threads({threads})
from verikit.onnx.load import load_network
from verikit.onnx.pwl import to_piecewise_linear
from verikit.spec.vnnlib import read_vnnlib
from verikit.engines.crown.propagate import ReluMlp, layer_bounds
from verikit.engines.crown.optimise import optimise_layer_bounds
net = ReluMlp.from_pwl(to_piecewise_linear(load_network({onnx!r})), torch.float64)
box = read_vnnlib({spec!r}).cases[0].box
lower = torch.tensor(box.lower, dtype=torch.float64)[None]
upper = torch.tensor(box.upper, dtype=torch.float64)[None]
start = time.monotonic()
optimise_layer_bounds(net, lower, upper, layer_bounds(net, lower, upper), steps=20, lr=0.1)
print(time.monotonic() - start)
"""


def measure(policy: str, threads: int) -> float:
    code = MEASURE.format(threads=threads, onnx=str(SHARED / "mnist-net_256x6.onnx"),
                          spec=str(SHARED / "prop_13_0.03.vnnlib"))
    env = {**os.environ, "OMP_WAIT_POLICY": policy, "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--burners", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    burners = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(args.burners)]
    times: dict[str, list[float]] = {"ACTIVE": [], "PASSIVE": []}
    try:
        time.sleep(1.0)
        for _ in range(args.repeats):
            for policy in times:
                times[policy].append(round(measure(policy, args.threads), 3))
                print(f"{policy:8s} {times[policy][-1]:8.2f} s", flush=True)
    finally:
        for burner in burners:
            burner.kill()
    result = {"threads": args.threads, "burners": args.burners, "cpus": os.cpu_count(),
              "load_after": os.getloadavg()[0], "seconds": times}
    out = ROOT / "benchmarks" / "results" / "omp_wait.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1))
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
