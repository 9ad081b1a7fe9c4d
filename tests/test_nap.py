"""Neural activation patterns: mining, the NAP properties, and every engine's verdict against brute force
(all activation regions of a tiny net enumerated with LPs) on small nets."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from onnx import TensorProto, helper, numpy_helper
from scipy.optimize import linprog

from tests.onnx_factory import mlp
from verikit.cli import main
from verikit.core.property import Box, NeuronPattern
from verikit.core.pwl import Affine
from verikit.engines.hidden import relu_inputs
from verikit.nap import mine as nap_mine
from verikit.nap import properties
from verikit.nap.mine import ClassNap, Naps
from verikit.nap.verify import verify_naps
from verikit.onnx.load import load_network_bytes
from verikit.onnx.pwl import to_piecewise_linear
from verikit.portfolio.options import Options
from verikit.run import run_loaded

BOX = Box(-np.ones(2), np.ones(2))
ENGINES = {"bab": Options(timeout=10, engines=("bab",)).with_settings(["bab.branching=relu"]),
           "smt": Options(timeout=3, engines=("smt",)), "attack": Options(timeout=1, engines=("attack",)),
           "portfolio": Options(timeout=10)}
STRICT_MARGIN = 1e-6  # brute force: a pattern's `> 0` as `>= 1e-6` (the LP needs closed constraints)


@pytest.fixture(scope="module")
def tiny():
    network = load_network_bytes(mlp((2, 10, 8, 3), seed=12), "tiny")
    pwl = to_piecewise_linear(network)
    affines = [layer for layer in pwl.layers if isinstance(layer, Affine)]
    return network, affines


def _regions(affines, fixed: list[dict[int, int]]):
    """Every activation region of the box (phase per hidden neuron, +1 / -1) that an LP finds non-empty,
    each with its constraint rows A x <= b and the output's affine map (W, c); `fixed` forces phases."""
    n = affines[0].weight.shape[1]
    found = []

    def feasible(A, b):
        res = linprog(np.zeros(n), A_ub=np.array(A) if A else None, b_ub=np.array(b) if b else None,
                      bounds=[(-1, 1)] * n, method="highs")
        return res.status == 0

    def walk(layer, W, c, A, b):
        if layer == len(affines) - 1:
            last = affines[-1]
            found.append((A, b, last.weight @ W, last.weight @ c + last.bias))
            return
        Wz, cz = affines[layer].weight @ W, affines[layer].weight @ c + affines[layer].bias

        def neuron(k, signs, A, b):
            if k == Wz.shape[0]:
                D = np.diag([1.0 if s > 0 else 0.0 for s in signs])
                walk(layer + 1, D @ Wz, D @ cz, A, b)
                return
            want = fixed[layer].get(k)
            for sign in (1, -1) if want is None else (want,):
                margin = STRICT_MARGIN if (want == 1) else 0.0
                row = (-Wz[k], cz[k] - margin) if sign > 0 else (Wz[k], -cz[k])
                A2, b2 = A + [row[0]], b + [row[1]]
                if feasible(A2, b2):
                    neuron(k + 1, signs + [sign], A2, b2)

        neuron(0, [], A, b)

    walk(0, np.eye(n), np.zeros(n), [], [])
    return found


def _phases_by_layer(network, patterns) -> list[dict[int, int]]:
    tensors = relu_inputs(network)
    fixed = [dict() for _ in tensors]
    for p in patterns:
        layer = tensors.index(p.tensor)
        fixed[layer].update({int(i): 1 for i in p.active})
        fixed[layer].update({int(i): -1 for i in p.inactive})
    return fixed


def brute_robust(network, affines, label, patterns) -> bool:
    """Exact: no x of the box following `patterns` has some y_j >= y_label (LP max per region)."""
    for A, b, W, c in _regions(affines, _phases_by_layer(network, patterns)):
        for other in range(W.shape[0]):
            if other == label:
                continue
            objective = W[other] - W[label]
            res = linprog(-objective, A_ub=np.array(A) if A else None, b_ub=np.array(b) if b else None,
                          bounds=[(-1, 1)] * 2, method="highs")
            if res.status == 0 and -res.fun + c[other] - c[label] >= -1e-9:
                return False
    return True


def _naps(network, patterns_per_class: dict[int, tuple[NeuronPattern, ...]]) -> Naps:
    sizes = tuple((t, 0) for t in relu_inputs(network))
    return Naps(network.sha256, "", 0.9, sizes,
                tuple(ClassNap(label, pats, 1, 1.0) for label, pats in patterns_per_class.items()))


def _phases_at(network, x) -> tuple[NeuronPattern, ...]:
    tensors = tuple(relu_inputs(network))
    values = network.replay_hidden(np.asarray(x, np.float32)[None, :], tensors)
    return tuple(NeuronPattern(t, np.flatnonzero(values[t][0] > 1e-4), np.flatnonzero(values[t][0] < -1e-4))
                 for t in tensors)


def _mined(tiny, delta):
    network, _ = tiny
    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, (300, 2)).astype(np.float32)
    y = network.replay(x).argmax(axis=1)
    return nap_mine.mine(network, x, y, delta)


@pytest.mark.parametrize("delta", [0.6, 0.75])
def test_every_engine_agrees_with_brute_force_on_mined_naps(tiny, delta):
    network, affines = tiny
    naps = _mined(tiny, delta)
    checked, truths = 0, set()
    for nap in naps.classes:
        truth = brute_robust(network, affines, nap.label, nap.patterns)
        truths.add(truth)
        prop = properties.robustness(naps, nap.label, BOX, 3, {"kind": "domain"})
        for name in ("bab", "smt", "attack"):
            verdict = run_loaded(network, prop, ENGINES[name]).verdict.value
            assert verdict in ("verified", "falsified", "unknown", "timeout"), (name, verdict)
            if verdict == "verified":
                assert truth, f"{name} verified class {nap.label} at δ={delta}; brute force finds a violation"
                checked += 1
            if verdict == "falsified":
                assert not truth, f"{name} falsified class {nap.label}; brute force proves it"
                checked += 1
        # the portfolio decides it (z3 alone may say unknown: a sat point on a `> 0` boundary does not replay)
        decided = run_loaded(network, prop, ENGINES["portfolio"]).verdict.value
        assert decided == ("verified" if truth else "falsified"), (nap.label, delta)
    assert checked >= len(naps.classes)
    assert truths == {True, False}  # the net has NAPs that hold and NAPs that do not


def test_a_planted_violated_pattern_is_never_verified(tiny):
    network, affines = tiny
    rng = np.random.default_rng(1)
    planted = 0
    for x in rng.uniform(-0.9, 0.9, (40, 2)):
        predicted = int(network.replay(x[None, :].astype(np.float32))[0].argmax())
        patterns = _phases_at(network, x)
        label = (predicted + 1) % 3  # x follows the pattern and is not classified `label`
        assert not brute_robust(network, affines, label, patterns)
        prop = properties.robustness(_naps(network, {label: patterns}), label, BOX, 3, {"kind": "domain"})
        for name, options in ENGINES.items():
            result = run_loaded(network, prop, options)
            assert result.verdict.value != "verified", (name, x)
            if result.verdict.value == "falsified":
                witness = result.counterexample.x
                assert all(p.misses(network.replay_hidden(witness[None, :], (p.tensor,))[p.tensor][0]) == 0
                           for p in patterns)
        planted += 1
        if planted == 3:
            break
    assert planted == 3


def test_pattern_inconsistent_with_the_region_is_proven_infeasible(tiny):
    network, affines = tiny
    x = np.array([0.5, -0.5])
    patterns = _phases_at(network, x)
    small = Box(np.array([-1.0, 0.6]), np.array([-0.6, 1.0]))  # far from x: some phase of x flips there
    restricted = [r for r in _regions(affines, _phases_by_layer(network, patterns))
                  if linprog(np.zeros(2), A_ub=np.array(r[0]), b_ub=np.array(r[1]),
                             bounds=list(zip(small.lower, small.upper)), method="highs").status == 0]
    naps = _naps(network, {0: patterns, 1: patterns})
    prop = properties.ambiguity(naps, 0, 1, small, 3, {"kind": "box"})
    for name in ("bab", "smt"):
        result = run_loaded(network, prop, ENGINES[name])
        if restricted:
            assert result.verdict.value != "verified"
        else:
            assert result.verdict.value == "verified", (name, result.reason)


def test_non_ambiguity_agrees_with_brute_force(tiny):
    network, affines = tiny
    naps = _mined(tiny, 0.75)
    truths = set()
    for a, b in ((0, 1), (0, 2), (1, 2)):
        if a not in [c.label for c in naps.classes] or b not in [c.label for c in naps.classes]:
            continue
        both = naps.of(a).patterns + naps.of(b).patterns
        if properties.conflict(naps.of(a), naps.of(b)):
            truth = True
        else:
            truth = not _regions(affines, _phases_by_layer(network, both))
        truths.add(truth)
        prop = properties.ambiguity(naps, a, b, BOX, 3, {"kind": "domain"})
        for name in ("bab", "smt", "attack"):
            verdict = run_loaded(network, prop, ENGINES[name]).verdict.value
            if verdict == "verified":
                assert truth, name
            if verdict == "falsified":
                assert not truth, name
        decided = run_loaded(network, prop, ENGINES["portfolio"]).verdict.value
        assert decided == ("verified" if truth else "falsified"), (a, b)
    assert truths == {True, False}


def _toy_network() -> bytes:
    """1 input; h = (x, -x, x - 0.5); 2 outputs (h0 + h2, h1)."""
    W1 = np.array([[1.0], [-1.0], [1.0]], np.float32)
    b1 = np.array([0.0, 0.0, -0.5], np.float32)
    W2 = np.array([[1.0, 0.0, 1.0], [0.0, 1.0, 0.0]], np.float32)
    nodes = [helper.make_node("Gemm", ["x", "W1", "b1"], ["z"], transB=1), helper.make_node("Relu", ["z"], ["h"]),
             helper.make_node("Gemm", ["h", "W2", "b2"], ["y"], transB=1)]
    graph = helper.make_graph(nodes, "toy", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2])],
                              [numpy_helper.from_array(W1, "W1"), numpy_helper.from_array(b1, "b1"),
                               numpy_helper.from_array(W2, "W2"), numpy_helper.from_array(np.zeros(2, np.float32), "b2")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)
    onnx.checker.check_model(model)
    return model.SerializeToString()


def test_mining_on_a_toy_dataset_gives_the_expected_pattern():
    network = load_network_bytes(_toy_network(), "toy")
    x = np.concatenate([np.linspace(0.6, 1.0, 19), [0.3], np.linspace(-1.0, -0.1, 20)])[:, None]
    y = np.array([0] * 20 + [1] * 20)
    strict = nap_mine.mine(network, x, y, 1.0)
    assert strict.of(0).patterns[0].active.tolist() == [0] and strict.of(0).patterns[0].inactive.tolist() == [1]
    assert strict.of(1).patterns[0].active.tolist() == [1]
    assert strict.of(1).patterns[0].inactive.tolist() == [0, 2]
    loose = nap_mine.mine(network, x, y, 0.95)  # the one class-0 sample at 0.3 no longer vetoes neuron 2
    assert loose.of(0).patterns[0].active.tolist() == [0, 2]
    assert loose.of(0).support == pytest.approx(19 / 20)
    report = nap_mine.check(network, loose, x, y)
    assert report["classes"][0]["recall"] == pytest.approx(19 / 20)
    assert report["follow_none"] == 1 and report["follow_two_or_more"] == 0
    with pytest.raises(Exception):
        nap_mine.mine(network, x, y, 0.5)
    # the toy NAPs over the domain [-1, 1]: class 1's NAP (x <= 0) implies y1 = -x >= y0 = 0: ties count
    # against it, so it is falsified at x = 0; class 0's (x > 0.5) implies y0 = 2x - 0.5 > y1 = 0: verified
    verdicts = verify_naps(network, loose, lower=-1.0, upper=1.0, timeout=5)
    robust = {e["labels"][0]: e["verdict"] for e in verdicts["entries"] if e["question"] == "robustness"}
    assert robust[0] == "verified"
    ambiguity = [e for e in verdicts["entries"] if e["question"] == "non-ambiguity"]
    assert ambiguity[0]["verdict"] == "verified" and ambiguity[0]["pattern_infeasible"]


def test_cli_mine_check_verify(tmp_path, tiny):
    network, _ = tiny
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 1, (120, 2)).astype(np.float32)
    y = network.replay(x).argmax(axis=1)
    model = tmp_path / "tiny.onnx"
    model.write_bytes(network.onnx_bytes)
    np.savez(tmp_path / "d.npz", x=x, y=y)
    runner = CliRunner()
    mined = runner.invoke(main, ["nap", "mine", str(model), "--data", str(tmp_path / "d.npz"), "--delta", "0.95",
                                 "-o", str(tmp_path / "naps.json")])
    assert mined.exit_code == 0, mined.output
    stored = json.loads((tmp_path / "naps.json").read_text())
    assert stored["format"] == "verikit-nap/1" and stored["model_sha256"] == network.sha256
    checked = runner.invoke(main, ["nap", "check", str(model), str(tmp_path / "naps.json"), "--data",
                                   str(tmp_path / "d.npz")])
    assert checked.exit_code == 0 and "recall" in checked.output
    verified = runner.invoke(main, ["nap", "verify", str(model), str(tmp_path / "naps.json"), "--timeout", "3",
                                    "--json", str(tmp_path / "v.json"), "--html", str(tmp_path / "v.html")])
    report = json.loads((tmp_path / "v.json").read_text())
    assert verified.exit_code in (0, 1, 5) and report["schema"] == "verikit-nap-verify/1"
    assert (tmp_path / "v.html").read_text().count("<tr") >= len(report["entries"])
    other = load_network_bytes(mlp((2, 6, 5, 3), seed=8), "other")
    (tmp_path / "other.onnx").write_bytes(other.onnx_bytes)
    wrong = runner.invoke(main, ["nap", "check", str(tmp_path / "other.onnx"), str(tmp_path / "naps.json"),
                                 "--data", str(tmp_path / "d.npz")])
    assert wrong.exit_code == 3 and "mined on model" in wrong.output
