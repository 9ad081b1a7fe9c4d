"""Certificates: written by verikit.certify, checked by the independent verikit.checker, and rejected
after each of many kinds of tampering (a changed slope or multiplier, a dropped leaf, a leaf box that no
longer covers, a changed weight or spec constant, a swapped model, ...)."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from onnx import numpy_helper
from onnx_factory import GraphBuilder, mlp

from verikit.certify import ProofSettings, write_certificate
from verikit.checker import BadCertificate, check_certificate, load_certificate, read_chain
from verikit.cli import main
from verikit.core.property import Box, Case, Conjunction, Property
from verikit.core.result import Budget
from verikit.onnx.load import load_network
from verikit.spec.load import load_spec
from verikit.spec.vnnlib_writer import save_vnnlib

pytestmark = pytest.mark.usefixtures("one_torch_thread")
ROOT = Path(__file__).resolve().parents[1]


def _threshold(model: Path, n_in: int) -> float:
    """A threshold t with y0 > t on [-1, 1]^n, that root CROWN cannot show (the proof needs splits)."""
    from verikit.onnx.pwl import to_piecewise_linear

    pwl = to_piecewise_linear(load_network(model))
    xs = np.random.default_rng(0).uniform(-1, 1, (20000, n_in))
    return float(pwl.evaluate(xs)[:, 0].min()) - 0.1  # CROWN's root bound is about -2.5 here


def _instance(tmp: Path, name: str, n_in: int, mode: int, sign: float = 1.0) -> dict:
    model = tmp / f"{name}.onnx"
    model.write_bytes(mlp((n_in, 10, 10, 2), seed=4))
    spec = tmp / f"{name}.vnnlib"
    t = _threshold(model, n_in)
    case = Case(Box(-np.ones(n_in), np.ones(n_in)), (Conjunction(np.array([[1.0, 0.0]]), np.array([t])),))
    save_vnnlib(Property((case,), n_in, 2), spec)
    network = load_network(model)
    prop = load_spec(spec)
    certificate = write_certificate(network, prop, Budget.seconds(120), ProofSettings(input_split_max_dims=mode))
    assert certificate["statistics"]["leaves"] > 3 and "incomplete" not in certificate["cases"][0]
    path = tmp / f"{name}.json"
    path.write_text(json.dumps(certificate))
    return {"model": model, "spec": spec, "cert": certificate, "path": path}


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """Input splitting: a box tree over a 3-input ReLU MLP."""
    return _instance(tmp_path_factory.mktemp("cert_input"), "net", 3, 16)


@pytest.fixture(scope="module")
def relus(tmp_path_factory):
    """ReLU splitting (forced on the same network): a phase tree with α and β at the leaves."""
    return _instance(tmp_path_factory.mktemp("cert_relu"), "net", 3, 0)


def _nodes(tree: dict, kind: str | None = None):
    """Every node of a tree (depth first); with `kind`, only splits of that kind ("leaf": leaves)."""
    stack = [tree]
    while stack:
        node = stack.pop()
        is_leaf = "split" not in node
        if kind is None or (kind == "leaf" and is_leaf) or node.get("split") == kind:
            yield node
        stack.extend(node.get("children", []))


def _tree(cert: dict) -> dict:
    return cert["cases"][0]["proofs"][0]["tree"]


def _status(fixture, cert: dict | None = None, model: Path | None = None, spec: Path | None = None) -> str:
    report = check_certificate(model or fixture["model"], spec or fixture["spec"], cert or fixture["cert"])
    return report.status


def test_honest_certificates_are_valid(inputs, relus):
    for fixture, kind in ((inputs, "input"), (relus, "relu")):
        report = check_certificate(fixture["model"], fixture["spec"], load_certificate(fixture["path"]))
        assert report.valid, report.reason
        assert report.leaves == fixture["cert"]["statistics"]["leaves"] and report.min_margin > 0
        assert any(True for _ in _nodes(_tree(fixture["cert"]), kind))
    assert any("beta" in leaf for leaf in _nodes(_tree(relus["cert"]), "leaf"))


def _tamper_leaf_with(key: str):
    def tamper(cert):
        leaf = next(leaf for leaf in _nodes(_tree(cert), "leaf") if key in leaf)
        return leaf
    return tamper


def _first(cert, kind):
    return next(_nodes(_tree(cert), kind))


def _set_alpha(value):
    def tamper(cert):
        leaf = _tamper_leaf_with("alpha")(cert)
        leaf["alpha"][0] = [value] * len(leaf["alpha"][0])
    return tamper


def _set_beta(value):
    def tamper(cert):
        leaf = _tamper_leaf_with("beta")(cert)
        leaf["beta"] = [[value] * len(layer) for layer in leaf["beta"]]
    return tamper


def _drop_child(kind):
    def tamper(cert):
        node = _first(cert, kind)
        node["children"] = node["children"][:1]
    return tamper


def _replace_child_by_empty_leaf(kind):
    def tamper(cert):
        _first(cert, kind)["children"][1] = {"empty": True}
    return tamper


def _move_at(where):
    def tamper(cert):
        node = _first(cert, "input")
        node["at"] = {"outside": 5.0, "on_edge": -1.0, "text": "0.1"}[where]
    return tamper


def _set(path, value):
    def tamper(cert):
        target = cert
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value
    return tamper


def _nudge_d(cert):
    cert["cases"][0]["disjuncts"][0]["d"][0] += 1e-9


def _nudge_C(cert):
    cert["cases"][0]["disjuncts"][0]["C"][0][0] = 1.0 + 2.0**-40


def _nudge_box(cert):
    cert["cases"][0]["box"]["lower"][0] += 1e-12


def _split_twice(cert):
    node = _first(cert, "relu")
    repeat = {"split": "relu", "layer": node["layer"], "neuron": node["neuron"], "children": node["children"]}
    node["children"] = [repeat, copy.deepcopy(node["children"][1])]


def _relu_out_of_range(cert):
    _first(cert, "relu")["neuron"] = 10_000


def _leaf_row_out_of_range(cert):
    next(_nodes(_tree(cert), "leaf"))["row"] = 7


def _unknown_split(cert):
    _first(cert, None)["split"] = "magic"


def _alpha_wrong_layers(cert):
    leaf = _tamper_leaf_with("alpha")(cert)
    leaf["alpha"] = leaf["alpha"][:1]


def _drop_proof(cert):
    cert["cases"][0]["proofs"] = []


def _drop_case(cert):
    cert["cases"] = []


def _whole_tree_one_leaf(cert):
    cert["cases"][0]["proofs"][0]["tree"] = {"row": 0}


def _claim_root_empty(cert):
    cert["cases"][0]["proofs"][0]["tree"] = {"empty": True}


TAMPERING = {  # name: (fixture, tamper)
    "alpha above 1": ("relus", _set_alpha(1.5)),
    "alpha negative": ("relus", _set_alpha(-0.5)),
    "alpha of the wrong layer count": ("relus", _alpha_wrong_layers),
    "beta negative": ("relus", _set_beta(-1.0)),
    "beta multiplier inflated": ("relus", _set_beta(1e6)),
    "input split loses a child (dropped leaf)": ("inputs", _drop_child("input")),
    "relu split loses a child (dropped leaf)": ("relus", _drop_child("relu")),
    "input half replaced by a claimed-empty leaf": ("inputs", _replace_child_by_empty_leaf("input")),
    "relu phase replaced by a claimed-empty leaf": ("relus", _replace_child_by_empty_leaf("relu")),
    "split point outside the box (leaf box no longer covers)": ("inputs", _move_at("outside")),
    "split point on the box's edge": ("inputs", _move_at("on_edge")),
    "split dimension out of range": ("inputs", _set(("cases", 0, "proofs", 0, "tree", "dim"), 99)),
    "neuron split twice on one path": ("relus", _split_twice),
    "split neuron out of range": ("relus", _relu_out_of_range),
    "leaf names a row that does not exist": ("inputs", _leaf_row_out_of_range),
    "unknown split kind": ("inputs", _unknown_split),
    "spec constant d changed in the certificate": ("inputs", _nudge_d),
    "spec coefficient C changed in the certificate": ("inputs", _nudge_C),
    "input box changed in the certificate": ("inputs", _nudge_box),
    "proof of a disjunct dropped": ("inputs", _drop_proof),
    "case dropped": ("inputs", _drop_case),
    "tree collapsed to its root": ("inputs", _whole_tree_one_leaf),
    "root claimed empty": ("relus", _claim_root_empty),
    "model hash altered": ("inputs", _set(("model_sha256",), "0" * 64)),
    "spec hash altered": ("inputs", _set(("spec_sha256",), "0" * 64)),
}


@pytest.mark.parametrize("name", sorted(TAMPERING))
def test_tampered_certificate_is_rejected(name, inputs, relus):
    fixture = {"inputs": inputs, "relus": relus}[TAMPERING[name][0]]
    cert = copy.deepcopy(fixture["cert"])
    TAMPERING[name][1](cert)
    report = check_certificate(fixture["model"], fixture["spec"], cert)
    assert report.status == "invalid", report
    assert report.reason


def _edited_model(model: Path, tmp: Path, scale: float) -> Path:
    proto = onnx.load(model)
    last = proto.graph.initializer[-2]  # the output layer's weight
    last.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(last) * scale, last.name))
    path = tmp / f"edited_{scale}.onnx"
    onnx.save(proto, path)
    return path


def test_changed_weight_swapped_model_and_changed_spec_are_rejected(inputs, tmp_path):
    # a changed weight (same file otherwise) and a swapped model: the hash no longer matches
    for scale in (1.0 + 2.0**-20, -1.0):
        edited = _edited_model(inputs["model"], tmp_path, scale)
        assert _status(inputs, model=edited) == "invalid"
        # even with the certificate's hash rewritten to match, the leaves no longer hold on the new weights
        import hashlib

        forged = copy.deepcopy(inputs["cert"])
        forged["model_sha256"] = hashlib.sha256(edited.read_bytes()).hexdigest()
        if scale < 0:
            report = check_certificate(edited, inputs["spec"], forged)
            assert report.status == "invalid" and "not above 0" in report.reason
    spec = tmp_path / "changed.vnnlib"
    spec.write_text(inputs["spec"].read_text().replace("(assert", "(assert ", 1))
    assert _status(inputs, spec=spec) == "invalid"


def test_format_and_version_errors_are_bad_input(inputs, tmp_path):
    for change in ({"format": "something-else"}, {"version": 2}):
        path = tmp_path / "bad.json"
        path.write_text(json.dumps({**inputs["cert"], **change}))
        with pytest.raises(BadCertificate):
            load_certificate(path)
    path = tmp_path / "garbage.json"
    path.write_text("{not json")
    result = CliRunner().invoke(main, ["certificate", "check", str(inputs["model"]), str(inputs["spec"]), str(path)])
    assert result.exit_code == 3 and "cannot read the certificate" in result.output


def test_cli_exit_codes(inputs, tmp_path):
    args = ["certificate", "check", str(inputs["model"]), str(inputs["spec"])]
    valid = CliRunner().invoke(main, [*args, str(inputs["path"])])
    assert valid.exit_code == 0 and valid.output.startswith("VALID"), valid.output
    tampered = copy.deepcopy(inputs["cert"])
    _drop_child("input")(tampered)
    path = tmp_path / "tampered.json"
    path.write_text(json.dumps(tampered))
    invalid = CliRunner().invoke(main, [*args, str(path)])
    assert invalid.exit_code == 1 and invalid.output.startswith("INVALID"), invalid.output


def test_verify_writes_a_certificate_that_checks(inputs, tmp_path):
    path = tmp_path / "proof.json"
    result = CliRunner().invoke(main, ["verify", str(inputs["model"]), str(inputs["spec"]), "--timeout", "60",
                                       "--certificate", str(path)])
    assert result.exit_code == 0, result.output
    assert "certificate:" in result.output
    assert check_certificate(inputs["model"], inputs["spec"], load_certificate(path)).valid


def test_a_network_the_checker_cannot_read_says_so(tmp_path):
    g = GraphBuilder(seed=3)
    h = g.op("Sigmoid", g.op("Gemm", "x", g.weight(4, 2), g.weight(4), transB=1))
    model = tmp_path / "sigmoid.onnx"
    model.write_bytes(g.build((1, 2), g.op("Gemm", h, g.weight(1, 4), g.weight(1), transB=1)))
    spec = tmp_path / "s.vnnlib"
    case = Case(Box(np.zeros(2), np.full(2, 0.01)), (Conjunction(np.array([[1.0]]), np.array([-100.0])),))
    save_vnnlib(Property((case,), 2, 1), spec)
    certificate = write_certificate(load_network(model), load_spec(spec), Budget.seconds(10))
    assert "Sigmoid" in certificate["unsupported"]
    path = tmp_path / "c.json"
    path.write_text(json.dumps(certificate))
    result = CliRunner().invoke(main, ["certificate", "check", str(model), str(spec), str(path)])
    assert result.exit_code == 3 and "unsupported" in result.output


def test_the_checker_reads_networks_the_way_onnxruntime_runs_them(inputs):
    import onnxruntime as ort

    chain = read_chain(inputs["model"].read_bytes())
    x = np.random.default_rng(1).uniform(-1, 1, (16, 3)).astype(np.float32)
    session = ort.InferenceSession(str(inputs["model"]), providers=["CPUExecutionProvider"])
    expected = np.vstack([session.run(None, {"x": row[None]})[0] for row in x])
    assert np.allclose(chain.evaluate(x), expected, rtol=1e-5, atol=1e-5)


def test_the_checker_imports_neither_torch_nor_an_engine(inputs):
    code = (
        "import sys; sys.modules['torch'] = None\n"
        "from verikit.checker import check_certificate, load_certificate\n"
        f"r = check_certificate({str(inputs['model'])!r}, {str(inputs['spec'])!r}, load_certificate({str(inputs['path'])!r}))\n"
        "assert r.valid, r\n"
        "assert not [m for m in sys.modules if m.startswith(('verikit.engines', 'verikit.onnx', 'auto_LiRPA'))]\n"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                          env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    assert done.returncode == 0, done.stderr
