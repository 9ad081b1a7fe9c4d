"""Random sigmoid/tanh MLPs: how many properties the bounds alone decide, and how many branch and bound does.

    PYTHONPATH=. .venv/bin/python benchmarks/bench_activation_bab.py                 # defaults below
    PYTHONPATH=. .venv/bin/python benchmarks/bench_activation_bab.py --seeds 6 --timeout 20 --set activation_split=midpoint
    PYTHONPATH=. .venv/bin/python benchmarks/bench_activation_bab.py --wide --timeout 60 --out /tmp/wide.json

Networks: seeded MLPs inputs→8→8→1 (weights N(0, --weight-scale²)), Sigmoid or Tanh, on the box [-1, 1]^n.
Properties "y <= d" (sat iff some x in the box reaches d). The true minimum m of y is estimated by a grid
(2 inputs, 401² points) or by 20000 samples plus PGD (more inputs); per network:
- unsat instances d = m - f·(m - a) for f in --fractions, where a is auto_LiRPA's α-CROWN lower bound of
  y: properties that α-CROWN alone cannot prove but that hold (for 2 inputs checked: grid minimum minus
  its Lipschitz error above d);
- one sat instance d = m + 0.01·(m - a), a counterexample exists near the estimated minimiser.

Each instance runs the auto_LiRPA bounds (IBP, CROWN, α-CROWN; BoundsEngine) and then branch and bound
(BabEngine, verikit.engines.bab.activation_split) alone for --timeout seconds. Writes
benchmarks/results/activation_bab.json and prints a table and a summary.
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from onnx_factory import GraphBuilder  # noqa: E402

from verikit.core.property import Box, Case, Conjunction  # noqa: E402
from verikit.core.result import Budget, Falsified, Proven  # noqa: E402
from verikit.engines.bab.common import BabSettings  # noqa: E402
from verikit.engines.bab.engine import BabEngine  # noqa: E402
from verikit.engines.lirpa.engine import BoundsEngine  # noqa: E402
from verikit.engines.problem import Problem  # noqa: E402
from verikit.onnx.load import load_network_bytes  # noqa: E402
from verikit.spec.robustness import misclassification_disjuncts  # noqa: E402


def mlp_bytes(activation: str, n: int, seed: int, scale: float) -> bytes:
    """n → 8 → 8 → 1 Gemm layers with `activation` between them, weights N(0, scale²), biases N(0, 0.25)."""
    g = GraphBuilder(seed)
    value = "x"
    sizes = (n, 8, 8, 1)
    for index, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        value = g.op("Gemm", value, g.weight(n_out, n_in, scale=scale), g.weight(n_out, scale=0.5), transB=1)
        if index < len(sizes) - 2:
            value = g.op(activation, value)
    return g.build((1, n), value)


def estimated_minimum(network, n: int, seed: int) -> tuple[float, float]:
    """(estimated min of y over [-1, 1]^n, a sound upper bound of how far below it the true min may be
    (2 inputs: the grid's Lipschitz error; else nan: not certified))."""
    if n == 2:
        grid = np.linspace(-1, 1, 401)
        points = np.stack(np.meshgrid(grid, grid), -1).reshape(-1, 2)
        return float(network.replay(points).min()), float("nan")
    rng = np.random.default_rng(seed)
    x = torch.tensor(rng.uniform(-1, 1, (20000, n)), dtype=torch.float32, requires_grad=True)
    for _ in range(100):
        y = network.module(x).sum()
        (grad,) = torch.autograd.grad(y, x)
        with torch.no_grad():
            x -= 0.01 * grad.sign()
            x.clamp_(-1, 1)
    return float(network.replay(x.detach().numpy()).min()), float("nan")


def lipschitz_error(network_bytes: bytes, activation: str, spacing: float) -> float:
    """Max |y(x) - y(grid point)| for x within spacing/2 of a grid point (per coordinate), by the product of
    |W| with the activation's largest slope."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load_model_from_string(network_bytes)
    weights = [numpy_helper.to_array(t) for t in model.graph.initializer if numpy_helper.to_array(t).ndim == 2]
    slope = 0.25 if activation == "Sigmoid" else 1.0
    gain = np.abs(weights[0])
    for weight in weights[1:]:
        gain = np.abs(weight) @ (slope * gain)
    return float(gain.sum() * spacing / 2)


def alpha_lower(problem: Problem, box: Box) -> float:
    case = Case(box, (Conjunction(np.array([[1.0]]), np.array([0.0])),))
    outcome = BoundsEngine("alpha-crown").run(problem, case, Budget.seconds(60))
    bounds = outcome.certificate.disjuncts if isinstance(outcome, Proven) else outcome.bounds
    return float(bounds[0].lower[0])


def wide(args, engine: BabEngine) -> int:
    """--wide: a seeded 784→50→50→10 sigmoid MLP (MNIST-sized input, weights N(0, 4/fan_in)), local
    robustness of a random image in [0, 1]^784 at each --eps: 9 disjuncts "y_label - y_k <= 0"."""
    g = GraphBuilder(0)
    value, sizes = "x", (784, 50, 50, 10)
    for index, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        value = g.op("Gemm", value, g.weight(n_out, n_in, scale=2 / np.sqrt(n_in)), g.weight(n_out, scale=0.3),
                     transB=1)
        if index < len(sizes) - 2:
            value = g.op("Sigmoid", value)
    network = load_network_bytes(g.build((1, 784), value))
    problem = Problem(network)
    x0 = np.random.default_rng(1).uniform(0, 1, 784)
    label = int(network.replay(x0[None])[0].argmax())
    rows = []
    for eps in args.eps:
        box = Box(np.clip(x0 - eps, 0, 1), np.clip(x0 + eps, 0, 1))
        case = Case(box, misclassification_disjuncts(label, 10))
        bounds_said = {m: type(BoundsEngine(m).run(problem, case, Budget.seconds(60))).__name__
                       for m in ("ibp", "crown", "alpha-crown")}
        started = time.monotonic()
        outcome = engine.run(problem, case, Budget.seconds(args.timeout))
        seconds = time.monotonic() - started
        detail = outcome.certificate.detail if isinstance(outcome, Proven) else {}
        rows.append({"eps": eps, "bounds": bounds_said, "bab": type(outcome).__name__, "bab_seconds": round(seconds, 3),
                     "domains": detail.get("domains"), "reason": getattr(outcome, "reason", None)})
        print(json.dumps(rows[-1]), flush=True)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"wide": rows, "load": os.getloadavg()}, indent=1))
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=4)
    parser.add_argument("--inputs", type=int, nargs="+", default=[2])
    parser.add_argument("--activations", nargs="+", default=["Sigmoid", "Tanh"])
    parser.add_argument("--fractions", type=float, nargs="+", default=[0.5, 0.1])
    parser.add_argument("--timeout", type=float, default=20.0)
    parser.add_argument("--weight-scale", type=float, default=1.0)
    parser.add_argument("--wide", action="store_true", help="the 784-input sigmoid MLP instead (see `wide`)")
    parser.add_argument("--eps", type=float, nargs="+", default=[0.03, 0.05, 0.07, 0.1])
    parser.add_argument("--set", action="append", default=[], help="BabSettings field=value")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "activation_bab.json"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    overrides = {}
    for item in args.set:
        name, _, value = item.partition("=")
        try:
            overrides[name] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            overrides[name] = value
    engine = BabEngine(BabSettings(**overrides))
    if args.wide:
        return wide(args, engine)
    rows = []
    for activation in args.activations:
        for n in args.inputs:
            for seed in range(args.seeds):
                data = mlp_bytes(activation, n, seed, args.weight_scale)
                network = load_network_bytes(data)
                problem = Problem(network, seed=seed)
                box = Box(np.full(n, -1.0), np.full(n, 1.0))
                minimum, _ = estimated_minimum(network, n, seed)
                lip = lipschitz_error(data, activation, 2 / 400) if n == 2 else float("nan")
                alpha = alpha_lower(problem, box)
                gap = minimum - alpha
                instances = [("unsat", minimum - f * gap, f) for f in args.fractions]
                instances.append(("sat", minimum + 0.01 * max(gap, 1e-3), None))
                for expected, d, fraction in instances:
                    case = Case(box, (Conjunction(np.array([[1.0]]), np.array([d])),))
                    bounds_said = {}
                    for method in ("ibp", "crown", "alpha-crown"):
                        outcome = BoundsEngine(method).run(problem, case, Budget.seconds(60))
                        bounds_said[method] = type(outcome).__name__
                    started = time.monotonic()
                    outcome = engine.run(problem, case, Budget.seconds(args.timeout))
                    seconds = time.monotonic() - started
                    answer = {Proven: "unsat", Falsified: "sat"}.get(type(outcome), "open")
                    certified = expected == "unsat" and n == 2 and minimum - lip > d
                    detail = outcome.certificate.detail if isinstance(outcome, Proven) else {}
                    row = {"activation": activation, "inputs": n, "seed": seed, "expected": expected,
                           "fraction": fraction, "d": d, "estimated_min": minimum, "alpha_crown_lower": alpha,
                           "grid_certified_unsat": certified, "bounds": bounds_said, "bab": answer,
                           "bab_seconds": round(seconds, 3), "domains": detail.get("domains"),
                           "reason": getattr(outcome, "reason", None)}
                    rows.append(row)
                    print(f"{activation:7s} n={n} seed={seed} {expected:5s} f={fraction!s:5s} bounds="
                          f"{'decided' if 'Proven' in bounds_said.values() or 'Falsified' in bounds_said.values() else 'open':7s} "
                          f"bab={answer:5s} {seconds:6.2f}s domains={row['domains']}", flush=True)
    wrong = [r for r in rows if r["bab"] != "open" and r["bab"] != r["expected"]]
    bounds_decided = sum(1 for r in rows if {"Proven", "Falsified"} & set(r["bounds"].values()))
    bab_decided = sum(1 for r in rows if r["bab"] != "open")
    summary = {"instances": len(rows), "weight_scale": args.weight_scale, "decided_by_bounds_alone": bounds_decided, "decided_by_bab": bab_decided,
               "wrong": len(wrong), "bab_settings": overrides, "timeout_s": args.timeout,
               "load": os.getloadavg(), "machine": platform.processor() or platform.machine()}
    print(json.dumps(summary))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"summary": summary, "rows": rows}, indent=1))
    return 1 if wrong else 0


if __name__ == "__main__":
    raise SystemExit(main())
