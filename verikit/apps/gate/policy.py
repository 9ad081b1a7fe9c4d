"""Read and validate a gate policy (verikit.toml, schema in docs/policy.md).

Every problem raises PolicyError naming the file, the key and what is wrong, e.g.
`verikit.toml: property[2].eps: must be a positive number`. Tables in arrays count from 1. Relative
paths are relative to the policy file's folder; every file named must exist.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from verikit.apps.data import Normalization
from verikit.core import limits
from verikit.core.errors import PolicyError
from verikit.apps.gate.validate import Table, resolve
from verikit.portfolio import ENGINES, METHODS

VERSION = 1
UNKNOWN_POLICIES = ("fail", "warn", "ignore")


@dataclass(frozen=True)
class ModelEntry:
    name: str
    path: Path


@dataclass(frozen=True)
class DatasetEntry:
    name: str
    path: Path
    labels: Path | None
    limit: int | None
    normalization: Normalization


@dataclass(frozen=True)
class Robustness:
    """Dataset robustness: certified robust accuracy at each ε must reach `min_certified[i]`."""

    name: str
    models: tuple[str, ...]
    dataset: str
    eps: tuple[float, ...]
    min_certified: tuple[float, ...]
    min_clean: float | None
    norm: str
    method: str
    timeout: float | None
    restarts: int
    steps: int
    kind: str = "robustness"
    top_k: int = 1  # robust = the label stays among the top_k highest outputs (verikit.apps.audit)


@dataclass(frozen=True)
class SpecFiles:
    """Spec files (VNN-LIB, or verikit-robustness/1 JSON) that must be verified."""

    name: str
    models: tuple[str, ...]
    specs: tuple[Path, ...]
    timeout: float
    engines: tuple[str, ...]
    methods: tuple[str, ...]
    settings: tuple[str, ...] = ()  # "GROUP.FIELD=VALUE", as `verikit verify --set`
    kind: str = "vnnlib"


@dataclass(frozen=True)
class OutputRange:
    """For every input in [input_lower, input_upper] (model units), min < y[k] < max for k in outputs."""

    name: str
    models: tuple[str, ...]
    input_lower: tuple[float, ...]
    input_upper: tuple[float, ...]
    outputs: tuple[int, ...] | None
    min: float | None
    max: float | None
    timeout: float
    engines: tuple[str, ...]
    methods: tuple[str, ...]
    settings: tuple[str, ...] = ()  # "GROUP.FIELD=VALUE", as `verikit verify --set`
    kind: str = "output-range"


@dataclass(frozen=True)
class Manipulation:
    """Semantic robustness on a dataset: certified accuracy under each manipulation (e.g. "rotation:15")
    must reach `min_certified[i]`; each sample decided by `verify` within `sample_timeout` seconds."""

    name: str
    models: tuple[str, ...]
    dataset: str
    perturbations: tuple[str, ...]
    min_certified: tuple[float, ...]
    min_clean: float | None
    sample_timeout: float
    timeout: float | None
    image_shape: tuple[int, ...] | None
    kind: str = "perturbation"


@dataclass(frozen=True)
class LipschitzLimit:
    """The model's proven Lipschitz constant in `norm` (of the margin y_i - y_j with `output_pair`) by
    `method` must be at most `max` (docs/lipschitz.md)."""

    name: str
    models: tuple[str, ...]
    max: float
    norm: str
    method: str
    output_pair: tuple[int, int] | None
    timeout: float
    kind: str = "lipschitz"


PropertyEntry = Robustness | SpecFiles | OutputRange | Manipulation | LipschitzLimit


@dataclass(frozen=True)
class Thresholds:
    unknown: str = "fail"
    max_falsified: int = 0


@dataclass(frozen=True)
class Baseline:
    path: Path
    required: bool = False
    max_certified_drop: float = 0.0
    fail_on_regression: bool = True


@dataclass(frozen=True)
class Policy:
    path: Path
    sha256: str
    seed: int
    models: tuple[ModelEntry, ...]
    datasets: tuple[DatasetEntry, ...]
    properties: tuple[PropertyEntry, ...]
    thresholds: Thresholds
    baseline: Baseline | None
    out: Path | None

    def model(self, name: str) -> ModelEntry:
        return next(m for m in self.models if m.name == name)

    def dataset(self, name: str) -> DatasetEntry:
        return next(d for d in self.datasets if d.name == name)


def _array(data: dict, key: str, source: str) -> list:
    value = data.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
        raise PolicyError(f"{key}: must be an array of tables ([[{key}]])", where=source)
    return value


def _names(table: Table, key: str, known: set[str], default: tuple[str, ...], what: str) -> tuple[str, ...]:
    names = table.strings(key, default=list(default))
    for name in names:
        if name not in known:
            table.fail(key, f"no {what} named {name!r}; defined: {', '.join(sorted(known)) or 'none'}")
    return names


def _unique_name(table: Table, default: str, seen: set[str]) -> str:
    name = table.string("name", default)
    if name in seen:
        table.fail("name", f"{name!r} is used twice")
    if "/" in name:
        table.fail("name", "must not contain '/'")
    seen.add(name)
    return name


def _model(table: Table, index: int, seen: set[str]) -> ModelEntry:
    return ModelEntry(_unique_name(table, f"model{index}", seen), table.file("path"))


def _dataset(table: Table, index: int, seen: set[str]) -> DatasetEntry:
    name = _unique_name(table, f"dataset{index}", seen)
    normalization = Normalization(
        mean=_vector(table, "mean", 0.0), std=_vector(table, "std", 1.0, positive=True),
        clip_min=_vector(table, "clip_min", None), clip_max=_vector(table, "clip_max", None),
    )
    labels = table.file("labels") if table.has("labels") else None
    return DatasetEntry(name, table.file("path"), labels, table.integer("limit", minimum=1), normalization)


def _vector(table: Table, name: str, default, positive: bool = False):
    values = table.numbers(name, default, positive=positive)
    if values is None or isinstance(values, float):
        return values
    return values[0] if len(values) == 1 and not isinstance(table.data.get(name), list) else values


def _common(table: Table, defaults: Table) -> dict:
    return {
        "timeout": table.number("timeout", defaults.number("timeout", 60.0, positive=True), positive=True),
        "engines": table.strings("engines", defaults.strings("engines", list(ENGINES), ENGINES), ENGINES),
        "methods": table.strings("methods", defaults.strings("methods", list(METHODS), METHODS), METHODS),
        "settings": _settings(defaults) + _settings(table),
    }


def _settings(table: Table) -> tuple[str, ...]:
    """A `settings = { "bab.batch_size" = 512, ... }` table as GROUP.FIELD=VALUE strings, checked now."""
    from verikit.core.settings import SettingError
    from verikit.portfolio.options import Options

    raw = table.data.get("settings", {})
    if not isinstance(raw, dict):
        table.fail("settings", 'must be a table, e.g. settings = { "bab.batch_size" = 512 }')
    assignments = tuple(f"{name}={str(value).lower() if isinstance(value, bool) else value}"
                        for name, value in raw.items())
    try:
        Options().with_settings(assignments)
    except SettingError as error:
        table.fail("settings", error.message)
    return assignments


def _robustness(table: Table, name: str, models: tuple[str, ...], datasets: set[str],
                defaults: Table) -> Robustness:
    dataset = table.string("dataset") if table.has("dataset") else table.required("dataset")
    if dataset not in datasets:
        table.fail("dataset", f"no dataset named {dataset!r}; defined: {', '.join(sorted(datasets)) or 'none'}")
    table.required("eps")
    eps = table.numbers("eps", positive=True)
    table.required("min_certified_accuracy")
    minimum = table.numbers("min_certified_accuracy", minimum=0.0, maximum=1.0)
    if len(minimum) not in (1, len(eps)):
        table.fail("min_certified_accuracy", f"give one number or one per eps ({len(eps)})")
    method = table.string("method", defaults.string("method", "crown", METHODS), METHODS)
    return Robustness(
        name, models, dataset, eps, minimum * len(eps) if len(minimum) == 1 else minimum,
        table.number("min_clean_accuracy", minimum=0.0, maximum=1.0), table.string("norm", "inf", ("inf", "2")),
        method, table.number("timeout", defaults.number("timeout", None, positive=True), positive=True),
        table.integer("restarts", defaults.integer("restarts", 8, minimum=1), minimum=1),
        table.integer("steps", defaults.integer("steps", 40, minimum=1), minimum=1),
        top_k=table.integer("top_k", 1, minimum=1),
    )


def _spec_files(table: Table, name: str, models: tuple[str, ...], defaults: Table) -> SpecFiles:
    if table.has("spec") == table.has("specs"):
        table.fail("spec", "give exactly one of 'spec' (a path) and 'specs' (an array of paths)")
    raw = [table.data["spec"]] if table.has("spec") else table.data["specs"]
    key = "spec" if table.has("spec") else "specs"
    if not isinstance(raw, list) or not raw:
        table.fail(key, "must be a non-empty array of file paths")
    specs = tuple(table.file(key if len(raw) == 1 else f"{key}[{i + 1}]", value) for i, value in enumerate(raw))
    return SpecFiles(name, models, specs, **_common(table, defaults))


def _output_range(table: Table, name: str, models: tuple[str, ...], defaults: Table) -> OutputRange:
    table.required("input_lower")
    table.required("input_upper")
    lower, upper = table.numbers("input_lower"), table.numbers("input_upper")
    low, high = table.number("min"), table.number("max")
    if low is None and high is None:
        table.fail("max", "give 'min', 'max' or both")
    if low is not None and high is not None and not low < high:
        table.fail("max", "must be greater than 'min'")
    outputs = table.data.get("outputs")
    if outputs is not None:
        if (not isinstance(outputs, list) or not outputs
                or not all(isinstance(o, int) and not isinstance(o, bool) and o >= 0 for o in outputs)):
            table.fail("outputs", "must be a non-empty array of output indices (integers >= 0)")
        outputs = tuple(outputs)
    return OutputRange(name, models, lower, upper, outputs, low, high, **_common(table, defaults))


def _manipulation(table: Table, name: str, models: tuple[str, ...], datasets: set[str],
                  defaults: Table) -> Manipulation:
    from verikit.apps.perturbation_audit import parse_perturbations
    from verikit.core.errors import UsageError

    dataset = table.string("dataset") if table.has("dataset") else table.required("dataset")
    if dataset not in datasets:
        table.fail("dataset", f"no dataset named {dataset!r}; defined: {', '.join(sorted(datasets)) or 'none'}")
    table.required("manipulation")
    texts = table.strings("manipulation")
    try:
        perturbations = tuple(p.label for p in parse_perturbations(texts))
    except UsageError as error:
        table.fail("manipulation", error.message.replace("--perturbation ", ""))
    table.required("min_certified_accuracy")
    minimum = table.numbers("min_certified_accuracy", minimum=0.0, maximum=1.0)
    if len(minimum) not in (1, len(perturbations)):
        table.fail("min_certified_accuracy", f"give one number or one per magnitude ({len(perturbations)})")
    shape = table.data.get("image_shape")
    if shape is not None and not (isinstance(shape, list) and len(shape) in (2, 3) and all(
            isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in shape)):
        table.fail("image_shape", "must be [H, W] or [C, H, W], positive integers")
    return Manipulation(name, models, dataset, perturbations,
                        minimum * len(perturbations) if len(minimum) == 1 else minimum,
                        table.number("min_clean_accuracy", minimum=0.0, maximum=1.0),
                        table.number("sample_timeout", 10.0, positive=True),
                        table.number("timeout", defaults.number("timeout", None, positive=True), positive=True),
                        tuple(shape) if shape is not None else None)


def _lipschitz(table: Table, name: str, models: tuple[str, ...], defaults: Table) -> LipschitzLimit:
    from verikit.lipschitz.bound import METHODS as LIPSCHITZ_METHODS

    table.required("max")
    pair = table.data.get("output_pair")
    if pair is not None:
        if (not isinstance(pair, list) or len(pair) != 2 or pair[0] == pair[1]
                or not all(isinstance(o, int) and not isinstance(o, bool) and o >= 0 for o in pair)):
            table.fail("output_pair", "must be two different output indices, e.g. [0, 1]")
        pair = (pair[0], pair[1])
    return LipschitzLimit(name, models, table.number("max", positive=True), table.string("norm", "2", ("2", "inf")),
                          table.string("method", "lipsdp-neuron", LIPSCHITZ_METHODS), pair,
                          table.number("timeout", defaults.number("timeout", 60.0, positive=True), positive=True))


PROPERTY_KEYS = {
    "robustness": ("name", "kind", "models", "dataset", "eps", "norm", "method", "min_certified_accuracy",
                   "min_clean_accuracy", "timeout", "restarts", "steps", "top_k"),
    "vnnlib": ("name", "kind", "models", "spec", "specs", "timeout", "engines", "methods", "settings"),
    "output-range": ("name", "kind", "models", "input_lower", "input_upper", "outputs", "min", "max", "timeout",
                     "engines", "methods", "settings"),
    "perturbation": ("name", "kind", "models", "dataset", "manipulation", "min_certified_accuracy",
                     "min_clean_accuracy", "sample_timeout", "timeout", "image_shape"),
    "lipschitz": ("name", "kind", "models", "max", "norm", "method", "output_pair", "timeout"),
}


def _property(data: dict, index: int, source: str, base: Path, models: tuple[str, ...], datasets: set[str],
              defaults: Table, seen: set[str]) -> PropertyEntry:
    key = f"property[{index}]"
    kind = data.get("kind")
    if kind not in PROPERTY_KEYS:
        raise PolicyError(f"{key}.kind: must be one of {', '.join(repr(k) for k in PROPERTY_KEYS)}"
                          f"{'' if kind is None else f', got {kind!r}'}", where=source)
    table = Table(data, key, source, base, PROPERTY_KEYS[kind])
    name = _unique_name(table, f"{kind}-{index}", seen)
    targets = _names(table, "models", set(models), models, "model")
    if kind == "robustness":
        return _robustness(table, name, targets, datasets, defaults)
    if kind == "vnnlib":
        return _spec_files(table, name, targets, defaults)
    if kind == "perturbation":
        return _manipulation(table, name, targets, datasets, defaults)
    if kind == "lipschitz":
        return _lipschitz(table, name, targets, defaults)
    return _output_range(table, name, targets, defaults)


TOP_KEYS = ("version", "seed", "out", "baseline", "thresholds", "defaults", "model", "dataset", "property")


def parse_policy(text: str, path: str | Path = "verikit.toml") -> Policy:
    """Parse and validate policy text; `path` names it in messages and anchors relative paths."""
    path = Path(path)
    source, base = str(path), path.parent
    data = limits.load_toml(text, "policy", PolicyError, source)
    top = Table(data, "", source, base, TOP_KEYS)
    top.required("version")
    if top.integer("version") != VERSION:
        top.fail("version", f"this verikit reads policy version {VERSION}, got {data['version']!r}")
    seed = top.integer("seed", 0, minimum=0)
    thresholds_table = Table(data.get("thresholds", {}), "thresholds", source, base, ("unknown", "max_falsified"))
    thresholds = Thresholds(thresholds_table.string("unknown", "fail", UNKNOWN_POLICIES),
                            thresholds_table.integer("max_falsified", 0, minimum=0))
    defaults = Table(data.get("defaults", {}), "defaults", source, base,
                      ("timeout", "method", "methods", "engines", "restarts", "steps", "settings"))
    _settings(defaults)  # checked even when no property uses them
    baseline = None
    if "baseline" in data:
        table = Table(data["baseline"], "baseline", source, base,
                       ("path", "required", "max_certified_drop", "fail_on_regression"))
        raw = table.string("path") if table.has("path") else table.required("path")
        baseline = Baseline(resolve(base, raw), table.boolean("required", False),
                            table.number("max_certified_drop", 0.0, minimum=0.0, maximum=1.0),
                            table.boolean("fail_on_regression", True))
        if baseline.required and not baseline.path.is_file():
            table.fail("path", f"file not found: {baseline.path} (required = true)")
    out = top.string("out")
    names: set[str] = set()
    models = tuple(_model(Table(t, f"model[{i}]", source, base, ("name", "path")), i, names)
                   for i, t in enumerate(_array(data, "model", source), start=1))
    if not models:
        raise PolicyError("model: define at least one [[model]] with a path", where=source)
    names = set()
    datasets = tuple(_dataset(Table(t, f"dataset[{i}]", source, base,
                                     ("name", "path", "labels", "limit", "mean", "std", "clip_min", "clip_max")),
                              i, names)
                     for i, t in enumerate(_array(data, "dataset", source), start=1))
    names = set()
    model_names = tuple(m.name for m in models)
    properties = tuple(_property(t, i, source, base, model_names, {d.name for d in datasets}, defaults, names)
                       for i, t in enumerate(_array(data, "property", source), start=1))
    if not properties:
        raise PolicyError("property: define at least one [[property]] to check", where=source)
    return Policy(path, hashlib.sha256(text.encode()).hexdigest(), seed, models, datasets, properties, thresholds,
                  baseline, resolve(base, out) if out else None)


def load_policy(path: str | Path = "verikit.toml") -> Policy:
    """Read and validate the policy file at `path`; PolicyError when missing or invalid."""
    path = Path(path)
    if not path.exists() and not path.is_symlink():
        raise PolicyError("policy file not found (give its path, or run where verikit.toml is)", where=str(path))
    return parse_policy(limits.read_text(path, "policy", PolicyError, encoding="utf-8"), path)
