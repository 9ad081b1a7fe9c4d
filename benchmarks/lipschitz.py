"""Lipschitz bounds (ℓ2) on the bundled digits MLP and the MNIST-FC networks, and a width sweep.

    PYTHONPATH=. /work/main/.venv/bin/python benchmarks/lipschitz.py [--sdp-seconds 120]
    PYTHONPATH=. /work/main/.venv/bin/python benchmarks/lipschitz.py --maxmin   # MaxMin networks only

Per model and method (naive, LipSDP-Layer, LipSDP-Neuron): the proven bound, the solver's own objective,
seconds, peak memory (each method in a fresh process: its ru_maxrss), and the witnessed lower bound.
Writes benchmarks/results/lipschitz.json. --maxmin: the MaxMin networks (models/digits_maxmin.onnx,
orthogonal; and the same architecture at its random initialisation), LipSDP with the extension's
constraints against LipSDP on the ReLU rewriting → benchmarks/results/lipschitz_maxmin.json.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "benchmarks" / "mnistfc"
MODELS = [ROOT / "models" / "digits_mlp.onnx", *(SHARED / f"mnist-net_256x{d}.onnx" for d in (2, 4, 6))]
METHODS = ("naive", "lipsdp-layer", "lipsdp-neuron")


def one(model: str, method: str, seconds: float, lower_seconds: float, maxmin: str = "extension") -> dict:
    """Run in a fresh process: one bound, its timings and this process's peak memory."""
    import numpy as np

    from verikit.lipschitz import lipschitz_bound, read_lipnet

    data = (_random(model) if model.startswith("random:") else _random_maxmin(model)
            if model.startswith("random-maxmin:") else Path(model).read_bytes())
    net = read_lipnet(data)
    replay = None
    if lower_seconds > 0:
        replay = net.chain.evaluate  # float64 of the exact weights; the CLI replays through onnxruntime
    started = time.monotonic()
    # the bound is global, so the lower bound may search anywhere: [-1, 1]^n (pixel inputs live in [0, 1])
    region_for_lower = (np.full(net.n_inputs, -1.0), np.ones(net.n_inputs))
    result = lipschitz_bound(net, method=method, deadline=started + seconds, maxmin=maxmin)
    if replay is not None:
        from verikit.lipschitz.lower import lower_bound

        result.lower, _ = lower_bound(net, None, "2", *region_for_lower, replay, seconds=lower_seconds)
    out = result.to_dict()
    out["wall_s"] = time.monotonic() - started
    out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    out["sizes"] = [net.n_inputs, *net.hidden_sizes, net.n_outputs]
    return out


def _random(spec: str) -> bytes:
    """random:IN-H-...-OUT[:seed]: a ReLU MLP with He-scaled float32 weights."""
    sys.path.insert(0, str(ROOT))
    from tests.onnx_factory import mlp

    sizes = tuple(int(s) for s in spec.split(":")[1].split("-"))
    return mlp(sizes, seed=0)


def _random_maxmin(spec: str) -> bytes:
    """random-maxmin:SEED: models/example_nets.make_maxmin (64-64-64-10, MaxMin) at torch's default
    initialisation under SEED (not orthogonal: the extension has something to gain over the naive product)."""
    import torch

    sys.path.insert(0, str(ROOT / "models"))
    from example_nets import make_maxmin, to_onnx

    torch.manual_seed(int(spec.split(":")[1]))
    net = make_maxmin()
    return to_onnx(net, name="random_maxmin", input_shape=["batch", 64], output_shape=["batch", 10],
                   doc="random MaxMin").SerializeToString()


MAXMIN_MODELS = (str(ROOT / "models" / "digits_maxmin.onnx"), "random-maxmin:0")


def maxmin_rows(seconds: float, lower_seconds: float) -> None:
    """Per MaxMin network: naive; LipSDP-Layer and -Neuron with the extension's constraints and on the ReLU
    rewriting (each in a fresh process)."""
    rows = []
    runs = [("naive", "extension")] + [(m, mode) for m in METHODS[1:] for mode in ("extension", "relu-rewrite")]
    for model in MAXMIN_MODELS:
        for method, mode in runs:
            command = [sys.executable, __file__, "--one", model, method, "--maxmin-mode", mode,
                       "--sdp-seconds", str(seconds), "--lower-seconds", str(lower_seconds if method == "naive" else 0)]
            t = time.monotonic()
            run = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"},
                                 timeout=seconds * 2 + 120)
            row = {"model": model, "method": method, "maxmin": mode, "process_s": round(time.monotonic() - t, 2)}
            if run.returncode == 0:
                found = json.loads(run.stdout.strip().splitlines()[-1])
                row.update({k: found.get(k) for k in ("upper", "method_bound", "naive", "lower", "solver",
                                                       "solver_objective", "wall_s", "peak_rss_mb", "notes")})
            else:
                row["error"] = run.stderr.strip().splitlines()[-1:]
            rows.append(row)
            print(json.dumps(row, default=float), flush=True)
    out = ROOT / "benchmarks" / "results" / "lipschitz_maxmin.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(rows, indent=2, default=float))
    print(f"wrote {out}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sdp-seconds", type=float, default=120.0)
    parser.add_argument("--lower-seconds", type=float, default=3.0)
    parser.add_argument("--one", nargs=2)
    parser.add_argument("--maxmin-mode", default="extension", help="with --one: extension or relu-rewrite")
    parser.add_argument("--maxmin", action="store_true", help="the MaxMin networks → results/lipschitz_maxmin.json")
    parser.add_argument("--sweep", action="store_true", help="hidden width vs seconds (random 64-h-h-10), and "
                        "`verikit lipschitz --timeout` on MNIST-FC 256x6 → results/lipschitz_sweep.json")
    args = parser.parse_args()
    if args.one:
        print(json.dumps(one(*args.one, args.sdp_seconds, args.lower_seconds, args.maxmin_mode), default=float))
        return
    if args.maxmin:
        maxmin_rows(args.sdp_seconds, args.lower_seconds)
        return
    if args.sweep:
        sweep(args.sdp_seconds)
        return
    rows = []
    targets = [str(m) for m in MODELS if m.exists()]
    targets += [f"random:64-{w}-{w}-10" for w in (32, 64)]
    for model in targets:
        for method in METHODS:
            command = [sys.executable, __file__, "--one", model, method, "--sdp-seconds", str(args.sdp_seconds),
                       "--lower-seconds", str(args.lower_seconds if method == "naive" else 0.0)]
            t = time.monotonic()
            run = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"},
                                 timeout=args.sdp_seconds * 2 + 120)
            row = {"model": model, "method": method, "process_s": time.monotonic() - t}
            if run.returncode == 0:
                row.update(json.loads(run.stdout.strip().splitlines()[-1]))
            else:
                row["error"] = run.stderr.strip().splitlines()[-1:]
            rows.append(row)
            print(json.dumps({k: row.get(k) for k in ("model", "method", "upper", "method_used", "naive", "lower",
                                                     "solver_objective", "wall_s", "peak_rss_mb", "notes")},
                             default=float), flush=True)
    out = ROOT / "benchmarks" / "results" / "lipschitz.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(rows, indent=2, default=float))
    print(f"wrote {out}")


SWEEP_WIDTHS = (32, 64, 128, 256, 512)


def sweep(seconds: float) -> None:
    """Where LipSDP stops scaling: per hidden width h of random 64-h-h-10 and method, the wall seconds and
    whether the proven LipSDP bound or the naive fallback came back (each in a fresh process, `seconds` of
    solver time); then the CLI's `--timeout` on MNIST-FC 256x6 (wall seconds against T)."""
    rows = []
    for width in SWEEP_WIDTHS:
        for method in METHODS[1:]:
            command = [sys.executable, __file__, "--one", f"random:64-{width}-{width}-10", method,
                       "--sdp-seconds", str(seconds), "--lower-seconds", "0"]
            t = time.monotonic()
            run = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"},
                                 timeout=seconds * 3 + 120)
            row = {"width": width, "method": method, "process_s": round(time.monotonic() - t, 2)}
            if run.returncode == 0:
                found = json.loads(run.stdout.strip().splitlines()[-1])
                row.update({k: found.get(k) for k in ("upper", "naive", "method_used", "wall_s", "peak_rss_mb", "notes")})
            else:
                row["error"] = run.stderr.strip().splitlines()[-1:]
            rows.append(row)
            print(json.dumps(row, default=float), flush=True)
    timeouts = []
    model = SHARED / "mnist-net_256x6.onnx"
    for limit in (2.0, 5.0) if model.exists() else ():
        t = time.monotonic()
        run = subprocess.run([sys.executable, "-m", "verikit", "lipschitz", str(model), "--method", "lipsdp-layer",
                              "--timeout", str(limit)], capture_output=True, text=True, cwd=ROOT,
                             env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=limit + 60)
        notes = [line.strip() for line in run.stdout.splitlines() if "note:" in line]
        timeouts.append({"model": model.name, "timeout_s": limit, "wall_s": round(time.monotonic() - t, 2),
                         "exit": run.returncode, "notes": notes})
        print(json.dumps(timeouts[-1]), flush=True)
    out = ROOT / "benchmarks" / "results" / "lipschitz_sweep.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"sdp_seconds": seconds, "widths": rows, "timeouts": timeouts}, indent=2, default=float))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
