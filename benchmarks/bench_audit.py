"""Speed of `verikit audit`: 500 digits samples at one ε with CROWN and with α-CROWN.

    .venv/bin/python benchmarks/bench_audit.py                 # writes benchmarks/results/audit.json
    .venv/bin/python benchmarks/bench_audit.py --threads 2 --samples 500 --eps 0.02

Samples: the first 500 of scikit-learn's bundled 8x8 digits, pixels/16 in [0, 1] (no download). Each
(model, method) pair is warmed up on 8 samples first (lazy imports, auto_LiRPA's first optimiser
set-up), then timed in-process from loaded model to finished AuditResult. Then the MLP CROWN audit runs
once more end to end, as `python -m verikit audit` in a fresh process (imports, model and data loading
included); the script fails (exit 1) when that takes longer than --limit seconds.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from verikit.apps.audit import AuditSettings, audit  # noqa: E402
from verikit.apps.data import Dataset, Normalization  # noqa: E402
from verikit.onnx.load import load_network  # noqa: E402
from verikit.report.json import versions  # noqa: E402

MODELS = ("digits_mlp", "digits_cnn")
METHODS = ("crown", "alpha-crown")


def digits(count: int) -> Dataset:
    from sklearn.datasets import load_digits

    data = load_digits()
    return Dataset((data.data[:count] / 16.0).astype(np.float64), data.target[:count].astype(np.int64),
                   f"sklearn digits[:{count}]", "", (64,))


def run_one(model: str, method: str, dataset: Dataset, eps: float, seed: int) -> dict:
    network = load_network(ROOT / "models" / f"{model}.onnx")
    settings = AuditSettings(eps=(eps,), method=method, normalization=Normalization(clip_min=0.0, clip_max=1.0),
                             seed=seed)
    audit(network, dataset.head(8), settings)  # warm-up
    started = time.perf_counter()
    result = audit(network, dataset, settings)
    seconds = time.perf_counter() - started
    outcome = result.per_eps[0]
    return {
        "model": f"models/{model}.onnx", "method": method, "eps": eps, "norm": "inf", "samples": len(dataset),
        "seconds": round(seconds, 3), "samples_per_second": round(len(dataset) / seconds, 1),
        "certify_seconds": round(outcome.seconds["certify"], 3), "attack_seconds": round(outcome.seconds["attack"], 3),
        "clean_accuracy": outcome.clean_accuracy, "empirical_robust_accuracy": outcome.empirical_robust_accuracy,
        "certified_robust_accuracy": outcome.certified_robust_accuracy,
    }  # fmt: skip


def run_cli(dataset: Dataset, eps: float, threads: int) -> dict:
    """End to end: `python -m verikit audit` in a fresh process (imports and model loading included)."""
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "digits.npz"
        np.savez(data, x=dataset.x, y=dataset.y)
        command = [sys.executable, "-m", "verikit", "audit", str(ROOT / "models" / "digits_mlp.onnx"), "--data",
                   str(data), "--eps", str(eps), "--clip-min", "0", "--clip-max", "1", "--method", "crown",
                   "--threads", str(threads), "--json"]
        started = time.perf_counter()
        subprocess.run(command, check=True, capture_output=True)
        seconds = time.perf_counter() - started
    return {"command": "verikit audit models/digits_mlp.onnx --data <500 digits>.npz "
                       f"--eps {eps} --clip-min 0 --clip-max 1 --method crown --threads {threads} --json",
            "seconds": round(seconds, 3), "samples": len(dataset)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=500)
    parser.add_argument("--eps", type=float, default=0.02)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--limit", type=float, default=60.0, help="seconds the MLP CROWN audit may take")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "audit.json")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    dataset = digits(args.samples)
    runs = []
    for model in MODELS:
        for method in METHODS:
            row = run_one(model, method, dataset, args.eps, args.seed)
            runs.append(row)
            print(f"{model:11} {method:12} {row['samples']} samples in {row['seconds']:7.2f} s "
                  f"({row['samples_per_second']:7.1f} samples/s; certify {row['certify_seconds']:.2f} s, attack "
                  f"{row['attack_seconds']:.2f} s)  clean {row['clean_accuracy']:.3f} empirical "
                  f"{row['empirical_robust_accuracy']:.3f} certified {row['certified_robust_accuracy']:.3f}")
    cli = run_cli(dataset, args.eps, args.threads)
    print(f"end to end (fresh process): {cli['command']}: {cli['seconds']:.2f} s")
    passed = cli["seconds"] < args.limit
    report = {
        "benchmark": "audit", "command": "python benchmarks/bench_audit.py " + " ".join(argv or sys.argv[1:]),
        "data": dataset.source, "limit_seconds": args.limit, "passed": passed, "runs": runs, "end_to_end": cli,
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "torch_threads": args.threads,
                    "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None},
        "versions": versions(),
    }  # fmt: skip
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"end-to-end MLP CROWN audit {'within' if passed else 'OVER'} the {args.limit:g} s limit; wrote {args.out}")
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
