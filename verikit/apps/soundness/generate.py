"""Generate a benchmark with hidden counterexamples, in the VNN-COMP layout.

    OUT/instances.csv            onnx,vnnlib,timeout rows (no hint of the answers)
    OUT/onnx/net<m>.onnx         small MLPs / CNNs (ReLU, tanh or sigmoid)
    OUT/vnnlib/net<m>_prop<j>.vnnlib   L-inf robustness of a box around a centre
    OUT/answers/answers.csv      truth per instance (see verikit.apps.soundness.answers)
    OUT/answers/witnesses/       the planted counterexamples, VNN-COMP witness format
    OUT/answers/generation.json  settings, timings, per-instance vetting, rejected candidates

Method (after SoundnessBench, Zhou et al. 2024, adapted to a CPU budget): per network, draw
`instances_per_model` centres and labels; adversarially train the network so that every box
`centre ± eps` keeps its label under PGD with a margin; for the planted instances, pick x* in the box
(every coordinate 0.5–0.9 eps from the centre) and a wrong target class, and plant a sub-network that
flips the label only very near x* (verikit.apps.soundness.planting); then vet every instance
(verikit.apps.soundness.vetting): x* must replay through onnxruntime as a counterexample, and a strong PGD
attack must find no counterexample at all. Rejected candidates are replaced by the next network's.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from verikit.core import output
from verikit.core.errors import ExitCode, VerikitError
from verikit.apps.soundness import layers
from verikit.apps.soundness.answers import write_answers
from verikit.apps.soundness.planting import Plant, PlantingError, plant, planted_point
from verikit.apps.soundness.training import TrainSettings, adversarially_train
from verikit.apps.soundness.vetting import Vetting, vet_clean, vet_planted


class GenerateError(VerikitError):
    """Generation settings are invalid, or too few instances survived vetting."""

    exit_code = ExitCode.BAD_INPUT


@dataclass(frozen=True)
class GenerateConfig:
    """Everything a generated benchmark depends on; written to answers/generation.json."""

    arch: str = "mlp"
    activation: str = "relu"
    count: int = 10
    seed: int = 0
    input_sizes: tuple[int, ...] = (10,)  # MLP: inputs; CNN: image side s (input 1 x s x s)
    eps_values: tuple[float, ...] = (0.2,)
    num_classes: int = 3
    planted_fraction: float = 0.5
    instances_per_model: int = 5
    hidden: int = 32
    channels: int = 4
    timeout: float = 30.0  # per instance, written to instances.csv
    plant_margin: float = 0.2
    spike_radius: float | None = None  # fraction of eps; None: 0.3 (ReLU, L1 ball), 0.05 (smooth, cube)
    train: TrainSettings = field(default_factory=TrainSettings)
    attack_seconds: float = 8.0  # strong attack per instance
    prove_seconds: float = 5.0  # complete engines per clean instance (0: skip)
    max_models: int = 0  # 0: 3 x the models needed

    def validate(self) -> None:
        if self.arch not in layers.ARCHITECTURES:
            raise GenerateError(f"--arch must be one of {layers.ARCHITECTURES}, got {self.arch!r}")
        if self.activation not in layers.ACTIVATIONS:
            raise GenerateError(f"--activation must be one of {layers.ACTIVATIONS}, got {self.activation!r}")
        minimum = 6 if self.arch == "mlp" else 3
        if self.count < 1 or not self.input_sizes or min(self.input_sizes) < minimum:
            raise GenerateError(f"need count >= 1 and input sizes >= {minimum} for {self.arch} "
                                "(smaller inputs cannot hide a counterexample from random sampling)")
        if not self.eps_values or min(self.eps_values) <= 0 or self.num_classes < 2:
            raise GenerateError("need eps > 0 and at least 2 classes")
        if not 0.0 <= self.planted_fraction <= 1.0 or self.instances_per_model < 1:
            raise GenerateError("planted fraction must be in [0, 1] and instances per model >= 1")

    def radius(self, eps: float) -> float:
        fraction = self.spike_radius or (0.3 if self.activation == "relu" else 0.05)
        return fraction * eps


@dataclass
class Candidate:
    """One instance being built: its box, label and its plant (a decoy for a clean instance)."""

    model: int
    centre: np.ndarray
    label: int
    eps: float
    plant: Plant  # a decoy for clean instances
    vetting: Vetting | None = None
    name: str = ""


def _plan(config: GenerateConfig, model: int, rng: np.random.Generator, planted: int) -> list[Candidate]:
    size = config.input_sizes[model % len(config.input_sizes)]
    eps = config.eps_values[(model // len(config.input_sizes)) % len(config.eps_values)]
    n = size if config.arch == "mlp" else size * size
    candidates = []
    for index in range(config.instances_per_model):
        centre = rng.uniform(-1.0, 1.0, size=n).astype(np.float32).astype(np.float64)
        label = int(rng.integers(config.num_classes))
        target = int((label + rng.integers(1, config.num_classes)) % config.num_classes)
        the_plant = Plant(planted_point(centre, eps, rng), label, target, decoy=index >= planted)
        candidates.append(Candidate(model, centre, label, eps, the_plant))
    order = rng.permutation(len(candidates))  # planted ones must not always come first
    return [candidates[i] for i in order]


def _property(candidate: Candidate, config: GenerateConfig):
    from verikit.spec.robustness import robustness_property

    return robustness_property(candidate.centre, candidate.label, candidate.eps,
                               num_classes=config.num_classes)


def _build_model(config: GenerateConfig, model: int, candidates: list[Candidate],
                 rng: np.random.Generator) -> layers.LayeredNet:
    size = config.input_sizes[model % len(config.input_sizes)]
    net = layers.initial_net(config.arch, config.activation, size, config.num_classes,
                             hidden=config.hidden, channels=config.channels, rng=rng)
    centres = np.stack([c.centre for c in candidates])
    labels = np.array([c.label for c in candidates])
    eps = candidates[0].eps
    net = adversarially_train(net, centres, labels, eps, config.train, seed=config.seed * 1000 + model)
    plants = [c.plant for c in candidates]
    return plant(net, plants, radius=config.radius(eps), margin=config.plant_margin,
                 input_lower=float(centres.min() - eps), rng=rng)


def _vet(candidate: Candidate, network, config: GenerateConfig, seed: int) -> Vetting:
    prop = _property(candidate, config)
    if not candidate.plant.decoy:
        return vet_planted(network, prop, candidate.plant.point, min_margin=config.plant_margin / 2,
                           attack_seconds=config.attack_seconds, seed=seed)
    return vet_clean(network, prop, attack_seconds=config.attack_seconds,
                     prove_seconds=config.prove_seconds, seed=seed)


def generate(config: GenerateConfig, out: str | Path,
             progress: Callable[[str], None] = lambda message: None) -> dict:
    """Write the benchmark to `out` (see module doc); returns the generation record (also saved)."""
    from verikit.onnx.load import load_network_bytes

    config.validate()
    out = Path(out)
    started = time.monotonic()
    want_planted = round(config.count * config.planted_fraction)
    need = {"planted": want_planted, "clean": config.count - want_planted}
    per_model = config.instances_per_model
    max_models = config.max_models or 3 * math.ceil(config.count / per_model) + 1
    kept: list[Candidate] = []
    rejected: list[dict] = []
    models: list[dict] = []
    for model in range(max_models):
        if need["planted"] == 0 and need["clean"] == 0:
            break
        rng = np.random.default_rng([config.seed, model])
        planted = min(need["planted"], math.ceil(per_model * config.planted_fraction)
                      if need["clean"] else per_model)
        candidates = _plan(config, model, rng, planted)
        model_started = time.monotonic()
        try:
            net = _build_model(config, model, candidates, rng)
        except PlantingError as error:  # the trained net already misclassifies some x*: try another net
            rejected.append({"model": model, "reason": str(error)})
            continue
        name = f"net{model}"
        data = layers.onnx_bytes(net, name=name, doc=f"verikit soundness benchmark, {config.arch}/"
                                 f"{config.activation}, seed {config.seed}")
        network = load_network_bytes(data, f"{name}.onnx")
        train_seconds = time.monotonic() - model_started
        used = False
        for index, candidate in enumerate(candidates):
            kind = "clean" if candidate.plant.decoy else "planted"
            if need[kind] == 0:
                continue
            vetting = _vet(candidate, network, config, seed=config.seed * 1000 + model * 50 + index)
            if vetting.truth is None:
                rejected.append({"model": model, "kind": kind, "reason": vetting.basis})
                progress(f"{name}: rejected a {kind} candidate ({vetting.basis})")
                continue
            candidate.vetting = vetting
            candidate.name = f"{name}_prop{index}"
            kept.append(candidate)
            need[kind] -= 1
            used = True
            progress(f"{name}: kept {candidate.name} ({kind}, truth {vetting.truth})")
        if used:
            output.write_bytes(out / "onnx" / f"{name}.onnx", data)
        models.append({"model": name, "used": used, "input_shape": list(net.input_shape), "eps": candidates[0].eps,
                       "hidden_units": [int(d.weight.shape[0]) for d in net.dense[:-1]],
                       "build_and_vet_s": round(time.monotonic() - model_started, 2),
                       "train_s": round(train_seconds, 2)})
    if need["planted"] or need["clean"]:
        raise GenerateError(f"only {len(kept)} of {config.count} instances survived vetting after "
                            f"{max_models} networks; try a larger --input-size or more --max-models")
    record = _write(out, kept, config, models, rejected, time.monotonic() - started)
    return record


def _write(out: Path, kept: list[Candidate], config: GenerateConfig, models: list[dict],
           rejected: list[dict], seconds: float) -> dict:
    from verikit.spec.vnnlib_writer import write_vnnlib
    from verikit.witness.formats import format_vnncomp

    rows, instances, details = [], [], []
    for candidate in sorted(kept, key=lambda c: (c.model, c.name)):
        onnx_rel, spec_rel = f"onnx/net{candidate.model}.onnx", f"vnnlib/{candidate.name}.vnnlib"
        output.write_text(out / spec_rel, write_vnnlib(_property(candidate, config)))
        instances.append(f"{onnx_rel},{spec_rel},{config.timeout:g}")
        vetting = candidate.vetting
        witness = ""
        if vetting.x is not None:
            witness = f"witnesses/{candidate.name}.counterexample"
            output.write_text(out / "answers" / witness, format_vnncomp(vetting.x, vetting.y))
        notes = ""
        if not candidate.plant.decoy:
            notes = f"label {candidate.label}, planted target {candidate.plant.target}"
        rows.append({"onnx": onnx_rel, "vnnlib": spec_rel, "truth": vetting.truth, "basis": vetting.basis,
                     "witness": witness, "notes": notes})
        details.append({"instance": candidate.name, "truth": vetting.truth, "basis": vetting.basis,
                        "label": candidate.label, "eps": candidate.eps,
                        "target": None if candidate.plant.decoy else candidate.plant.target,
                        **(vetting.detail or {})})
    output.write_text(out / "instances.csv", "\n".join(instances) + "\n")
    write_answers(out / "answers" / "answers.csv", rows)
    record = {
        "format": "verikit-soundness-benchmark/1",
        "config": _config_dict(config),
        "seconds": round(seconds, 2),
        "instances": details,
        "models": models,
        "rejected": rejected,
        "counts": {truth: sum(1 for r in rows if r["truth"] == truth) for truth in ("sat", "unsat", "unknown")},
    }
    output.write_text(out / "answers" / "generation.json", json.dumps(record, indent=2) + "\n")
    return record


def _config_dict(config: GenerateConfig) -> dict:
    data = asdict(config)
    data["input_sizes"], data["eps_values"] = list(config.input_sizes), list(config.eps_values)
    return data

