"""The PGD attack alone (verikit.engines.attack.engine) on the sat instances of a ../shared benchmark set.

    .venv/bin/python benchmarks/bench_attack.py acasxu                  # every sat instance, 30 s each
    .venv/bin/python benchmarks/bench_attack.py test --seconds 10 --repeat 3
    .venv/bin/python benchmarks/bench_attack.py rul_like --seconds 3     # built by benchmarks/rul_like.py

`rul_like` (regression outputs, monotonicity, two-output conjunctions; every spec sat by construction) is
built into benchmarks/results/rul_like/ when absent; the other sets are ../shared's, sat by their ground truth.

Each instance: load the network and read the spec (not timed), then `attack.run` on each case under one
wall-clock budget until a replayed counterexample. Prints per instance the verdict, the seconds (best of
--repeat) and a short hash of the counterexample's bytes (equal hashes: the same counterexample), and
writes benchmarks/results/attack_<set>.json.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import platform
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from verikit.apps.bench import file_sha256, read_ground_truth, read_instances  # noqa: E402
from verikit.core.result import Budget, Falsified  # noqa: E402
from verikit.engines.attack import engine as attack  # noqa: E402
from verikit.onnx.load import load_network  # noqa: E402
from verikit.spec.vnnlib import read_vnnlib  # noqa: E402

SHARED = ROOT.parent / "shared" / "benchmarks"


def attack_instance(network, prop, seconds: float, seed: int) -> tuple[str, str]:
    """("sat", hash of the counterexample) or ("unknown", "")."""
    budget = Budget.seconds(seconds)
    for case in prop.cases:
        outcome = attack.run(network, case, budget, seed=seed)
        if isinstance(outcome, Falsified):
            x = outcome.counterexample.x
            return "sat", hashlib.sha256(x.tobytes()).hexdigest()[:12]
    return "unknown", ""


def instances_of(benchmark: str):
    """(the set's instances (verikit.apps.bench.Instance), is-sat test of an instance)."""
    if benchmark == "rul_like":
        sys.path.insert(0, str(ROOT / "benchmarks"))
        import rul_like

        csv_path = rul_like.OUT / "instances.csv"
        if not csv_path.exists():
            rul_like.build(windows=4, epochs=30, seed=0)
        return read_instances(csv_path), lambda instance: True
    truth = read_ground_truth(SHARED / "ground_truth" / f"{benchmark}.csv")
    return (read_instances(SHARED / benchmark / f"{benchmark}_instances.csv"),
            lambda instance: truth.get((file_sha256(instance.onnx), file_sha256(instance.vnnlib))) == "sat")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("benchmark", choices=["acasxu", "mnistfc", "test", "rul_like"])
    parser.add_argument("--seconds", type=float, default=30.0, help="budget per instance")
    parser.add_argument("--repeat", type=int, default=1, help="runs per instance; the best time is kept")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--filter", default="", help="comma-separated substrings of 'onnx:vnnlib'")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    instances, sat = instances_of(args.benchmark)
    results = []
    for instance in instances:
        key = f"{instance.onnx.name}:{instance.vnnlib.name}"
        if args.filter and not any(part in key for part in args.filter.split(",")):
            continue
        if not sat(instance):
            continue
        network, prop = load_network(instance.onnx), read_vnnlib(instance.vnnlib)
        times, verdicts = [], set()
        for _ in range(args.repeat):
            start = time.perf_counter()
            verdicts.add(attack_instance(network, prop, args.seconds, args.seed))
            times.append(time.perf_counter() - start)
        (verdict, digest), = verdicts if len(verdicts) == 1 else (("unstable", ""),)
        results.append({"instance": key, "verdict": verdict, "witness_sha256_12": digest,
                        "seconds": round(min(times), 3)})
        print(f"{key:50s} {verdict:8s} {min(times):7.2f}s  {digest}", flush=True)
    summary = {"instances": len(results), "found": sum(r["verdict"] == "sat" for r in results),
               "total_seconds": round(sum(r["seconds"] for r in results), 2)}
    print(json.dumps(summary))
    out = ROOT / "benchmarks" / "results" / f"attack_{args.benchmark}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"summary": summary, "settings": vars(args), "machine": platform.platform(),
                               "torch": torch.__version__, "results": results}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
