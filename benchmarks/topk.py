"""Top-k: ordered top-K attacks (QuadAttack against plain PGD) and top-k verification (direct against normal form).

    PYTHONPATH=$PWD /work/main/.venv/bin/python benchmarks/topk.py [--quick] [--jobs 1] [--only attack|verify]

Full run: about 1100-1200 s on the 2-core machine (--jobs 1); --quick (a few questions per part): 2-3 min.
Writes benchmarks/results/topk.json: one row per question and run, and the summaries benchmarks/README.md
("Top-k") quotes. Every question is one in-process `verikit.run.run_loaded` call on a network loaded once
per model (one warm process with --jobs 1; --jobs N runs the four parts in N worker processes).

1. Ordered top-K attack, property `targeted-order` (docs/topk.md): rank K random targets t1..tK (none the
   label; seeded per image and K, the same at every ε and for both arms) above every other class, in order.
   Success = a counterexample, i.e. an input replayed through onnxruntime (and re-checked here) with
   y[t1] >= ... >= y[tK] >= every other output. Two arms, the attack engine alone (`engines=("attack",)`)
   with the same budget: `attack.quadattack=on` (QuadAttack first, 30 % of the budget, then PGD) and
   `attack.quadattack=off` (PGD on the conjunction's hinge loss); which arm runs first alternates per question.
   - digits CNN (models/digits_cnn.onnx): the first 12 test digits (models/data/digits_test_100.npz) it
     classifies correctly, ε 0.1 and 0.2 (pixels in [0, 1], box clipped to it), 2 s per question;
   - sri_resnet_b (../shared/benchmarks/sri_resnet_b): 5 images, the box centres of the first 5 specs of
     its instances CSV (labelled with the spec's class), ε 2/255 and 8/255 in pixel units, i.e. scaled per
     channel by 1/std (CIFAR-10 normalisation, checked against the specs' box widths), clipped to pixels in
     [0, 1]; 8 s per question.
   K = 1, 2, 3, 5. Reported per (model, ε, K, arm): successes and the median seconds of the successes.
2. Top-k verification on MNIST-FC 256x2 and 256x4 (../shared/benchmarks/mnistfc): the box of
   prop_0..9_0.03.vnnlib as given, the spec's class as label, property `top-k` for k = 1, 2, 3, the full
   portfolio, 6 s per question; k >= 2 both with `portfolio.topk=direct` (the default: the direct method
   first) and `portfolio.topk=normal-form` (the C(9, k) disjuncts only), the order alternating per question.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "benchmarks"
if not SHARED.is_dir():
    SHARED = Path("/work/shared/benchmarks")
RESULTS = ROOT / "benchmarks" / "results"
sys.path.insert(0, str(ROOT))

from verikit.core.property import Case, Property  # noqa: E402
from verikit.core.result import Verdict  # noqa: E402
from verikit.onnx.load import load_network  # noqa: E402
from verikit.portfolio.options import Options  # noqa: E402
from verikit.run import run_loaded  # noqa: E402
from verikit.spec.load import load_spec  # noqa: E402
from verikit.spec.robustness import output_condition, robustness_property  # noqa: E402

ARMS = {"quadattack": "attack.quadattack=on", "pgd": "attack.quadattack=off"}
FORMS = {"direct": "portfolio.topk=direct", "normal-form": "portfolio.topk=normal-form"}
CIFAR_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR_STD = (0.2023, 0.1994, 0.2010)
SRI = SHARED / "sri_resnet_b"
MNISTFC_NETS = ("mnist-net_256x2", "mnist-net_256x4")


def spec_label(case: Case) -> int:
    """The class every disjunct of a VNN-LIB robustness spec compares the others against."""
    common = set(range(case.disjuncts[0].C.shape[1]))
    for conjunction in case.disjuncts:
        common &= set(np.flatnonzero(conjunction.C[0] > 0).tolist())
    (label,) = common
    return int(label)


def digits_images(network, count: int) -> tuple[np.ndarray, np.ndarray, list[int]]:
    """The first `count` digits test images (N, 64) in [0, 1] the network classifies correctly, labels, indices."""
    data = np.load(ROOT / "models" / "data" / "digits_test_100.npz")
    xs, ys = data["x"].astype(np.float64), data["y"].astype(np.int64)
    predicted = network.replay(xs.reshape((len(xs), *network.input_shape[1:])).astype(np.float32)).argmax(axis=1)
    keep = np.flatnonzero(predicted == ys)[:count]
    return xs[keep], ys[keep], keep.tolist()


def sri_images(count: int) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """The box centres of the first `count` sri_resnet_b specs as pixels (N, 3, 32, 32) in [0, 1], their classes
    and spec names. The specs' widest half-width per channel must be ε/std for CIFAR_STD (the file name's ε,
    rounded to three significant digits)."""
    rows = [line.split(",") for line in (SRI / "sri_resnet_b_instances.csv").read_text().split()]
    mean, std = np.array(CIFAR_MEAN)[:, None], np.array(CIFAR_STD)[:, None]
    xs, labels, names = [], [], []
    for _, spec, _ in rows[:count]:
        case = load_spec(SRI / spec).cases[0]
        eps = float(Path(spec).stem.split("_eps_")[1])
        half = ((case.box.upper - case.box.lower) / 2).reshape(3, -1).max(axis=1)
        if not np.allclose(half * np.array(CIFAR_STD), eps, rtol=1e-2):
            raise SystemExit(f"{spec}: box widths {half} are not ε/std for std {CIFAR_STD}")
        centre = ((case.box.upper + case.box.lower) / 2).reshape(3, -1)
        xs.append(np.clip(centre * std + mean, 0.0, 1.0).reshape(3, 32, 32))
        labels.append(spec_label(case))
        names.append(Path(spec).stem)
    return np.stack(xs), np.array(labels), names


def targets_for(seed: int, image: int, k: int, label: int, n: int = 10) -> list[int]:
    """K distinct classes other than the label, in a random order seeded by (seed, image, K)."""
    others = [c for c in range(n) if c != label]
    return [int(c) for c in np.random.default_rng([seed, image, k]).choice(others, size=k, replace=False)]


def order_reached(y: np.ndarray, targets: list[int]) -> bool:
    """y[t1] >= ... >= y[tK] >= every other output (ties count for the attacker, as in the spec)."""
    chain = all(y[a] >= y[b] for a, b in zip(targets[:-1], targets[1:]))
    rest = [j for j in range(len(y)) if j not in targets]
    return chain and bool(np.all(y[targets[-1]] >= y[rest]))


def attack_part(name: str, model: Path, count: int, eps_list: tuple[float, ...], ks: tuple[int, ...],
                seconds: float, seed: int) -> list[dict]:
    """One row per (image, ε, K, arm) of the ordered top-K attack on `name` (see the module docstring)."""
    network = load_network(str(model))
    if name == "digits_cnn":
        xs, labels, ids = digits_images(network, count)
        box = {"lower": 0.0, "upper": 1.0}
    else:
        xs, labels, ids = sri_images(count)
        box = {"lower": 0.0, "upper": 1.0, "mean": np.reshape(CIFAR_MEAN, (3, 1, 1)),
               "std": np.reshape(CIFAR_STD, (3, 1, 1))}  # per channel, broadcast over the image
    options = {arm: Options(timeout=seconds, engines=("attack",), seed=seed).with_settings([setting])
               for arm, setting in ARMS.items()}
    rows, question = [], 0
    for eps in eps_list:
        for k in ks:
            for image, (x, label) in enumerate(zip(xs, labels)):
                targets = targets_for(seed, image, k, int(label))
                prop = robustness_property(x, None, eps, num_classes=network.n_outputs, **box,
                                           ranking={"property": "targeted-order", "classes": targets})
                arms = list(ARMS) if question % 2 == 0 else list(reversed(ARMS))
                for position, arm in enumerate(arms):
                    result = run_loaded(network, prop, options[arm])
                    success = result.verdict is Verdict.FALSIFIED
                    if success:  # the run replayed it; check the order once more on onnxruntime's output
                        x_found = np.asarray(result.counterexample.x, dtype=np.float32)
                        success = prop.cases[0].box.contains(x_found) and order_reached(
                            network.replay(x_found[None])[0], targets)
                    rows.append({"model": name, "eps": eps, "k": k, "image": ids[image], "label": int(label),
                                 "targets": targets, "arm": arm, "first": position == 0,
                                 "verdict": result.verdict.value, "success": bool(success),
                                 "method": result.method, "seconds": round(result.seconds, 4)})
                    print(f"attack {name} eps={eps:.4g} K={k} #{ids[image]} {arm}: {result.verdict.value} "
                          f"{result.seconds:.3f} s", flush=True)
                question += 1
    return rows


def verify_part(net: str, props: range, ks: tuple[int, ...], seconds: float, seed: int) -> list[dict]:
    """One row per (prop, k, form) of top-k verification on the MNIST-FC net `net` at the specs' boxes."""
    network = load_network(str(SHARED / "mnistfc" / f"{net}.onnx"))
    options = {form: Options(timeout=seconds, seed=seed).with_settings([setting]) for form, setting in FORMS.items()}
    rows, question = [], 0
    for index in props:
        spec = SHARED / "mnistfc" / f"prop_{index}_0.03.vnnlib"
        case = load_spec(spec).cases[0]
        label = spec_label(case)
        for k in ks:
            disjuncts, kind, details = output_condition(label, network.n_outputs, {"property": "top-k", "k": k})
            prop = Property((Case(case.box, disjuncts),), network.n_inputs, network.n_outputs, source=str(spec),
                            kind=kind, details=details)
            forms = ["direct"] if k == 1 else (list(FORMS) if question % 2 == 0 else list(reversed(FORMS)))
            question += k > 1
            for form in forms:
                result = run_loaded(network, prop, options[form])
                rows.append({"model": net, "prop": index, "label": label, "k": k, "form": form if k > 1 else "-",
                             "verdict": result.verdict.value, "method": result.method,
                             "seconds": round(result.seconds, 4)})
                print(f"verify {net} prop_{index} top-{k} {rows[-1]['form']}: {result.verdict.value} "
                      f"({result.method}) {result.seconds:.3f} s", flush=True)
    return rows


def summarise_attack(rows: list[dict]) -> list[dict]:
    """Per (model, ε, K, arm): questions, successes, median seconds of the successes and of all questions."""
    groups: dict[tuple, list[dict]] = {}
    for row in rows:
        groups.setdefault((row["model"], row["eps"], row["k"], row["arm"]), []).append(row)
    out = []
    for (model, eps, k, arm), group in groups.items():
        won = [r["seconds"] for r in group if r["success"]]
        out.append({"model": model, "eps": eps, "k": k, "arm": arm, "questions": len(group), "successes": len(won),
                    "median_s_success": round(statistics.median(won), 3) if won else None,
                    "median_s": round(statistics.median(r["seconds"] for r in group), 3),
                    "by_quadattack": sum(r["success"] and r["method"] == "quadattack" for r in group)})
    return out


def summarise_verify(rows: list[dict]) -> list[dict]:
    """Per (net, k, form): verified / falsified / unknown, total seconds; and per net the cross-form checks."""
    groups: dict[tuple, list[dict]] = {}
    for row in rows:
        groups.setdefault((row["model"], row["k"], row["form"]), []).append(row)
    out = []
    for (model, k, form), group in groups.items():
        count = {v: sum(r["verdict"] == v for r in group) for v in ("verified", "falsified", "unknown")}
        out.append({"model": model, "k": k, "form": form, "questions": len(group), **count,
                    "other": len(group) - sum(count.values()), "seconds": round(sum(r["seconds"] for r in group), 2),
                    "decided_by_direct": sum(r["method"] == "top-k-direct" for r in group)})
    return out


def cross_checks(rows: list[dict]) -> dict:
    """Direct vs normal form on the same question: contradictions (verified against falsified), differences;
    and questions whose top-1 is not verified while top-2 (direct) is."""
    by_key = {(r["model"], r["prop"], r["k"], r["form"]): r["verdict"] for r in rows}
    contradictions, differences, rescued = [], [], []
    for (model, prop, k, form), verdict in by_key.items():
        if form == "direct":
            other = by_key.get((model, prop, k, "normal-form"))
            if other is not None and other != verdict:
                differences.append(f"{model} prop_{prop} top-{k}: direct {verdict}, normal form {other}")
                if {verdict, other} == {"verified", "falsified"}:
                    contradictions.append(differences[-1])
            if k == 2 and verdict == "verified" and by_key.get((model, prop, 1, "-")) != "verified":
                rescued.append(f"{model} prop_{prop} (top-1 {by_key.get((model, prop, 1, '-'))})")
    return {"contradictions": contradictions, "differences": differences, "top1_open_top2_verified": rescued}


def run_part(part: tuple) -> tuple[str, list[dict]]:
    """One part in this process, one torch thread: ("attack", name, ...) or ("verify", net, ...)."""
    import torch

    torch.set_num_threads(1)
    kind, *args = part
    return kind, (attack_part(*args) if kind == "attack" else verify_part(*args))


def parts(quick: bool, only: set[str], seed: int) -> list[tuple]:
    images = (2, 1) if quick else (12, 5)
    ks = (1, 2) if quick else (1, 2, 3, 5)
    out = []
    if "attack" in only:
        out += [("attack", "digits_cnn", ROOT / "models" / "digits_cnn.onnx", images[0], (0.1, 0.2), ks, 2.0, seed),
                ("attack", "sri_resnet_b", SRI / "onnx" / "resnet_3b2_bn_mixup_ssadv_4.0_bs128_lr-1_v2.onnx",
                 images[1], (2 / 255, 8 / 255), ks, 8.0, seed)]
    if "verify" in only:
        out += [("verify", net, range(2 if quick else 10), (1, 2) if quick else (1, 2, 3), 6.0, seed)
                for net in MNISTFC_NETS]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a few questions per part (smoke run)")
    parser.add_argument("--jobs", type=int, default=1, help="worker processes, one part each (1: all in this one)")
    parser.add_argument("--only", choices=("attack", "verify"), action="append", help="run only these parts")
    parser.add_argument("--seed", type=int, default=0, help="targets and engines' seed")
    parser.add_argument("--out", type=Path, default=RESULTS / "topk.json")
    args = parser.parse_args()
    started = time.monotonic()
    todo = parts(args.quick, set(args.only or ("attack", "verify")), args.seed)
    if args.jobs <= 1:
        done = [run_part(part) for part in todo]
    else:
        with ProcessPoolExecutor(max_workers=args.jobs) as pool:
            done = list(pool.map(run_part, todo))
    attack_rows = [row for kind, rows in done if kind == "attack" for row in rows]
    verify_rows = [row for kind, rows in done if kind == "verify" for row in rows]
    out = {"command": " ".join(sys.argv), "quick": args.quick, "jobs": args.jobs, "seed": args.seed,
           "load_average": [round(value, 2) for value in os.getloadavg()],
           "attack": {"summary": summarise_attack(attack_rows), "rows": attack_rows},
           "verify": {"summary": summarise_verify(verify_rows), "checks": cross_checks(verify_rows),
                      "rows": verify_rows},
           "seconds": round(time.monotonic() - started, 1)}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2))
    for row in out["attack"]["summary"]:
        print(f"{row['model']} eps={row['eps']:.4g} K={row['k']} {row['arm']}: {row['successes']}/{row['questions']}"
              f", median s to success {row['median_s_success']}")
    for row in out["verify"]["summary"]:
        print(f"{row['model']} top-{row['k']} {row['form']}: {row['verified']} verified, {row['falsified']} falsified,"
              f" {row['unknown']} unknown, {row['seconds']} s ({row['decided_by_direct']} by the direct method)")
    print(json.dumps(out["verify"]["checks"]))
    print(f"wrote {args.out} in {out['seconds']} s (load average {out['load_average']})")


if __name__ == "__main__":
    main()
