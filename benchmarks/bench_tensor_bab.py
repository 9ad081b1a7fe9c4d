"""The tensor branch and bound alone on VNN-COMP instances: outcome, domains bounded, domains per second.

    nice -n 5 /work/main/.venv/bin/python benchmarks/bench_tensor_bab.py INSTANCES.csv --seconds 60 \
        [--set tensor_bab.FIELD=VALUE ...] [--every N] [--first N]

Each instance: load, then TensorBabEngine(when=always) on every case with `--seconds` of budget (no
attack, no bounds stage in front). Writes benchmarks/results/tensor_bab/<csv stem>-<time>.json and prints
one line per instance. Rows of INSTANCES: onnx,vnnlib[,timeout] (paths relative to the CSV's folder).
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from verikit.core.result import Budget, Falsified, Proven  # noqa: E402
from verikit.engines.problem import Problem  # noqa: E402
from verikit.engines.tensor_bab.engine import TensorBabEngine  # noqa: E402
from verikit.onnx.load import load_network  # noqa: E402
from verikit.portfolio.options import Options  # noqa: E402
from verikit.spec.load import load_spec  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("instances", type=Path)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--set", action="append", default=[], dest="settings")
    parser.add_argument("--every", type=int, default=1)
    parser.add_argument("--first", type=int)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    options = Options().with_settings(["tensor_bab.when=always", *args.settings])
    engine = TensorBabEngine(options.tensor_bab, options.bounds.max_matrix_bytes)
    rows = [r for r in csv.reader(args.instances.open()) if r and not r[0].startswith("onnx")][:: args.every]
    rows = rows[: args.first] if args.first else rows
    base = args.instances.parent
    records = []
    for onnx_path, spec_path, *_ in rows:
        network = load_network(base / onnx_path)
        prop = load_spec(base / spec_path, n_inputs=network.n_inputs, n_outputs=network.n_outputs)
        problem = Problem(network)
        started = time.monotonic()
        outcomes = []
        for case in prop.cases:
            outcome = engine.run(problem, case, Budget.seconds(args.seconds))
            outcomes.append(outcome)
            if not isinstance(outcome, Proven):
                break
        seconds = time.monotonic() - started
        answer = ("sat" if any(isinstance(o, Falsified) for o in outcomes)
                  else "unsat" if all(isinstance(o, Proven) for o in outcomes) and len(outcomes) == len(prop.cases)
                  else "unknown")
        last = outcomes[-1]
        detail = last.certificate.detail if isinstance(last, Proven) else {}
        record = {"onnx": onnx_path, "vnnlib": Path(spec_path).name, "answer": answer, "seconds": round(seconds, 2),
                  "reason": getattr(last, "reason", ""), "detail": detail}
        records.append(record)
        print(f"{record['vnnlib']:45s} {answer:8s} {seconds:7.1f}s {record['reason'][:150]} {detail or ''}", flush=True)
    load = os.getloadavg()[0]
    out = ROOT / "benchmarks" / "results" / "tensor_bab"
    out.mkdir(parents=True, exist_ok=True)
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%S")
    path = out / f"{args.instances.stem}-{stamp}.json"
    path.write_text(json.dumps({"instances": str(args.instances), "seconds": args.seconds, "settings": args.settings,
                                "load_average_at_end": load, "records": records}, indent=2))
    print(f"wrote {path} (load average {load:.1f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
