"""MaxMin networks: read from their ONNX patterns, bounded by LipSDP with the extension's constraints
(sound, tighter than the ReLU rewriting), loaded and attacked by verify, and refused where unreadable."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper

from verikit.checker.network import UnsupportedNetwork, read_chain
from verikit.lipschitz import lipschitz_bound, read_lipnet, sdp
from verikit.lipschitz.layers import NotLipschitzReadable, global_slopes
from verikit.lipschitz.lmi import certify, check_multipliers
from verikit.lipschitz.lower import _jacobians
from verikit.lipschitz.maxmin import relu_rewrite

pytest.importorskip("cvxpy")

ROOT = Path(__file__).resolve().parents[1]
DIGITS_MAXMIN = ROOT / "models" / "digits_maxmin.onnx"


class _MaxMin(torch.nn.Module):
    def __init__(self, chunk: bool, swap: bool = False):
        super().__init__()
        self.chunk, self.swap = chunk, swap

    def forward(self, x):
        if self.chunk:  # torch exports the cut through Shape/Gather/Div arithmetic
            a, b = torch.chunk(x, 2, dim=-1)
        else:
            half = x.shape[-1] // 2
            a, b = x[..., :half], x[..., half:]
        hi, lo = torch.maximum(a, b), torch.minimum(a, b)
        return torch.cat([lo, hi] if self.swap else [hi, lo], dim=-1)


def _exported(chunk: bool, swap: bool = False, seed: int = 0, sizes=(6, 8, 6, 3)) -> bytes:
    torch.manual_seed(seed)
    layers = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(torch.nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(_MaxMin(chunk, swap))
    buffer = io.BytesIO()
    torch.onnx.export(torch.nn.Sequential(*layers), torch.zeros(1, sizes[0]), buffer, dynamo=False, opset_version=13)
    return buffer.getvalue()


def _split_maxmin(weights: list[np.ndarray], halves=None) -> bytes:
    """Gemm, then MaxMin written with Split (or with Slices cutting at `halves`), then Gemm."""
    nodes, inits, current = [], [], "x"
    for k, W in enumerate(weights):
        inits.append(numpy_helper.from_array(W.astype(np.float32), f"W{k}"))
        nodes.append(helper.make_node("MatMul", [current, f"W{k}"], [f"z{k}"]))
        current = f"z{k}"
        if k == len(weights) - 1:
            break
        n = W.shape[1]
        if halves is None:
            inits.append(numpy_helper.from_array(np.array([n // 2, n - n // 2], np.int64), f"split{k}"))
            nodes.append(helper.make_node("Split", [current, f"split{k}"], [f"a{k}", f"b{k}"], axis=-1))
        else:
            for name, (s, e) in zip((f"a{k}", f"b{k}"), ((0, halves), (halves, n))):
                for key, v in (("s", s), ("e", e), ("ax", -1)):
                    inits.append(numpy_helper.from_array(np.array([v], np.int64), f"{name}{key}"))
                nodes.append(helper.make_node("Slice", [current, f"{name}s", f"{name}e", f"{name}ax"], [name]))
        nodes.append(helper.make_node("Max", [f"a{k}", f"b{k}"], [f"hi{k}"]))
        nodes.append(helper.make_node("Min", [f"a{k}", f"b{k}"], [f"lo{k}"]))
        nodes.append(helper.make_node("Concat", [f"hi{k}", f"lo{k}"], [f"m{k}"], axis=-1))
        current = f"m{k}"
    nodes[-1].output[0] = "y"
    graph = helper.make_graph(nodes, "maxmin", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, weights[0].shape[0]])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, weights[-1].shape[1]])],
                              initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    return model.SerializeToString()


def _ort(data: bytes, x: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return np.concatenate([session.run(None, {name: row[None].astype(np.float32)})[0] for row in x])


def _sampled_ratio(net, seed=0, pairs=4000) -> float:
    rng = np.random.default_rng(seed)
    x = rng.uniform(-2, 2, (pairs, net.n_inputs))
    y = x + np.where(rng.random((pairs, 1)) < 0.5, 1e-3, 1.0) * rng.standard_normal(x.shape)
    d = np.linalg.norm(x - y, axis=1)
    return float(np.max(np.linalg.norm(net.chain.evaluate(x) - net.chain.evaluate(y), axis=1) / d))


@pytest.mark.parametrize("chunk, swap", [(False, False), (False, True), (True, False), (True, True)])
def test_reader_follows_onnxruntime_on_torch_exports(chunk, swap):
    data = _exported(chunk, swap)
    chain = read_chain(data, activations=("Relu", "MaxMin"))
    assert chain.kinds == ("maxmin", "maxmin")
    x = np.random.default_rng(1).normal(size=(9, 6))
    assert np.abs(chain.evaluate(x) - _ort(data, x)).max() < 1e-5
    with pytest.raises(UnsupportedNetwork):  # the certificate checker reads Relu chains only
        read_chain(data)


def test_reader_takes_split_and_refuses_uneven_cuts():
    rng = np.random.default_rng(2)
    weights = [rng.normal(size=(5, 8)), rng.normal(size=(8, 3))]
    data = _split_maxmin(weights)
    x = rng.normal(size=(6, 5))
    assert np.abs(read_chain(data, activations=("MaxMin",)).evaluate(x) - _ort(data, x)).max() < 1e-5
    with pytest.raises(UnsupportedNetwork, match="halves"):
        read_chain(_split_maxmin(weights, halves=3), activations=("MaxMin",))
    with pytest.raises(NotLipschitzReadable, match="halves"):
        read_lipnet(_split_maxmin(weights, halves=3))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_extension_is_sound_below_naive_and_below_the_relu_rewriting(seed):
    net = read_lipnet(_exported(True, seed=seed))
    observed = _sampled_ratio(net, seed=seed)
    naive = lipschitz_bound(net, method="naive")
    ext = {m: lipschitz_bound(net, method=m) for m in ("lipsdp-layer", "lipsdp-neuron")}
    relu = lipschitz_bound(net, method="lipsdp-neuron", maxmin="relu-rewrite")
    for result in (naive, *ext.values(), relu):
        assert result.upper >= observed
        assert result.upper <= naive.upper * (1 + 1e-12)
    assert ext["lipsdp-neuron"].method_used == "lipsdp-neuron" and ext["lipsdp-neuron"].maxmin == "extension"
    assert ext["lipsdp-neuron"].upper <= ext["lipsdp-layer"].upper * (1 + 1e-6)
    assert relu.method_bound is not None and ext["lipsdp-neuron"].method_bound < relu.method_bound


def test_orthogonal_maxmin_network_is_one_lipschitz_by_the_extension_not_by_the_rewriting():
    net = read_lipnet(DIGITS_MAXMIN.read_bytes())
    assert net.kinds == ("maxmin", "maxmin") and net.hidden_sizes == (64, 64)
    ext = lipschitz_bound(net, method="lipsdp-layer")
    relu = lipschitz_bound(net, method="lipsdp-layer", maxmin="relu-rewrite")
    assert 1.0 <= ext.method_bound < 1.001  # 1 per layer, recovered
    assert relu.method_bound > 3.9  # the ReLU rewriting's slope-restricted LipSDP: about 2 per layer
    assert ext.upper <= relu.upper


def test_tampered_maxmin_multipliers_fail_the_check():
    net = read_lipnet(_exported(False, seed=3))
    slopes = global_slopes(net)
    solution = sdp.solve(net, slopes, None, "lipsdp-neuron", 60)
    rho, _ = certify(net, slopes, None, solution.t)
    assert rho is not None and check_multipliers(net, slopes, None, solution.t, rho).proven
    flipped = [t.copy() for t in solution.t]
    flipped[0][:, 2] = -flipped[0][:, 2] - 1.0  # the sum constraint's b, made wrong
    assert not check_multipliers(net, slopes, None, flipped, rho).proven
    dropped = [t.copy() for t in solution.t]
    dropped[1][:, 0] = 0.0  # no |·| constraint left on the second layer
    assert not check_multipliers(net, slopes, None, dropped, rho).proven
    negative = [t.copy() for t in solution.t]
    negative[0][0, 0] = -1.0
    with pytest.raises(ValueError, match="λ >= 0"):
        check_multipliers(net, slopes, None, negative, rho)


def test_relu_rewriting_computes_the_same_function_and_refuses_to_round():
    net = read_lipnet(_exported(True, seed=4))
    rewritten = relu_rewrite(net)
    assert rewritten.kinds == ("relu", "relu") and rewritten.hidden_sizes == (20, 15)
    x = np.random.default_rng(4).normal(size=(50, 6))
    assert np.abs(rewritten.chain.evaluate(x) - net.chain.evaluate(x)).max() < 1e-12
    weights = [np.array([[1.0, 2.0**-60]]), np.array([[1.0], [1.0]])]  # 1 - 2^-60 rounds in float64
    odd = read_lipnet(_split_maxmin(weights))
    with pytest.raises(NotLipschitzReadable, match="round"):
        relu_rewrite(odd)
    result = lipschitz_bound(odd, method="lipsdp-layer", maxmin="relu-rewrite")
    assert result.method_used == "naive" and any("round" in note for note in result.notes)


def test_maxmin_jacobian_matches_finite_differences():
    net = read_lipnet(_exported(False, seed=5))
    x = np.random.default_rng(5).normal(size=(4, 6))
    J = _jacobians(net, x, None)
    h = 1e-6
    for i in range(6):
        step = np.zeros(6)
        step[i] = h
        numeric = (net.chain.evaluate(x + step) - net.chain.evaluate(x - step)) / (2 * h)
        assert np.abs(numeric - J[:, :, i]).max() < 1e-5


def test_verify_loads_maxmin_networks_attacks_them_and_never_claims_a_proof_it_lacks(tmp_path):
    from verikit.onnx.load import load_network_bytes

    data = _exported(True, seed=6)
    network = load_network_bytes(data)
    x = np.random.default_rng(6).uniform(0, 1, (5, 6))
    assert np.abs(network.replay(x.astype(np.float32)) - _ort(data, x)).max() < 1e-5
    model = tmp_path / "mm.onnx"
    model.write_bytes(data)
    y = _ort(data, np.full((1, 6), 0.5))[0]
    top = int(np.argmax(y))
    lines = [f"(declare-const X_{i} Real)" for i in range(6)] + [f"(declare-const Y_{i} Real)" for i in range(3)]
    lines += [f"(assert (>= X_{i} 0.49))\n(assert (<= X_{i} 0.51))" for i in range(6)]
    for label, expected in ((top, None), ((top + 1) % 3, 1)):
        spec = tmp_path / f"s{label}.vnnlib"
        others = " ".join(f"(>= Y_{j} Y_{label})" for j in range(3) if j != label)
        spec.write_text("\n".join(lines + [f"(assert (or {others}))"]) + "\n")
        run = subprocess.run([sys.executable, "-m", "verikit", "verify", str(model), str(spec), "--timeout", "20",
                              "--json"], capture_output=True, text=True, cwd=ROOT)
        report = json.loads(run.stdout)
        if expected == 1:  # a wrong label: the attack's counterexample, replayed
            assert run.returncode == 1 and report["verdict"] == "falsified"
        else:
            assert report["verdict"] in ("verified", "unknown")
            if report["verdict"] == "unknown":
                assert report["cases"][0]["attempts"]  # every engine said why


def test_max_of_three_operands_is_refused_clearly():
    from verikit.core.errors import UnsupportedOperatorError
    from verikit.onnx.load import load_network_bytes

    nodes = [helper.make_node("Max", ["x", "x", "x"], ["y"])]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    with pytest.raises(UnsupportedOperatorError, match="3 operands"):
        load_network_bytes(model.SerializeToString())


def test_cli_reports_the_maxmin_mode(tmp_path):
    report = tmp_path / "lip.json"
    run = subprocess.run([sys.executable, "-m", "verikit", "lipschitz", str(DIGITS_MAXMIN), "--method",
                          "lipsdp-layer", "--maxmin", "relu-rewrite", "--lower-seconds", "0.5", "--report",
                          str(report)], capture_output=True, text=True, cwd=ROOT)
    assert run.returncode == 0, run.stderr
    found = json.loads(report.read_text())
    assert found["maxmin"] == "relu-rewrite" and found["method_bound"] > 3.9
    assert found["lower"] <= found["upper"] and found["upper"] <= found["naive"]
    assert "rewritten as five ReLUs" in run.stdout
