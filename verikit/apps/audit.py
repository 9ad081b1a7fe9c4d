"""Audit a classifier's robustness over a labelled dataset at one or more ε.

Per sample: the clean prediction (onnxruntime on the original ONNX bytes), a certification attempt
(batched bound propagation, verikit.engines.lirpa.batch) and an attack (batched PGD,
verikit.engines.attack.pgd, every candidate replayed through onnxruntime by verikit.witness.replay). Per ε:

- clean accuracy: samples whose replayed clean output ranks the label strictly first;
- empirical robust accuracy: clean-correct samples no replayed attack broke (an upper bound on the
  true robust accuracy);
- certified robust accuracy: samples whose bounds prove every `y_label - y_j > 0` over the region (a
  lower bound).

ε is in raw input units; the region is clipped to the valid raw range, then normalised. For the L2 norm
certification bounds the L∞ box of radius ε (it contains the L2 ball, so proving the box proves the
ball), then the ball ∩ box itself in rigorous float64 CROWN (dual norm; verikit.apps.lipschitz_audit),
and the Lipschitz bound; the attack searches the L2 ball itself. `certified <= empirical <= clean` is checked on every
run; a violation raises AuditInvariantError (a bug, never a verdict).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from verikit.apps.data import Dataset, Normalization
from verikit.engines.attack.pgd import NORMS, PGDSettings, pgd_batch
from verikit.core.errors import DataError, EngineLimitation, ExitCode, ModelError, VerikitError
from verikit.engines.lirpa import METHODS
from verikit.core.network import Network
from verikit.core.result import Budget
from verikit.core.property import Box, Case, Conjunction
from verikit.spec.robustness import robustness_property
from verikit.spec.topk import pairwise_rows
from verikit.witness.replay import STRICT, Tolerances, validate_batch
from verikit.engines.lirpa import METHODS

TRANSLATION_RTOL = 1e-4  # torch vs onnxruntime on the clean samples, relative to the logits' scale
ALPHA_BATCH = 512  # samples per α-CROWN call

Progress = Callable[[str, int, int], None]
"""progress(task, done, total): called as work advances (the CLI draws a bar; the library never prints)."""


class AuditInvariantError(VerikitError):
    """certified <= empirical robust <= clean failed: a soundness bug in verikit, not a property of the model."""

    exit_code = ExitCode.INTERNAL


@dataclass(frozen=True)
class AuditSettings:
    """Everything an audit depends on; recorded in its report. `timeout` (s) None = unlimited."""

    eps: tuple[float, ...]
    norm: str = "inf"
    method: str = "crown"
    normalization: Normalization = Normalization()
    seed: int = 0
    attack: PGDSettings = PGDSettings()
    batch_size: int = 64  # samples per bound-propagation call; small batches suit conv nets best on CPU
    device: str = "cpu"
    timeout: float | None = None
    check_all: bool = False  # certify and attack every sample, also those already decided (self-check)
    tolerances: Tolerances = STRICT
    lipschitz: str = "none"  # ℓ2 only: also certify from a Lipschitz bound by this method (verikit.lipschitz)
    top_k: int = 1  # robust = the label stays among the top_k highest outputs (fewer than k others reach it)

    def __post_init__(self) -> None:
        eps = tuple(float(e) for e in self.eps)
        if not eps or any(not np.isfinite(e) or e < 0 for e in eps):
            raise ValueError(f"eps must be one or more finite numbers >= 0, got {self.eps}")
        if self.norm not in NORMS:
            raise ValueError(f"unknown norm {self.norm!r}; choose one of {', '.join(NORMS)}")
        if self.method not in METHODS:
            raise ValueError(f"unknown method {self.method!r}; choose one of {', '.join(METHODS)}")
        if self.lipschitz not in ("none", "naive", "lipsdp-layer", "lipsdp-neuron"):
            raise ValueError(f"unknown Lipschitz method {self.lipschitz!r}")
        if isinstance(self.top_k, bool) or not isinstance(self.top_k, int) or self.top_k < 1:
            raise ValueError(f"top_k must be an integer >= 1, got {self.top_k!r}")
        if self.top_k > 1 and self.lipschitz != "none":
            raise ValueError("Lipschitz certificates are for the top-1 margin; drop --lipschitz or --top-k")
        object.__setattr__(self, "eps", eps)

    def as_dict(self) -> dict:
        return {
            "eps": list(self.eps), "norm": self.norm, "method": self.method, "seed": self.seed,
            "normalization": self.normalization.as_dict(),
            "attack": {"restarts": self.attack.restarts, "steps": self.attack.steps,
                       "step_fraction": self.attack.step_fraction},
            "batch_size": self.batch_size, "device": self.device, "timeout_s": self.timeout,
            "check_all": self.check_all,
            "tolerances": {"box": self.tolerances.box, "formula": self.tolerances.formula},
            "lipschitz": self.lipschitz, "top_k": self.top_k,
        }


@dataclass(frozen=True, eq=False)
class EpsResult:
    """One ε: per-sample arrays of shape (N,). Margins are NaN where that step did not run."""

    eps: float
    clean_correct: np.ndarray
    certified: np.ndarray
    broken: np.ndarray
    certified_margin: np.ndarray  # proven lower bound of the k-th smallest y_label - y_j over the region
    attack_margin: np.ndarray  # onnxruntime margin of the best replayed attack point
    witnesses: dict[int, np.ndarray] = field(default_factory=dict)  # sample → model input (float32)
    seconds: dict[str, float] = field(default_factory=dict)
    timed_out: bool = False
    certified_by_lipschitz: np.ndarray | None = None  # ℓ2: certified from the Lipschitz bound (a subset)
    certified_by_ball: np.ndarray | None = None  # ℓ2: certified by rigorous CROWN over the ball ∩ box

    @property
    def empirically_robust(self) -> np.ndarray:
        return self.clean_correct & ~self.broken

    @property
    def clean_accuracy(self) -> float:
        return _mean(self.clean_correct)

    @property
    def empirical_robust_accuracy(self) -> float:
        return _mean(self.empirically_robust)

    @property
    def certified_robust_accuracy(self) -> float:
        return _mean(self.certified)

    def status(self, index: int) -> str:
        """misclassified | certified | falsified (replayed attack) | unknown (neither)."""
        if not self.clean_correct[index]:
            return "misclassified"
        if self.certified[index]:
            return "certified"
        return "falsified" if self.broken[index] else "unknown"


@dataclass(frozen=True, eq=False)
class AuditResult:
    """The whole audit: clean predictions (N,) and one EpsResult per ε, in the settings' order."""

    model_path: str
    model_sha256: str
    data_path: str
    data_sha256: str
    labels: np.ndarray
    predictions: np.ndarray
    clean_margin: np.ndarray
    per_eps: tuple[EpsResult, ...]
    settings: AuditSettings
    seconds: float
    notes: tuple[str, ...] = ()

    @property
    def samples(self) -> int:
        return int(self.labels.size)

    @property
    def clean_accuracy(self) -> float:
        return _mean(self.clean_margin > 0)

    @property
    def timed_out(self) -> bool:
        return any(r.timed_out for r in self.per_eps)


def _mean(mask: np.ndarray) -> float:
    return float(np.mean(mask)) if mask.size else 0.0


def _margins(logits: np.ndarray, labels: np.ndarray, k: int = 1) -> np.ndarray:
    """y_label - (the k-th largest y_j, j != label) per row, float64 (N,): > 0 iff the label is among the k
    highest with fewer than k others at or above it."""
    logits = np.asarray(logits, dtype=np.float64)
    rows = np.arange(labels.size)
    others = logits.copy()
    others[rows, labels] = -np.inf
    return logits[rows, labels] - -np.sort(-others, axis=1)[:, k - 1]


def kth_smallest(bounds: np.ndarray, k: int) -> np.ndarray:
    """The k-th smallest of each row of lower bounds of `y_label - y_j` (B, n-1): a lower bound of the true
    k-th smallest margin (order statistics are monotone), > 0 iff fewer than k classes can reach the label."""
    return np.sort(bounds, axis=1)[:, k - 1]


@dataclass(frozen=True, eq=False)
class _Prepared:
    """Raw samples and the normalisation vectors, (N, n) and (n,)."""

    raw: np.ndarray
    labels: np.ndarray
    mean: np.ndarray
    std: np.ndarray
    low: np.ndarray
    high: np.ndarray

    def to_model(self, raw: np.ndarray) -> np.ndarray:
        return (raw - self.mean) / self.std

    def region(self, eps: float) -> tuple[np.ndarray, np.ndarray]:
        """The raw ε-box clipped to the valid range, (N, n) each."""
        return np.maximum(self.raw - eps, self.low), np.minimum(self.raw + eps, self.high)


def _prepare(network: Network, dataset: Dataset, settings: AuditSettings) -> _Prepared:
    if len(dataset) == 0:
        raise DataError("the dataset has no samples", where=dataset.source or None)
    dataset.check_fits(network.n_inputs, network.n_outputs)
    try:
        mean, std, low, high = settings.normalization.vectors(network.n_inputs, network.input_shape)
    except DataError as error:
        raise DataError(f"normalisation: {error.message}", where=dataset.source or None) from None
    outside = np.flatnonzero(np.any((dataset.x < low) | (dataset.x > high), axis=1))
    if outside.size:
        raise DataError(f"sample {int(outside[0])} (and {outside.size - 1} more) lies outside the valid range "
                        "[clip_min, clip_max]", where=dataset.source or None)
    return _Prepared(dataset.x, dataset.y, mean, std, low, high)


def _clean(network: Network, data: _Prepared, settings: AuditSettings) -> tuple[np.ndarray, np.ndarray]:
    """Predictions and margins from onnxruntime; refuses a torch translation that disagrees with it."""
    inputs = data.to_model(data.raw).astype(np.float32)
    replayed = network.replay(inputs).astype(np.float64)
    translated = network.forward(inputs).double().cpu().numpy()
    scale = 1.0 + np.abs(replayed).max(axis=0, initial=0.0)  # each output on its own scale
    error = np.abs(replayed - translated).max(axis=0, initial=0.0)
    if not np.all(error <= TRANSLATION_RTOL * scale):
        output = int(np.argmax(np.where(np.isnan(error), np.inf, error / scale)))
        raise ModelError(f"the torch translation disagrees with onnxruntime by {error[output]:.3g} on output "
                         f"{output} of the dataset's samples; bounds computed on it would not be about this model",
                         where=network.source or None)
    return replayed.argmax(axis=1), _margins(replayed, data.labels, settings.top_k)


def _certify(bounded, network: Network, data: _Prepared, eps: float, todo: np.ndarray,
             settings: AuditSettings, budget: Budget, progress: Progress | None) -> tuple[np.ndarray, bool]:
    """Proven min margins for samples `todo` (NaN elsewhere) and whether time ran out."""
    from verikit.engines.lirpa.batch import robust_margin_bounds

    lower, upper = data.region(eps)
    margins = np.full(data.labels.size, np.nan)

    def run(method: str, samples: np.ndarray, size: int) -> bool:
        """Bound `samples` in batches of `size`, keeping the best bound per sample; False if time ran out."""
        for start in range(0, samples.size, size):
            if budget.expired():
                return False
            chunk = samples[start:start + size]
            found = robust_margin_bounds(bounded, data.to_model(lower[chunk]), data.to_model(upper[chunk]),
                                         data.labels[chunk], method=method, budget=budget)
            found = kth_smallest(found, settings.top_k)
            margins[chunk] = np.fmax(margins[chunk], found)  # every bound is sound: keep the best
            if progress:
                progress(f"{method} ε={eps:g}", min(start + size, samples.size), samples.size)
        return True

    # CROWN (or IBP) on every sample in small batches (large conv batches thrash the cache), then
    # α-CROWN on the samples still open in large ones (its cost is mostly per iteration, not per box)
    finished = run("ibp" if settings.method == "ibp" else "crown", todo, settings.batch_size)
    if finished and settings.method == "alpha-crown":
        finished = run("alpha-crown", todo[~(margins[todo] > 0)], ALPHA_BATCH)
    return margins, not finished


def _certify_ball(bounded, data: _Prepared, eps: float, todo: np.ndarray, settings: AuditSettings,
                  notes: list[str]) -> np.ndarray:
    """Samples (N,) proven over their ℓ2 ball ∩ box by rigorous CROWN, among `todo`. In model units the raw
    ball is an ellipsoid inside the ball of radius ε / min(std) (rounded up, plus the centres' rounding)."""
    from verikit.apps.lipschitz_audit import ball_margins

    proven = np.zeros(data.labels.size, dtype=bool)
    if todo.size == 0:
        return proven
    lower, upper = data.region(eps)
    centres = data.to_model(data.raw[todo])
    slack = 4 * np.finfo(np.float64).eps * float(np.abs(centres).max()) * np.sqrt(centres.shape[1])
    radius = float(np.nextafter(eps / float(np.min(data.std)), np.inf) + slack)
    found, reason = ball_margins(bounded, centres, radius, data.to_model(lower[todo]), data.to_model(upper[todo]),
                                 data.labels[todo], settings.top_k)
    if reason is not None and reason not in notes:
        notes.append(f"nothing certified over the L2 ball: {reason}")
    proven[todo] = found > 0
    return proven


def _confirm(network: Network, data: _Prepared, eps: float, index: int, candidate: np.ndarray,
             settings: AuditSettings) -> np.ndarray | None:
    """The replayed counterexample (model units, float32) if the candidate breaks sample `index`."""
    label = int(data.labels[index])
    case = robustness_property(data.raw[index], label, eps, num_classes=network.n_outputs,
                               lower=data.low, upper=data.high, mean=data.mean, std=data.std).cases[0]
    point = data.to_model(candidate)[None, :]
    if settings.top_k > 1:  # the normal form's one disjunct this point claims: its k highest others >= label
        y = network.replay(point.astype(np.float32))[0]
        others = [j for j in np.argsort(-y, kind="stable") if j != label][: settings.top_k]
        case = Case(case.box, (Conjunction(pairwise_rows(label, others, network.n_outputs), np.zeros(len(others))),))
    found = validate_batch(network, case, point, settings.tolerances)
    if found is None:
        return None
    if settings.norm == "2":  # the box contains the ball; the witness must lie in the ball itself
        raw = found.x.astype(np.float64) * data.std + data.mean
        if float(np.linalg.norm(raw - data.raw[index])) > eps:
            return None
    return found.x


def _attack(network: Network, data: _Prepared, eps: float, todo: np.ndarray, settings: AuditSettings,
            budget: Budget, progress: Progress | None) -> tuple[np.ndarray, dict[int, np.ndarray], bool]:
    """Replayed margins (NaN where not attacked) and witnesses for samples `todo`; whether time ran out."""
    margins = np.full(data.labels.size, np.nan)
    witnesses: dict[int, np.ndarray] = {}
    if settings.norm == "inf":
        low, high = data.region(eps)
    else:
        low = np.broadcast_to(data.low, data.raw.shape)
        high = np.broadcast_to(data.high, data.raw.shape)
    chunk_size = max(settings.batch_size, 1)
    task = f"attack ε={eps:g}"
    timed_out = False
    for start in range(0, todo.size, chunk_size):
        if budget.expired():
            return margins, witnesses, True
        chunk = todo[start:start + chunk_size]
        found = pgd_batch(network.module, data.raw[chunk], data.labels[chunk], low[chunk], high[chunk],
                          mean=data.mean, std=data.std, norm=settings.norm, eps=eps, settings=settings.attack,
                          seed=settings.seed + start, budget=budget, top_k=settings.top_k)
        timed_out |= found.timed_out
        replayed = network.replay(data.to_model(found.x).astype(np.float32)).astype(np.float64)
        margins[chunk] = _margins(replayed, data.labels[chunk], settings.top_k)
        for position, index in enumerate(chunk):
            # a candidate torch calls (nearly) broken must be confirmed by onnxruntime inside the region
            if min(found.margin[position], margins[index]) <= 1e-4 * (1 + abs(found.margin[position])):
                witness = _confirm(network, data, eps, int(index), found.x[position], settings)
                if witness is not None:
                    witnesses[int(index)] = witness
        if progress:
            progress(task, min(start + chunk_size, todo.size), todo.size)
    return margins, witnesses, timed_out


def check_invariant(result: AuditResult) -> None:
    """Raise AuditInvariantError unless certified <= empirical robust <= clean, per sample and overall."""
    for outcome in result.per_eps:
        bad = np.flatnonzero(outcome.certified & (outcome.broken | ~outcome.clean_correct))
        if bad.size:
            raise AuditInvariantError(
                f"sample {int(bad[0])} at ε={outcome.eps:g} is certified but also misclassified or broken by "
                "a replayed attack: a soundness bug, please report it")
        cert, emp, clean = (outcome.certified_robust_accuracy, outcome.empirical_robust_accuracy,
                            outcome.clean_accuracy)
        if not cert <= emp <= clean:
            raise AuditInvariantError(f"at ε={outcome.eps:g}: certified {cert} <= empirical {emp} <= clean "
                                      f"{clean} does not hold: a soundness bug, please report it")


def audit(network: Network, dataset: Dataset, settings: AuditSettings,
          progress: Progress | None = None) -> AuditResult:
    """Audit `network` on `dataset` at every ε of `settings`; raises DataError/ModelError on bad input."""
    from verikit.engines.lirpa import engine as bounds
    from verikit.onnx.load import check_translation

    started = time.monotonic()
    if network.n_outputs < 2:  # robustness is about keeping the predicted class among several
        raise ModelError(f"the model has {network.n_outputs} output; an audit needs a classifier with at least 2",
                         where=network.source or None)
    budget = Budget.seconds(settings.timeout) if settings.timeout is not None else Budget(float("inf"))
    data = _prepare(network, dataset, settings)
    if not settings.top_k < network.n_outputs:
        raise ModelError(f"top-{settings.top_k} needs more than {settings.top_k} outputs; the model has "
                         f"{network.n_outputs}", where=network.source or None)
    predictions, clean_margin = _clean(network, data, settings)
    clean_correct = clean_margin > 0
    largest = data.region(max(settings.eps))
    check_translation(network, Box(data.to_model(largest[0][0]), data.to_model(largest[1][0])),
                      seed=settings.seed)
    if progress:
        progress("clean", len(dataset), len(dataset))
    notes: list[str] = []
    try:
        bounded = bounds.prepare(network, device=settings.device)
    except EngineLimitation as error:  # BoundsError, or no auto_LiRPA: certify nothing, say why; attacks run
        bounded = None
        notes.append(f"bounds engine cannot handle this network: {error}")
    radii = None
    if settings.norm == "2" and settings.lipschitz != "none":
        from verikit.apps.lipschitz_audit import lipschitz_radii

        mark = time.monotonic()
        radii, info, note = lipschitz_radii(network.onnx_bytes, data.to_model(data.raw), data.labels,
                                            np.broadcast_to(data.std, (network.n_inputs,)), settings.lipschitz,
                                            None if settings.timeout is None else budget.remaining() * 0.5)
        if note:
            notes.append(note)
        else:
            notes.append(f"Lipschitz certificates: L2 <= {info['lipschitz']:.6g} by {info['method_used']} "
                         f"(naive {info['naive']:.6g}) in {time.monotonic() - mark:.1f} s; a sample is certified "
                         "at ε when margin / (√2·L/min std) > ε")
    per_eps = []
    everyone = np.arange(len(dataset))
    for eps in settings.eps:
        seconds: dict[str, float] = {}
        mark = time.monotonic()
        todo = everyone if settings.check_all else np.flatnonzero(clean_correct)
        certified_margin, certify_late = np.full(len(dataset), np.nan), False
        if bounded is not None:
            try:
                certified_margin, certify_late = _certify(bounded, network, data, eps, todo, settings, budget,
                                                          progress)
            except bounds.BoundsError as error:  # an operator, or a translation differing on the boxes
                notes.append(f"ε={eps:g}: nothing certified by bound propagation: {error}")
        certified = np.nan_to_num(certified_margin, nan=-np.inf) > 0
        by_ball = None
        if settings.norm == "2" and bounded is not None and not budget.expired():
            by_ball = _certify_ball(bounded, data, eps, todo[~certified[todo]], settings, notes) | certified
            certified = certified | by_ball
        by_lipschitz = None if radii is None else clean_correct & (radii > eps)
        if by_lipschitz is not None:
            certified = certified | by_lipschitz
        seconds["certify"] = time.monotonic() - mark
        mark = time.monotonic()
        todo = everyone if settings.check_all else np.flatnonzero(clean_correct & ~certified)
        attack_margin, witnesses, attack_late = _attack(network, data, eps, todo, settings, budget, progress)
        broken = np.zeros(len(dataset), dtype=bool)
        broken[list(witnesses)] = True
        seconds["attack"] = time.monotonic() - mark
        per_eps.append(EpsResult(eps, clean_correct, certified, broken, certified_margin, attack_margin,
                                 witnesses, seconds, certify_late or attack_late, by_lipschitz, by_ball))
    result = AuditResult(network.source, network.sha256, dataset.source, dataset.sha256, data.labels,
                         predictions, clean_margin, tuple(per_eps), settings, time.monotonic() - started,
                         tuple(notes))
    check_invariant(result)
    return result


def audit_files(model_path: str, data_path: str, settings: AuditSettings, *, labels_path: str | None = None,
                limit: int | None = None, progress: Progress | None = None) -> AuditResult:
    """Load an ONNX model and a dataset (first `limit` samples) and audit."""
    from verikit.apps.data import load_dataset
    from verikit.onnx.load import load_network

    network = load_network(model_path)
    dataset = load_dataset(data_path, labels_path).head(limit)
    return audit(network, dataset, settings, progress)
