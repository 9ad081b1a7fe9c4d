"""Root bounds of ReLU MLPs before and after the hidden-bound tightening (verikit.engines.bab.tighten).

    .venv/bin/python benchmarks/bench_tighten.py benchmarks/instances/mnistfc_open18.csv
    .venv/bin/python benchmarks/bench_tighten.py benchmarks/instances/mnistfc_open18.csv --leaves 32 --max-leaves 32
    .venv/bin/python benchmarks/bench_tighten.py benchmarks/instances/mnistfc_open18.csv --only 256x4.onnx:prop_6_0.05

Per instance (first case of the spec): α-CROWN hidden bounds at the root (20 steps), then the tightening
(--leaves per neuron side, passes up to --max-leaves, at most --seconds), and both times the worst
disjunct's root margin by α-CROWN (40 steps; > 0 proves the instance at the root) and the unstable
neurons per layer. One torch thread. Writes benchmarks/results/tighten.json and prints a table.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from _rows import add_only, chosen, write_rows  # noqa: E402
from verikit.core.result import Budget  # noqa: E402
from verikit.engines.bab.tighten import tighten_layers  # noqa: E402
from verikit.engines.crown.optimise import optimise_layer_bounds, optimise_spec  # noqa: E402
from verikit.engines.crown.propagate import ReluMlp, layer_bounds  # noqa: E402
from verikit.engines.spec_rows import SpecRows  # noqa: E402
from verikit.onnx.load import load_network  # noqa: E402
from verikit.onnx.pwl import to_piecewise_linear  # noqa: E402
from verikit.spec.vnnlib import read_vnnlib  # noqa: E402


def margin(net: ReluMlp, x_lower, x_upper, rows: SpecRows, bounds) -> float:
    """The worst disjunct's root lower bound (α-CROWN, 40 steps)."""
    found, _ = optimise_spec(net, x_lower, x_upper, rows.C, rows.d, bounds, steps=40, lr=0.1)
    return float(rows.per_disjunct(found.lower)[0].min())


def measure(onnx: Path, vnnlib: Path, args: argparse.Namespace) -> dict:
    network = load_network(onnx)
    net = ReluMlp.from_pwl(to_piecewise_linear(network), torch.float64)
    case = read_vnnlib(vnnlib).cases[0]
    x_lower = torch.tensor(case.box.lower).unsqueeze(0)
    x_upper = torch.tensor(case.box.upper).unsqueeze(0)
    rows = SpecRows.of(case, torch.float64)
    started = time.perf_counter()
    root = optimise_layer_bounds(net, x_lower, x_upper, layer_bounds(net, x_lower, x_upper), steps=20, lr=0.1)
    root_seconds = time.perf_counter() - started
    tight, stats = tighten_layers(net, x_lower, x_upper, root, Budget.seconds(args.seconds), leaves=args.leaves,
                                  max_leaves=args.max_leaves, steps=5, lr=0.1, alpha_steps=20,
                                  max_bytes=2_000_000_000)
    return {"onnx": onnx.name, "vnnlib": vnnlib.name, "root_seconds": round(root_seconds, 2),
            "margin_before": margin(net, x_lower, x_upper, rows, root),
            "margin_after": margin(net, x_lower, x_upper, rows, tight),
            "unstable_before": stats.unstable_before, "unstable_after": stats.unstable_after,
            "tighten_seconds": round(stats.seconds, 2), "passes": stats.passes, "leaves": stats.leaves}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("instances", help="an instances CSV (onnx,vnnlib,timeout) of ReLU MLPs")
    parser.add_argument("--leaves", type=int, default=32)
    parser.add_argument("--max-leaves", type=int, default=512)
    parser.add_argument("--seconds", type=float, default=90.0, help="budget of the tightening per instance")
    add_only(parser)
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "tighten.json"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    rows = []
    print(f"{'network':<22} {'spec':<22} {'margin before':>13} {'after':>9} {'seconds':>8}  unstable per layer")
    for instance in chosen(args.instances, args.only):
        row = measure(instance.onnx, instance.vnnlib, args)
        rows.append(row)
        print(f"{row['onnx']:<22} {row['vnnlib']:<22} {row['margin_before']:>13.3f} {row['margin_after']:>9.3f} "
              f"{row['tighten_seconds']:>8.1f}  {row['unstable_before']} -> {row['unstable_after']}", flush=True)
    proven = sum(row["margin_after"] > 0 for row in rows)
    print(f"{proven} of {len(rows)} proven at the root after tightening "
          f"({sum(row['margin_before'] > 0 for row in rows)} before)")
    write_rows(args.out, args, rows)


if __name__ == "__main__":
    main()
