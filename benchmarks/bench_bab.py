"""Branch and bound alone (verikit.engines.bab.engine) on the VNN-COMP ACAS Xu / mnistfc instances in ../shared.

    .venv/bin/python benchmarks/bench_bab.py acasxu                       # all 186, their own timeouts
    .venv/bin/python benchmarks/bench_bab.py mnistfc --timeout-scale 0.25 --filter 256x2
    .venv/bin/python benchmarks/bench_bab.py acasxu --threads 2 --set input_score=width
    .venv/bin/python benchmarks/bench_bab.py mnistfc --filter 256x4.onnx:prop_0_0.03 --box-scale 0.96 \
        --timeout-scale 0.1333 --set relu_branching=babsr    # ReLU branching on a mid-hard box

Each instance: load the ONNX model and translate it to PiecewiseLinear (not timed), read the VNN-LIB
spec (not timed), then run `bab.run` on each case under one wall-clock budget (the instance's timeout
times --timeout-scale). sat = a counterexample replayed through onnxruntime, unsat = every case proven.
Compared with ../shared/benchmarks/ground_truth/<set>.csv (matched by content sha256, as verikit bench does); writes benchmarks/results/bab_<set>.json and
prints one line per instance and a summary (correct / wrong / open, total and median seconds).
"""

from __future__ import annotations

import argparse
import dataclasses
import ast
import csv
import json
import os
import platform
import re
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from verikit.apps.bench import file_sha256, read_ground_truth  # noqa: E402
from verikit.engines.bab import engine as bab  # noqa: E402
from verikit.onnx.load import load_network  # noqa: E402
from verikit.onnx.pwl import to_piecewise_linear  # noqa: E402
from verikit.core.property import Box, Case  # noqa: E402
from verikit.core.result import Budget, Falsified, Unknown  # noqa: E402
from verikit.spec.vnnlib import read_vnnlib  # noqa: E402

SHARED = ROOT.parent / "shared" / "benchmarks"


def run_instance(network, pwl, prop, seconds: float, overrides: dict) -> tuple[str, dict | str]:
    budget = Budget.seconds(seconds)
    detail: dict | str = {}
    for case in prop.cases:
        outcome = bab.run(pwl, network, case, budget, **overrides)
        if isinstance(outcome, Falsified):
            return "sat", "counterexample"
        if isinstance(outcome, Unknown):
            return ("timeout" if outcome.timed_out else "unknown"), outcome.reason
        detail = outcome.certificate.detail
    return "unsat", detail


def shrunk(case: Case, scale: float) -> Case:
    """The case with its box shrunk about the box centre by `scale` (in (0, 1]): unsat stays unsat."""
    centre = case.box.center
    box = Box(centre - scale * (centre - case.box.lower), centre + scale * (case.box.upper - centre))
    return Case(box, case.disjuncts)


def setting(value: str):
    """A --set value: a Python literal, a torch dtype name (float32, float64), else the string itself."""
    if value in ("float32", "float64"):
        return getattr(torch, value)
    try:
        return ast.literal_eval(value)
    except (ValueError, SyntaxError):
        return value


def domain_count(result: dict) -> int:
    """Domains bounded: from a proof's detail, or the "(N domains bounded" of an Unknown's reason."""
    detail = result["detail"]
    if isinstance(detail, dict):
        return int(detail.get("domains") or 0)
    match = re.search(r"\((\d+) domains bounded", detail)
    return int(match.group(1)) if match else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("benchmark", choices=["acasxu", "mnistfc", "test"])
    parser.add_argument("--timeout-scale", type=float, default=1.0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--filter", default="", help="comma-separated substrings of 'onnx:vnnlib'")
    parser.add_argument("--tag", default="", help="written to benchmarks/results/bab_<set>[-TAG].json")
    parser.add_argument("--every", type=int, default=1, help="take every N-th instance (after --filter)")
    parser.add_argument("--device", default="cpu", help="torch device of branch and bound: cpu, cuda, cuda:N")
    parser.add_argument("--box-scale", type=float, default=1.0,
                        help="shrink every input box about its centre by this factor (a tuning instance "
                             "between easy and hard; the ground truth then no longer applies)")
    parser.add_argument("--set", action="append", default=[],
                        help="BabSettings override, e.g. batch_size=512 or dtype=float64")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    overrides = {key: setting(value) for key, value in (item.split("=", 1) for item in args.set)}
    overrides["device"] = args.device
    folder = SHARED / args.benchmark
    truth = read_ground_truth(SHARED / "ground_truth" / f"{args.benchmark}.csv")
    with open(folder / f"{args.benchmark}_instances.csv") as handle:
        instances = [row for row in csv.reader(handle) if row]
    if args.filter:
        instances = [row for row in instances if any(part in f"{row[0]}:{row[1]}" for part in args.filter.split(","))]
    instances = instances[::args.every]
    results, loaded = [], {}
    for onnx_name, spec_name, timeout in instances:
        key = f"{onnx_name}:{spec_name}"
        if onnx_name not in loaded:
            network = load_network(folder / onnx_name)
            loaded = {onnx_name: (network, to_piecewise_linear(network))}
        network, pwl = loaded[onnx_name]
        prop = read_vnnlib(folder / spec_name)
        if args.box_scale != 1.0:
            prop = dataclasses.replace(prop, cases=tuple(shrunk(case, args.box_scale) for case in prop.cases))
        start, cpu = time.perf_counter(), time.process_time()
        verdict, detail = run_instance(network, pwl, prop, float(timeout) * args.timeout_scale, overrides)
        seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
        expected = truth.get((file_sha256(folder / onnx_name), file_sha256(folder / spec_name)), "unknown")
        if args.box_scale != 1.0 and expected == "sat":
            expected = "unknown"  # a smaller box may exclude every counterexample
        status = "correct" if verdict == expected else (
            "WRONG" if verdict in ("sat", "unsat") and expected in ("sat", "unsat") else "open")
        results.append({"instance": key, "verdict": verdict, "truth": expected, "status": status,
                        "seconds": round(seconds, 3), "cpu_seconds": round(cpu, 3), "load": os.getloadavg()[0],
                        "detail": detail if isinstance(detail, str) else {k: detail.get(k) for k in
                                                                          ("domains", "max_depth", "max_queue",
                                                                           "lp_domains", "lp_refuted")}})
        domains = domain_count(results[-1])
        results[-1]["domains_per_s"] = round(domains / max(seconds, 1e-9), 1)
        print(f"{key:50s} {verdict:8s} truth={expected:7s} {status:7s} {seconds:7.2f}s  "
              f"{domains / max(seconds, 1e-9):7.0f} dom/s  {results[-1]['detail']}", flush=True)
    times = [r["seconds"] for r in results] or [0.0]
    summary = {
        "instances": len(results),
        "correct": sum(r["status"] == "correct" for r in results),
        "wrong": sum(r["status"] == "WRONG" for r in results),
        "open": sum(r["status"] == "open" for r in results),
        "total_seconds": round(sum(times), 2),
        "median_seconds": round(statistics.median(times), 3),
        "max_seconds": round(max(times), 2),
        # throughput over the instances that report their domain count (every finished search does)
        "domains": sum(domain_count(r) for r in results),
        "domains_per_s": round(sum(domain_count(r) for r in results)
                               / max(1e-9, sum(r["seconds"] for r in results if domain_count(r))), 1),
    }
    print(json.dumps(summary))
    out = ROOT / "benchmarks" / "results" / f"bab_{args.benchmark}{'-' + args.tag if args.tag else ''}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"summary": summary, "settings": {"threads": args.threads,
                                                                "timeout_scale": args.timeout_scale,
                                                                "device": args.device,
                                                                "box_scale": args.box_scale,
                                                                "overrides": args.set},
                               "machine": platform.platform(), "torch": torch.__version__,
                               "results": results}, indent=1))
    return 1 if summary["wrong"] else 0


if __name__ == "__main__":
    sys.exit(main())
