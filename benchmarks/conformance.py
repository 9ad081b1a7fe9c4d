"""Run the VNN-LIB SATisfactory conformance suite against `verikit-vnnlib` and record the counts.

Usage: python benchmarks/conformance.py [--timeout 60] [--test CATEGORY] [--sweep-unclaimed] [--workdir DIR]
                                        [--out PATH]

Needs `pip install vnnlib-satisfactory vnnlib` and the `verikit-vnnlib` entry point (pip install -e .).
Runs, in a scratch folder (the suite writes `.vnnlib-satisfactory/` into its working directory):

    vnnlib-satisfactory run --solver <venv>/bin/verikit-vnnlib --timeout T
    vnnlib-satisfactory report view --outcome fail --outcome suspect
    vnnlib-satisfactory compliance opset|vnnlib|serialise-assignments --solver ...

and writes benchmarks/results/conformance.json: the suite's summary (pass/fail/suspect/error/skip), the
answers verikit gave (sat/unsat/unknown/timed-out), per-category outcomes, what was skipped and why, and
the exit status of `report view`. Exits 1 unless `report view` and every compliance check exit 0 (a CI job).
The suite runs a case only when `supports` claims its operator or theory; an `unknown` on a claimed case
is a *suspect* and fails the job, so `supports` must only claim what verikit decides. `--sweep-unclaimed`
also runs the cases the suite skipped, directly, and fails the job if any answer there is wrong (sat for an
unsat case or the reverse): unknown, timed-out or an error are allowed where verikit claims nothing.
"""

from __future__ import annotations

import argparse
import collections
import json
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path

HERE = Path(__file__).resolve().parent
DEFAULT_OUT = HERE / "results" / "conformance.json"
COMPLIANCE = ("opset", "vnnlib", "serialise-assignments")


def _tool(name: str) -> str:
    """The executable `name` next to this Python (the venv's bin), else on PATH."""
    local = Path(sys.executable).with_name(name)
    found = str(local) if local.exists() else shutil.which(name)
    if not found:
        sys.exit(f"conformance: '{name}' not found; pip install vnnlib-satisfactory vnnlib and pip install -e .")
    return found


def _answer(stdout: str) -> str:
    first = stdout.splitlines()[0].strip() if stdout.strip() else ""
    return first if first in ("sat", "unsat", "unknown", "timed-out") else f"no answer ({first[:40]!r})"


def _sweep(workdir: Path, solver: str, timeout: float, skipped: set[str]) -> dict:
    """Run the skipped cases directly, as the suite would; count answers and list the wrong ones."""
    cache = workdir / ".vnnlib-satisfactory"
    counts: collections.Counter = collections.Counter()
    wrong, other = [], []
    for entry in json.loads((cache / "manifest.json").read_text()):
        test_id = f"{entry['category']}/{entry['name']}"
        if test_id not in skipped:
            continue
        folder = cache / "tests" / entry["category"]
        command = [solver, "verify", str(folder / entry["vnnlib"]), "--timeout", str(timeout)]
        for name, onnx_file in entry["networks"].items():
            command += ["--network", f"{name}={folder / onnx_file}"]
        stderr = ""
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=timeout + 30)
            answer = _answer(done.stdout) if done.returncode == 0 else f"error (exit {done.returncode})"
            stderr = (done.stderr.strip().splitlines() or [""])[-1][:300]
        except subprocess.TimeoutExpired:
            answer = "killed after the timeout"
        expected = entry["expected"].lower()
        if answer in ("sat", "unsat"):
            answer = "right" if answer == expected else "WRONG"
        counts[answer] += 1
        if answer == "WRONG":
            wrong.append({"test": test_id, "expected": expected})
        elif answer != "right":
            other.append({"test": test_id, "expected": expected, "answer": answer, "stderr_tail": stderr})
    return {"counts": dict(counts), "wrong": wrong, "not_right": other}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds per case (the suite's default is 5)")
    parser.add_argument("--test", help="run one category only, e.g. relu")
    parser.add_argument("--sweep-unclaimed", action="store_true",
                        help="also run the skipped cases directly and fail on any wrong answer")
    parser.add_argument("--workdir", type=Path, help="where the suite writes .vnnlib-satisfactory (default: temp)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    suite, solver = _tool("vnnlib-satisfactory"), _tool("verikit-vnnlib")
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="verikit-conformance-"))
    workdir.mkdir(parents=True, exist_ok=True)

    run = [suite, "run", "--solver", solver, "--timeout", str(args.timeout), "--no-verbose"]
    run += ["--test", args.test] if args.test else []
    started = time.monotonic()
    done = subprocess.run(run, cwd=workdir, capture_output=True, text=True)
    seconds = time.monotonic() - started
    (workdir / "run.log").write_text(done.stdout + done.stderr)
    report_path = workdir / ".vnnlib-satisfactory" / "report.json"
    if not report_path.exists():
        print(done.stdout[-3000:] + done.stderr[-3000:], file=sys.stderr)
        print(f"conformance: the suite wrote no report (exit {done.returncode})", file=sys.stderr)
        return 1
    view = [suite, "report", "view", "--outcome", "fail", "--outcome", "suspect"]
    viewed = subprocess.run(view, cwd=workdir, capture_output=True, text=True)
    compliance = {}
    for check in COMPLIANCE:
        result = subprocess.run([suite, "compliance", check, "--solver", solver, "--timeout", "60"],
                                cwd=workdir, capture_output=True, text=True)
        compliance[check] = {"exit_code": result.returncode, "output": result.stdout.strip().splitlines()[-1:]}

    report = json.loads(report_path.read_text())
    results, skipped = report["results"], report.get("skipped", [])
    by_category: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    for r in results:
        by_category[r["category"]][r["outcome"]] += 1
    for s in skipped:
        by_category[s["category"]]["skip"] += 1
    not_passed = [{"test": r["test_id"], "outcome": r["outcome"], "expected": r["expected"],
                   "answer": _answer(r["stdout"]), "stderr_tail": r["stderr"].strip().splitlines()[-1:]}
                  for r in results if r["outcome"] != "pass"]
    record = {
        "what": "VNN-LIB SATisfactory conformance suite against verikit-vnnlib",
        "commands": [" ".join(["vnnlib-satisfactory", *run[1:3], "verikit-vnnlib", *run[4:]]),
                     " ".join(["vnnlib-satisfactory", *view[1:]])],
        "suite_version": metadata.version("vnnlib-satisfactory"),
        "verikit_version": metadata.version("verikit"),
        "vnnlib_version": metadata.version("vnnlib"),
        "timeout_s_per_case": args.timeout,
        "wall_s": round(seconds, 1),
        "platform": f"{platform.system()} {platform.machine()}, Python {platform.python_version()}",
        "cases": len(results) + len(skipped),
        "summary": report["summary"],
        "answers": dict(collections.Counter(_answer(r["stdout"]) for r in results)),
        "expected_of_run_cases": dict(collections.Counter(r["expected"] for r in results)),
        "report_view_exit_code": viewed.returncode,
        "compliance": compliance,
        "by_category": {k: dict(v) for k, v in sorted(by_category.items())},
        "skipped": sorted({(s["category"], s["missing_op"]) for s in skipped}),
        "not_passed": not_passed,
    }
    if args.sweep_unclaimed:
        record["unclaimed_sweep"] = _sweep(workdir, solver, args.timeout, {s["test_id"] for s in skipped})
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=2) + "\n")
    summary = report["summary"]
    print(f"{summary['passed']}/{summary['total']} passed, {summary['failed']} failed, {summary['suspect']} suspect, "
          f"{summary['errored']} errored, {summary['skipped']} skipped; answers {record['answers']}; "
          f"report view exit {viewed.returncode}; compliance "
          + ", ".join(f"{k} {v['exit_code']}" for k, v in compliance.items()) + f" -> {args.out}")
    ok = viewed.returncode == 0 and all(v["exit_code"] == 0 for v in compliance.values())
    if args.sweep_unclaimed:
        print(f"unclaimed cases run directly: {record['unclaimed_sweep']['counts']}")
        ok = ok and not record["unclaimed_sweep"]["wrong"]
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
