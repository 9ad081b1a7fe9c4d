"""The bundled example models (models/*.onnx) and specs (specs/*): they load, classify digits well,
their recorded expected verdicts hold up, and models/build_examples.py reproduces them (bit for bit from the
committed models; retraining to an equivalent model)."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from verikit.spec.load import load_spec
from verikit.witness.replay import check

ROOT = Path(__file__).resolve().parents[1]
MODELS = ROOT / "models"
SPECS = ROOT / "specs"
ACCURACY_FLOOR = {"digits_mlp": 0.92, "digits_cnn": 0.93, "digits_cnn_bn_pool": 0.95}


def session(name: str) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    return ort.InferenceSession(str(MODELS / f"{name}.onnx"), options, providers=["CPUExecutionProvider"])


def run_flat(sess: ort.InferenceSession, x: np.ndarray) -> np.ndarray:
    """Outputs (N, n_outputs) for flat float32 inputs (N, n_inputs), one row at a time for fixed shapes."""
    declared = sess.get_inputs()[0].shape
    x = np.asarray(x, dtype=np.float32)
    if isinstance(declared[0], str):
        return sess.run(None, {"input": x})[0]
    return np.concatenate([sess.run(None, {"input": row.reshape(declared)})[0] for row in x])


def expected_rows() -> list[dict[str, str]]:
    with (SPECS / "expected.csv").open(newline="") as handle:
        return list(csv.DictReader(handle))


def rows_with(truth: str) -> list[dict[str, str]]:
    return [row for row in expected_rows() if row["truth"] == truth]


@pytest.fixture(scope="module")
def digits_test_split() -> tuple[np.ndarray, np.ndarray]:
    pytest.importorskip("sklearn")
    sys.path.insert(0, str(MODELS))
    try:
        from example_nets import load_digits_split
    finally:
        sys.path.remove(str(MODELS))
    _, _, x_test, y_test = load_digits_split()
    return x_test, y_test


@pytest.mark.parametrize("path", sorted(MODELS.glob("*.onnx")), ids=lambda p: p.name)
def test_model_loads_in_onnxruntime_with_one_float_input(path: Path) -> None:
    sess = session(path.stem)
    assert [i.type for i in sess.get_inputs()] == ["tensor(float)"]
    assert [o.type for o in sess.get_outputs()] == ["tensor(float)"]


@pytest.mark.parametrize("name", sorted(ACCURACY_FLOOR))
def test_digits_model_accuracy_on_test_split(name: str, digits_test_split) -> None:
    x_test, y_test = digits_test_split
    logits = run_flat(session(name), x_test)
    assert logits.shape == (len(x_test), 10)
    assert (logits.argmax(axis=1) == y_test).mean() > ACCURACY_FLOOR[name]


def test_tiny_relu_computes_its_documented_formula() -> None:
    x = np.random.default_rng(0).uniform(-2.0, 2.0, size=(200, 2)).astype(np.float32)
    y = run_flat(session("tiny_relu"), x)[:, 0]
    expected = np.maximum(x[:, 0] + x[:, 1], 0) - np.maximum(x[:, 0] - x[:, 1], 0)
    np.testing.assert_allclose(y, expected, atol=1e-6)


def test_expected_csv_lists_every_spec_with_existing_files() -> None:
    rows = expected_rows()
    assert rows, "specs/expected.csv is empty"
    for row in rows:
        assert (ROOT / row["onnx"]).is_file(), row["onnx"]
        assert (ROOT / row["vnnlib"]).is_file(), row["vnnlib"]
        assert row["truth"] in {"sat", "unsat"}
        assert row["basis"].strip(), f"{row['vnnlib']}: no basis recorded"
        assert Path(row["vnnlib"]).stem.endswith(f"_{row['truth']}"), "the name should tell the verdict"
    listed = {Path(row["vnnlib"]).name for row in rows}
    assert listed == {p.name for p in SPECS.iterdir() if p.suffix in {".vnnlib", ".json"}}
    assert {"sat", "unsat"} <= {row["truth"] for row in rows}


def test_instances_csv_matches_expected_csv() -> None:
    with (SPECS / "instances.csv").open(newline="") as handle:
        instances = [((SPECS / onnx).resolve(), (SPECS / spec).resolve()) for onnx, spec, _ in csv.reader(handle)]
    expected = [((ROOT / r["onnx"]).resolve(), (ROOT / r["vnnlib"]).resolve()) for r in expected_rows()]
    assert instances == expected


@pytest.mark.parametrize("row", rows_with("sat"), ids=lambda r: Path(r["vnnlib"]).stem)
def test_sat_spec_witness_replays_through_onnxruntime(row: dict[str, str]) -> None:
    prop = load_spec(ROOT / row["vnnlib"])
    witness = np.load((ROOT / row["vnnlib"]).with_suffix(".witness.npy"))
    assert witness.dtype == np.float32 and witness.shape == (prop.n_inputs,)
    y = run_flat(session(Path(row["onnx"]).stem), witness[None])[0]
    assert any(check(case, witness, y) is not None for case in prop.cases), "witness does not violate the spec"


@pytest.mark.parametrize("row", rows_with("unsat"), ids=lambda r: Path(r["vnnlib"]).stem)
def test_unsat_spec_has_no_violation_among_random_samples(row: dict[str, str]) -> None:
    prop = load_spec(ROOT / row["vnnlib"])
    sess = session(Path(row["onnx"]).stem)
    rng = np.random.default_rng(0)
    for case in prop.cases:
        xs = np.vstack([case.box.sample(300, rng), case.box.lower, case.box.upper, case.box.center])
        xs = xs.astype(np.float32)
        for x, y in zip(xs, run_flat(sess, xs)):
            assert case.satisfied_disjunct(y) is None or not case.box.contains(x)


@pytest.mark.slow
def test_build_script_reproduces_the_committed_files() -> None:
    pytest.importorskip("sklearn")
    done = subprocess.run([sys.executable, str(MODELS / "build_examples.py"), "--check"],
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert done.returncode == 0, (
        "models/build_examples.py --check: the committed files differ from a fresh build "
        "(stale files: rerun the script; or retraining no longer gives an equivalent model)\n"
        + done.stdout[-2000:] + done.stderr[-2000:]
    )
