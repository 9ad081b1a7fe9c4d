"""Root bounds of one-hidden-layer networks: α-CROWN against the input-space hull LP (verikit.engines.bab.hull).

    .venv/bin/python benchmarks/bench_hull.py benchmarks/instances/verivital_avgpool40.csv
    .venv/bin/python benchmarks/bench_hull.py benchmarks/instances/verivital_avgpool40.csv --only prop_7_0.04

Per instance (first case of the spec; rows whose chain form has another depth are skipped): the worst
disjunct's root margin by α-CROWN (40 steps; on one layer that is the triangle LP's) and by the hull LP
(the rigorous Lagrangian bound from HiGHS's multipliers; > 0 proves the instance at the root), the LP's
size and seconds. One torch thread. Writes benchmarks/results/hull.json and prints a table.
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
from verikit.engines.bab.hull import hull_lp, refute_disjunct  # noqa: E402
from verikit.engines.crown.optimise import optimise_spec  # noqa: E402
from verikit.engines.crown.propagate import ReluMlp, layer_bounds  # noqa: E402
from verikit.engines.spec_rows import SpecRows  # noqa: E402
from verikit.onnx.load import load_network  # noqa: E402
from verikit.onnx.pwl import to_piecewise_linear  # noqa: E402
from verikit.spec.vnnlib import read_vnnlib  # noqa: E402


def measure(onnx: Path, vnnlib: Path, seconds: float) -> dict | None:
    net = ReluMlp.from_pwl(to_piecewise_linear(load_network(onnx)), torch.float64)
    if net.depth != 1:
        return None
    case = read_vnnlib(vnnlib).cases[0]
    x_lower = torch.tensor(case.box.lower).unsqueeze(0)
    x_upper = torch.tensor(case.box.upper).unsqueeze(0)
    rows = SpecRows.of(case, torch.float64)
    bounds = layer_bounds(net, x_lower, x_upper)
    started = time.perf_counter()
    found, _ = optimise_spec(net, x_lower, x_upper, rows.C, rows.d, bounds, steps=40, lr=0.1)
    alpha = rows.per_disjunct(found.lower)[0]
    alpha_seconds = time.perf_counter() - started
    started = time.perf_counter()
    lp = hull_lp(net, bounds, case.box.lower, case.box.upper)
    hull = []
    for conjunction in case.disjuncts:
        outcome = refute_disjunct(lp, conjunction.C, conjunction.d, Budget.seconds(seconds))
        hull.append(float("-inf") if outcome.lower is None else outcome.lower)
    return {"onnx": onnx.name, "vnnlib": vnnlib.name, "alpha_crown": float(alpha.min()), "hull": min(hull),
            "alpha_seconds": round(alpha_seconds, 2), "hull_seconds": round(time.perf_counter() - started, 2),
            "unstable": lp.unstable, "nonzeros": int(lp.G.nnz)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("instances", help="an instances CSV (onnx,vnnlib,timeout)")
    parser.add_argument("--seconds", type=float, default=60.0, help="time limit of each LP")
    add_only(parser)
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "hull.json"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    rows = []
    print(f"{'network':<22} {'spec':<22} {'α-CROWN':>9} {'hull':>9} {'α s':>6} {'hull s':>7} {'unstable':>8}")
    for instance in chosen(args.instances, args.only):
        row = measure(instance.onnx, instance.vnnlib, args.seconds)
        if row is None:
            continue
        rows.append(row)
        print(f"{row['onnx']:<22} {row['vnnlib']:<22} {row['alpha_crown']:>9.3f} {row['hull']:>9.3f} "
              f"{row['alpha_seconds']:>6.1f} {row['hull_seconds']:>7.1f} {row['unstable']:>8}", flush=True)
    print(f"proven at the root: α-CROWN {sum(r['alpha_crown'] > 0 for r in rows)}, "
          f"hull {sum(r['hull'] > 0 for r in rows)} of {len(rows)}")
    write_rows(args.out, args, rows)


if __name__ == "__main__":
    main()
