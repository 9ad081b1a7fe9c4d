"""Issue 14, one test per item of its "Found" list (in process; tests/test_fuzz.py runs the subprocess corpus)."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import MODELS, ROOT, SPECS

import hostile
from verikit.cli import main
from verikit.core import limits, output
from verikit.core.errors import DataError, ModelError, OutputError, PolicyError, SpecError

TINY, SAT = MODELS / "tiny_relu.onnx", SPECS / "tiny_relu_max_below_1.5_sat.vnnlib"
MLP, DATA = MODELS / "digits_mlp.onnx", MODELS / "data" / "digits_test_100.npz"

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def cli(*args) -> "CliRunner.Result":
    return CliRunner().invoke(main, [str(a) for a in args])


def one_error_line(run, names: str) -> str:
    lines = [line for line in run.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("verikit: error: ") and names in lines[0], run.stderr
    return lines[0]


# ----- segfault: deep nesting with auto_LiRPA's recursion limit -----

def test_auto_lirpa_import_keeps_the_recursion_limit_and_warning_filters():
    import warnings

    from verikit.engines.lirpa.compat import import_auto_lirpa

    before, filters = sys.getrecursionlimit(), list(warnings.filters)
    import_auto_lirpa()
    assert sys.getrecursionlimit() == before and warnings.filters == filters


def test_deep_gate_baseline_is_refused(tmp_path):
    from verikit.apps.gate.baseline import read_baseline

    deep = tmp_path / "deep.json"
    deep.write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(DataError, match="deep.json: the baseline report is nested more than 64 levels"):
        read_baseline(deep)


@pytest.mark.parametrize("reader, text, error", [
    ("spec", '{"format": "verikit-robustness/1", "input": ' + "[" * 100_000 + "]" * 100_000 + "}", SpecError),
    ("witness", '{"x": ' + "[" * 100_000 + "]" * 100_000 + "}", None),
    ("policy", "version = 1\nx = " + "[" * 100_000 + "]" * 100_000, PolicyError),
])  # fmt: skip
def test_deep_json_spec_witness_and_toml_are_refused(tmp_path, reader, text, error):
    from verikit.apps.gate.policy import load_policy
    from verikit.spec.load import load_spec
    from verikit.witness.formats import WitnessError, read_witness

    path = tmp_path / f"deep.{'toml' if reader == 'policy' else 'json'}"
    path.write_text(text)
    read = {"spec": load_spec, "witness": read_witness, "policy": load_policy}[reader]
    with pytest.raises(error or WitnessError, match="nested more than 64 levels"):
        read(path)


# ----- exit 4 that should be exit 3 -----

def test_endless_files_are_refused_before_reading(tmp_path):
    from verikit.onnx.load import load_network
    from verikit.spec.load import load_spec

    with pytest.raises(ModelError, match="/dev/zero: is a device, not a regular model file"):
        load_network("/dev/zero")
    with pytest.raises(SpecError, match="is a device, not a regular spec file"):
        load_spec("/dev/zero")
    spec = tmp_path / "s.json"
    spec.write_text(hostile.robustness(input=None).replace('"input": null', '"input_file": "/dev/zero"'))
    with pytest.raises(SpecError, match="key 'input_file': /dev/zero: is a device"):
        load_spec(spec)
    run = CliRunner().invoke(main, ["verify", str(TINY), "/dev/zero"])
    assert run.exit_code == 3
    one_error_line(run, "/dev/zero")


def test_oversized_files_are_refused_by_size(tmp_path, monkeypatch):
    monkeypatch.setenv("VERIKIT_MAX_MODEL_BYTES", "1K")
    big = tmp_path / "big.onnx"
    big.write_bytes(b"\0" * 4096)
    from verikit.onnx.load import load_network

    with pytest.raises(ModelError, match="too large: 4 KiB .limit 1 KiB; raise it with VERIKIT_MAX_MODEL_BYTES"):
        load_network(big)


def test_model_declaring_1e9_inputs_is_refused():
    from verikit.onnx.load import load_network_bytes

    with pytest.raises(ModelError, match="1000000000 elements per sample, more than the limit"):
        load_network_bytes(hostile.model_bytes(inputs=10**9), "huge.onnx")


def test_json_spec_with_1e12_classes_is_refused(tmp_path):
    from verikit.spec.load import load_spec

    spec = tmp_path / "classes.json"
    spec.write_text(hostile.robustness(num_classes=10**12))
    with pytest.raises(SpecError, match="num_classes': expected an integer in 2..10000"):
        load_spec(spec)


def test_zip_bomb_npz_is_refused_before_inflating(tmp_path, monkeypatch):
    from verikit.apps.data import load_dataset

    monkeypatch.setenv("VERIKIT_MAX_DATA_BYTES", "8M")
    bomb = tmp_path / "bomb.npz"
    bomb.write_bytes(hostile.zip_bomb({"x": 32 << 20, "y": 1 << 20}))
    assert bomb.stat().st_size < 1 << 20
    with pytest.raises(DataError, match="bomb.npz: the .npz archive decompresses to more than the limit"):
        load_dataset(bomb)


@pytest.mark.parametrize("atom, message", [
    ("(>= X_0 -1e308)", "beyond the float32 range"),
    ("(>= X_0 (* 1e308 1e308))", "out of the float64 range"),
    ("(>= X_0 1e999)", "out of the float64 range"),
])  # fmt: skip
def test_out_of_range_bounds_and_overflowing_arithmetic_are_refused(tmp_path, atom, message):
    """Read for a model (float32 inputs); parsed alone, a float64 bound such as -1e308 stays readable."""
    from verikit.spec.load import load_spec

    spec = tmp_path / "t.vnnlib"
    spec.write_text(hostile.HEAD + hostile.GOOD_BOX.replace("(>= X_0 0.0)", atom) + "(assert (>= Y_0 1.5))\n")
    with pytest.raises(SpecError, match=f"t.vnnlib.*{message}"):
        load_spec(spec, n_inputs=2, n_outputs=1)
    run = cli("verify", TINY, spec)
    assert run.exit_code == 3
    one_error_line(run, "t.vnnlib")


def test_vnnlib2_number_with_400_digits_is_a_spec_error():
    pytest.importorskip("vnnlib")
    from verikit.spec.vnnlib2 import parse_vnnlib2

    text = hostile.V2_HEAD + hostile.V2_BOX.replace("(<= X[0,1] 1.0)", f"(<= X[0,1] {'1' * 400}.5)")
    with pytest.raises(SpecError, match=r"q.vnnlib:6:\d+: .*out of the float64 range"):
        parse_vnnlib2(text + "(assert (> Y[0] 2.0))\n", source="q.vnnlib")


def test_non_utf8_csvs_are_bad_input(tmp_path):
    from verikit.apps.bench import read_ground_truth, read_instances

    latin = tmp_path / "latin1.csv"
    latin.write_bytes(b"label,a\n1,caf\xe9\n")
    run = cli("audit", MLP, "--data", latin, "--eps", "0.01")
    assert run.exit_code == 3
    one_error_line(run, "latin1.csv: not UTF-8 text (byte 13)")
    with pytest.raises(SpecError, match="latin1.csv: not UTF-8"):
        read_instances(latin)
    with pytest.raises(SpecError, match="latin1.csv: not UTF-8"):
        read_ground_truth(latin)


@pytest.mark.parametrize("args", [
    ("audit", MLP, "--data", DATA, "--eps", "nan"), ("audit", MLP, "--data", DATA, "--eps", "inf"),
    ("audit", MLP, "--data", DATA, "--eps", "0.1", "--mean", "text"),
    ("verify", TINY, SAT, "--seed", "99999999999999999999999"), ("verify", TINY, SAT, "--seed", "-1"),
])  # fmt: skip
def test_bad_numbers_are_usage_errors_at_parse_time(args):
    run = cli(*args)
    assert run.exit_code == 2 and "Invalid value for" in run.output and "Traceback" not in run.output


def test_unwritable_report_keeps_the_verdict(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    run = cli("verify", TINY, SAT, "--report", blocker / "r.json", "--result-file", blocker / "r.txt")
    assert run.exit_code == 1 and run.stdout.startswith("FALSIFIED (sat)")
    errors = run.stderr.strip().splitlines()
    assert len(errors) == 2 and all(line.startswith("verikit: error: ") and "a_file" in line for line in errors)


def test_unwritable_serialise_folder_prints_the_assignment(tmp_path):
    from verikit.cli.vnnlib_solver import main as solver

    query = tmp_path / "q.vnnlib"
    query.write_text(hostile.V2_HEAD + hostile.V2_BOX + "(assert (>= Y[0] 0.5))\n")
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    pytest.importorskip("vnnlib")
    run = CliRunner().invoke(solver, ["verify", str(query), "--network", f"N={TINY}", "--serialise-assignments",
                                      str(blocker / "out")])
    assert run.exit_code == 0 and run.stdout.startswith("sat\nX float32 [1,2]")
    assert "a_file" in run.stderr and "printed on stdout instead" in run.stderr


def test_outputs_are_written_atomically(tmp_path):
    target = tmp_path / "sub" / "r.json"
    output.write_text(target, "old")
    output.write_text(target, "new")
    assert target.read_text() == "new" and sorted(p.name for p in target.parent.iterdir()) == ["r.json"]
    with pytest.raises(OutputError, match="cannot write the file"):
        output.write_text(tmp_path / "sub" / "r.json" / "x", "data")
    assert sorted(p.name for p in target.parent.iterdir()) == ["r.json"]


# ----- hangs -----

def test_fifo_is_refused_without_opening(tmp_path):
    from verikit.onnx.load import load_network
    from verikit.spec.load import load_spec

    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    with pytest.raises(ModelError, match="is a FIFO .named pipe., not a regular model file"):
        load_network(fifo)
    with pytest.raises(SpecError, match="is a FIFO"):
        load_spec(fifo)


def test_gzip_bomb_spec_is_refused_at_the_limit(tmp_path, monkeypatch):
    from verikit.spec.load import load_spec

    monkeypatch.setenv("VERIKIT_MAX_SPEC_BYTES", "4M")
    bomb = tmp_path / "bomb.vnnlib.gz"
    bomb.write_bytes(hostile.gzip_bomb(32 << 20))
    with pytest.raises(SpecError, match="bomb.vnnlib.gz: the spec file decompresses to more than the limit"):
        load_spec(bomb)
    small = tmp_path / "ok.vnnlib.gz"
    small.write_bytes(gzip.compress(SAT.read_bytes()) + gzip.compress(b"; a second member\n"))
    assert load_spec(small).n_inputs == 2


# ----- questionable acceptances -----

@pytest.mark.parametrize("value", ["1e9", "inf", "nan", "-1"])
def test_formula_tolerance_must_be_finite_and_small(value):
    run = cli("verify", TINY, SAT, "--formula-tolerance", value)
    assert run.exit_code == 2


def test_nonzero_tolerance_is_named_in_the_verdict_line():
    run = cli("verify", TINY, SAT, "--formula-tolerance", "0.001", "--box-tolerance", "0.0001")
    first = run.stdout.splitlines()[0]
    assert run.exit_code == 1 and first.endswith("with box tolerance 0.0001, formula tolerance 0.001"), first
    assert "onnxruntime with box tolerance" in run.stdout


@pytest.mark.parametrize("args", [
    ("verify", TINY, SAT, "--timeout", "nan"), ("verify", TINY, SAT, "--timeout", "-1"),
    ("verify", TINY, SAT, "--timeout", "0"), ("audit", MLP, "--data", DATA, "--eps", "0.1", "--timeout", "nan"),
    ("bench", SPECS / "instances.csv", "--timeout-scale", "nan"),
    ("bench", SPECS / "instances.csv", "--timeout-scale", "-2"),
    ("run-instance", "v1", "c", TINY, SAT, "out.txt", "nan"),
])  # fmt: skip
def test_timeouts_must_be_finite_and_positive(args):
    assert cli(*args).exit_code == 2


def test_vnnlib_solver_refuses_nan_timeout():
    from verikit.cli.vnnlib_solver import main as solver

    run = CliRunner().invoke(solver, ["verify", str(SAT), "--network", f"N={TINY}", "--timeout", "nan"])
    assert run.exit_code == 2


def test_bench_rows_with_nan_or_negative_timeouts_are_bad_input(tmp_path):
    from verikit.apps.bench import read_instances

    for value in ("nan", "-5", "inf"):
        rows = tmp_path / "instances.csv"
        rows.write_text(f"{TINY},{SAT},{value}\n")
        with pytest.raises(SpecError, match="must be a finite number of seconds > 0"):
            read_instances(rows)


def test_complex_witness_is_refused(tmp_path):
    witness = tmp_path / "w.npy"
    np.save(witness, np.array([1.0 + 0.5j, 1.0]))
    run = cli("witness", TINY, SAT, witness)
    assert run.exit_code == 3
    one_error_line(run, "w.npy: the .npy array has dtype complex128; expected real numbers")


def test_required_baseline_with_garbage_checks_is_bad_input(tmp_path):
    from verikit.apps.gate.baseline import read_baseline

    garbage = tmp_path / "gate.json"
    garbage.write_text(json.dumps({"schema": "verikit-gate/1", "checks": [1, "x", {}]}))
    with pytest.raises(DataError, match=r"checks\[1\] is not a gate check record"):
        read_baseline(garbage)
    policy = tmp_path / "verikit.toml"
    policy.write_text(hostile.policy(str(TINY), f'[baseline]\npath = "{garbage}"\nrequired = true\n'))
    run = cli("gate", policy, "--out", tmp_path / "out")
    assert run.exit_code == 3
    one_error_line(run, "gate.json: checks[1]")


@pytest.mark.parametrize("weight", [float("nan"), float("inf")])
def test_model_with_non_finite_weights_is_refused_naming_the_initializer(tmp_path, weight):
    model = tmp_path / "w.onnx"
    model.write_bytes(hostile.model_bytes(weight=weight))
    run = cli("verify", model, SAT)
    assert run.exit_code == 3
    one_error_line(run, "w.onnx: initializer 'W' holds 1 NaN or infinite value(s)")


def test_opset_999_says_so_on_stderr(tmp_path):
    model = tmp_path / "o.onnx"
    model.write_bytes(hostile.model_bytes(opset=999))
    run = cli("verify", model, SAT)
    assert run.exit_code == 3
    one_error_line(run, "o.onnx: the model uses opset 999, but the installed onnx knows opsets 1 to")


# ----- noise -----

def test_verify_of_a_bundled_example_prints_nothing_on_stderr():
    """In a fresh process (warning filters are per process), through the bounds engine (auto_LiRPA's import)."""
    spec = SPECS / "digits_mlp_robust_eps0.01_idx1_unsat.vnnlib"
    done = subprocess.run(
        hostile.command(hostile.Case("quiet", "noise", ("verify", str(MLP), str(spec), "--timeout", "60"))),
        capture_output=True, text=True, env=hostile.environment(), cwd=ROOT, timeout=300)
    assert done.returncode == 0 and done.stdout.startswith("VERIFIED") and done.stderr == ""


# ----- plain pip: no auto_LiRPA -----

def test_missing_auto_lirpa_gives_unknown_with_the_install_command(monkeypatch):
    from verikit.portfolio.options import Options
    from verikit.run import run_instance

    monkeypatch.setitem(sys.modules, "auto_LiRPA", None)
    monkeypatch.setitem(sys.modules, "auto_LiRPA.bound_general", None)
    result = run_instance(MLP, SPECS / "digits_mlp_robust_eps0.01_idx1_unsat.vnnlib",
                          Options(timeout=30, engines=("bounds",), methods=("ibp",)))
    assert result.verdict.value == "unknown"
    assert "auto_LiRPA is not installed; install it with: pip install --no-deps auto-lirpa==0.3" in result.reason
    assert "pip install --no-deps auto-lirpa==0.3" in (ROOT / "README.md").read_text()


def test_limits_read_overrides_from_the_environment(monkeypatch):
    monkeypatch.setenv("VERIKIT_MAX_SPEC_BYTES", "2M")
    monkeypatch.setenv("VERIKIT_MAX_DEPTH", "9")
    monkeypatch.setenv("VERIKIT_MAX_POLICY_BYTES", "garbage")
    current = limits.current()
    assert current.bytes_for("spec") == 2 << 20 and current.max_depth == 9
    assert current.bytes_for("policy") == limits.DEFAULT_BYTES["policy"]


def test_unwritable_audit_and_gate_folders_keep_the_results(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    run = cli("audit", MLP, "--data", DATA, "--eps", "0.01", "--limit", "5", "--out", blocker / "out")
    assert run.exit_code == 0 and "verikit audit: 5 samples" in run.stdout
    one_error_line(run, "a_file")
    policy = tmp_path / "verikit.toml"
    policy.write_text(hostile.policy(str(TINY)))
    run = cli("gate", policy, "--out", blocker / "gate", "--quiet")
    assert run.exit_code == 0 and "PASS" in run.stdout.upper()
    one_error_line(run, "a_file")


def test_run_instance_bad_input_writes_error_and_says_why(tmp_path):
    result = tmp_path / "r.result"
    run = cli("run-instance", "v1", "c", tmp_path / "none.onnx", SAT, result, "5")
    assert run.exit_code == 3 and result.read_text().startswith("error\n")
    one_error_line(run, "none.onnx: model file not found")


def test_audit_of_a_single_output_model_is_bad_input(tmp_path):
    data = tmp_path / "d.npz"
    np.savez(data, x=np.full((4, 2), 0.5), y=np.zeros(4, int))
    run = cli("audit", TINY, "--data", data, "--eps", "0.01")
    assert run.exit_code == 3
    one_error_line(run, "tiny_relu.onnx: the model has 1 output; an audit needs a classifier with at least 2")


def test_empty_and_corrupt_npz_are_bad_input(tmp_path):
    from verikit.apps.data import load_dataset

    empty = tmp_path / "empty.npz"
    np.savez(empty, x=np.zeros((0, 2)), y=np.zeros(0, int))
    with pytest.raises(DataError, match="empty.npz: x holds no values .shape .0, 2..: the dataset holds no samples"):
        load_dataset(empty)
    corrupt = tmp_path / "corrupt.npz"
    data = bytearray(empty.read_bytes())
    data[-10:-6] = b"\xff\xff\xff\x7f"  # the central directory's offset points before the file
    corrupt.write_bytes(bytes(data))
    with pytest.raises(DataError, match="corrupt.npz: cannot read as .npz"):
        load_dataset(corrupt)
