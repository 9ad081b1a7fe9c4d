"""Dataset audits: data layouts, normalisation, the soundness invariant, determinism and the CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import MODELS
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from onnx_factory import mlp

from verikit.apps.audit import AuditInvariantError, AuditResult, AuditSettings, EpsResult, audit, check_invariant
from verikit.cli import main
from verikit.apps.data import Dataset, Normalization, load_dataset
from verikit.engines.lirpa import engine as bounds
from verikit.engines.lirpa.batch import margin_matrices, robust_margin_bounds
from verikit.core.errors import DataError
from verikit.onnx.load import load_network, load_network_bytes
from verikit.core.property import Box

SAMPLE = MODELS / "data" / "digits_test_100.npz"
UNIT = Normalization(clip_min=0.0, clip_max=1.0)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def mlp_network():
    return load_network(MODELS / "digits_mlp.onnx")


@pytest.fixture(scope="module")
def digits() -> Dataset:
    return load_dataset(SAMPLE)


def assert_ordered(result: AuditResult) -> None:
    """certified <= empirical robust <= clean, overall and per sample."""
    for outcome in result.per_eps:
        assert outcome.certified_robust_accuracy <= outcome.empirical_robust_accuracy <= outcome.clean_accuracy
        assert not np.any(outcome.certified & outcome.broken)
        assert not np.any(outcome.certified & ~outcome.clean_correct)


def assert_witnesses_replay(network, dataset: Dataset, result: AuditResult) -> None:
    """Every counted attack is an onnxruntime misclassification inside the region."""
    mean, std, low, high = result.settings.normalization.vectors(network.n_inputs, network.input_shape)
    for outcome in result.per_eps:
        for index, x in outcome.witnesses.items():
            y = network.replay(x[None, :])[0]
            label = dataset.y[index]
            assert np.max(np.delete(y, label)) >= y[label]
            raw = x.astype(np.float64) * std + mean
            assert np.all(raw >= low) and np.all(raw <= high)
            distance = (np.abs(raw - dataset.x[index]).max() if result.settings.norm == "inf"
                        else np.linalg.norm(raw - dataset.x[index]))
            assert distance <= outcome.eps * (1 + 1e-6)


# --- data layouts -----------------------------------------------------------------------------------


def test_npz_in_image_shape_is_flattened(tmp_path, digits):
    path = tmp_path / "images.npz"
    np.savez(path, x=digits.x.reshape(-1, 1, 8, 8), y=digits.y)
    loaded = load_dataset(path)
    assert loaded.sample_shape == (1, 8, 8)
    np.testing.assert_array_equal(loaded.x, digits.x)
    assert len(loaded.head(7)) == 7


def test_npy_pair_and_csv_layouts_agree(tmp_path, digits):
    np.save(tmp_path / "x.npy", digits.x)
    np.save(tmp_path / "y.npy", digits.y)
    pair = load_dataset(tmp_path / "x.npy", tmp_path / "y.npy")
    first = tmp_path / "first.csv"
    np.savetxt(first, np.column_stack([digits.y, digits.x]), delimiter=",", fmt="%.17g")
    named = tmp_path / "named.csv"
    header = ",".join([f"p{i}" for i in range(64)] + ["label"])
    np.savetxt(named, np.column_stack([digits.x, digits.y]), delimiter=",", fmt="%.17g", header=header,
               comments="")
    for loaded in (pair, load_dataset(first), load_dataset(named)):
        np.testing.assert_array_equal(loaded.y, digits.y)
        np.testing.assert_allclose(loaded.x, digits.x)


@pytest.mark.parametrize("setup, message", [
    (lambda d: d / "absent.npz", "not found"),
    (lambda d: (np.savez(d / "a.npz", x=np.zeros((2, 3))), d / "a.npz")[1], "missing y"),
    (lambda d: (np.save(d / "x.npy", np.zeros((2, 3))), d / "x.npy")[1], "labels"),
    (lambda d: (np.savez(d / "b.npz", x=np.zeros((2, 3)), y=np.zeros(3, int)), d / "b.npz")[1], "shape"),
    (lambda d: (np.savez(d / "c.npz", x=np.zeros((2, 3)), y=[0.5, 1]), d / "c.npz")[1], "integers"),
    (lambda d: ((d / "d.txt").write_text("1,2"), d / "d.txt")[1], "unknown dataset format"),
    (lambda d: ((d / "e.csv").write_text("1,0.5\n2,0.5,0.1\n"), d / "e.csv")[1], "line 2"),
])  # fmt: skip
def test_bad_data_names_file_and_problem(tmp_path, setup, message):
    with pytest.raises(DataError, match=message):
        load_dataset(setup(tmp_path))


def test_normalisation_broadcasts_scalars_channels_and_inputs():
    mean, std, low, high = Normalization(mean=(0.1, 0.2), std=2.0, clip_min=0.0).vectors(8, (1, 2, 2, 2))
    np.testing.assert_array_equal(mean, [0.1] * 4 + [0.2] * 4)
    assert np.all(std == 2.0) and np.all(low == 0.0) and np.all(np.isinf(high))
    with pytest.raises(DataError, match="std must be positive"):
        Normalization(std=0.0).vectors(8)
    with pytest.raises(DataError, match="mean has 3 values"):
        Normalization(mean=(1.0, 2.0, 3.0)).vectors(8, (1, 2, 2, 2))


def test_samples_outside_the_valid_range_are_refused(mlp_network, digits):
    shifted = Dataset(digits.x + 0.5, digits.y, "shifted")
    with pytest.raises(DataError, match="outside the valid range"):
        audit(mlp_network, shifted, AuditSettings(eps=(0.01,), normalization=UNIT))


# --- batched bounds ---------------------------------------------------------------------------------


@pytest.mark.parametrize("method, count", [("ibp", 6), ("crown", 6), ("alpha-crown", 6), ("alpha-crown", 3)])
def test_batched_bounds_hold_on_samples_and_match_single_boxes(mlp_network, digits, method, count):
    bounded = bounds.prepare(mlp_network)
    x, y = digits.x[:count], digits.y[:count]
    lower, upper = np.clip(x - 0.05, 0, 1), np.clip(x + 0.05, 0, 1)
    batched = robust_margin_bounds(bounded, lower, upper, y, method=method)
    C = margin_matrices(y, 10)
    rng = np.random.default_rng(0)
    for i in range(count):
        points = np.vstack([rng.uniform(lower[i], upper[i], size=(500, 64)), lower[i], upper[i]])
        observed = mlp_network.replay(points) @ C[i].T
        assert np.all(observed.min(axis=0) >= batched[i])
        if method == "crown":
            single = bounds.margin_lower_bounds(bounded, Box(lower[i], upper[i]), C[i], np.zeros(9), method=method)
            np.testing.assert_allclose(batched[i], single, atol=1e-3)


def test_network_the_bounds_engine_refuses_is_audited_without_certificates(mlp_network, digits, monkeypatch):
    def refuse(network, device="cpu"):
        raise bounds.UnsupportedByBoundsError("auto_LiRPA cannot handle SomeOp")

    monkeypatch.setattr(bounds, "prepare", refuse)
    result = audit(mlp_network, digits.head(20), AuditSettings(eps=(0.01,), normalization=UNIT))
    assert result.per_eps[0].certified_robust_accuracy == 0.0
    assert "SomeOp" in result.notes[0]
    assert_ordered(result)


# --- audits -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("norm", ["inf", "2"])
def test_audit_orders_accuracies_and_replays_witnesses(mlp_network, digits, norm):
    result = audit(mlp_network, digits, AuditSettings(eps=(0.01, 0.05), norm=norm, normalization=UNIT))
    assert_ordered(result)
    assert_witnesses_replay(mlp_network, digits, result)
    assert result.clean_accuracy > 0.8
    assert result.per_eps[0].certified_robust_accuracy > 0.7
    assert result.per_eps[1].certified_robust_accuracy <= result.per_eps[0].certified_robust_accuracy


def test_self_check_attacks_certified_samples_too(digits):
    network = load_network(MODELS / "digits_cnn.onnx")
    result = audit(network, digits.head(40), AuditSettings(eps=(0.02,), normalization=UNIT, check_all=True,
                                                           method="alpha-crown"))
    assert_ordered(result)
    assert_witnesses_replay(network, digits.head(40), result)
    assert not np.isnan(result.per_eps[0].attack_margin).any()  # every sample was attacked


def test_normalisation_is_applied_in_raw_units(mlp_network, digits):
    """Pixels in 0..16 with std 16 are the same audit as pixels in 0..1 (ε scales with the units)."""
    plain = audit(mlp_network, digits, AuditSettings(eps=(0.02,), normalization=UNIT))
    raw = Dataset(digits.x * 16.0, digits.y, "raw16")
    scaled = audit(mlp_network, raw, AuditSettings(eps=(0.32,), normalization=Normalization(
        std=16.0, clip_min=0.0, clip_max=16.0)))
    assert scaled.clean_accuracy == plain.clean_accuracy
    assert scaled.per_eps[0].certified_robust_accuracy == plain.per_eps[0].certified_robust_accuracy
    assert abs(scaled.per_eps[0].empirical_robust_accuracy - plain.per_eps[0].empirical_robust_accuracy) <= 0.02


def test_same_seed_gives_identical_results(mlp_network, digits):
    config = AuditSettings(eps=(0.03,), normalization=UNIT, seed=7)
    first, second = audit(mlp_network, digits, config), audit(mlp_network, digits, config)
    for a, b in zip(first.per_eps, second.per_eps):
        np.testing.assert_array_equal(a.certified_margin, b.certified_margin)
        np.testing.assert_array_equal(a.attack_margin, b.attack_margin)
        assert sorted(a.witnesses) == sorted(b.witnesses)
        for index in a.witnesses:
            np.testing.assert_array_equal(a.witnesses[index], b.witnesses[index])


def test_invariant_violation_is_a_bug_not_a_verdict(mlp_network, digits):
    result = audit(mlp_network, digits.head(10), AuditSettings(eps=(0.01,), normalization=UNIT))
    good = result.per_eps[0]
    certified = np.flatnonzero(good.certified)[0]
    broken = good.broken.copy()
    broken[certified] = True
    bad = EpsResult(good.eps, good.clean_correct, good.certified, broken, good.certified_margin,
                    good.attack_margin)
    with pytest.raises(AuditInvariantError, match="soundness bug"):
        check_invariant(AuditResult(**{**result.__dict__, "per_eps": (bad,)}))


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 10_000), eps=st.floats(0.001, 0.5))
def test_invariant_holds_on_random_networks(seed, eps):
    network = load_network_bytes(mlp((6, 12, 8, 4), seed=seed, batch="dynamic"), "random")
    rng = np.random.default_rng(seed)
    x = rng.uniform(-1, 1, size=(30, 6))
    y = np.where(rng.uniform(size=30) < 0.7, network.replay(x).argmax(axis=1), rng.integers(0, 4, 30))
    dataset = Dataset(x, y.astype(np.int64), "random")
    result = audit(network, dataset, AuditSettings(eps=(eps,), seed=seed, check_all=True,
                                                   normalization=Normalization(clip_min=-1.0, clip_max=1.0)))
    assert_ordered(result)
    assert_witnesses_replay(network, dataset, result)


# --- command line -----------------------------------------------------------------------------------


def test_cli_audit_writes_table_csv_and_curve(tmp_path):
    out = tmp_path / "audit"
    args = ["audit", str(MODELS / "digits_mlp.onnx"), "--data", str(SAMPLE), "--eps", "0.01", "--eps", "0.03",
            "--clip-min", "0", "--clip-max", "1", "--limit", "50", "--out", str(out), "--json"]
    run = CliRunner().invoke(main, args)
    assert run.exit_code == 0, run.output
    report = json.loads(run.output)
    assert report["schema"] == "verikit-audit/1" and report["data"]["samples"] == 50
    assert [r["eps"] for r in report["results"]] == [0.01, 0.03]
    for row in report["results"]:
        assert row["certified_robust_accuracy"] <= row["empirical_robust_accuracy"] <= row["clean_accuracy"]
    assert len(report["samples"]) == 50 and len(report["samples"][0]["results"]) == 2
    assert (out / "curve.png").read_bytes()[:4] == b"\x89PNG"
    lines = (out / "samples.csv").read_text().splitlines()
    assert lines[0].startswith("index,label,prediction") and len(lines) == 1 + 2 * 50


def test_cli_audit_missing_data_exits_3(tmp_path):
    run = CliRunner().invoke(main, ["audit", str(MODELS / "digits_mlp.onnx"), "--data",
                                    str(tmp_path / "none.npz"), "--eps", "0.01"])
    assert run.exit_code == 3
    assert "none.npz: data file not found" in run.output
