"""Measure VNN-LIB 1.0 parse (and write) time for robustness-style specs of growing input size.

Usage: python benchmarks/bench_vnnlib_parse.py [--sizes 784 3072 12288] [--repeats 5] [--out PATH]
Writes benchmarks/results/vnnlib_parse.json by default: per size, the spec's bytes and the median and
minimum wall time of parse_vnnlib and write_vnnlib; plus the real mnistfc files when ../shared is present.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np

from verikit.spec.vnnlib import parse_vnnlib, read_spec_text, write_vnnlib

HERE = Path(__file__).resolve().parent
DEFAULT_OUT = HERE / "results" / "vnnlib_parse.json"
MNISTFC = HERE.parents[1] / "shared" / "benchmarks" / "mnistfc"


def robustness_text(n_inputs: int, n_classes: int = 10, label: int = 3, eps: float = 0.03, seed: int = 0) -> str:
    """A VNN-COMP style spec: an L-inf box around a random image and `n_classes - 1` output disjuncts."""
    x = np.random.default_rng(seed).uniform(0.0, 1.0, n_inputs)
    lines = [f"; synthetic robustness spec, {n_inputs} inputs"]
    lines += [f"(declare-const X_{i} Real)" for i in range(n_inputs)]
    lines += [f"(declare-const Y_{j} Real)" for j in range(n_classes)]
    for i, value in enumerate(x.tolist()):
        lines.append(f"(assert (<= X_{i} {min(1.0, value + eps)!r}))")
        lines.append(f"(assert (>= X_{i} {max(0.0, value - eps)!r}))")
    lines.append("(assert (or")
    lines += [f"    (and (>= Y_{j} Y_{label}))" for j in range(n_classes) if j != label]
    lines.append("))")
    return "\n".join(lines) + "\n"


def time_call(function, repeats: int) -> list[float]:
    seconds = []
    for _ in range(repeats):
        started = time.perf_counter()
        function()
        seconds.append(time.perf_counter() - started)
    return seconds


def measure(name: str, text: str, repeats: int) -> dict:
    prop = parse_vnnlib(text)
    parse_s = time_call(lambda: parse_vnnlib(text), repeats)
    write_s = time_call(lambda: write_vnnlib(prop), repeats)
    return {
        "name": name,
        "n_inputs": prop.n_inputs,
        "n_outputs": prop.n_outputs,
        "cases": len(prop.cases),
        "disjuncts": sum(len(case.disjuncts) for case in prop.cases),
        "bytes": len(text.encode()),
        "parse_s_median": statistics.median(parse_s),
        "parse_s_min": min(parse_s),
        "write_s_median": statistics.median(write_s),
        "repeats": repeats,
    }


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[784, 3072, 12288])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--no-real", action="store_true", help="skip the real mnistfc files")
    args = parser.parse_args(argv)

    results = [measure(f"synthetic_{n}", robustness_text(n), args.repeats) for n in args.sizes]
    if not args.no_real and MNISTFC.exists():
        for path in sorted(MNISTFC.glob("*.vnnlib"))[:3]:
            text, _ = read_spec_text(path)
            results.append(measure(f"mnistfc/{path.name}", text, args.repeats))
    report = {
        "benchmark": "vnnlib_parse",
        "python": sys.version.split()[0],
        "numpy": np.__version__,
        "machine": platform.machine(),
        "processor": platform.processor() or platform.machine(),
        "results": results,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    for row in results:
        print(f"{row['name']:>32}: {row['n_inputs']:>6} inputs, {row['bytes'] / 1e3:8.1f} kB, "
              f"parse {row['parse_s_median'] * 1e3:7.1f} ms (min {row['parse_s_min'] * 1e3:.1f}), "
              f"write {row['write_s_median'] * 1e3:6.1f} ms")
    return report


if __name__ == "__main__":
    main()
