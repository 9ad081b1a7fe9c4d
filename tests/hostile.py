"""A corpus of hostile inputs for every verikit command, and a runner that judges each run.

    cases = build_cases(folder)                      # the fixed corpus: one or more cases per hostile class
    cases += hostile_mutations.mutations(folder, examples=50, seed=0)  # seeded mutations, per class
    outcome = run_case(case)                         # a subprocess, killed at case.timeout + slack
    problems(case, outcome)                          # [] when the run behaved

A run behaves when: the exit code is one of 0, 1, 2, 3, 5 (never 4, never a signal), there is no
traceback, a bad-input exit (3) prints exactly one line on stderr, `verikit: error: FILE: problem` naming
the file the case is about, a usage exit (2) says which option, a run that answers prints no warnings,
and the wall time stays within the command's timeout + 1 s (plus the measured start-up of the process).
Used by tests/test_fuzz.py (a fast subset) and benchmarks/fuzz.py (`make fuzz`, everything).
"""

from __future__ import annotations

import gzip
import io
import json
import os
import random
import shutil
import subprocess
import sys
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

ROOT = Path(__file__).resolve().parents[1]
MODEL = ROOT / "models" / "tiny_relu.onnx"  # y = relu(x0 + x1) - relu(x0 - x1), 2 inputs, 1 output
MLP = ROOT / "models" / "digits_mlp.onnx"  # 64 inputs, 10 outputs
SPEC = ROOT / "specs" / "tiny_relu_max_below_1.5_sat.vnnlib"
WITNESS = ROOT / "specs" / "tiny_relu_max_below_1.5_sat.witness.npy"
DATA = ROOT / "models" / "data" / "digits_test_100.npz"
BIN = Path(sys.executable).parent
ALLOWED = frozenset({0, 1, 2, 3, 5})
FAST = frozenset({"onnx/dev-zero", "onnx/fifo", "vnnlib1/gzip-bomb", "vnnlib2/400-digits-solver", "json/deep-nesting",
                  "witness/deep-json", "csv/audit-not-utf8", "csv/bench-not-utf8", "npz/zip-bomb",
                  "toml/baseline-deep-json", "option/run-instance-timeout-nan", "output/report-unwritable"})
#: limits lowered for the corpus, so that bombs can be small files (the defaults are in verikit.core.limits)
ENV = {"VERIKIT_MAX_SPEC_BYTES": "16M", "VERIKIT_MAX_DATA_BYTES": "16M", "VERIKIT_MAX_WITNESS_BYTES": "16M"}
GOOD_BOX = "(assert (>= X_0 0.0))\n(assert (<= X_0 1.0))\n(assert (>= X_1 0.0))\n(assert (<= X_1 1.0))\n"
HEAD = "(declare-const X_0 Real)\n(declare-const X_1 Real)\n(declare-const Y_0 Real)\n"
V2_HEAD = ("(vnnlib-version <2.0>)\n(declare-network N\n  (declare-input X float32 [1,2])\n"
           "  (declare-output Y float32 [1])\n)\n")
V2_BOX = "(assert (and (>= X[0,0] 0.0) (<= X[0,0] 1.0) (>= X[0,1] 0.0) (<= X[0,1] 1.0)))\n"


@dataclass(frozen=True)
class Case:
    """One hostile run: `program args...`; `names` is the file a bad-input error must name."""

    name: str
    kind: str  # the input class: onnx, vnnlib1, vnnlib2, json, witness, csv, npz, toml, option, output
    args: tuple[str, ...]
    names: str | tuple[str, ...] | None = None  # one of these must be named
    expect: frozenset[int] = ALLOWED  # the exit codes this case may end with
    timeout: float = 5.0  # the command's own --timeout (or the time it should need at most)
    program: str = "verikit"
    stdout_has: str | None = None  # text the answer must contain (a verdict that must not be lost)

    @property
    def fast(self) -> bool:
        """Part of the subprocess subset run by `make test`: one case per command and per hazard that only a
        separate process shows (a hang, a crash of the interpreter); tests/test_hostile_input.py covers the rest."""
        return self.name in FAST


@dataclass
class Outcome:
    code: int | None  # None: killed (a hang)
    wall: float
    stdout: str
    stderr: str


@dataclass
class Corpus:
    folder: Path
    cases: list[Case] = field(default_factory=list)

    def add(self, *args, **kwargs) -> None:
        self.cases.append(Case(*args, **kwargs))

    def file(self, name: str, data: bytes | str) -> str:
        path = self.folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data.encode("utf-8", "surrogateescape") if isinstance(data, str) else data)
        return str(path)

    def fifo(self, name: str) -> str:
        path = self.folder / name
        if not path.exists():
            os.mkfifo(path)
        return str(path)

    def link(self, name: str, target: str) -> str:
        path = self.folder / name
        if not path.is_symlink():
            path.symlink_to(target)
        return str(path)


# ----- hostile files -----

def model_bytes(*, weight: float | None = None, opset: int = 13, inputs: int = 2) -> bytes:
    """A 2-input ReLU MLP (or `inputs` inputs), optionally with one weight replaced and another opset."""
    w = np.array([[1.0, 1.0], [1.0, -1.0]], dtype=np.float32)
    if weight is not None:
        w[0, 0] = weight
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, inputs])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 1])
    if inputs != 2:
        nodes = [helper.make_node("Relu", ["x"], ["r"]), helper.make_node("Flatten", ["r"], ["y"])]
        y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, inputs])
        graph = helper.make_graph(nodes, "big", [x], [y])
    else:
        nodes = [helper.make_node("MatMul", ["x", "W"], ["h"]), helper.make_node("Relu", ["h"], ["r"]),
                 helper.make_node("MatMul", ["r", "V"], ["y"])]
        inits = [numpy_helper.from_array(w, "W"), numpy_helper.from_array(np.array([[1.0], [-1.0]], np.float32), "V")]
        graph = helper.make_graph(nodes, "tiny", [x], [y], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    return model.SerializeToString()


def deep(opening: str, closing: str, depth: int = 100_000) -> str:
    return opening * depth + closing * depth


def npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=True)
    return buffer.getvalue()


def zip_bomb(members: dict[str, int]) -> bytes:
    """An .npz whose members inflate to the given sizes (zeros behind a valid .npy header)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, size in members.items():
            header = io.BytesIO()
            np.lib.format.write_array_header_1_0(header, {"descr": "<f8", "fortran_order": False,
                                                          "shape": (size // 8 // 64, 64)})
            with archive.open(f"{name}.npy", "w", force_zip64=True) as member:
                member.write(header.getvalue())
                chunk = b"\0" * (1 << 20)
                for _ in range(size // len(chunk)):
                    member.write(chunk)
    return buffer.getvalue()


def gzip_bomb(size: int) -> bytes:
    out = io.BytesIO()
    with gzip.GzipFile(fileobj=out, mode="wb", compresslevel=9) as handle:
        chunk = b" " * (1 << 20)
        for _ in range(size // len(chunk)):
            handle.write(chunk)
    return out.getvalue()


def robustness(**fields) -> str:
    spec = {"format": "verikit-robustness/1", "input": [0.5, 0.5], "label": 0, "epsilon": 0.1, "num_classes": 2}
    spec.update(fields)
    return json.dumps(spec)


def policy(model: str, extra: str = "", timeout: str = "5") -> str:
    return (f'version = 1\n{extra}\n[[model]]\nname = "m"\npath = "{model}"\n\n[[property]]\n'
            f'kind = "output-range"\ninput_lower = 0.0\ninput_upper = 1.0\nmax = 100.0\ntimeout = {timeout}\n')


def build_cases(folder: str | Path) -> list[Case]:
    """The fixed corpus: every item of issue 14's "Found" list, and more per class."""
    c = Corpus(Path(folder))
    c.folder.mkdir(parents=True, exist_ok=True)
    model, spec, t = str(MODEL), str(SPEC), "5"
    verify = ("verify",)

    def model_case(name, path):
        c.add(f"onnx/{name}", "onnx", (*verify, path, spec, "--timeout", t), names=Path(path).name,
              expect=frozenset({3}))

    model_case("empty", c.file("empty.onnx", b""))
    model_case("random-bytes", c.file("random.onnx", bytes(random.Random(0).randrange(256) for _ in range(4096))))
    model_case("truncated", c.file("truncated.onnx", MODEL.read_bytes()[:-40]))
    model_case("nan-weight", c.file("nan.onnx", model_bytes(weight=float("nan"))))
    model_case("inf-weight", c.file("inf.onnx", model_bytes(weight=float("inf"))))
    model_case("opset-999", c.file("opset999.onnx", model_bytes(opset=999)))
    model_case("1e9-inputs", c.file("huge_input.onnx", model_bytes(inputs=10**9)))
    model_case("dev-zero", c.link("zero.onnx", "/dev/zero"))
    model_case("fifo", c.fifo("fifo.onnx"))
    (c.folder / "folder.onnx").mkdir(exist_ok=True)
    c.add("onnx/directory", "onnx", (*verify, str(c.folder / "folder.onnx"), spec, "--timeout", t),
          names="folder.onnx", expect=frozenset({2, 3}))  # click's own path check says it is a directory
    query = c.file("q2.vnnlib", V2_HEAD + V2_BOX + "(assert (> Y[0] 2.0))\n")
    c.add("onnx/vnnlib-network-dev-zero", "onnx", ("verify", query,
          "--network", f"N={c.link('zero2.onnx', '/dev/zero')}", "--timeout", t), names="zero2.onnx",
          expect=frozenset({3}), program="verikit-vnnlib")

    def spec_case(name, path, kind="vnnlib1", expect=frozenset({3}), model_path=model):
        c.add(f"{kind}/{name}", kind, (*verify, model_path, path, "--timeout", t), names=Path(path).name,
              expect=expect)

    spec_case("deep-nesting", c.file("deep.vnnlib", HEAD + GOOD_BOX + "(assert " + deep("(", ")") + ")\n"))
    spec_case("bound-1e308", c.file("bound1e308.vnnlib", HEAD + GOOD_BOX.replace("(>= X_0 0.0)", "(>= X_0 -1e308)")
                                    + "(assert (>= Y_0 1.5))\n"))
    spec_case("product-overflow", c.file("product.vnnlib", HEAD + GOOD_BOX + "(assert (>= Y_0 (* 1e308 1e308)))\n"))
    spec_case("literal-1e999", c.file("e999.vnnlib", HEAD + GOOD_BOX + "(assert (>= Y_0 1e999))\n"))
    spec_case("unbalanced", c.file("unbalanced.vnnlib", HEAD + GOOD_BOX + "(assert (>= Y_0 1.5)\n"))
    spec_case("not-utf8", c.file("latin1.vnnlib", (HEAD + "; caf\xe9\n").encode("latin-1")))
    spec_case("nul-bytes", c.file("nul.vnnlib", HEAD + "\0\0(assert\0)"))
    spec_case("empty", c.file("empty.vnnlib", ""))
    spec_case("gzip-bomb", c.file("bomb.vnnlib.gz", gzip_bomb(64 << 20)))
    spec_case("fifo", c.fifo("fifo.vnnlib"))
    spec_case("dev-zero", c.link("zero.vnnlib", "/dev/zero"))
    spec_case("undeclared", c.file("undeclared.vnnlib", HEAD + GOOD_BOX + "(assert (>= Y_7 1.5))\n"))
    contradictory = c.file("contradictory.vnnlib", HEAD + GOOD_BOX + "(assert (>= Y_0 1e6))\n(assert (<= Y_0 -1e6))\n")
    for value in ("1e9", "inf", "nan"):
        c.add(f"option/formula-tolerance-{value}", "option",
              (*verify, model, contradictory, "--formula-tolerance", value), expect=frozenset({2}), )

    long_number = V2_BOX.replace("(<= X[0,1] 1.0)", f"(<= X[0,1] {'1' * 400}.5)")
    spec_case("400-digits", c.file("digits400.vnnlib", V2_HEAD + long_number
                                   + "(assert (> Y[0] 2.0))\n"), kind="vnnlib2")
    spec_case("deep-nesting", c.file("deep2.vnnlib", V2_HEAD + "(assert " + deep("(", ")", 50_000) + ")\n"),
              kind="vnnlib2")
    spec_case("garbage", c.file("garbage2.vnnlib", V2_HEAD + "(assert (>= X[0,0] ))) ((\n"), kind="vnnlib2")
    c.add("vnnlib2/400-digits-solver", "vnnlib2", ("verify", str(c.folder / "digits400.vnnlib"), "--network",
          f"N={model}", "--timeout", t), names="digits400.vnnlib", expect=frozenset({3}), program="verikit-vnnlib")

    deep_json = '{"format": "verikit-robustness/1", "input": ' + deep("[", "]") + "}"
    spec_case("deep-nesting", c.file("deep.json", deep_json),
              kind="json")
    spec_case("num-classes-1e12", c.file("classes.json", robustness(num_classes=10**12)), kind="json")
    spec_case("input-file-dev-zero", c.file("devzero.json", robustness(input=None) .replace('"input": null',
              f'"input_file": "{c.link("zero.npy", "/dev/zero")}"')), kind="json")
    spec_case("input-file-fifo", c.file("fifo_input.json", robustness(input=None).replace('"input": null',
              f'"input_file": "{c.fifo("fifo.npy")}"')), kind="json")
    spec_case("nan-literal", c.file("nan.json", robustness().replace('"epsilon": 0.1', '"epsilon": NaN')), kind="json")
    spec_case("huge-int", c.file("hugeint.json", robustness().replace('"epsilon": 0.1', f'"epsilon": {"9" * 400}')),
              kind="json")
    spec_case("complex-input", c.file("complex.json", robustness(input=None).replace('"input": null',
              f'"input_file": "{c.file("complex.npy", npy(np.array([0.5 + 1j, 0.5])))}"')), kind="json")

    def witness_case(name, path):
        c.add(f"witness/{name}", "witness", ("witness", model, spec, path), names=Path(path).name,
              expect=frozenset({3}))

    witness_case("complex-npy", c.file("complex_witness.npy", npy(np.array([1.0 + 0.5j, 1.0]))))
    witness_case("deep-json", c.file("deep_witness.json", '{"x": ' + deep("[", "]") + "}"))
    witness_case("nan-value", c.file("nan.counterexample", "sat\n((X_0 nan)\n (X_1 1.0))\n"))
    witness_case("object-npy", c.file("object.npy", npy(np.array([{"a": 1}], dtype=object))))
    witness_case("fifo", c.fifo("fifo.counterexample"))

    audit = ("audit", str(MLP), "--eps", "0.01", "--limit", "5", "--timeout", "10")
    latin = c.file("latin1.csv", b"label,a\n1,caf\xe9\n")
    c.add("csv/audit-not-utf8", "csv", (*audit[:2], "--data", latin, *audit[2:]),
          names="latin1.csv", expect=frozenset({3}), timeout=10)
    c.add("csv/audit-ragged", "csv", (*audit[:2], "--data", c.file("ragged.csv", "1,0.5\n2,0.5,0.1\n"), *audit[2:]),
          names="ragged.csv", expect=frozenset({3}), timeout=10)
    c.add("csv/audit-1e999", "csv", (*audit[:2], "--data", c.file("huge.csv", "1," + ",".join(["1e999"] * 64) + "\n"),
          *audit[2:]), names="huge.csv", expect=frozenset({3}), timeout=10)
    instances = c.file("instances.csv", f"{model},{spec},5\n")
    bench_out = str(c.folder / "bench_out")
    c.add("csv/bench-not-utf8", "csv", ("bench", c.file("latin1_instances.csv", b"caf\xe9,x,1\n"), "--out", bench_out),
          names="latin1_instances.csv", expect=frozenset({3}))
    c.add("csv/bench-nan-timeout", "csv", ("bench", c.file("nan_instances.csv", f"{model},{spec},nan\n"), "--out",
          bench_out), names="nan_instances.csv", expect=frozenset({3}))
    c.add("csv/ground-truth-not-utf8", "csv", ("bench", instances, "--ground-truth",
          c.file("latin1_truth.csv", b"onnx,vnnlib,truth\ncaf\xe9,x,sat\n"), "--out", bench_out),
          names="latin1_truth.csv", expect=frozenset({3}))

    def data_case(name, path, extra=()):
        c.add(f"npz/{name}", "npz", (*audit[:2], "--data", path, *extra, *audit[2:]), names=Path(path).name,
              expect=frozenset({3}), timeout=10)

    data_case("zip-bomb", c.file("bomb.npz", zip_bomb({"x": 64 << 20, "y": 1 << 20})))
    data_case("pickle", c.file("pickle.npz", _npz(x=np.array([{"a": 1}] * 4, dtype=object), y=np.zeros(4, int))))
    data_case("complex", c.file("complex.npz", _npz(x=np.zeros((4, 64), complex), y=np.zeros(4, int))))
    data_case("truncated", c.file("truncated.npz", DATA.read_bytes()[:500]))
    data_case("lying-header", c.file("lying_x.npy", npy(np.zeros((2, 64)))[:200]),
              extra=("--labels", c.file("labels.npy", npy(np.zeros(2, int)))))

    gate = ("gate",)
    good = c.file("policy.toml", policy(model))
    c.add("toml/baseline-deep-json", "toml", (*gate, good, "--baseline", c.file("deep_baseline.json", deep("[", "]")),
          "--out", str(c.folder / "gate_out")), names="deep_baseline.json", expect=frozenset({3}))
    c.add("toml/deep-policy", "toml", (*gate, c.file("deep.toml", "version = 1\nx = " + deep("[", "]"))),
          names="deep.toml", expect=frozenset({3}))
    c.add("toml/nan-timeout", "toml", (*gate, c.file("nan.toml", policy(model, timeout="nan"))), names="nan.toml",
          expect=frozenset({3}))
    garbage = c.file("garbage_baseline.json", json.dumps({"schema": "verikit-gate/1", "checks": [1, "x", {}]}))
    c.add("toml/required-garbage-baseline", "toml", (*gate, c.file("required.toml", policy(
        model, f'[baseline]\npath = "{garbage}"\nrequired = true\n')), "--out", str(c.folder / "gate_out")),
        names="garbage_baseline.json", expect=frozenset({3}))
    c.add("toml/not-utf8", "toml", (*gate, c.file("latin1.toml", b"version = 1\n# caf\xe9\n")), names="latin1.toml",
          expect=frozenset({3}))
    c.add("toml/fifo", "toml", (*gate, c.fifo("fifo.toml")), names="fifo.toml", expect=frozenset({3}))

    usage = frozenset({2})
    for args in (("--timeout", "nan"), ("--timeout", "-1"), ("--timeout", "inf"), ("--seed", "99999999999999999999999"),
                 ("--box-tolerance", "nan")):
        c.add(f"option/verify{'-'.join(args)}", "option", (*verify, model, spec, *args), expect=usage,
              )
    for args in (("--eps", "nan"), ("--eps", "inf"), ("--mean", "text"), ("--std", "0"), ("--timeout", "nan")):
        c.add(f"option/audit{'-'.join(args)}", "option", ("audit", str(MLP), "--data", str(DATA), "--limit", "5", *args)
              + (() if args[0] == "--eps" else ("--eps", "0.01")), expect=usage)
    c.add("option/bench-timeout-scale-nan", "option",
          ("bench", instances, "--timeout-scale", "nan", "--out", bench_out), expect=usage)
    c.add("option/vnnlib-timeout-nan", "option", ("verify", spec, "--network", f"N={model}", "--timeout", "nan"),
          expect=usage, program="verikit-vnnlib")
    c.add("onnx/run-instance-fifo", "onnx", ("run-instance", "v1", "c", str(c.folder / "fifo.onnx"), spec,
          str(c.folder / "r.result"), t), names="fifo.onnx", expect=frozenset({3}))
    c.add("option/run-instance-timeout-nan", "option", ("run-instance", "v1", "c", model, spec,
          str(c.folder / "r.result"), "nan"), expect=usage)

    c.add("output/report-unwritable", "output", (*verify, model, spec, "--timeout", t, "--report",
          str(Path(c.file("b_file", "")) / "r.json")), names="b_file", expect=frozenset({1}), stdout_has="FALSIFIED")
    c.add("output/serialise-unwritable", "output", ("verify", c.file("sat2.vnnlib", V2_HEAD + V2_BOX +
          "(assert (>= Y[0] 0.5))\n"), "--network", f"N={model}", "--timeout", t, "--serialise-assignments",
          str(Path(c.file("a_file", "")) / "sub")), names="a_file", expect=frozenset({0}), stdout_has="sat",
          program="verikit-vnnlib")
    return c.cases


def _npz(**arrays) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


# ----- running and judging -----

def environment() -> dict[str, str]:
    env = dict(os.environ, **ENV)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH", "")]))
    env.pop("GITHUB_STEP_SUMMARY", None)
    return env


def command(case: Case) -> list[str]:
    program = BIN / case.program
    if program.exists():
        return [str(program), *case.args]
    module = "verikit.cli" if case.program == "verikit" else "verikit.cli.vnnlib_solver"
    return [sys.executable, "-c", f"from {module} import main; main()", *case.args]


#: a run still going this long past its timeout + 1 s + start-up is a hang, not a slow start on a busy machine
HANG_SECONDS = 60.0


def run_case(case: Case, *, slack: float) -> Outcome:
    """Run `case` in a subprocess; killed (code None: a hang) at case.timeout + 1 + slack + HANG_SECONDS.
    `problems` calls a run slow past case.timeout + 1 + slack."""
    started = time.monotonic()
    try:
        done = subprocess.run(command(case), capture_output=True, text=True, errors="replace", env=environment(),
                              timeout=case.timeout + 1.0 + slack + HANG_SECONDS, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired as expired:
        return Outcome(None, time.monotonic() - started, _text(expired.stdout), _text(expired.stderr))
    return Outcome(done.returncode, time.monotonic() - started, done.stdout, done.stderr)


def _text(data) -> str:
    return data.decode("utf-8", "replace") if isinstance(data, bytes) else (data or "")


def startup_seconds() -> float:
    """The wall time of a run that fails at once (a missing model): what every case pays before its work."""
    probe = Case("startup", "probe", ("verify", "/nonexistent/m.onnx", str(SPEC)))
    return run_case(probe, slack=60.0).wall


def outcome_word(outcome: Outcome) -> str:
    if outcome.code is None:
        return "hang"
    if outcome.code < 0:
        return f"signal {-outcome.code}"
    return f"exit {outcome.code}"


def problems(case: Case, outcome: Outcome, *, slack: float) -> list[str]:
    """What is wrong with this run ([] when it behaved as issue 14 asks)."""
    found = []
    if outcome.code is None:
        return [f"hang: killed after {outcome.wall:.1f} s"]
    if outcome.code not in ALLOWED:
        found.append(f"exit code {outcome.code}")
    elif outcome.code not in case.expect:
        found.append(f"exit code {outcome.code}, expected {sorted(case.expect)}")
    both = outcome.stdout + outcome.stderr
    if "Traceback" in both:
        found.append("a traceback")
    lines = [line for line in outcome.stderr.splitlines() if line.strip()]
    prefix = f"{case.program}: error: "
    if outcome.code == 3:
        if len(lines) != 1 or not lines[0].startswith(prefix):
            found.append(f"not one error line on stderr: {outcome.stderr[:300]!r}")
        elif case.names and not any(name in lines[0] for name in _names(case)):
            found.append(f"the error does not name {case.names}: {lines[0][:300]!r}")
    if outcome.code == 2 and "Error:" not in outcome.stderr:
        found.append(f"a usage error without its message: {outcome.stderr[:300]!r}")
    if outcome.code in (0, 1, 5) and "Warning" in outcome.stderr:
        found.append(f"warnings on stderr: {outcome.stderr[:300]!r}")
    if case.stdout_has and case.stdout_has not in outcome.stdout:
        found.append(f"stdout lacks {case.stdout_has!r}: {outcome.stdout[:200]!r}")
    if case.kind == "output" and (not lines or not any(name in lines[-1] for name in _names(case))):
        found.append(f"no error line naming {case.names}: {outcome.stderr[:300]!r}")
    if outcome.wall > case.timeout + 1.0 + slack:
        found.append(f"{outcome.wall:.1f} s: beyond the timeout {case.timeout:g} s + 1 s + start-up {slack:.1f} s")
    return found


def _names(case: Case) -> tuple[str, ...]:
    return (case.names,) if isinstance(case.names, str) else tuple(case.names or ())


def clean(folder: str | Path) -> None:
    shutil.rmtree(folder, ignore_errors=True)
