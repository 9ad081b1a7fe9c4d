"""How the LPs of ReLU branching (verikit.engines.bab.leaf) fare on one MNIST-FC instance: free neurons per
open domain, seconds per LP, domains refuted.

    .venv/bin/python benchmarks/bench_lp_domains.py mnist-net_256x4.onnx prop_0_0.03.vnnlib --seconds 40

Runs ReLU branching with bab.lp_max_unstable=--limit (default: every open domain) on the instance's first
case, wrapping leaf.settle_small / leaf.settle_leaf to record what each LP saw; prints a summary and
writes benchmarks/results/lp_domains_<model>_<spec>.json.
"""

from __future__ import annotations

import argparse
import collections
import json
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from verikit.core.result import Budget  # noqa: E402
from verikit.engines.bab import engine as bab  # noqa: E402
from verikit.engines.bab import leaf  # noqa: E402
from verikit.onnx.load import load_network  # noqa: E402
from verikit.onnx.pwl import to_piecewise_linear  # noqa: E402
from verikit.spec.vnnlib import read_vnnlib  # noqa: E402

SHARED = ROOT.parent / "shared" / "benchmarks" / "mnistfc"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model")
    parser.add_argument("spec")
    parser.add_argument("--seconds", type=float, default=40.0)
    parser.add_argument("--limit", type=int, default=1_000_000, help="bab.lp_max_unstable")
    args = parser.parse_args()
    torch.set_num_threads(1)
    free_counts: collections.Counter = collections.Counter()
    lps: list[dict] = []
    settle_small, settle_leaf = leaf.settle_small, leaf.settle_leaf

    def small(net64, bounds64, splits, *rest, **kw):
        free = sum(((lo < 0) & (up > 0) & (s == 0)).sum(dim=1)
                   for lo, up, s in zip(bounds64.lower, bounds64.upper, splits))
        free_counts.update(free.tolist())
        return settle_small(net64, bounds64, splits, *rest, **kw)

    def one(*a, **kw):
        start = time.perf_counter()
        candidates, refuted = settle_leaf(*a, **kw)
        lps.append({"seconds": round(time.perf_counter() - start, 4), "refuted": refuted})
        return candidates, refuted

    leaf.settle_small, leaf.settle_leaf = small, one
    network = load_network(SHARED / args.model)
    prop = read_vnnlib(SHARED / args.spec)
    start = time.perf_counter()
    outcome = bab.run(to_piecewise_linear(network), network, prop.cases[0], Budget.seconds(args.seconds),
                      branching="relu", lp_max_unstable=args.limit)
    summary = {"outcome": type(outcome).__name__, "reason": getattr(outcome, "reason", ""),
               "seconds": round(time.perf_counter() - start, 2), "lps": len(lps),
               "refuted": sum(lp["refuted"] for lp in lps),
               "seconds_per_lp": round(sum(lp["seconds"] for lp in lps) / max(1, len(lps)), 3),
               "free_neurons": {"min": min(free_counts, default=None), "max": max(free_counts, default=None)}}
    print(json.dumps(summary))
    out = ROOT / "benchmarks" / "results" / f"lp_domains_{Path(args.model).stem}_{Path(args.spec).stem}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"summary": summary, "lps": lps, "free_counts": dict(free_counts)}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
