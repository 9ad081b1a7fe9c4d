"""Certified accuracy against ε (ℓ2) on the digits test split: Lipschitz, CROWN on the ball, CROWN on the box, PGD.

    PYTHONPATH=. /work/main/.venv/bin/python benchmarks/l2_audit.py [--lipschitz lipsdp-neuron] [--eps 0.05 ...]

Model: models/digits_mlp.onnx (64-32-16-10). Data: the 450-sample test split of scikit-learn's digits
(models/example_nets.load_digits_split, pixels in [0, 1]). One `verikit.apps.audit.audit` call per run
(norm 2, clip [0, 1], CROWN), so every number is one of the audit's own:

- certified by the Lipschitz bound (one proven L for the dataset, rigorous clean margins);
- certified by CROWN on the ball (rigorous float64 CROWN over ball ∩ box, dual norm);
- certified by CROWN on the ball's L∞ box (auto_LiRPA, confirmed in float64);
- accuracy under PGD in the ball (every break replayed through onnxruntime): an upper bound.

Writes benchmarks/results/l2_audit.json and docs/img/l2_certified_vs_eps.png (matplotlib: extras `plots`).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
EPS = (0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.8)


def run(eps: tuple[float, ...], lipschitz: str) -> dict:
    sys.path.insert(0, str(ROOT))
    from models.example_nets import load_digits_split
    from verikit.apps.audit import AuditSettings, audit
    from verikit.apps.data import Dataset, Normalization
    from verikit.onnx.load import load_network

    _, _, x_test, y_test = load_digits_split()
    network = load_network(str(ROOT / "models" / "digits_mlp.onnx"))
    dataset = Dataset(x_test.astype(np.float64), y_test.astype(np.int64), source="sklearn digits test split")
    settings = AuditSettings(eps=eps, norm="2", method="crown", lipschitz=lipschitz,
                             normalization=Normalization(clip_min=0.0, clip_max=1.0))
    started = time.monotonic()
    result = audit(network, dataset, settings)
    rows = []
    for outcome in result.per_eps:
        rows.append({
            "eps": outcome.eps,
            "lipschitz": float(np.mean(outcome.certified_by_lipschitz)) if outcome.certified_by_lipschitz is not None else None,
            "crown_ball": float(np.mean(outcome.certified_by_ball)),
            "crown_box": float(np.mean(np.nan_to_num(outcome.certified_margin, nan=-np.inf) > 0)),
            "certified": outcome.certified_robust_accuracy,
            "pgd": outcome.empirical_robust_accuracy,
            "seconds": {k: round(v, 3) for k, v in outcome.seconds.items()},
        })  # fmt: skip
    return {"model": "models/digits_mlp.onnx", "samples": int(y_test.size), "clean": result.clean_accuracy,
            "lipschitz_method": lipschitz, "notes": list(result.notes), "rows": rows,
            "seconds": round(time.monotonic() - started, 2)}


def plot(found: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    rows = found["rows"]
    eps = [r["eps"] for r in rows]
    figure = Figure(figsize=(6, 4), dpi=120)
    axes = figure.add_subplot()
    axes.plot(eps, [r["pgd"] for r in rows], "o-", label="accuracy under PGD (upper bound)")
    axes.plot(eps, [r["crown_ball"] for r in rows], "d-", label="certified: CROWN on the ℓ2 ball (rigorous)")
    if rows[0]["lipschitz"] is not None:
        axes.plot(eps, [r["lipschitz"] for r in rows], "^-", label=f"certified: Lipschitz ({found['lipschitz_method']})")
    axes.plot(eps, [r["crown_box"] for r in rows], "v:", label="certified: CROWN on the ball's L∞ box")
    axes.axhline(found["clean"], linestyle="--", color="gray", label="clean")
    axes.set_xlabel("ε (ℓ2, pixels in [0, 1])")
    axes.set_ylabel("accuracy")
    axes.set_ylim(-0.02, 1.02)
    axes.set_title(f"digits_mlp, {found['samples']} test digits")
    axes.grid(alpha=0.3)
    axes.legend(fontsize="small")
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, bbox_inches="tight")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--eps", type=float, action="append", help="ε (repeatable); default " + " ".join(map(str, EPS)))
    parser.add_argument("--lipschitz", default="lipsdp-neuron", choices=("none", "naive", "lipsdp-layer", "lipsdp-neuron"))
    args = parser.parse_args()
    found = run(tuple(args.eps or EPS), args.lipschitz)
    out = ROOT / "benchmarks" / "results" / "l2_audit.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(found, indent=2))
    plot(found, ROOT / "docs" / "img" / "l2_certified_vs_eps.png")
    print(f"{'eps':>5} {'Lipschitz':>9} {'CROWN ball':>10} {'CROWN box':>9} {'PGD':>6}")
    for r in found["rows"]:
        lip = "—" if r["lipschitz"] is None else f"{r['lipschitz']:.1%}"
        print(f"{r['eps']:>5g} {lip:>9} {r['crown_ball']:>10.1%} {r['crown_box']:>9.1%} {r['pgd']:>6.1%}")
    print(f"clean {found['clean']:.1%}, {found['samples']} samples, {found['seconds']} s; {out}")


if __name__ == "__main__":
    main()
