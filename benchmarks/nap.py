"""NAPs as specifications, measured: a δ sweep on the digits MLP (models/digits_mlp.onnx) and a deeper MLP
trained here (64-48-48-48-10, a few seconds), both on sklearn's digits (models/example_nets.load_digits_split).

Per model and δ: NAP size, test recall, how many classes' NAP robustness is verified over the whole domain
[0, 1]^64, and over ε-balls around test samples: the largest ε the plain L∞ spec verifies for the sample
(bisection) against the NAP-constrained spec at 1.25x, 1.5x and 2x that ε. Seconds per question and the engine.

    PYTHONPATH=$PWD .venv/bin/python benchmarks/nap.py   # writes benchmarks/results/nap.json
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "models"))

from example_nets import load_digits_split  # noqa: E402
from verikit.core.property import Box  # noqa: E402
from verikit.nap import mine as nap_mine, properties  # noqa: E402
from verikit.onnx.load import load_network, load_network_bytes  # noqa: E402
from verikit.portfolio.options import Options  # noqa: E402
from verikit.run import run_loaded  # noqa: E402

DELTAS = (0.6, 0.75, 0.90, 0.95, 0.99, 1.0)
TIMEOUT = 2.0  # seconds per question
FACTORS = (1.25, 1.5, 2)  # NAP balls at these multiples of the largest plain-verified ε
SAMPLES = 5  # ε-ball centres per model (first correctly classified test samples)


def deeper_mlp(x, y) -> bytes:
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(64, 48), torch.nn.ReLU(), torch.nn.Linear(48, 48), torch.nn.ReLU(),
                              torch.nn.Linear(48, 48), torch.nn.ReLU(), torch.nn.Linear(48, 10))
    opt = torch.optim.Adam(net.parameters(), 3e-3)
    xt, yt = torch.tensor(x), torch.tensor(y)
    for _ in range(300):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(net(xt), yt).backward()
        opt.step()
    from onnx import TensorProto, helper, numpy_helper

    linears = [m for m in net if isinstance(m, torch.nn.Linear)]
    nodes, inits, value = [], [], "x"
    for k, layer in enumerate(linears):
        inits += [numpy_helper.from_array(layer.weight.detach().numpy(), f"W{k}"),
                  numpy_helper.from_array(layer.bias.detach().numpy(), f"b{k}")]
        out = "y" if k == len(linears) - 1 else f"z{k}"
        nodes.append(helper.make_node("Gemm", [value, f"W{k}", f"b{k}"], [out], transB=1))
        if k < len(linears) - 1:
            nodes.append(helper.make_node("Relu", [out], [f"h{k}"]))
            value = f"h{k}"
    graph = helper.make_graph(nodes, "deeper", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 64])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 10])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8).SerializeToString()


def plain(network, centre, label, eps, options):
    from verikit.core.property import Case, Property
    from verikit.spec.robustness import misclassification_disjuncts

    box = Box(np.clip(centre - eps, 0, 1), np.clip(centre + eps, 0, 1))
    case = Case(box, misclassification_disjuncts(label, 10))
    return run_loaded(network, Property((case,), 64, 10, kind="robustness"), options)


def largest_plain_eps(network, centre, label, options, steps=6):
    low, high = 0.0, 0.2
    for _ in range(steps):
        mid = (low + high) / 2
        if plain(network, centre, label, mid, options).verdict.value == "verified":
            low = mid
        else:
            high = mid
    return low


def sweep(name, network, data, options):
    x_train, y_train, x_test, y_test = data
    predicted = network.replay(x_test).argmax(axis=1)
    centres = [i for i in range(len(y_test)) if predicted[i] == y_test[i]][:SAMPLES]
    base = {i: largest_plain_eps(network, x_test[i].astype(np.float64), int(y_test[i]), options) for i in centres}
    rows = []
    domain = Box(np.zeros(64), np.ones(64))
    for delta in DELTAS:
        naps = nap_mine.mine(network, x_train, y_train, delta)
        check = nap_mine.check(network, naps, x_test, y_test)
        per_class = []
        for nap in naps.classes:
            result = run_loaded(network, properties.robustness(naps, nap.label, domain, 10, {"kind": "domain"}),
                                options)
            per_class.append({"label": nap.label, "size": nap.size, "verdict": result.verdict.value,
                              "engine": result.engine, "seconds": round(result.seconds, 3)})
        balls = []
        for i in centres:
            label = int(y_test[i])
            follows = bool(naps.of(label).follows(nap_mine.hidden_values(
                network, x_test[i:i + 1], tuple(t for t, _ in naps.layers))))
            for factor in FACTORS:
                eps = max(base[i], 1e-3) * factor
                box = Box(np.clip(x_test[i] - eps, 0, 1), np.clip(x_test[i] + eps, 0, 1))
                result = run_loaded(network, properties.robustness(naps, label, box, 10, {"kind": "linf-ball"}),
                                    options)
                balls.append({"sample": i, "label": label, "follows_nap": follows, "plain_eps": base[i],
                              "factor": factor, "eps": eps, "verdict": result.verdict.value,
                              "engine": result.engine, "seconds": round(result.seconds, 3)})
        rows.append({"delta": delta, "mean_nap_size": float(np.mean([c.size for c in naps.classes])),
                     "test_recall": check["recall"], "follow_two_or_more": check["follow_two_or_more"],
                     "domain_verified": sum(c["verdict"] == "verified" for c in per_class),
                     "domain": per_class,
                     # a ball whose centre breaks the NAP may hold few or no NAP inputs: counted apart
                     "centres_following_nap": len({b["sample"] for b in balls if b["follows_nap"]}),
                     "balls_verified_centre_follows": {str(f): sum(b["verdict"] == "verified" and b["follows_nap"]
                                                                   for b in balls if b["factor"] == f) for f in FACTORS},
                     "balls_verified_centre_breaks": {str(f): sum(b["verdict"] == "verified" and not b["follows_nap"]
                                                                  for b in balls if b["factor"] == f) for f in FACTORS},
                     "balls": balls,
                     "seconds_per_question": round(float(np.mean([c["seconds"] for c in per_class] +
                                                                 [b["seconds"] for b in balls])), 3)})
        print(name, delta, {k: v for k, v in rows[-1].items() if k not in ("domain", "balls")}, flush=True)
    return {"model": name, "plain_eps": {str(i): e for i, e in base.items()},
            "sweep": rows}


def main() -> None:
    torch.set_num_threads(1)
    started = time.monotonic()
    data = load_digits_split()
    options = Options(timeout=TIMEOUT)
    digits = load_network(ROOT / "models" / "digits_mlp.onnx")
    deeper = load_network_bytes(deeper_mlp(data[0], data[1]), "deeper_mlp(64-48-48-48-10)")
    out = {"command": "PYTHONPATH=$PWD .venv/bin/python benchmarks/nap.py", "timeout_per_question_s": TIMEOUT,
           "models": [sweep("digits_mlp.onnx (64-32-16-10)", digits, data, options),
                      sweep("deeper MLP (64-48-48-48-10, trained here)", deeper, data, options)]}
    out["seconds"] = round(time.monotonic() - started, 1)
    path = ROOT / "benchmarks" / "results" / "nap.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=1) + "\n")
    print(f"wrote {path} in {out['seconds']} s")


if __name__ == "__main__":
    main()
