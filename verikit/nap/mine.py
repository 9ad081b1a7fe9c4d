"""Neural activation patterns (NAPs) mined from data, their file format, and how well they recall test data.

Mining (Geng et al., "Towards Reliable Neural Specifications", ICML 2023, the statistical variant): for
class c, over *all* samples labelled c (correctly classified or not: the pattern describes the class's
data, and `check` reports how it does on held-out data), a neuron of a chosen layer is in NAP_c as active
when its pre-activation is > 0 on at least a δ share of them, as inactive when it is <= 0 on at least a δ
share. δ must lie in (0.5, 1], so no neuron can be both (no ties to break). A share is compared exactly
(count >= ceil(δ·n)). The layers are ReLU layers named by the ONNX tensor feeding each Relu node (the
pre-activation), by default every one; values are onnxruntime's on the original ONNX bytes, the same
values that decide whether a counterexample follows a pattern (verikit.witness.replay).

File (`naps.json`, FORMAT below): the model's and the data's sha256, δ, the layers (tensor, size) and per
class its patterns (tensor, active, inactive indices, flat C order), size and support (share of the
class's mining samples that follow the whole NAP).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from verikit.core.errors import DataError, SpecError
from verikit.core.network import Network
from verikit.core.property import NeuronPattern
from verikit.engines.hidden import relu_inputs

FORMAT = "verikit-nap/1"


@dataclass(frozen=True, eq=False)
class ClassNap:
    """NAP of one class: its patterns (one per layer), how many samples it was mined on, its support."""

    label: int
    patterns: tuple[NeuronPattern, ...]
    samples: int
    support: float

    @property
    def size(self) -> int:
        return sum(p.size for p in self.patterns)

    def follows(self, values: dict[str, np.ndarray]) -> np.ndarray:
        """(B,) whether each point follows every pattern; `values[tensor]` (B, size) hidden values."""
        ok = np.ones(next(iter(values.values())).shape[0], dtype=bool) if values else np.ones(0, bool)
        for p in self.patterns:
            v = values[p.tensor]
            ok &= (v[:, p.active] > 0).all(axis=1) & (v[:, p.inactive] <= 0).all(axis=1)
        return ok


@dataclass(frozen=True, eq=False)
class Naps:
    """Every class's NAP mined from one dataset on one model."""

    model_sha256: str
    data_sha256: str
    delta: float
    layers: tuple[tuple[str, int], ...]
    classes: tuple[ClassNap, ...]

    def of(self, label: int) -> ClassNap:
        for nap in self.classes:
            if nap.label == label:
                return nap
        raise KeyError(label)

    def as_dict(self) -> dict:
        return {"format": FORMAT, "model_sha256": self.model_sha256, "data_sha256": self.data_sha256,
                "delta": self.delta, "layers": [{"tensor": t, "size": s} for t, s in self.layers],
                "classes": [{"label": c.label, "samples": c.samples, "support": c.support, "size": c.size,
                             "patterns": [p.describe() for p in c.patterns]} for c in self.classes]}


def hidden_values(network: Network, x: np.ndarray, tensors: tuple[str, ...]) -> dict[str, np.ndarray]:
    """onnxruntime's values of `tensors` for samples x (N, n_inputs), each (N, size)."""
    return network.replay_hidden(np.asarray(x, dtype=np.float32), tensors)


def chosen_layers(network: Network, layers: tuple[str, ...] | None) -> tuple[str, ...]:
    """The ReLU-input tensors to mine on: `layers` (names, or indices "0", "1" among the Relu nodes), else all."""
    tensors = relu_inputs(network)
    if not tensors:
        raise SpecError("the model has no Relu node: there is no activation pattern to mine")
    if not layers:
        return tuple(tensors)
    picked = []
    for name in layers:
        if name in tensors:
            picked.append(name)
        elif name.isdigit() and int(name) < len(tensors):
            picked.append(tensors[int(name)])
        else:
            raise SpecError(f"layer {name!r} is not the input of a Relu node (those are: {', '.join(tensors)})")
    return tuple(dict.fromkeys(picked))


def mine(network: Network, x: np.ndarray, y: np.ndarray, delta: float = 0.99, *,
         layers: tuple[str, ...] | None = None, data_sha256: str = "") -> Naps:
    """NAP of every class present in labels y (N,) from samples x (N, n_inputs), at share δ."""
    if not 0.5 < delta <= 1.0:
        raise SpecError(f"delta must lie in (0.5, 1], got {delta}")
    tensors = chosen_layers(network, layers)
    values = hidden_values(network, x, tensors)
    y = np.asarray(y).reshape(-1)
    classes = []
    for label in sorted(set(int(v) for v in y)):
        rows = y == label
        count = int(rows.sum())
        need = math.ceil(delta * count - 1e-9)
        patterns = []
        for tensor in tensors:
            v = values[tensor][rows]
            active = np.nonzero((v > 0).sum(axis=0) >= need)[0]
            inactive = np.nonzero((v <= 0).sum(axis=0) >= need)[0]
            patterns.append(NeuronPattern(tensor, active, inactive))
        nap = ClassNap(label, tuple(patterns), count, 0.0)
        support = float(nap.follows({t: values[t][rows] for t in tensors}).mean())
        classes.append(ClassNap(label, tuple(patterns), count, round(support, 6)))
    sizes = tuple((t, int(values[t].shape[1])) for t in tensors)
    return Naps(network.sha256, data_sha256, float(delta), sizes, tuple(classes))


def write(naps: Naps, path: str | Path) -> Path:
    path = Path(path)
    path.write_text(json.dumps(naps.as_dict(), indent=1) + "\n")
    return path


def read(path: str | Path, network: Network | None = None) -> Naps:
    """Read naps.json; SpecError when malformed or (given `network`) mined on another model."""
    try:
        data = json.loads(Path(path).read_text())
        if data.get("format") != FORMAT:
            raise SpecError(f"not a {FORMAT} file (format {data.get('format')!r})", where=str(path))
        classes = tuple(ClassNap(int(c["label"]), tuple(NeuronPattern(p["tensor"], p["active"], p["inactive"])
                                                        for p in c["patterns"]), int(c["samples"]),
                                 float(c["support"])) for c in data["classes"])
        naps = Naps(str(data["model_sha256"]), str(data.get("data_sha256", "")), float(data["delta"]),
                    tuple((str(l["tensor"]), int(l["size"])) for l in data["layers"]), classes)
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise SpecError(f"cannot read the NAP file: {error}", where=str(path)) from None
    if network is not None and naps.model_sha256 != network.sha256:
        raise SpecError(f"the NAPs were mined on model {naps.model_sha256[:12]}…, not this one "
                        f"({network.sha256[:12]}…)", where=str(path))
    return naps


def check(network: Network, naps: Naps, x: np.ndarray, y: np.ndarray) -> dict:
    """Per class: recall (share of its samples that follow its NAP), precision (share of samples following
    NAP_c that are labelled c); overall: samples following no NAP, and two or more."""
    y = np.asarray(y).reshape(-1)
    if len(y) == 0:
        raise DataError("no samples to check the NAPs on")
    values = hidden_values(network, x, tuple(t for t, _ in naps.layers))
    follows = np.stack([nap.follows(values) for nap in naps.classes], axis=1)  # (N, classes)
    per_class = []
    for k, nap in enumerate(naps.classes):
        mine_rows = y == nap.label
        hits = follows[:, k]
        per_class.append({"label": nap.label, "size": nap.size, "test_samples": int(mine_rows.sum()),
                          "recall": round(float(hits[mine_rows].mean()) if mine_rows.any() else 0.0, 6),
                          "precision": round(float((y[hits] == nap.label).mean()) if hits.any() else 1.0, 6),
                          "followed_by": int(hits.sum())})
    counts = follows.sum(axis=1)
    own = np.array([follows[i, [n.label for n in naps.classes].index(int(y[i]))]
                    if int(y[i]) in [n.label for n in naps.classes] else False for i in range(len(y))])
    return {"samples": int(len(y)), "recall": round(float(own.mean()), 6), "classes": per_class,
            "follow_none": int((counts == 0).sum()), "follow_two_or_more": int((counts >= 2).sum())}
