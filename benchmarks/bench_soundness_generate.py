"""Time `verikit soundness generate`: a 10-instance MLP benchmark, end to end in a fresh process.

    .venv/bin/python benchmarks/bench_soundness_generate.py     # writes benchmarks/results/soundness_generate.json
    .venv/bin/python benchmarks/bench_soundness_generate.py --arch cnn --input-size 5 --count 10

The command runs as `python -m verikit soundness generate` (imports, training, planting, the strong
attack on every candidate and the complete-engine proofs of clean instances all included), with the
defaults unless told otherwise. The script fails (exit 1) when it takes longer than --limit seconds
(600: the target is a 10-instance MLP benchmark in under 10 minutes on a 2-core CPU). The load
average is recorded before and after: on a shared machine, wall time depends on it.
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

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from verikit.report.json import versions  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", default="mlp")
    parser.add_argument("--activation", default="relu")
    parser.add_argument("--count", type=int, default=10)
    parser.add_argument("--input-size", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--limit", type=float, default=600.0)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "soundness_generate.json")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as folder:
        bench = Path(folder) / "bench"
        command = [sys.executable, "-m", "verikit", "soundness", "generate", str(bench), "--arch", args.arch,
                   "--activation", args.activation, "--count", str(args.count), "--seed", str(args.seed),
                   "--threads", str(args.threads)]
        if args.input_size is not None:
            command += ["--input-size", str(args.input_size)]
        load_before = os.getloadavg()
        started, cpu_before = time.monotonic(), os.times()
        completed = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
        seconds = time.monotonic() - started
        cpu_after = os.times()
        if completed.returncode != 0:
            print(completed.stderr[-3000:], file=sys.stderr)
            return 1
        record = json.loads((bench / "answers" / "generation.json").read_text())

    cpu = (cpu_after.children_user - cpu_before.children_user) + (cpu_after.children_system
                                                                 - cpu_before.children_system)
    result = {
        "benchmark": "soundness_generate",
        "command": " ".join(["verikit", *command[3:]]).replace(str(bench), "OUT"),
        "wall_s": round(seconds, 1),
        "cpu_s": round(cpu, 1),
        "limit_s": args.limit,
        "within_limit": seconds <= args.limit,
        "generation_s": record["seconds"],
        "counts": record["counts"],
        "rejected_candidates": len(record["rejected"]),
        "networks": record["models"],
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                    "load_average_before": [round(v, 2) for v in load_before],
                    "load_average_after": [round(v, 2) for v in os.getloadavg()]},
        "versions": versions(),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: result[k] for k in ("command", "wall_s", "cpu_s", "counts", "within_limit")}, indent=2))
    return 0 if result["within_limit"] else 1


if __name__ == "__main__":
    sys.exit(main())
