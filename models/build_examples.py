"""Build the bundled example models (models/*.onnx) and specs (specs/*) deterministically.

    python models/build_examples.py            # (re)write models/ and specs/ under the repo root
    python models/build_examples.py --check    # rebuild in a temp dir and compare with the repo's files

Trains on scikit-learn's bundled 8x8 digits (nothing is downloaded), on one CPU thread with seeded
initialisation and shuffles, writes ONNX with onnx.helper, cross-checks onnxruntime against torch, and
writes VNN-LIB specs whose expected verdicts are backed by evidence computed here: a numpy CROWN/IBP
bound (unsat) or a PGD counterexample replayed through onnxruntime (sat, saved as <spec>.witness.npy).
The script fails rather than write an expected verdict it could not back.

--check has two parts. Everything derived from the models (the ONNX files re-serialised from their
weights, specs, witnesses, expected.csv) is rebuilt from the committed models and must match bit for
bit. Retraining is checked for an equivalent model (see check_retraining): one-thread,
deterministic training is reproducible on one machine, but torch's CPU kernels differ in the last bits
across CPUs and library releases, and training amplifies that.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import io
import sys
import tempfile
import time
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from example_bounds import (  # noqa: E402
    crown_lower, dense_layers, ibp_bounds, is_affine_relu, margin_matrix, pgd_attack,
)  # fmt: skip
from example_nets import (  # noqa: E402
    accuracy, load_digits_split, load_weights, make_cnn, make_cnn_bn_pool, make_maxmin, make_mlp, make_tiny_relu,
    onnx_logits,
    to_onnx, torch_logits, train,
)  # fmt: skip
from spec_text import robustness_spec, save_robustness_json, save_spec, threshold_spec  # noqa: E402

from verikit.core.property import Property  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
MIN_PROOF_MARGIN = 1e-3  # a bound must clear the property by this much to count as a proof
MIN_ATTACK_MARGIN = 1e-2  # a counterexample must violate the property by this much under onnxruntime
INSTANCE_TIMEOUT_S = 60  # per instance in specs/instances.csv
RETRAIN_AGREEMENT = 0.97  # --check: a retrained model's test predictions agree this often with the committed
WITNESS_INSET = 1e-6  # counterexamples are kept this far inside the box (robust to decimal printing)


@dataclass(frozen=True)
class ModelPlan:
    name: str
    make: object
    seed: int
    epochs: int
    input_shape: list
    output_shape: list
    min_accuracy: float
    doc: str
    orthogonal: bool = False  # train with orthogonal weights (example_nets.train)


MODELS = (
    ModelPlan("digits_mlp", make_mlp, 0, 40, ["batch", 64], ["batch", 10], 0.90,
              "digits 8x8 (pixels/16) MLP 64-32-16-10, ReLU; input [batch, 64]"),
    ModelPlan("digits_cnn", make_cnn, 1, 40, [1, 1, 8, 8], [1, 10], 0.90,
              "digits 8x8 CNN: Conv(1->4,3x3,pad1) ReLU Conv(4->8,3x3,s2,pad1) ReLU Flatten "
              "Gemm(128->32) ReLU Gemm(32->10); input [1, 1, 8, 8]"),
    ModelPlan("digits_cnn_bn_pool", make_cnn_bn_pool, 2, 40, [1, 1, 8, 8], [1, 10], 0.90,
              "digits 8x8 CNN: Conv(1->8,3x3,pad1) BatchNorm ReLU MaxPool(2) Flatten Gemm(128->32) ReLU "
              "Gemm(32->10); input [1, 1, 8, 8]"),
    ModelPlan("digits_maxmin", make_maxmin, 3, 40, ["batch", 64], ["batch", 10], 0.85,
              "digits 8x8 (pixels/16) MLP 64-64-64-10 with MaxMin activations (Slice, Max, Min, Concat) and "
              "orthogonal weights; input [batch, 64]", orthogonal=True),
)  # fmt: skip

# (model, digits test-split index, eps, expected, format); each is checked by the evidence functions below.
ROBUSTNESS_SPECS = (
    ("digits_mlp", 1, 0.01, "unsat", "vnnlib"),
    ("digits_mlp", 2, 0.03, "unsat", "vnnlib"),
    ("digits_mlp", 1, 0.3, "sat", "vnnlib"),
    ("digits_cnn", 2, 0.02, "unsat", "vnnlib"),
    ("digits_cnn", 0, 0.05, "sat", "vnnlib"),
    ("digits_cnn", 4, 0.02, "unsat", "json"),
    ("digits_cnn_bn_pool", 2, 0.01, "unsat", "vnnlib"),
    ("digits_cnn_bn_pool", 0, 0.3, "sat", "vnnlib"),
)
# tiny_relu: y = relu(x0 + x1) - relu(x0 - x1) = min(x0 + x1, 2 x1) on the box [0, 1]^2, range exactly [0, 2].
# (name, asserted violation "y <= t" or "y >= t", threshold, expected)
TINY_SPECS = (
    ("tiny_relu_min_above_neg0.75_unsat", "<=", -0.75, "unsat"),  # CROWN proves y >= -0.5; IBP only -1
    ("tiny_relu_min_above_neg0.25_unsat", "<=", -0.25, "unsat"),  # needs a split on x0 - x1 (or exact)
    ("tiny_relu_max_below_1.5_sat", ">=", 1.5, "sat"),  # x = (1, 1) gives y = 2
)


@dataclass(frozen=True)
class BuiltModel:
    plan_name: str
    net: torch.nn.Module
    onnx_bytes: bytes
    feed_shape: tuple[int, ...] | None  # shape to feed one flat input, None for a dynamic batch


def build_models(out: Path, data: tuple, weights_from: Path | None = None) -> dict[str, BuiltModel]:
    """Trains (or, with weights_from, loads from weights_from/models) and writes every model under
    out/models; returns them by name."""
    x_train, y_train, x_test, y_test = data
    built: dict[str, BuiltModel] = {}
    for plan in MODELS:
        start = time.perf_counter()
        if weights_from is None:
            net = train(plan.make(), x_train, y_train, seed=plan.seed, epochs=plan.epochs, orthogonal=plan.orthogonal)
        else:
            net = load_weights(plan.make(), onnx.load(weights_from / "models" / f"{plan.name}.onnx"))
        model = to_onnx(net, name=plan.name, input_shape=plan.input_shape, output_shape=plan.output_shape,
                        doc=plan.doc)  # fmt: skip
        feed = None if isinstance(plan.input_shape[0], str) else tuple(plan.input_shape)
        built[plan.name] = BuiltModel(plan.name, net, model.SerializeToString(), feed)
        expected, got = torch_logits(net, x_test), onnx_logits(built[plan.name].onnx_bytes, x_test, feed)
        diff = float(np.abs(expected - got).max())
        acc = accuracy(got, y_test)
        print(f"{plan.name}: test accuracy {acc:.4f} (onnxruntime), max |ort - torch| {diff:.2e}, "
              f"{time.perf_counter() - start:.1f}s")  # fmt: skip
        if diff > 1e-4 or acc < plan.min_accuracy:
            raise RuntimeError(f"{plan.name}: onnxruntime disagrees with torch or accuracy too low")
    tiny = make_tiny_relu()
    model = to_onnx(tiny, name="tiny_relu", input_shape=["batch", 2], output_shape=["batch", 1],
                    doc="y = relu(x0 + x1) - relu(x0 - x1); integer weights, zero biases")  # fmt: skip
    built["tiny_relu"] = BuiltModel("tiny_relu", tiny, model.SerializeToString(), None)
    (out / "models").mkdir(parents=True, exist_ok=True)
    for name, item in built.items():
        (out / "models" / f"{name}.onnx").write_bytes(item.onnx_bytes)
    return built


def prove_robust(model: BuiltModel, prop: Property, label: int, seed: int) -> str:
    """Evidence that no x in the box is misclassified: a CROWN (or IBP) bound, cross-checked by sampling."""
    box = prop.cases[0].box
    C = margin_matrix(label, prop.n_outputs)  # rows y_label - y_j, proven > 0
    if is_affine_relu(model.net):
        bound, method = crown_lower(dense_layers(model.net, prop.n_inputs), C, box.lower, box.upper), "crown"
    else:  # MaxPool: our CROWN has no rule for it; interval propagation does (max is monotone)
        lo, hi = ibp_bounds(model.net, box.lower, box.upper)
        bound, method = lo[label] - np.delete(hi, label), "ibp"
    samples = np.vstack([box.sample(2000, np.random.default_rng(seed)), box.lower, box.upper])
    observed = (onnx_logits(model.onnx_bytes, samples, model.feed_shape) @ C.T).min(axis=0)
    if np.any(bound > observed + 1e-5):
        raise RuntimeError(f"{method} bound exceeds an observed margin: the bound code is unsound")
    if bound.min() < MIN_PROOF_MARGIN:
        raise RuntimeError(f"{method} cannot prove robustness (min margin {bound.min():.3g})")
    return f"{method}-numpy: min margin y[label]-y[j] >= {_floor3(bound.min())}"


def attack(model: BuiltModel, prop: Property, label: int, seed: int) -> tuple[np.ndarray, str]:
    """A PGD counterexample, inset into the box and replayed through onnxruntime against the property."""
    box = prop.cases[0].box
    x, _ = pgd_attack(model.net, box.lower, box.upper, label, seed=seed)
    inset = np.minimum(WITNESS_INSET, box.radius)
    witness = np.clip(x, box.lower + inset, box.upper - inset).astype(np.float32)
    return witness, check_witness(model, prop, witness, "pgd")


def check_witness(model: BuiltModel, prop: Property, witness: np.ndarray, method: str) -> str:
    """Replays a counterexample through onnxruntime; it must lie in the box and violate the property."""
    case = prop.cases[0]
    y = onnx_logits(model.onnx_bytes, witness[None], model.feed_shape)[0]
    worst = min(float(conjunction.margins(y).max()) for conjunction in case.disjuncts)
    if not case.box.contains(witness) or worst > -MIN_ATTACK_MARGIN:
        raise RuntimeError(f"{method} found no counterexample (best margin {worst:.3g})")
    return f"{method}+onnxruntime: witness violates by {_floor3(-worst)}"


def _floor3(value: float) -> str:
    """value rounded down to 3 decimals, so that a reported margin is never more than was shown."""
    return f"{np.floor(value * 1000) / 1000:.3f}"


def prove_tiny(model: BuiltModel, prop: Property) -> str:
    """Exact range of tiny_relu on [0, 1]^2: it is linear on the triangles x0 >= x1 and x0 <= x1."""
    vertices = np.array([[0, 0], [1, 0], [0, 1], [1, 1]], dtype=np.float32)
    conjunction = prop.cases[0].disjuncts[0]
    values = onnx_logits(model.onnx_bytes, vertices)[:, 0]
    margins = [float(conjunction.margins([v]).max()) for v in values]  # > 0: the violation fails there
    if min(margins) < MIN_PROOF_MARGIN:
        raise RuntimeError("tiny_relu property is not proven by its vertices")
    return f"exact: y piecewise linear on triangles x0>=x1 / x0<=x1; vertex values {'/'.join(f'{v:g}' for v in values)}"


def build_specs(out: Path, models: dict[str, BuiltModel], data: tuple) -> list[dict[str, str]]:
    """Writes every spec (and sat witnesses) under out/specs; returns the expected.csv rows."""
    _, _, x_test, y_test = data
    specs_dir = out / "specs"
    specs_dir.mkdir(parents=True, exist_ok=True)
    rows: list[dict[str, str]] = []
    for name, index, eps, expected, kind in ROBUSTNESS_SPECS:
        model, label = models[name], int(y_test[index])
        stem = f"{name}_robust_eps{eps:g}_idx{index}_{expected}"
        seed = zlib.crc32(stem.encode())  # per spec, so adding a spec leaves the others unchanged
        prop = robustness_spec(x_test[index], label, eps)
        if expected == "unsat":
            basis = prove_robust(model, prop, label, seed)
        else:
            witness, basis = attack(model, prop, label, seed)
            np.save(specs_dir / f"{stem}.witness.npy", witness)
        comment = f"{name}.onnx, digits test index {index} (label {label}), L-inf eps {eps:g} in [0, 1]"
        spec = f"{stem}.{kind}"
        if kind == "json":
            save_robustness_json(prop, specs_dir / spec, x_test[index], label, eps, f"{comment}; expected {expected}")
        else:
            save_spec(prop, specs_dir / spec, [comment, f"expected: {expected} ({basis})"])
        rows.append({"onnx": f"models/{name}.onnx", "vnnlib": f"specs/{spec}", "truth": expected,
                     "basis": basis})  # fmt: skip
    tiny = models["tiny_relu"]
    for stem, relation, threshold, expected in TINY_SPECS:
        prop = threshold_spec([0.0, 0.0], [1.0, 1.0], relation, threshold)
        if expected == "unsat":
            basis = prove_tiny(tiny, prop)
        else:
            witness = np.array([1.0, 1.0], dtype=np.float32)
            basis = check_witness(tiny, prop, witness, "hand")
            np.save(specs_dir / f"{stem}.witness.npy", witness)
        comment = f"tiny_relu.onnx: y = relu(x0 + x1) - relu(x0 - x1) on [0, 1]^2; asserts y {relation} {threshold:g}"
        save_spec(prop, specs_dir / f"{stem}.vnnlib", [comment, f"expected: {expected} ({basis})"])
        rows.append({"onnx": "models/tiny_relu.onnx", "vnnlib": f"specs/{stem}.vnnlib", "truth": expected,
                     "basis": basis})  # fmt: skip
    write_csvs(specs_dir, rows)
    return rows


def write_csvs(specs_dir: Path, rows: list[dict[str, str]]) -> None:
    """expected.csv (onnx,vnnlib,truth,basis; paths from the repo root, as bench.read_ground_truth reads)
    and instances.csv (VNN-COMP: onnx,vnnlib,timeout without header, paths relative to specs/)."""
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=["onnx", "vnnlib", "truth", "basis"], lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    (specs_dir / "expected.csv").write_text(text.getvalue())
    instances = "".join(f"../{row['onnx']},{Path(row['vnnlib']).name},{INSTANCE_TIMEOUT_S}\n" for row in rows)
    (specs_dir / "instances.csv").write_text(instances)


def build(out: Path, weights_from: Path | None = None) -> dict[str, str]:
    """Builds everything under `out` (models trained, or loaded from weights_from); returns
    {relative path: sha256} of the files written."""
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    data = load_digits_split()
    models = build_models(out, data, weights_from)
    build_specs(out, models, data)
    written = sorted(p for d in ("models", "specs") for p in (out / d).iterdir() if p.suffix in GENERATED)
    return {str(p.relative_to(out)): hashlib.sha256(p.read_bytes()).hexdigest() for p in written}


GENERATED = {".onnx", ".vnnlib", ".npy", ".csv", ".json"}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="rebuild in a temp dir and compare with the repo")
    parser.add_argument("--out", type=Path, default=REPO, help="root to write models/ and specs/ under")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    if not args.check:
        hashes = build(args.out)
        for path, digest in hashes.items():
            print(f"{digest[:16]}  {path}")
        print(f"built {len(hashes)} files in {time.perf_counter() - start:.1f}s")
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        hashes = build(Path(tmp), weights_from=REPO)
    differing = [p for p, digest in hashes.items()
                 if not (REPO / p).exists() or hashlib.sha256((REPO / p).read_bytes()).hexdigest() != digest]
    for path in differing:
        print(f"differs: {path}")
    drifted = check_retraining()
    print(f"checked {len(hashes)} files derived from the committed models in {time.perf_counter() - start:.1f}s: "
          f"{'reproducible' if not differing else f'{len(differing)} differ'}; "
          f"retraining: {'within tolerance' if not drifted else ', '.join(drifted) + ' drifted'}")  # fmt: skip
    return 1 if differing or drifted else 0


def check_retraining() -> list[str]:
    """Retrains every model; returns the names whose retrained model is not an equivalent one: test
    predictions agreeing with the committed model's on fewer than RETRAIN_AGREEMENT of the split, or
    accuracy under the plan's minimum. (One-thread deterministic training is bit-reproducible on one
    machine only; elsewhere the last-bit differences of torch's CPU kernels grow over 40 epochs, to
    ~1e-5 in the logits of the plain nets and ~0.1 in the BatchNorm net's.)"""
    x_train, y_train, x_test, y_test = load_digits_split()
    drifted = []
    for plan in MODELS:
        committed = load_weights(plan.make(), onnx.load(REPO / "models" / f"{plan.name}.onnx"))
        fresh = train(plan.make(), x_train, y_train, seed=plan.seed, epochs=plan.epochs,
                      orthogonal=plan.orthogonal)
        new, old = torch_logits(fresh, x_test), torch_logits(committed, x_test)
        agreement = float((new.argmax(axis=1) == old.argmax(axis=1)).mean())
        print(f"{plan.name}: retrained: logits within {np.abs(new - old).max():.1e} of the committed model's, "
              f"predictions agree on {agreement:.1%} of the test split, accuracy {accuracy(new, y_test):.4f}")
        if agreement < RETRAIN_AGREEMENT or accuracy(new, y_test) < plan.min_accuracy:
            drifted.append(plan.name)
    return drifted

if __name__ == "__main__":
    sys.exit(main())
