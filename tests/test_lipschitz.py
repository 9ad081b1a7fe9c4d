"""Lipschitz bounds: sound against sampled ratios, LipSDP never above naive, proofs that can fail."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.onnx_factory import mlp
from verikit.lipschitz import lipschitz_bound, read_lipnet
from verikit.lipschitz.layers import global_slopes, output_map, region_slopes
from verikit.lipschitz.lmi import certify, check_multipliers
from verikit.lipschitz.naive import spectral_upper
from verikit.lipschitz.psd import prove_psd
from verikit.lipschitz import sdp

pytest.importorskip("cvxpy")


def _sampled_ratio(net, norm: str, C=None, lower=-2.0, upper=2.0, seed=0, pairs=4000) -> float:
    """max ||f(x) - f(y)|| / ||x - y|| over random pairs, many of them close together."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(lower, upper, (pairs, net.n_inputs))
    scale = np.where(rng.random((pairs, 1)) < 0.5, 1e-3, 1.0)
    y = np.clip(x + scale * rng.standard_normal(x.shape), lower, upper)
    fx, fy = net.chain.evaluate(x), net.chain.evaluate(y)
    if C is not None:
        fx, fy = fx @ C.T, fy @ C.T
    order = 2 if norm == "2" else np.inf
    d = np.linalg.norm(x - y, order, axis=1)
    keep = d > 0
    return float(np.max(np.linalg.norm(fx - fy, order, axis=1)[keep] / d[keep]))


NETS = [((3, 6, 5, 2), "Relu", 0), ((4, 7, 3), "Relu", 1), ((3, 5, 5, 2), "Tanh", 2), ((2, 6, 2), "Sigmoid", 3),
        ((5, 4, 6, 3), "Relu", 4)]


@pytest.mark.parametrize("sizes, activation, seed", NETS)
def test_bounds_are_sound_and_lipsdp_not_above_naive(sizes, activation, seed):
    net = read_lipnet(mlp(sizes, seed=seed, activation=activation))
    observed = _sampled_ratio(net, "2", seed=seed)
    results = {m: lipschitz_bound(net, method=m) for m in ("naive", "lipsdp-layer", "lipsdp-neuron")}
    for method, result in results.items():
        assert result.upper >= observed, method
        assert result.upper <= results["naive"].upper * (1 + 1e-12)
    assert results["lipsdp-neuron"].upper <= results["lipsdp-layer"].upper * (1 + 1e-6)
    assert results["lipsdp-neuron"].method_used in ("lipsdp-neuron", "naive")
    # the bound reported is the proven one, never below the solver's own objective's neighbourhood
    neuron = results["lipsdp-neuron"]
    if neuron.method_used == "lipsdp-neuron":
        assert neuron.upper >= neuron.solver_objective * (1 - 1e-4)


def test_infinity_norm_bound_is_sound():
    net = read_lipnet(mlp((4, 6, 3), seed=5))
    observed = _sampled_ratio(net, "inf", seed=5)
    for method in ("naive", "lipsdp-neuron"):
        assert lipschitz_bound(net, norm="inf", method=method).upper >= observed


def test_margin_bound_is_sound_and_below_whole_output_bound_times_sqrt2():
    net = read_lipnet(mlp((3, 6, 4), seed=6))
    C = output_map(net, (0, 2))
    observed = _sampled_ratio(net, "2", C=C, seed=6)
    margin = lipschitz_bound(net, method="lipsdp-neuron", pair=(0, 2))
    whole = lipschitz_bound(net, method="lipsdp-neuron")
    assert margin.upper >= observed
    assert margin.upper <= np.sqrt(2) * whole.upper * (1 + 1e-6)


def test_local_bound_uses_stable_relus_and_stays_sound():
    net = read_lipnet(mlp((3, 8, 6, 2), seed=7))
    lower, upper = np.full(3, 0.2), np.full(3, 0.3)
    slopes, _ = region_slopes(net, lower, upper)
    assert slopes.stable > 0
    local = lipschitz_bound(net, method="lipsdp-neuron", region=(lower, upper))
    global_ = lipschitz_bound(net, method="lipsdp-neuron")
    assert local.upper <= global_.upper
    assert local.upper >= _sampled_ratio(net, "2", lower=0.2, upper=0.3, seed=7)


def test_lower_bound_is_below_upper_bound():
    net = read_lipnet(mlp((3, 6, 2), seed=8))
    result = lipschitz_bound(net, method="lipsdp-neuron", replay=net.chain.evaluate, lower_seconds=0.3)
    assert 0 < result.lower <= result.upper


def test_tampered_multipliers_fail_the_check():
    net = read_lipnet(mlp((3, 6, 5, 2), seed=9))
    slopes = global_slopes(net)
    solution = sdp.solve(net, slopes, None, "lipsdp-neuron", 30.0)
    rho, _ = certify(net, slopes, None, solution.t)
    assert rho is not None and check_multipliers(net, slopes, None, solution.t, rho).proven
    shrunk = [t * 0.2 for t in solution.t]  # too small a multiplier leaves the last block indefinite
    assert not check_multipliers(net, slopes, None, shrunk, rho).proven
    assert not check_multipliers(net, slopes, None, solution.t, rho * 0.9).proven  # ρ below the least one
    assert certify(net, slopes, None, shrunk)[0] is None or certify(net, slopes, None, shrunk)[0] > rho


def test_psd_proof_rejects_indefinite_and_uncertain_matrices():
    rng = np.random.default_rng(0)
    A = rng.standard_normal((12, 12))
    psd = A @ A.T + 1e-3 * np.eye(12)
    assert prove_psd(psd).proven
    eigenvalues, vectors = np.linalg.eigh(psd)
    eigenvalues[0] = -1e-9  # barely indefinite
    indefinite = (vectors * eigenvalues) @ vectors.T
    assert not prove_psd((indefinite + indefinite.T) / 2).proven
    assert not prove_psd(psd, np.full((12, 12), 1e-2)).proven  # the interval holds indefinite matrices
    assert prove_psd(np.zeros((0, 0))).proven


def test_spectral_bound_is_an_upper_bound():
    rng = np.random.default_rng(1)
    for shape in ((5, 9), (9, 5), (1, 7), (30, 30)):
        W = rng.standard_normal(shape).astype(np.float32).astype(np.float64)
        bound, how = spectral_upper(W)
        assert np.linalg.norm(W, 2) <= bound <= np.linalg.norm(W, 2) * (1 + 1e-6)


def test_cli_reports_a_bound(tmp_path):
    from click.testing import CliRunner

    from verikit.cli import main

    model = tmp_path / "net.onnx"
    model.write_bytes(mlp((3, 5, 2), seed=10))
    report = tmp_path / "lip.json"
    run = CliRunner().invoke(main, ["lipschitz", str(model), "--method", "lipsdp-layer", "--json",
                                    "--lower-seconds", "0.2", "--report", str(report)])
    assert run.exit_code == 0, run.output
    payload = json.loads(run.output)
    assert payload["upper"] <= payload["naive"] and payload["lower"] <= payload["upper"]
    assert json.loads(report.read_text())["upper"] == payload["upper"]
    bad = CliRunner().invoke(main, ["lipschitz", str(model), "--output-pair", "0,0"])
    assert bad.exit_code == 2 and "different outputs" in bad.output


def test_gate_lipschitz_check_passes_fails_and_is_undecided(tmp_path):
    from click.testing import CliRunner

    from verikit.cli import main

    model = tmp_path / "net.onnx"
    model.write_bytes(mlp((3, 5, 2), seed=11))
    net = read_lipnet(model.read_bytes())
    bound = lipschitz_bound(net, method="lipsdp-neuron", replay=net.chain.evaluate, lower_seconds=0.3)

    def gate(limit: float) -> tuple[int, dict]:
        (tmp_path / "verikit.toml").write_text(
            f'version = 1\n[[model]]\nname = "m"\npath = "net.onnx"\n[[property]]\nname = "smooth"\n'
            f'kind = "lipschitz"\nmax = {limit!r}\nnorm = "2"\nmethod = "lipsdp-neuron"\ntimeout = 30\n')
        out = tmp_path / f"out{limit}"
        run = CliRunner().invoke(main, ["gate", "--quiet", str(tmp_path / "verikit.toml"), "--out", str(out),
                                        "--no-baseline"])
        report = json.loads(next(out.glob("*.json")).read_text()) if out.exists() else {}
        return run.exit_code, report

    code, _ = gate(bound.upper * 1.01)
    assert code == 0
    code, _ = gate(bound.lower * 0.5)  # a replayed pair exceeds it
    assert code == 1


def test_audit_l2_lipschitz_certificates_hold_on_sampled_perturbations():
    from pathlib import Path

    from verikit.apps.audit import AuditSettings, audit_files
    from verikit.apps.data import Normalization
    from verikit.engines.attack.pgd import PGDSettings
    from verikit.onnx.load import load_network

    root = Path(__file__).resolve().parents[1]
    model, data = root / "models" / "digits_mlp.onnx", root / "models" / "data" / "digits_test_100.npz"
    settings = AuditSettings(eps=(0.05,), norm="2", lipschitz="naive", attack=PGDSettings(restarts=1, steps=5),
                             normalization=Normalization(clip_min=0.0, clip_max=1.0))
    result = audit_files(str(model), str(data), settings, limit=20)
    outcome = result.per_eps[0]
    assert outcome.certified_by_lipschitz is not None and outcome.certified_by_lipschitz.any()
    assert not np.any(outcome.certified_by_lipschitz & outcome.broken)
    network = load_network(str(model))
    x = np.load(data)["x"][:20].astype(np.float64)
    rng = np.random.default_rng(0)
    for index in np.flatnonzero(outcome.certified_by_lipschitz):
        directions = rng.standard_normal((200, x.shape[1]))
        directions *= 0.05 / np.linalg.norm(directions, axis=1, keepdims=True)
        moved = np.clip(x[index] + directions, 0.0, 1.0)
        assert np.all(network.replay(moved).argmax(axis=1) == result.labels[index])


def test_cli_region_gives_a_local_bound_no_larger_than_the_global_one(tmp_path):
    from click.testing import CliRunner

    from verikit.cli import main

    model = tmp_path / "net.onnx"
    model.write_bytes(mlp((3, 8, 6, 2), seed=7))
    spec = tmp_path / "region.vnnlib"
    lines = [f"(declare-const X_{i} Real)" for i in range(3)] + [f"(declare-const Y_{i} Real)" for i in range(2)]
    lines += [f"(assert (>= X_{i} 0.2))\n(assert (<= X_{i} 0.3))" for i in range(3)] + ["(assert (>= Y_0 Y_1))"]
    spec.write_text("\n".join(lines) + "\n")
    args = ["lipschitz", str(model), "--json", "--lower-seconds", "0.2"]
    local = json.loads(CliRunner().invoke(main, [*args, "--region", str(spec)]).output)
    global_ = json.loads(CliRunner().invoke(main, args).output)
    assert local["region"]["stable_neurons"] > 0
    assert local["lower"] <= local["upper"] <= global_["upper"]
