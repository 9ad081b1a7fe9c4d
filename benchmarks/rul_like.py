"""Build RUL-like time-series regression CNNs and near-boundary sat specs, deterministically (an attack
benchmark, not a model zoo).

    .venv/bin/python benchmarks/rul_like.py                 # -> benchmarks/results/rul_like/

VNN-COMP's time-series regression families (Collins' remaining-useful-life CNN and the like) have
properties other than classification: an output range under noise on several sensors at once, monotonicity
(more wear must not predict a longer life), and conditions on two outputs together. We do not have them,
so this script trains a small CNN on synthetic run-to-failure data (12 sensors, windows of 20 steps; a
unit's health falls from 1 to 0 along a random curve, six sensors drift with wear, all are noisy) to
predict two outputs: the remaining life (scaled to [0, 1]) and the health at the window's end.

    Conv(1->8, k(5,3)) ReLU Conv(8->8, k(5,3), s(2,1)) ReLU Flatten Gemm(->32) ReLU Gemm(32->2)

Every spec is **sat by construction**: a reference search (Adam from 512 random starts, 400 steps, in
torch, on one weighted objective per kind: far more starts than verikit's attack, and not its loss) finds
a point x_r of the box, and each threshold is set past x_r's output by `slack` times
|Y_0(x_r) - Y_0(centre)|, so x_r violates the property by that margin on every row (checked: x_r replays
through onnxruntime as a counterexample). Three kinds, each at slacks 0.2, 0.05 and 0.01:

- `range`: sensors 0-3 (all 20 steps) within ±δ of the window; violation Y_0 <= lo (life predicted too
  short under noise on four sensors at once);
- `mono`: the six wear sensors of the last 8 steps raised by [0, δ]; violation Y_0 >= hi (more wear,
  longer predicted life);
- `joint`: every input within ±δ; violation Y_0 <= a and Y_1 >= b (short life with high health: two
  output rows in one conjunction; x_r minimises Y_0 - w Y_1 for a random w).

The data and the weights come from a fixed seed; nothing here is committed (benchmarks/results/ is ignored).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]

from _rows import write_instances  # noqa: E402

OUT = ROOT / "benchmarks" / "results" / "rul_like"
STEPS, SENSORS, WEAR = 20, 12, 6
SHAPE = (1, STEPS, SENSORS)
SLACKS = (0.2, 0.05, 0.01)
DELTA = {"range": 0.15, "mono": 0.3, "joint": 0.1}


def runs(count: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Windows (N, 1, STEPS, SENSORS) of synthetic run-to-failure units and targets (N, 2): remaining life
    / 100 and the health at the window's end."""
    windows, targets = [], []
    for _ in range(count):
        life = int(rng.integers(80, 200))
        t = np.arange(life)
        health = 1.0 - (t / life) ** rng.uniform(1.2, 2.5)
        gain = rng.uniform(0.5, 1.5, SENSORS)
        gain[WEAR:] = 0.0
        base = rng.normal(0.0, 0.3, SENSORS)
        signal = base + np.outer(1.0 - health, gain) + rng.normal(0.0, 0.08, (life, SENSORS))
        for end in range(STEPS, life, 7):
            windows.append(signal[end - STEPS:end])
            targets.append((min(life - end, 100) / 100.0, health[end - 1]))
    return np.asarray(windows, np.float32)[:, None], np.asarray(targets, np.float32)


def rul_net() -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(1, 8, (5, 3)), nn.ReLU(), nn.Conv2d(8, 8, (5, 3), (2, 1)), nn.ReLU(),
                         nn.Flatten(), nn.Linear(8 * 6 * 8, 32), nn.ReLU(), nn.Linear(32, 2))


def train(x: np.ndarray, y: np.ndarray, *, epochs: int, seed: int) -> nn.Sequential:
    torch.manual_seed(seed)
    net = rul_net()
    optimiser = torch.optim.Adam(net.parameters(), lr=2e-3)
    xs, ys = torch.from_numpy(x), torch.from_numpy(y)
    generator = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        order = torch.randperm(len(xs), generator=generator)
        for start in range(0, len(xs), 256):
            rows = order[start:start + 256]
            optimiser.zero_grad()
            nn.functional.mse_loss(net(xs[rows]), ys[rows]).backward()
            optimiser.step()
    return net.eval()


def box_of(kind: str, window: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    lower, upper = window.copy(), window.copy()
    delta = DELTA[kind]
    if kind == "range":
        lower[0, :, :4] -= delta
        upper[0, :, :4] += delta
    elif kind == "mono":
        upper[0, -8:, :WEAR] += delta
    else:
        lower -= delta
        upper += delta
    return lower, upper


def reference_point(net: nn.Module, kind: str, lower: np.ndarray, upper: np.ndarray, seed: int) -> np.ndarray:
    """Adam from 512 uniform starts, 400 steps, projected onto the box: the best point for the kind's
    objective (range: min Y_0; mono: max Y_0; joint: min Y_0 - w Y_1, w drawn log-uniform in [0.2, 5] from
    the seed, so that the point lies anywhere on the trade-off and no fixed weighting of the rows leads
    straight to it)."""
    weight = float(np.exp(np.random.default_rng(seed).uniform(np.log(0.2), np.log(5.0))))
    generator = torch.Generator().manual_seed(seed)
    lo, hi = torch.from_numpy(lower)[None], torch.from_numpy(upper)[None]
    x = (lo + (hi - lo) * torch.rand((512, *lower.shape), generator=generator)).requires_grad_(True)
    optimiser = torch.optim.Adam([x], lr=0.02 * float((hi - lo).max()))

    def objective(y: torch.Tensor) -> torch.Tensor:
        return {"range": y[:, 0], "mono": -y[:, 0], "joint": y[:, 0] - weight * y[:, 1]}[kind]

    for _ in range(400):
        optimiser.zero_grad()
        objective(net(x)).sum().backward()
        optimiser.step()
        with torch.no_grad():
            x.copy_(torch.maximum(torch.minimum(x, hi), lo))
    with torch.no_grad():
        best = int(objective(net(x)).argmin())
    return x[best].detach().numpy().astype(np.float64)


def write_spec(path: Path, lower: np.ndarray, upper: np.ndarray, violation: list[str], note: str) -> None:
    lo, hi = lower.reshape(-1).astype(np.float64), upper.reshape(-1).astype(np.float64)
    lines = [f"; rul-like spec: {note}"]
    lines += [f"(declare-const X_{i} Real)" for i in range(lo.size)]
    lines += ["(declare-const Y_0 Real)", "(declare-const Y_1 Real)"]
    for i in range(lo.size):
        lines.append(f"(assert (>= X_{i} {lo[i]:.9f}))")
        lines.append(f"(assert (<= X_{i} {hi[i]:.9f}))")
    lines += [f"(assert {row})" for row in violation]
    path.write_text("\n".join(lines) + "\n")


def check_sat(network, spec: Path, point: np.ndarray) -> None:
    """Raise unless the reference point, as verikit replays it (float32, inside the spec's box), violates."""
    from verikit.spec.vnnlib import read_vnnlib
    from verikit.witness.replay import validate

    if validate(network, read_vnnlib(spec).cases[0], point) is None:
        raise RuntimeError(f"{spec.name}: the reference point does not replay as a counterexample")


def build(out: Path = OUT, *, windows: int, epochs: int, seed: int) -> Path:
    """Train the net, export it, write the specs and `instances.csv` (onnx,vnnlib,timeout_s); the csv path."""
    from verikit.onnx.load import load_network

    rng = np.random.default_rng(seed)
    x, y = runs(160, rng)
    net = train(x, y, epochs=epochs, seed=seed)
    out.mkdir(parents=True, exist_ok=True)
    onnx_path = out / "rul_like.onnx"
    torch.onnx.export(net, torch.zeros(1, *SHAPE), str(onnx_path), input_names=["input"], output_names=["output"],
                      opset_version=13, dynamo=False)
    network = load_network(onnx_path)

    def run(point: np.ndarray) -> np.ndarray:  # onnxruntime's outputs
        return network.replay(point.reshape(1, -1))[0].astype(np.float64)

    test_x, _ = runs(12, np.random.default_rng(seed + 1))
    picks = np.random.default_rng(seed + 2).choice(len(test_x), windows, replace=False)
    rows = []
    for number, index in enumerate(sorted(picks)):
        window = test_x[index]
        for kind in DELTA:
            lower, upper = box_of(kind, window)
            centre = run(window)
            point = reference_point(net, kind, lower, upper, seed + number)
            best = run(point)
            for slack in SLACKS:
                give = slack * abs(centre[0] - best[0])  # the reference point's margin on every row
                if kind == "range":
                    violation = [f"(<= Y_0 {best[0] + give:.9f})"]
                elif kind == "mono":
                    violation = [f"(>= Y_0 {best[0] - give:.9f})"]
                else:
                    violation = [f"(<= Y_0 {best[0] + give:.9f})", f"(>= Y_1 {best[1] - give:.9f})"]
                spec = out / f"{kind}_w{number}_slack{slack:g}.vnnlib"
                write_spec(spec, lower, upper, violation,
                           f"{kind}, window {number}, slack {slack}; centre {centre.round(5).tolist()}, "
                           f"reference {best.round(5).tolist()}")
                check_sat(network, spec, point)
                rows.append((onnx_path.name, spec.name, 30))
    return write_instances(out, rows)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--windows", type=int, default=4, help="test windows, each with 3 kinds x 3 slacks")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(1)
    print(build(args.out, windows=args.windows, epochs=args.epochs, seed=args.seed))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
