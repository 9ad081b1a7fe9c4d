"""The VNN-LIB standard solver interface as a library (the `verikit-vnnlib` command is a shell over it).

    answer = verify_query("query.vnnlib", {"N": "model.onnx"}, timeout=60)
    answer.status                  # 'sat', 'unsat', 'unknown' or 'timed-out'
    format_tensor_assignment(answer.assignment)

A `sat` answer is given only for a witness replayed through onnxruntime on the original ONNX bytes whose
input and replayed output satisfy the query *exactly* (rational arithmetic, strict comparisons strict,
every constraint the search left out included). Anything less is `unknown`, with the reason.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from verikit.core import output
from verikit.core.errors import ModelError, SpecError, VerikitError
from verikit.core.result import ARITHMETIC
from verikit.spec.vnnlib2 import SUPPORTED_ELEMENT_TYPES, Tensor, UnsupportedQuery

NAME = "verikit"
OPSET_RANGE = (7, 21)
VNNLIB_VERSIONS = ("1.0", "2.0")
#: operators verikit handles only in part, so `supports --onnx-operators` does not claim them: a claimed
#: operator is one whose queries verikit decides (the conformance job, benchmarks/conformance.py, checks it)
PARTIAL_OPERATORS = {
    "Cast": "to FLOAT or BOOL only (integer results of input-dependent tensors are refused); a cast to BOOL is "
            "a comparison with 0 (below)",
    **{op: "a step: a box reaching the threshold leaves it unsettled (0..1) in the bounds, so such an unsat "
           "query is unknown (no margin of about 1e-4, relative, on either side)"
       for op in ("Equal", "Greater", "GreaterOrEqual", "Less", "LessOrEqual")},
    "Shape": "only inside constant shape computations; an integer network output is refused",
    "Size": "only inside constant shape computations; an integer network output is refused",
    "Softmax": "bounds too loose to prove typical softmax properties (range, order, sum to one)",
}
THEORIES = {
    "--hidden-node-theories": ("NH",),
    "--multiple-input-output-theories": ("SIO",),
    "--multiple-network-theories": ("SNET",),
    "--multiple-node-comparison-theories": ("SNC",),
    "--arithmetic-complexity-theories": ("BND", "OUTC"),
}
SUBREGION_RADIUS = 1.0  # unbounded inputs: the sat-only search covers [-1, 1], or 2 beyond the finite side
STATUS = {"verified": "unsat", "falsified": "sat", "unknown": "unknown", "timeout": "timed-out"}


class NotSupported(Exception):
    """A capability verikit does not have (its query is answered with a non-zero exit)."""


def claimed_operators() -> list[str]:
    """The ONNX operators `supports --onnx-operators` claims: the import's, less `PARTIAL_OPERATORS`."""
    from verikit.onnx import supported_ops

    return sorted(set(supported_ops()) - set(PARTIAL_OPERATORS))


def capability(flag: str) -> list[str]:
    """The lines `supports FLAG` prints; KeyError for an unknown flag, NotSupported for unsat proofs."""
    if flag in THEORIES:
        return list(THEORIES[flag])
    if flag == "--onnx-operators-unsat-proofs":
        raise NotSupported("verikit does not produce unsat proofs (supports --unsat-proofs is false)")
    answers = {
        "--onnx-opset-versions": lambda: [str(v) for v in OPSET_RANGE],
        "--onnx-element-types": lambda: list(SUPPORTED_ELEMENT_TYPES),
        "--onnx-operators": claimed_operators,
        "--vnnlib-versions": lambda: list(VNNLIB_VERSIONS),
        "--optimised-disjunctive-reasoning": lambda: ["false"],
        "--serialise-assignments": lambda: ["true"],
        "--unsat-proofs": lambda: ["false"],
        # not in the standard: what an unsat answer's proof covers (the report's per-case `arithmetic`)
        "--proof-arithmetic": lambda: list(ARITHMETIC),
    }
    return answers[flag]()


@dataclass
class Answer:
    """What `verify` reports: the status line, why (for logs), and the assignment of a `sat` answer."""

    status: str
    reason: str = ""
    assignment: list[tuple[Tensor, np.ndarray]] = field(default_factory=list)
    seconds: float = 0.0


class _Version1:
    """A VNN-LIB 1.0 spec behind the same face as a 2.0 `Query`: tensors X [n] and Y [m], one network."""

    network_names = None  # any one name

    def __init__(self, prop):
        self.prop = prop
        self.unsupported = None
        self.tensors = (Tensor("X", "input", "real", (prop.n_inputs,), None, ""),
                        Tensor("Y", "output", "real", (prop.n_outputs,), None, ""))

    def to_property(self, *, relax: bool = False):
        return self.prop

    def check_network(self, network) -> None:
        from verikit.spec.load import check_sizes

        check_sizes(self.prop, network.n_inputs, network.n_outputs, model_name=network.source or "the model")

    def holds(self, x: np.ndarray, y: np.ndarray) -> bool:
        """Exact box and rows, strict comparisons strict."""
        x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
        return any(case.box.contains(x) and any(c.holds(y) for c in case.disjuncts) for case in self.prop.cases)


def load_query(path: str | Path, *, max_terms: int | None = None):
    """A 2.0 `Query` or a 1.0 spec wrapped alike; SpecError when malformed."""
    from verikit.spec.formula import MAX_TERMS
    from verikit.spec.vnnlib import parse_vnnlib, read_spec_text
    from verikit.spec.vnnlib2 import looks_like_vnnlib2, parse_vnnlib2

    text, digest = read_spec_text(path)
    limit = max_terms or MAX_TERMS
    if looks_like_vnnlib2(text):
        return parse_vnnlib2(text, source=str(path), sha256=digest, max_terms=limit)
    return _Version1(parse_vnnlib(text, source=str(path), sha256=digest, max_terms=limit))


def _check_networks(query, networks: dict[str, str]) -> str:
    """The model path for the query's one network; SpecError for missing or unnecessary --network."""
    required = query.network_names
    if required is None:
        if len(networks) != 1:
            raise SpecError(f"a VNN-LIB 1.0 query has one network; give exactly one --network NAME=model.onnx "
                            f"(got {len(networks)})")
        return next(iter(networks.values()))
    missing = [name for name in required if name not in networks]
    unexpected = [name for name in networks if name not in required]
    if missing or unexpected:
        parts = [f"missing --network for {', '.join(missing)}"] if missing else []
        parts += [f"no network named {', '.join(unexpected)} is declared"] if unexpected else []
        raise SpecError(f"the query declares network(s) {', '.join(required)}: " + "; ".join(parts),
                        where=query.source)
    return networks[required[0]]


def verify_query(query_path: str | Path, networks: dict[str, str], *, timeout: float = 60.0, seed: int = 0,
                 started: float | None = None) -> Answer:
    """Answer a query within `timeout` seconds counted from `started` (time.monotonic(); default now).

    Raises SpecError/ModelError for bad input (the standard's error cases, element types included).
    """
    from verikit.onnx.load import load_network
    from verikit.portfolio.options import Options
    from verikit.run import run_loaded
    from verikit.spec.load import check_float32

    started = time.monotonic() if started is None else started
    query = load_query(query_path)
    model_path = _check_networks(query, networks)
    sat_only = ""  # why only a counterexample can be trusted, when one is searched for in a sub-region
    try:
        if query.unsupported is not None:
            raise query.unsupported
        network = load_network(model_path)
        query.check_network(network)
        try:
            prop = query.to_property(relax=True)
        except UnsupportedQuery as unbounded:
            if unbounded.kind != "unbounded-input":
                raise
            prop = query.to_property(relax=True, fill_unbounded=SUBREGION_RADIUS)
            sat_only = f"{unbounded}; no counterexample in the bounded sub-region searched instead"
    except UnsupportedQuery as unsupported:
        if unsupported.kind == "element-type":  # the standard: unsupported element types are an error
            raise SpecError(unsupported.message, where=unsupported.where) from None
        return Answer("unknown", str(unsupported), seconds=time.monotonic() - started)
    check_float32(prop)
    remaining = timeout - (time.monotonic() - started)
    remaining -= min(1.0, 0.05 * timeout)  # kept back for printing the answer
    if remaining <= 0:
        return Answer("timed-out", "the time ran out while reading the query and the model",
                      seconds=time.monotonic() - started)
    result = run_loaded(network, prop, Options(timeout=remaining, seed=seed))
    seconds = time.monotonic() - started
    if result.verdict.value == "error":
        if result.error_kind == "internal":
            raise VerikitError(result.reason)  # a bug: exit 4, never an answer
        raise ModelError(result.reason, where=str(model_path))
    status = STATUS[result.verdict.value]
    by = f"{result.engine}/{result.method}: " if result.engine else ""
    if status != "sat":
        if sat_only and status != "timed-out":
            return Answer("unknown", sat_only, seconds=seconds)
        return Answer(status, by + result.reason, seconds=seconds)
    x = np.asarray(result.counterexample.x, dtype=np.float32).reshape(-1)
    y = network.replay(x[None, :])[0]  # replayed once more here: the answer rests on this run alone
    if not query.holds(x, y):
        return Answer("unknown", "a counterexample to the relaxed query (strict comparisons read as non-strict, "
                      "or constraints left out) does not satisfy the exact query", seconds=seconds)
    inputs = [t for t in query.tensors if t.kind == "input"]
    outputs = [t for t in query.tensors if t.kind == "output"]
    assignment = [(inputs[0], x), (outputs[0], y)]
    return Answer("sat", by + result.reason, assignment, seconds)


def _dims(shape: tuple[int, ...]) -> str:
    return "[" + ",".join(str(d) for d in shape) + "]"


def format_tensor_assignment(assignment: list[tuple[Tensor, np.ndarray]]) -> str:
    """The command-line assignment block: per tensor `NAME TYPE [dims]`, then one value a line (C order).

    Values are the float32 numbers fed to / returned by onnxruntime, written exactly (shortest repr of the
    float64 that equals them).
    """
    lines = []
    for tensor, values in assignment:
        lines.append(f"{tensor.name} {tensor.element_type} {_dims(tensor.shape)}")
        lines += [repr(float(v)) for v in np.asarray(values, dtype=np.float32).reshape(-1)]
    return "\n".join(lines)


def serialise_assignment(assignment: list[tuple[Tensor, np.ndarray]], folder: str | Path) -> list[Path]:
    """Write `<folder>/<name>.pb`, one serialised ONNX TensorProto (float32, declared shape) per tensor."""
    from onnx import numpy_helper

    folder = Path(folder)
    written = []
    for tensor, values in assignment:
        array = np.asarray(values, dtype=np.float32).reshape(tensor.shape)
        path = folder / f"{tensor.name}.pb"
        output.write_bytes(path, numpy_helper.from_array(array, name=tensor.name).SerializeToString())
        written.append(path)
    return written
