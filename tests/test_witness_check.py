"""The witness checker (verikit witness): formats, strict / within tolerance / invalid, explanations."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from onnx_factory import GraphBuilder

from verikit.cli import main
from verikit.onnx.load import load_network_bytes
from verikit.spec.vnnlib import parse_vnnlib
from verikit.witness.check import check_witness
from verikit.witness.formats import WitnessError, parse_json, parse_vnncomp, read_result_file, read_witness

# y = x on two inputs; the spec asks for x in [0, 1]^2 with Y_0 >= Y_1 (i.e. Y_1 - Y_0 <= 0)
SPEC = """
(declare-const X_0 Real)
(declare-const X_1 Real)
(declare-const Y_0 Real)
(declare-const Y_1 Real)
(assert (>= X_0 0.0))
(assert (<= X_0 1.0))
(assert (>= X_1 0.0))
(assert (<= X_1 1.0))
(assert (>= Y_0 Y_1))
"""


@pytest.fixture(scope="module")
def identity_model() -> bytes:
    g = GraphBuilder()
    out = g.op("Gemm", "x", g.const(np.eye(2)), g.const(np.zeros(2)), transB=1)
    return g.build((1, 2), out)


@pytest.fixture(scope="module")
def network(identity_model):
    return load_network_bytes(identity_model, "identity.onnx")


@pytest.fixture(scope="module")
def prop():
    return parse_vnnlib(SPEC, source="spec.vnnlib")


@pytest.fixture
def files(tmp_path, identity_model) -> tuple[Path, Path]:
    model, spec = tmp_path / "identity.onnx", tmp_path / "spec.vnnlib"
    model.write_bytes(identity_model)
    spec.write_text(SPEC)
    return model, spec


def test_strict_witness(network, prop):
    report = check_witness(network, prop, [0.6, 0.3])
    assert report.status == "strict" and report.valid
    assert report.box_misses == () and report.atom_misses == ()
    assert report.describe()[0].startswith("VALID (strict)")


def test_formula_missed_within_tolerance(network, prop):
    report = check_witness(network, prop, [0.5, 0.50005])
    assert report.status == "within_tolerance" and report.valid
    (atom,) = report.atom_misses
    assert atom.text == "Y_1 - Y_0 <= 0"
    assert atom.amount == pytest.approx(5e-5, rel=1e-2)
    assert "Y_1 - Y_0 <= 0 violated by" in "\n".join(report.describe())


def test_box_missed_within_tolerance_like_float32_rounding(network, prop):
    report = check_witness(network, prop, [1.00003, 0.3])
    assert report.status == "within_tolerance"
    (miss,) = report.box_misses
    assert (miss.index, miss.side) == (0, "upper")
    assert re.match(r"X_0 = 1\.0000\d+ above upper 1 \(by 3", miss.describe())


def test_invalid_witness_names_atoms_and_coordinates(network, prop):
    report = check_witness(network, prop, [1.5, 0.6], tolerance=1e-4)
    assert report.status == "invalid" and not report.valid
    text = "\n".join(report.describe())
    assert "X_0 = 1.5 above upper 1 (by 0.5)" in text
    assert check_witness(network, prop, [0.3, 0.6]).atom_misses[0].describe() == "Y_1 - Y_0 <= 0 violated by 0.3"


def test_tolerance_zero_makes_near_misses_invalid(network, prop):
    assert check_witness(network, prop, [0.5, 0.50005], tolerance=0.0).status == "invalid"


def test_claimed_y_compared_with_replay(network, prop):
    agreeing = check_witness(network, prop, [0.6, 0.3], [0.6, 0.3])
    assert agreeing.y_agrees is True
    differing = check_witness(network, prop, [0.3, 0.6], [0.6, 0.3])
    assert differing.y_agrees is False and not differing.valid
    assert any("own Y satisfies the formula" in note for note in differing.notes)


def test_size_mismatch_is_bad_input(network, prop):
    with pytest.raises(WitnessError):
        check_witness(network, prop, [0.1, 0.2, 0.3])


def test_parse_vnncomp_with_and_without_sat_line():
    body = "((X_0 0.25)\n (X_1 -1e-3)\n (Y_0 1.0)\n (Y_1 2.0))"
    for text in (body, "sat\n" + body, "violated\n" + body):
        witness = parse_vnncomp(text)
        assert witness.x.tolist() == [0.25, -0.001] and witness.y.tolist() == [1.0, 2.0]
    assert parse_vnncomp("((X_1 2) (X_0 1))").x.tolist() == [1.0, 2.0]


@pytest.mark.parametrize("text", ["unsat\n", "((X_0 1) (X_2 3))", "((Y_0 1))", "((X_0 abc))", "((X_0 1) (X_0 2))"])
def test_parse_vnncomp_rejects(text):
    with pytest.raises(WitnessError):
        parse_vnncomp(text)


def test_parse_json_plain_and_report():
    assert parse_json('{"x": [1, 2], "y": [3]}').y.tolist() == [3.0]
    report = {"verdict": "falsified", "counterexample": {"x": [0.5], "y": [0.1, 0.2]}}
    assert parse_json(json.dumps(report)).x.tolist() == [0.5]
    with pytest.raises(WitnessError, match="no counterexample"):
        parse_json('{"verdict": "verified", "counterexample": null}')


def test_read_witness_npy_and_result_file(tmp_path):
    np.save(tmp_path / "w.npy", np.array([[0.1, 0.2]], dtype=np.float32))
    assert read_witness(tmp_path / "w.npy").x.shape == (2,)
    (tmp_path / "r.txt").write_text("sat\n((X_0 1.0))\n")
    assert read_result_file(tmp_path / "r.txt")[0] == "sat"
    (tmp_path / "bad.txt").write_text("sat\nno witness here\n")
    assert read_result_file(tmp_path / "bad.txt") == ("sat", None)
    with pytest.raises(WitnessError, match="not found"):
        read_witness(tmp_path / "missing.txt")


@pytest.mark.parametrize(
    "witness, code, word",
    [("sat\n((X_0 0.6) (X_1 0.3) (Y_0 0.6) (Y_1 0.3))", 0, "VALID (strict)"),
     ('{"x": [0.5, 0.50005]}', 0, "VALID within tolerance"),
     ("((X_0 0.3) (X_1 0.6))", 1, "INVALID"),
     ("unsat\n", 3, "holds no counterexample")],
)
def test_cli_exit_codes(files, tmp_path, witness, code, word):
    path = tmp_path / "witness.txt"
    path.write_text(witness)
    result = CliRunner().invoke(main, ["witness", str(files[0]), str(files[1]), str(path)])
    assert result.exit_code == code, result.output
    assert word in result.output


def test_cli_json_and_tolerance(files, tmp_path):
    path = tmp_path / "w.json"
    path.write_text('{"x": [0.5, 0.50005]}')
    args = ["witness", str(files[0]), str(files[1]), str(path), "--json"]
    data = json.loads(CliRunner().invoke(main, args).output)
    assert data["status"] == "within_tolerance" and data["violated_atoms"][0]["atom"] == "Y_1 - Y_0 <= 0"
    assert CliRunner().invoke(main, [*args, "--tolerance", "1e-6"]).exit_code == 1


def test_run_instance_entry_writes_result_file(files, tmp_path):
    result_file = tmp_path / "out" / "result.txt"
    args = ["run-instance", "v1", "test", str(files[0]), str(files[1]), str(result_file), "10"]
    outcome = CliRunner().invoke(main, args)
    assert outcome.exit_code == 1, outcome.output  # falsified: x = (1, 0) gives Y_0 >= Y_1
    answer, witness = read_result_file(result_file)
    assert answer == "sat" and witness is not None and witness.y is not None
    bad = CliRunner().invoke(main, ["run-instance", "v1", "t", str(tmp_path / "nope.onnx"), str(files[1]),
                                    str(result_file), "10"])
    assert bad.exit_code == 3 and result_file.read_text().startswith("error")
