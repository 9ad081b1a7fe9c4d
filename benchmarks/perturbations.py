"""Semantic perturbations (verikit-perturbation/1) on the bundled digits CNN and real MNIST networks.

    /work/main/.venv/bin/python benchmarks/perturbations.py [--images 2] [--audit-images 3] [--timeout 4]

Writes benchmarks/results/perturbations.json (and the specs it ran under results/perturbations/):

- `process`: one `verikit verify MODEL SPEC.json --timeout T` process per (model, image, manipulation), wall
  time from launch to exit, verdict from its exit code (0 verified, 1 falsified, 5 open);
- `audit`: the same manipulations through `verikit audit --perturbation` (apps/perturbation_audit, in
  this process): certified / falsified / open counts and seconds per image;
- `rotation_curve`: mnist-net_256x2, certified share against the angle for 1, 2 and 4 theta splits per
  degree (an image counts at the fewest splits that certify it), and the share the attack breaks.

Images: the digits test split (models/data) for digits_cnn; the box centres of the VNN-LIB specs for
mnistfc and verivital (the clipped L-inf boxes undone: a pixel whose box touches 0 or 1 is recovered from
its other side, rounded to k/255), labelled with the spec's class.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "benchmarks"
if not SHARED.is_dir():
    SHARED = Path("/work/shared/benchmarks")
RESULTS = ROOT / "benchmarks" / "results"
sys.path.insert(0, str(ROOT))

from verikit.apps.data import Dataset, Normalization  # noqa: E402
from verikit.apps.perturbation_audit import Perturbation, PerturbationAuditSettings, perturbation_audit  # noqa: E402
from verikit.core.result import Verdict  # noqa: E402
from verikit.onnx.load import load_network  # noqa: E402
from verikit.portfolio.options import Options  # noqa: E402
from verikit.portfolio.runner import verify  # noqa: E402
from verikit.spec.load import load_spec  # noqa: E402
from verikit.spec.perturbation import perturbation_property  # noqa: E402

MANIPULATIONS = (Perturbation("brightness", 0.1), Perturbation("contrast", 0.2), Perturbation("occlusion", 3),
                 Perturbation("occlusion", 5), Perturbation("translation", 2), Perturbation("rotation", 5),
                 Perturbation("rotation", 15))


def spec_image(path: Path) -> tuple[np.ndarray, int]:
    """(the MNIST image (784,) in [0, 1], the spec's class) of a VNN-LIB L-inf robustness spec."""
    case = load_spec(path).cases[0]
    low, high = case.box.lower, case.box.upper
    eps = float(((high - low) / 2).max())
    x = np.where(low <= 0, np.maximum(high - eps, 0), np.where(high >= 1, np.minimum(low + eps, 1), (low + high) / 2))
    common = set(range(len(case.disjuncts) + 1))
    for conjunction in case.disjuncts:
        common &= set(np.flatnonzero(conjunction.C[0] > 0).tolist())
    return np.round(x * 255) / 255, int(next(iter(common)))


def models(count: int) -> list[tuple[str, Path, tuple[int, int], np.ndarray, np.ndarray]]:
    """(name, model, image shape, x (N, n), y (N,)) per network, the first `count` images."""
    digits = np.load(ROOT / "models" / "data" / "digits_test_100.npz")
    found = [("digits_cnn", ROOT / "models" / "digits_cnn.onnx", (8, 8), digits["x"][:count].astype(np.float64),
              digits["y"][:count].astype(np.int64))]
    for name, model, pattern in (("mnistfc_256x2", "mnistfc/mnist-net_256x2.onnx", "mnistfc/prop_{}_0.03.vnnlib"),
                                 ("verivital_maxpool", "verivital/Convnet_maxpool.onnx",
                                  "verivital/specs/maxpool_specs/prop_{}_0.004.vnnlib")):
        pairs = [spec_image(SHARED / pattern.format(i)) for i in range(count)]
        found.append((name, SHARED / model, (28, 28), np.stack([p[0] for p in pairs]),
                      np.array([p[1] for p in pairs])))
    return found


def run_processes(entries, timeout: float, folder: Path) -> list[dict]:
    rows = []
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    for name, model, shape, xs, ys in entries:
        for perturbation in MANIPULATIONS:
            for index, (x, label) in enumerate(zip(xs, ys)):
                spec = {"format": "verikit-perturbation/1", "input": x.reshape(shape).tolist(), "label": int(label),
                        "num_classes": 10, "clip": [0.0, 1.0], "manipulations": [perturbation.entry()]}
                path = folder / f"{name}_{index}_{perturbation.kind}{perturbation.magnitude:g}.json"
                path.write_text(json.dumps(spec))
                started = time.monotonic()
                done = subprocess.run([sys.executable, "-m", "verikit", "verify", str(model), str(path),
                                       "--timeout", str(timeout)], capture_output=True, text=True, env=env)
                wall = time.monotonic() - started
                verdict = {0: "verified", 1: "falsified", 5: "open"}.get(done.returncode, f"exit {done.returncode}")
                rows.append({"model": name, "perturbation": perturbation.label, "image": index, "verdict": verdict,
                             "wall_s": round(wall, 3)})
                print(f"process {name} {perturbation.label} #{index}: {verdict} {wall:.2f} s", flush=True)
    return rows


def run_audits(entries, timeout: float) -> list[dict]:
    rows = []
    for name, model, shape, xs, ys in entries:
        network = load_network(str(model))
        dataset = Dataset(xs.reshape(len(xs), -1), ys, source=name, sha256=name)
        settings = PerturbationAuditSettings(MANIPULATIONS, Normalization(clip_min=0.0, clip_max=1.0), shape,
                                             sample_timeout=timeout)
        report = perturbation_audit(network, dataset, settings)
        for row in report["results"]:
            counts = row["counts"]
            rows.append({"model": name, "perturbation": row["perturbation"], "images": len(xs),
                         "verified": counts["certified"], "falsified": counts["falsified"],
                         "open": counts["unknown"] + counts["timeout"], "misclassified": counts["misclassified"],
                         "seconds_per_image": row["seconds_per_sample"]})
            print(f"audit {name} {row['perturbation']}: {rows[-1]}", flush=True)
    return rows


def rotation_curve(entry, angles, per_degree, timeout: float) -> dict:
    name, model, shape, xs, ys = entry
    network = load_network(str(model))
    curve = []
    for angle in angles:
        needed, broken, seconds = [], 0, 0.0
        for x, label in zip(xs, ys):
            found = None
            for splits in per_degree:
                entry_ = {"kind": "rotation", "range": [-angle, angle], "splits": max(1, round(2 * angle * splits))}
                prop = perturbation_property(x.reshape(shape), int(label), [entry_], num_classes=10)
                result = verify(network, prop, Options(timeout=timeout))
                seconds += result.seconds
                if result.verdict is Verdict.FALSIFIED:
                    broken += 1
                    break
                if result.verdict is Verdict.VERIFIED:
                    found = entry_["splits"]
                    break
            needed.append(found)
        row = {"degrees": angle, "images": len(xs), "falsified": broken,
               "certified_by_splits_per_degree": {str(s): sum(n is not None and n <= max(1, round(2 * angle * s))
                                                             for n in needed) for s in per_degree},
               "splits_needed": needed, "seconds_per_image": round(seconds / len(xs), 3)}
        curve.append(row)
        print(f"rotation ±{angle}°: {row}", flush=True)
    return {"model": name, "curve": curve}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=2, help="images per model, one process each")
    parser.add_argument("--audit-images", type=int, default=3, help="images per model in the audit")
    parser.add_argument("--curve-images", type=int, default=3)
    parser.add_argument("--timeout", type=float, default=4.0, help="seconds per image and manipulation")
    parser.add_argument("--curve-timeout", type=float, default=None, help="seconds per image and angle "
                        "(default --timeout)")
    parser.add_argument("--only", choices=("process", "audit", "curve"), action="append",
                        help="run only these parts (repeatable), keeping the others from the last results file")
    args = parser.parse_args()
    parts = set(args.only or ("process", "audit", "curve"))
    folder = RESULTS / "perturbations"
    folder.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    audited = models(max(args.images, args.audit_images, args.curve_images))
    previous = RESULTS / "perturbations.json"
    out = json.loads(previous.read_text()) if args.only and previous.is_file() else {}
    out.setdefault("runs", {})
    if "process" in parts:
        out["process"] = run_processes([(n, m, s, x[:args.images], y[:args.images])
                                        for n, m, s, x, y in audited], args.timeout, folder)
    if "audit" in parts:
        out["audit"] = run_audits([(n, m, s, x[:args.audit_images], y[:args.audit_images])
                                   for n, m, s, x, y in audited], args.timeout)
    if "curve" in parts:
        mnist = next(e for e in audited if e[0] == "mnistfc_256x2")
        images = (*mnist[:3], mnist[3][:args.curve_images], mnist[4][:args.curve_images])
        out["rotation_curve"] = rotation_curve(images, (2, 5, 10, 15), (1, 2, 4), args.curve_timeout or args.timeout)
    for part in parts:
        out["runs"][part] = {"command": " ".join(sys.argv), "timeout_s": args.timeout,
                             "curve_timeout_s": args.curve_timeout, "load_average": round(os.getloadavg()[0], 2),
                             "seconds": round(time.monotonic() - started, 1)}
    (RESULTS / "perturbations.json").write_text(json.dumps(out, indent=2))
    print(f"wrote {RESULTS / 'perturbations.json'} in {time.monotonic() - started:.1f} s")


if __name__ == "__main__":
    main()
