"""Start-up cost of a verikit process: wall time of fresh processes, and what their imports cost.

    /work/main/.venv/bin/python benchmarks/bench_startup.py [--repeat 5]

Runs each command --repeat times as a new process (min and median wall, launch to exit), then one
`python -X importtime` run of an easy ACAS Xu `verikit verify` to list the heaviest top-level imports.
Writes benchmarks/results/startup.json. On a shared machine read the minimum: load only adds.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ACASXU = ROOT.parent / "shared" / "benchmarks" / "acasxu"
PY = sys.executable
VERIFY = [PY, "-m", "verikit", "verify", "--timeout", "116"]


def commands() -> dict[str, list[str]]:
    found = {
        "python (bare)": [PY, "-c", "pass"],
        "verikit --help": [PY, "-m", "verikit", "--help"],
        "import torch": [PY, "-c", "import torch"],
        "import numpy, onnx, onnxruntime": [PY, "-c", "import numpy, onnx, onnxruntime"],
        "verify tiny_relu (sat, no-op sized)": [*VERIFY, str(ROOT / "models" / "tiny_relu.onnx"),
                                                str(ROOT / "specs" / "tiny_relu_max_below_1.5_sat.vnnlib")],
    }
    if ACASXU.is_dir():
        found["verify ACAS Xu 2_1 prop_2 (sat)"] = [*VERIFY, str(ACASXU / "ACASXU_run2a_2_1_batch_2000.onnx"),
                                                    str(ACASXU / "prop_2.vnnlib")]
        found["verify ACAS Xu 1_1 prop_1 (unsat)"] = [*VERIFY, str(ACASXU / "ACASXU_run2a_1_1_batch_2000.onnx"),
                                                      str(ACASXU / "prop_1.vnnlib")]
    return found


def wall(command: list[str], env: dict) -> float:
    started = time.monotonic()
    subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, check=False)
    return time.monotonic() - started


def heaviest_imports(command: list[str], env: dict, top: int = 12) -> list[tuple[str, float]]:
    """Top-level packages by cumulative import time (s), from one `-X importtime` run of `command`."""
    done = subprocess.run([command[0], "-X", "importtime", *command[1:]], capture_output=True, text=True, env=env)
    packages: dict[str, float] = {}
    for line in done.stderr.splitlines():
        match = re.match(r"import time:\s+\d+ \|\s+(\d+) \| (\s*)(\S+)", line)
        if match and not match.group(2):  # imported at top level (no indentation)
            name = match.group(3).split(".")[0]
            packages[name] = packages.get(name, 0.0) + int(match.group(1)) / 1e6
    return sorted(packages.items(), key=lambda item: -item[1])[:top]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    results = {}
    for name, command in commands().items():
        walls = [wall(command, env) for _ in range(args.repeat)]
        results[name] = {"min_s": round(min(walls), 3), "median_s": round(statistics.median(walls), 3)}
        print(f"{name:<40} min {min(walls):6.3f} s   median {statistics.median(walls):6.3f} s", flush=True)
    probe = commands().get("verify ACAS Xu 2_1 prop_2 (sat)") or commands()["verify tiny_relu (sat, no-op sized)"]
    imports = heaviest_imports(probe, env)
    print("heaviest imports of one verify run:", ", ".join(f"{n} {s:.3f} s" for n, s in imports))
    out = ROOT / "benchmarks" / "results" / "startup.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"repeat": args.repeat, "load_average": os.getloadavg(), "walls": results,
                               "imports_s": dict(imports)}, indent=2) + "\n")
    print(f"written: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
