"""verikit against a peer verifier, one new process per instance, as users and VNN-COMP run them.

    /work/main/.venv/bin/python benchmarks/side_by_side.py acasxu                  # all 186, VNN-COMP timeouts
    /work/main/.venv/bin/python benchmarks/side_by_side.py acasxu --every 18 --burn # 11 instances, a CPU burner beside
    /work/main/.venv/bin/python benchmarks/side_by_side.py ../shared/benchmarks/mnistfc/mnistfc_instances.csv

Per instance: `verikit run-instance v1 CATEGORY ONNX VNNLIB RESULT TIMEOUT` and the peer's VNN-COMP
`run_instance.sh` with the same arguments, each a new process, timed from launch to exit. Which tool goes
first alternates from one instance to the next, so machine noise hits both alike. Answers are scored
against ../shared/benchmarks/ground_truth/<family>.csv, matched by the sha256 of the model and spec bytes.
Writes <out>/<tool>.csv (one row per instance) and <out>/summary.json, and prints per tool: correct,
wrong, undecided, total and median wall time, the largest overrun of the timeout, and verikit/peer ratios.
The default peer is nnenum (../.peers/nnenum-venv/run_instance.sh, made by ../shared/peers/setup_nnenum.sh).
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from verikit.apps.bench import Instance, file_sha256, read_ground_truth, read_instances  # noqa: E402

SHARED = ROOT.parent / "shared" / "benchmarks"
NNENUM = ROOT.parent / ".peers" / "nnenum-venv" / "run_instance.sh"
ANSWERS = {"holds": "unsat", "violated": "sat", "unsat": "unsat", "sat": "sat", "timeout": "timeout",
           "unknown": "unknown", "error": "error"}
KILL_AFTER = 10.0  # s past the timeout before a tool's process group is killed (its overrun is recorded)
# thread settings the caller's shell may carry; each tool chooses its own (nnenum's script sets them to 1)
THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


@dataclass(frozen=True)
class Run:
    """One tool on one instance."""

    onnx: str
    vnnlib: str
    timeout_s: float
    answer: str  # sat / unsat / timeout / unknown / error / none (no result file)
    truth: str
    status: str  # correct / wrong / undecided / unchecked (decided, no ground truth)
    wall_s: float
    overrun_s: float  # wall time past the timeout (negative: ended before it)
    exit_code: int
    first: bool  # this tool ran first on this instance


def read_answer(path: Path) -> str:
    try:
        first = path.read_text().strip().splitlines()[0].strip().lower()
    except (OSError, IndexError):
        return "none"
    return ANSWERS.get(first, "error")


def score(answer: str, truth: str) -> str:
    if answer not in ("sat", "unsat"):
        return "undecided"
    if truth not in ("sat", "unsat"):
        return "unchecked"
    return "correct" if answer == truth else "wrong"


def run_tool(command: list[str], instance: Instance, timeout: float, result: Path, env: dict) -> tuple[float, int]:
    """Launch one tool on one instance; returns (wall seconds from launch to exit, exit code)."""
    result.parent.mkdir(parents=True, exist_ok=True)
    result.unlink(missing_ok=True)
    args = [*command, "v1", instance.category, str(instance.onnx), str(instance.vnnlib), str(result), f"{timeout:g}"]
    started = time.monotonic()
    process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env,
                               start_new_session=True)
    try:
        code = process.wait(timeout=timeout + KILL_AFTER)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, 9)  # the tool's own process group (nnenum starts workers)
        code = process.wait()
    except BaseException:  # the harness itself is stopped: take the running tool along
        os.killpg(process.pid, 9)
        raise
    return time.monotonic() - started, code


def summarise(runs: list[Run]) -> dict:
    walls = [r.wall_s for r in runs]
    counts = {key: sum(r.status == key for r in runs) for key in ("correct", "wrong", "undecided", "unchecked")}
    return {**counts, "instances": len(runs), "total_s": round(sum(walls), 2),
            "median_s": round(statistics.median(walls), 3) if walls else 0.0,
            "slowest_s": round(max(walls), 2) if walls else 0.0,
            "max_overrun_s": round(max(r.overrun_s for r in runs), 2) if runs else 0.0,
            "answers": {a: sum(r.answer == a for r in runs) for a in sorted({r.answer for r in runs})}}


def write_csv(path: Path, runs: list[Run]) -> None:
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(Run.__dataclass_fields__))
        writer.writeheader()
        writer.writerows(asdict(r) for r in runs)


def pick(instances: list[Instance], every: int, first: int | None) -> list[Instance]:
    chosen = instances[::every]
    return chosen[:first] if first else chosen


def burner() -> subprocess.Popen:
    """One process that keeps one CPU busy (a second job on the machine)."""
    return subprocess.Popen([sys.executable, "-c", "while True: pass"], stdout=subprocess.DEVNULL)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("source", help="a family under ../shared/benchmarks (acasxu, mnistfc, ...) or an instances CSV")
    parser.add_argument("--ground-truth", type=Path, help="default: ../shared/benchmarks/ground_truth/<family>.csv")
    parser.add_argument("--peer", default=f"nnenum={NNENUM}", help="NAME=PATH of a VNN-COMP run_instance.sh; "
                        "'none' runs verikit alone")
    parser.add_argument("--every", type=int, default=1, help="take every N-th instance (file order)")
    parser.add_argument("--first", type=int, help="stop after this many instances (after --every)")
    parser.add_argument("--timeout-scale", type=float, default=1.0, help="multiply every instance's timeout")
    parser.add_argument("--burn", action="store_true", help="keep one CPU-burning process running beside both tools")
    parser.add_argument("--out", type=Path, help="default: benchmarks/results/side_by_side/<family>-<time>[-burn]")
    args = parser.parse_args()

    family_dir = SHARED / args.source
    source = family_dir if family_dir.is_dir() else Path(args.source)
    instances = pick(read_instances(source), args.every, args.first)
    family = instances[0].category if instances else "none"
    truth_file = args.ground_truth or SHARED / "ground_truth" / f"{family}.csv"
    truths = read_ground_truth(truth_file) if truth_file.is_file() else {}

    tools = {"verikit": [sys.executable, "-m", "verikit", "run-instance"]}
    if args.peer != "none":
        name, _, path = args.peer.partition("=")
        if not Path(path).is_file():
            parser.error(f"peer script not found: {path} (run ../shared/peers/setup_nnenum.sh, or --peer none)")
        tools[name] = [path]
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    out = args.out or ROOT / "benchmarks" / "results" / "side_by_side" / f"{family}-{stamp}{'-burn' if args.burn else ''}"
    out.mkdir(parents=True, exist_ok=True)
    peer_env = {k: v for k, v in os.environ.items() if k not in THREAD_VARIABLES}
    ours_env = {**peer_env, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH", "")]))}

    runs: dict[str, list[Run]] = {name: [] for name in tools}
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # a killed harness still stops its burner
    burning = burner() if args.burn else None
    started = time.monotonic()
    try:
        for index, instance in enumerate(instances):
            timeout = instance.timeout * args.timeout_scale
            key = (file_sha256(instance.onnx), file_sha256(instance.vnnlib))
            truth = truths.get(key, "unknown")
            order = list(tools) if index % 2 == 0 else list(reversed(tools))
            line = [f"[{index + 1}/{len(instances)}] {instance.onnx.stem} {instance.vnnlib.stem} ({truth}, {timeout:g} s)"]
            for name in order:
                result = out / "results" / name / f"{index:04d}.txt"
                wall, code = run_tool(tools[name], instance, timeout, result,
                                      ours_env if name == "verikit" else peer_env)
                answer = read_answer(result)
                runs[name].append(Run(str(instance.onnx), str(instance.vnnlib), timeout, answer, truth,
                                      score(answer, truth), round(wall, 3), round(wall - timeout, 3), code,
                                      name == order[0]))
                line.append(f"{name} {answer} {wall:.2f} s")
            print("  ".join(line), flush=True)
    finally:
        if burning is not None:
            burning.kill()
            burning.wait()
    for name, tool_runs in runs.items():
        write_csv(out / f"{name}.csv", tool_runs)
    summary = {"command": " ".join([Path(sys.executable).name, *sys.argv]), "instances": len(instances),
               "burn": args.burn, "timeout_scale": args.timeout_scale, "wall_clock_s": round(time.monotonic() - started, 1),
               "machine": {"cpus": os.cpu_count(), "affinity": len(os.sched_getaffinity(0)),
                           "load_average_at_end": os.getloadavg(), "python": platform.python_version()},
               "tools": {name: summarise(tool_runs) for name, tool_runs in runs.items()}}
    if len(runs) == 2 and all(runs.values()):
        ours, theirs = (summary["tools"][name] for name in tools)
        summary["ratio_total"] = round(ours["total_s"] / max(theirs["total_s"], 1e-9), 3)
        summary["ratio_median"] = round(ours["median_s"] / max(theirs["median_s"], 1e-9), 3)
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    print_summary(summary)
    print(f"written: {out}")
    return 0


def print_summary(summary: dict) -> None:
    print(f"{'tool':<10} {'correct':>7} {'wrong':>5} {'undecided':>9} {'unchecked':>9} {'total s':>9} "
          f"{'median s':>8} {'slowest s':>9} {'max overrun s':>13}")
    for name, s in summary["tools"].items():
        print(f"{name:<10} {s['correct']:>7} {s['wrong']:>5} {s['undecided']:>9} {s['unchecked']:>9} "
              f"{s['total_s']:>9.2f} {s['median_s']:>8.3f} {s['slowest_s']:>9.2f} {s['max_overrun_s']:>13.2f}")
    if "ratio_total" in summary:
        print(f"verikit / peer: total {summary['ratio_total']:.3f}, median {summary['ratio_median']:.3f}")


if __name__ == "__main__":
    sys.exit(main())
