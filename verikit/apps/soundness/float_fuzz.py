"""A fuzzer for float-rounding soundness: random small networks built to defeat float32 bounds, and every
`verified` answer checked against exact rational arithmetic.

Each instance is one ONNX graph (float32 weights) and one box case whose violation `c @ y <= d` holds
*exactly* at a known point of the box, so the only correct answers are falsified and unknown:

- ``branches``: a linear graph that is not a chain — `x @ W + x @ (-W') + x @ V + b`, two branches with
  large weights (2^8 .. 2^24) that nearly cancel, added;
- ``comparison``: `Cast(Greater(x @ w + b, 0))` where `x @ w + b` is a near-cancelling sum whose exact
  minimum over a narrow box lies just below 0 while its float32 evaluation does not;
- ``relu-chain``: `relu(x @ W1 + b1) @ W2 + b2` with large, nearly cancelling weights (a chain, which verikit
  can re-prove rigorously: it may be verified when the property holds, so here it must never be).

The exact value comes from evaluating the graph in `fractions.Fraction` (each float32 weight is a dyadic
rational) at the point that minimises `c @ y`: for an affine map the corner picked by the exact
coefficients' signs, else the best of the box's corners. `d` is that minimum rounded up to a float64, so
the point violates the property exactly. A `verified` answer on any instance is a wrong answer.

`run(count, seed)` is what `make fuzz` and tests/test_float_fuzz.py call; it uses only verikit's public
`verify`, so the same file judges an older checkout too (`python -m verikit.apps.soundness.float_fuzz`).
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from fractions import Fraction

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

FAMILIES = ("branches", "comparison", "relu-chain")


@dataclass(frozen=True)
class Instance:
    family: str
    seed: int
    onnx_bytes: bytes
    lower: np.ndarray  # the box, float64 (n,)
    upper: np.ndarray
    c: np.ndarray  # the violation c @ y <= d, float64 (n_outputs,)
    d: float
    witness: np.ndarray  # a point of the box where the violation holds exactly


def _graph(nodes: list, weights: dict[str, np.ndarray], n_in: int, n_out: int, name: str) -> bytes:
    initializers = [numpy_helper.from_array(np.asarray(v, dtype=np.float32), k) for k, v in weights.items()]
    graph = helper.make_graph(nodes, name, [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, n_in])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, n_out])], initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], producer_name="float_fuzz")
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model.SerializeToString()


def _exact(values: np.ndarray) -> list:
    """float32 values as exact rationals (nested lists follow the array's shape)."""
    return np.vectorize(lambda v: Fraction(float(np.float32(v))), otypes=[object])(values)


def evaluate_exact(model_bytes: bytes, x: np.ndarray) -> np.ndarray:
    """The graph's output for one input (1, n) in exact rational arithmetic (the ops this fuzzer writes)."""
    model = onnx.load_model_from_string(model_bytes)
    env: dict[str, np.ndarray] = {t.name: _exact(numpy_helper.to_array(t)) for t in model.graph.initializer}
    env["x"] = np.array([[Fraction(float(v)) for v in np.asarray(x, dtype=np.float64).reshape(-1)]], dtype=object)
    for node in model.graph.node:
        a = env[node.input[0]]
        if node.op_type == "MatMul":
            out = a.dot(env[node.input[1]])
        elif node.op_type == "Add":
            out = a + env[node.input[1]]
        elif node.op_type == "Relu":
            out = np.vectorize(lambda v: max(v, Fraction(0)), otypes=[object])(a)
        elif node.op_type == "Greater":
            out = np.vectorize(lambda u, v: u > v, otypes=[object])(a, env[node.input[1]])
        elif node.op_type == "Cast":
            out = np.vectorize(lambda v: Fraction(int(bool(v))), otypes=[object])(a)
        else:
            raise ValueError(f"float_fuzz writes no {node.op_type}")
        env[node.output[0]] = out
    return env[model.graph.output[0].name].reshape(-1)


def _round_up(value: Fraction) -> float:
    """The smallest float64 >= value."""
    result = float(value)
    return result if Fraction(result) >= value else math.nextafter(result, math.inf)


def _narrow_box(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    center = rng.uniform(0.5, 1.5, size=n)
    radius = 2.0 ** -rng.integers(12, 22, size=n)
    return center - radius, center + radius


def generate(family: str, seed: int) -> Instance:
    rng = np.random.default_rng([seed, FAMILIES.index(family)])
    n = int(rng.integers(1, 4))
    lower, upper = _narrow_box(rng, n)
    big = 2.0 ** int(rng.integers(8, 25))
    if family == "branches":
        W = np.round(rng.uniform(-1, 1, size=(n, 1)) * big)
        W2 = -(W + np.round(rng.normal(size=(n, 1)) * 4))  # cancels W up to a few units
        V = rng.uniform(-1, 1, size=(n, 1))
        b = rng.uniform(-1, 1, size=1)
        nodes = [helper.make_node("MatMul", ["x", "W"], ["p"]), helper.make_node("MatMul", ["x", "W2"], ["q"]),
                 helper.make_node("MatMul", ["x", "V"], ["r"]), helper.make_node("Add", ["p", "q"], ["s"]),
                 helper.make_node("Add", ["s", "r"], ["t"]), helper.make_node("Add", ["t", "b"], ["y"])]
        data = _graph(nodes, {"W": W, "W2": W2, "V": V, "b": b}, n, 1, "branches")
        c = np.array([1.0 if rng.random() < 0.5 else -1.0])
    elif family == "comparison":
        # a float32 box a few ulps wide and integer weights ~2^24: w @ x is not a float32 number, so
        # float32 evaluation of t = w @ x + b errs by up to ~1, far more than the box moves t
        lower = rng.uniform(0.5, 1.5, size=n).astype(np.float32)
        upper = lower
        for _ in range(int(rng.integers(1, 4))):
            upper = np.nextafter(upper, np.float32(np.inf))
        lower, upper = lower.astype(np.float64), upper.astype(np.float64)
        w = (rng.choice([-1.0, 1.0], size=(n, 1)) * rng.integers(2**22, 2**25, size=(n, 1))).astype(np.float64)
        nodes = [helper.make_node("MatMul", ["x", "w"], ["m"]), helper.make_node("Add", ["m", "b"], ["t"]),
                 helper.make_node("Greater", ["t", "zero"], ["g"]),
                 helper.make_node("Cast", ["g"], ["y"], to=TensorProto.FLOAT)]
        w_exact = _exact(w.reshape(-1))
        corner = np.where(np.array([v > 0 for v in w_exact]), lower, upper)  # t's minimiser
        t_min = sum(Fraction(float(x)) * v for x, v in zip(corner, w_exact))
        b = np.array([float(-t_min)], dtype=np.float32)  # the exact minimum of t lands within ~1 of 0
        data = _graph(nodes, {"w": w, "b": b, "zero": np.zeros(1)}, n, 1, "comparison")
        c = np.array([1.0])  # violation y <= d: the step is 0 somewhere
    else:
        h = int(rng.integers(2, 5))
        W1 = np.round(rng.uniform(-1, 1, size=(n, h)) * big)
        W1[:, 1] = -W1[:, 0] + np.round(rng.normal(size=n))  # two neurons that nearly cancel
        b1 = rng.uniform(-1, 1, size=h) * big / 4
        W2 = rng.uniform(-1, 1, size=(h, 1))
        W2[1] = W2[0]
        nodes = [helper.make_node("MatMul", ["x", "W1"], ["a"]), helper.make_node("Add", ["a", "b1"], ["z"]),
                 helper.make_node("Relu", ["z"], ["r"]), helper.make_node("MatMul", ["r", "W2"], ["o"]),
                 helper.make_node("Add", ["o", "b2"], ["y"])]
        data = _graph(nodes, {"W1": W1, "b1": b1, "W2": W2, "b2": rng.uniform(-1, 1, size=1)}, n, 1, "relu-chain")
        c = np.array([1.0 if rng.random() < 0.5 else -1.0])
    witness, value = _minimiser(data, lower, upper, c)
    return Instance(family, seed, data, lower, upper, c, _round_up(value), witness)


def _minimiser(data: bytes, lower: np.ndarray, upper: np.ndarray, c: np.ndarray) -> tuple[np.ndarray, Fraction]:
    """The box corner with the least exact c @ y (the exact minimum for an affine or monotone graph)."""
    best, best_value = lower, None
    c_exact = [Fraction(float(v)) for v in c]
    for pattern in itertools.product((0, 1), repeat=lower.size):
        x = np.where(np.array(pattern, dtype=bool), upper, lower)
        value = sum(ci * yi for ci, yi in zip(c_exact, evaluate_exact(data, x)))
        if best_value is None or value < best_value:
            best, best_value = x, value
    return best, best_value


@dataclass(frozen=True)
class Verdict:
    instance: Instance
    answer: str
    reason: str

    @property
    def wrong(self) -> bool:
        return self.answer == "verified"


def decide(instance: Instance, timeout: float = 10.0) -> Verdict:
    """verikit's default portfolio on the instance (in process, through the public API)."""
    from verikit.core.property import Box, Case, Conjunction, Property
    from verikit.onnx.load import load_network_bytes
    from verikit.portfolio.options import Options
    from verikit.portfolio.runner import verify

    network = load_network_bytes(instance.onnx_bytes, f"float_fuzz/{instance.family}/{instance.seed}")
    case = Case(Box(instance.lower, instance.upper), (Conjunction(instance.c[None, :], np.array([instance.d])),))
    result = verify(network, Property((case,), instance.lower.size, 1), Options(timeout=timeout))
    return Verdict(instance, result.verdict.value, result.reason)


def run(count: int, seed: int = 0, timeout: float = 10.0, families: tuple[str, ...] = FAMILIES) -> dict:
    """`count` instances per family; returns the counts and every wrong answer."""
    counts: dict[str, dict[str, int]] = {}
    wrong = []
    for family in families:
        tally = counts.setdefault(family, {})
        for k in range(count):
            verdict = decide(generate(family, seed + k), timeout)
            tally[verdict.answer] = tally.get(verdict.answer, 0) + 1
            if verdict.wrong:
                wrong.append({"family": family, "seed": seed + k, "reason": verdict.reason})
    return {"runs": count * len(families), "counts": counts, "wrong": wrong}


def main(argv: list[str] | None = None) -> int:
    import argparse
    import json

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=20, help="instances per family")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--timeout", type=float, default=10.0)
    parser.add_argument("--out", help="write the summary JSON here")
    args = parser.parse_args(argv)
    summary = run(args.count, args.seed, args.timeout)
    text = json.dumps(summary, indent=2)
    print(text)
    if args.out:
        with open(args.out, "w") as handle:
            handle.write(text + "\n")
    return 1 if summary["wrong"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
