"""Seeded random mutations of valid inputs, per input class, for `make fuzz` (see tests/hostile.py)."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np

from hostile import MODEL, SPEC, V2_BOX, V2_HEAD, Case, Corpus, _npz, policy

HOSTILE_ATOMS = ("1e999", "-1e308", "(", ")", "nan", "X_99", "Y_-1", "\0", "(* 1e308 1e308)", "((((", "0x1p3",
                 "|", '"', "1" * 400, "(/ 1 0)", "Real", "assert", "\udcff")
HOSTILE_VALUES = (None, -1, 0, 10**12, 1e308, -1e308, "x", [], {}, [[[[[[]]]]]], True, "", [1e308] * 2, "../../etc")


def mutations(folder: str | Path, *, examples: int, seed: int = 0) -> list[Case]:
    """`examples` seeded mutations per class of valid inputs (ONNX bytes, VNN-LIB 1.0/2.0 tokens, JSON values,
    CSV cells, .npz bytes, TOML values, witness text)."""
    c = Corpus(Path(folder) / "mutations")
    c.folder.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    model, spec, t = str(MODEL), str(SPEC), "3"
    onnx_data, spec_text = MODEL.read_bytes(), SPEC.read_text()
    v2_text = V2_HEAD + V2_BOX + "(assert (> Y[0] 2.0))\n"
    policy_text = policy(model, timeout="3")
    for i in range(examples):
        data = bytearray(onnx_data)
        for _ in range(rng.randint(1, 8)):
            data[rng.randrange(len(data))] = rng.randrange(256)
        if rng.random() < 0.3:
            data = data[:rng.randrange(len(data))]
        path = c.file(f"m{i}.onnx", bytes(data))
        c.add(f"onnx/mutation-{i}", "onnx", ("verify", path, spec, "--timeout", t), names=Path(path).name, timeout=3)
        path = c.file(f"s{i}.vnnlib", _mutate_tokens(spec_text, rng))
        c.add(f"vnnlib1/mutation-{i}", "vnnlib1", ("verify", model, path, "--timeout", t), names=Path(path).name,
              timeout=3)
        path = c.file(f"q{i}.vnnlib", _mutate_tokens(v2_text, rng))
        c.add(f"vnnlib2/mutation-{i}", "vnnlib2", ("verify", path, "--network", f"N={model}", "--timeout", t),
              names=Path(path).name, timeout=3, program="verikit-vnnlib")
        fields = {"format": "verikit-robustness/1", "input": [0.5, 0.5], "label": 0, "epsilon": 0.1, "num_classes": 2}
        for _ in range(rng.randint(1, 3)):
            fields[rng.choice([*fields, "clip", "mean", "std", "input_shape", "input_file", "norm"])] = \
                rng.choice(HOSTILE_VALUES)
        path = c.file(f"j{i}.json", json.dumps(fields))
        c.add(f"json/mutation-{i}", "json", ("verify", model, path, "--timeout", t), names=Path(path).name, timeout=3)
        rows = [["label", "a", "b"]] + [[str(rng.randint(0, 1)), "0.5", "0.25"] for _ in range(4)]
        for _ in range(rng.randint(1, 4)):
            row = rng.choice(rows)
            row[rng.randrange(len(row))] = str(rng.choice(HOSTILE_VALUES + HOSTILE_ATOMS))
        path = c.file(f"d{i}.csv", "\n".join(",".join(r) for r in rows) + "\n")
        c.add(f"csv/mutation-{i}", "csv", ("audit", model, "--data", path, "--eps", "0.01", "--timeout", t),
              names=(Path(path).name, MODEL.name), timeout=3)  # valid data meets a 1-output model: refused
        data = bytearray(_npz(x=np.full((4, 2), 0.5), y=np.zeros(4, int)))
        for _ in range(rng.randint(1, 6)):
            data[rng.randrange(len(data))] = rng.randrange(256)
        path = c.file(f"d{i}.npz", bytes(data))
        c.add(f"npz/mutation-{i}", "npz", ("audit", model, "--data", path, "--eps", "0.01", "--timeout", t),
              names=(Path(path).name, MODEL.name), timeout=3)
        lines = policy_text.splitlines()
        k = rng.randrange(len(lines))
        if "=" in lines[k]:
            lines[k] = lines[k].split("=")[0] + "= " + rng.choice(["nan", "inf", "-1", '"x"', "[]", "{a=1}", "1e999",
                                                                   "99999999999999999999999", "true", '"/dev/zero"'])
        else:
            lines[k] = rng.choice(["[[model]]", "[property]", "[[", "x = ", '"""'])
        path = c.file(f"p{i}.toml", "\n".join(lines) + "\n")
        c.add(f"toml/mutation-{i}", "toml", ("gate", path, "--out", str(c.folder / "gate_out"), "--no-baseline"),
              names=Path(path).name, timeout=3)
        x = [rng.choice(["1.0", "0.5", "nan", "1e999", "-0", "x", "(", ""]) for _ in range(2)]
        path = c.file(f"w{i}.counterexample", f"sat\n((X_0 {x[0]})\n (X_1 {x[1]})\n (Y_0 1.7))\n")
        c.add(f"witness/mutation-{i}", "witness", ("witness", model, spec, path), names=Path(path).name)
    return c.cases


def _mutate_tokens(text: str, rng: random.Random) -> str:
    tokens = text.replace("(", " ( ").replace(")", " ) ").split()
    for _ in range(rng.randint(1, 5)):
        k = rng.randrange(len(tokens))
        action = rng.random()
        if action < 0.4:
            tokens[k] = rng.choice(HOSTILE_ATOMS)
        elif action < 0.7:
            del tokens[k]
        else:
            tokens.insert(k, rng.choice(HOSTILE_ATOMS))
    return " ".join(tokens)
