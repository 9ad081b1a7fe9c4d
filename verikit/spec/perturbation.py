"""Perturbation specs: "every manipulated image in the family keeps the label" (DLV-style manipulations).

`perturbation_property` builds the property in normal form, one case per finite-family member (an ordinary
box: the manipulated image, or a box where a fill is a range) and one per interval of a continuous
manipulation (a `Manipulated` region over theta; verikit/spec/manipulations.py). Every case has the
robustness disjuncts `y[label] - y[j] <= 0`, j != label. An optional L-inf `epsilon` (raw units) is applied
on top of every manipulated image, within the clip range.

Spec file format (JSON, `verikit-perturbation/1`; the `#` comments are explanations, not JSON)::

    {
      "format": "verikit-perturbation/1",  # required
      "input": [[0.0, 0.5], [0.25, 1.0]],  # the image x in raw units (nested lists), or instead
      "input_file": "x.npy",               # a .npy file, relative to the spec file
      "input_shape": [1, 28, 28],          # optional; x is reshaped to it; the last two axes are H, W
      "label": 3,                          # the class every manipulated image must keep
      "num_classes": 10,                   # number of network outputs
      "clip": [0.0, 1.0],                  # required: the valid raw range (manipulations clip to it)
      "mean": 0.1307, "std": 0.3081,       # optional normalisation, as in verikit-robustness/1
      "epsilon": 0.0,                      # optional L-inf radius (raw units) on top of each image
      "property": "top-k", "k": 3,         # optional: a top-k output condition instead of the label's, with
                                           #   the keys of verikit-robustness/1 (see verikit.spec.topk)
      "manipulations": [                   # one or more; each decided, every case must hold
        {"kind": "brightness", "range": [-0.1, 0.1]},             # x + b
        {"kind": "contrast", "range": [0.8, 1.2], "centre": 0.5}, # c (x - m) + m; m defaults to mean(x)
        {"kind": "brightness+contrast", "brightness": [-0.05, 0.05], "contrast": [0.9, 1.1]},
        {"kind": "occlusion", "size": 3, "fill": 0.0, "stride": 1},   # fill: a value or a range [a, b]
        {"kind": "translation", "shift": 2, "fill": 0.0},              # every |dy|, |dx| <= 2 but (0, 0)
        {"kind": "rotation", "range": [-5, 5], "splits": 10, "fill": 0.0, "scale": [0.95, 1.05]},
        {"kind": "scratch", "length": 8, "width": 1, "value": 1.0, "angles": [0, 45, 90, 135], "stride": 4}
      ],
      "description": "free text"           # optional; keys starting with "_" are ignored too
    }

Brightness and contrast (alone or joint) clip to `clip` and are decided over theta exactly (an ONNX prefix;
`splits`, default 1, cuts each parameter's range into that many pieces). Rotation (degrees, counter-
clockwise, bilinear, optionally scaled) is decided on a sound per-pixel enclosure of each of its `splits`
angle intervals (default: one per degree; `scale_splits` likewise for the scale, default 1). `epsilon` with
per-pixel different `std` is refused. The sha256 covers the JSON bytes followed by the input file's bytes.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
from pathlib import Path

import numpy as np

from verikit.core import limits
from verikit.core.errors import SpecError
from verikit.core.property import Box, Case, Manipulated, Property
from verikit.spec import manipulations as m
from verikit.spec.robustness import (_channel_values, _is_int, _is_number, _load_input, output_condition,
                                     ranking_from_dict)
from verikit.spec.vnnlib import read_spec_text

FORMAT = "verikit-perturbation/1"
_KNOWN_KEYS = frozenset({"format", "input", "input_file", "input_shape", "label", "num_classes", "clip", "mean",
                         "std", "epsilon", "manipulations", "description", "property", "k", "classes", "targets"})
KINDS = ("brightness", "contrast", "brightness+contrast", "occlusion", "translation", "rotation", "scratch")
_KIND_KEYS = {
    "brightness": {"range", "splits"}, "contrast": {"range", "centre", "splits"},
    "brightness+contrast": {"brightness", "contrast", "centre", "splits"},
    "occlusion": {"size", "fill", "stride"}, "translation": {"shift", "fill"},
    "rotation": {"range", "splits", "fill", "scale", "scale_splits"},
    "scratch": {"length", "width", "value", "angles", "stride"},
}
MAX_CASES = 10_000


def read_perturbation_spec(path: str | Path) -> Property:
    """Read a `verikit-perturbation/1` JSON spec file (see the module docstring)."""
    path = Path(path)
    text, _ = read_spec_text(path)
    spec = limits.load_json(text, "spec", SpecError, str(path))
    return perturbation_from_dict(spec, base_dir=path.parent, source=str(path), spec_bytes=text.encode("utf-8"))


def perturbation_from_dict(spec: dict, *, base_dir: str | Path = ".", source: str = "<dict>",
                           spec_bytes: bytes | None = None) -> Property:
    """The property of an already-decoded `verikit-perturbation/1` spec; `input_file` is relative to base_dir."""
    where = source or None

    def fail(message: str):
        raise SpecError(message, where=where)

    if not isinstance(spec, dict):
        fail("a perturbation spec must be a JSON object")
    for key in spec:
        if key not in _KNOWN_KEYS and not str(key).startswith("_"):
            fail(f"unknown key {str(key)[:60]!r}; known keys: {', '.join(sorted(_KNOWN_KEYS))}")
    if spec.get("format") != FORMAT:
        fail(f"key 'format': expected \"{FORMAT}\", got {spec.get('format')!r}")
    ranking = ranking_from_dict(spec, where)
    needs_label = ranking is None or ranking["property"] == "top-k"
    for key in ("label", "num_classes", "clip", "manipulations") if needs_label else ("num_classes", "clip",
                                                                                     "manipulations"):
        if key not in spec:
            fail(f"key '{key}' is missing")
    digest = hashlib.sha256(spec_bytes if spec_bytes is not None else json.dumps(spec, sort_keys=True).encode())
    x = _load_input(spec, Path(base_dir), where, digest)
    if "input_shape" in spec:
        shape = spec["input_shape"]
        if not (isinstance(shape, list) and len(shape) <= 32 and all(_is_int(n) and n > 0 for n in shape)):
            fail("key 'input_shape': expected a list of positive integers")
        if math.prod(shape) != x.size:
            fail(f"key 'input_shape': {shape} holds {math.prod(shape)} values but the input has {x.size}")
        x = x.reshape(shape)
    label, num_classes = spec.get("label"), spec["num_classes"]
    most = limits.current().max_classes
    if not _is_int(num_classes) or not 2 <= num_classes <= most:
        fail(f"key 'num_classes': expected an integer in 2..{most}, got {num_classes!r}")
    if (label is not None or needs_label) and (not _is_int(label) or not 0 <= label < num_classes):
        fail(f"key 'label': expected an integer in 0..{num_classes - 1}, got {label!r}")
    clip = spec["clip"]
    if not (isinstance(clip, list) and len(clip) == 2 and all(_is_number(v) for v in clip)
            and math.isfinite(clip[0]) and math.isfinite(clip[1]) and clip[0] <= clip[1]):
        fail(f"key 'clip': expected [lo, hi] with finite lo <= hi, got {clip!r}")
    epsilon = spec.get("epsilon", 0.0)
    if not _is_number(epsilon) or not math.isfinite(epsilon) or epsilon < 0:
        fail(f"key 'epsilon': expected a finite number >= 0, got {epsilon!r}")
    mean = _channel_values(spec, "mean", x.shape, where)
    std = _channel_values(spec, "std", x.shape, where)
    manipulations = spec["manipulations"]
    if not isinstance(manipulations, list) or not manipulations:
        fail("key 'manipulations': expected a non-empty list of objects")
    return perturbation_property(x, None if label is None else int(label), manipulations,
                                 num_classes=int(num_classes), clip=tuple(clip), mean=mean, std=std,
                                 epsilon=float(epsilon), source=source, sha256=digest.hexdigest(), ranking=ranking)


def perturbation_property(x, label: int | None, manipulations: list[dict], *, num_classes: int, clip=(0.0, 1.0),
                          mean=None, std=None, epsilon: float = 0.0, source: str = "",
                          sha256: str = "", ranking: dict | None = None) -> Property:
    """The property "every image the manipulations make from x keeps `label`" (or, with `ranking`, keeps
    the top-k question of verikit.spec.topk); x is raw, any shape whose last two axes are H, W for spatial
    manipulations. Raises SpecError naming the bad field."""
    where = source or None
    x = np.asarray(x, dtype=np.float64)
    lo, hi = float(clip[0]), float(clip[1])
    if ((x < lo) | (x > hi)).any():
        i = int(np.flatnonzero(((x < lo) | (x > hi)).reshape(-1))[0])
        raise SpecError(f"input element {i} = {x.reshape(-1)[i]!r} lies outside 'clip' [{lo}, {hi}]; is x in "
                        "raw units, before normalisation?", where=where)
    mean_a = np.broadcast_to(np.asarray(0.0 if mean is None else mean, dtype=np.float64), x.shape)
    std_a = np.broadcast_to(np.asarray(1.0 if std is None else std, dtype=np.float64), x.shape)
    if not (np.isfinite(std_a).all() and (std_a > 0).all() and np.isfinite(mean_a).all()):
        raise SpecError("key 'std': must be finite and > 0 ('mean' finite)", where=where)
    if epsilon > 0 and np.ptp(std_a) > 0:
        raise SpecError("key 'epsilon': an L-inf radius on top needs one 'std' for every pixel", where=where)
    image = m.Image(_as_chw(x), lo, hi, mean_a.reshape(_as_chw(x).shape), std_a.reshape(_as_chw(x).shape), x.shape)
    valid = image.box(np.full(image.raw.shape, lo), np.full(image.raw.shape, hi))
    eps_model = float(epsilon / std_a.reshape(-1)[0]) if epsilon > 0 else 0.0
    disjuncts, _, ranked = output_condition(label, num_classes, ranking, where=where)
    cases, described, summary = [], [], []
    for number, entry in enumerate(manipulations):
        field = f"manipulations[{number}]"
        if not isinstance(entry, dict) or not isinstance(entry.get("kind"), str):
            raise SpecError(f"key '{field}': expected an object with a string 'kind' (one of {', '.join(KINDS)})",
                            where=where)
        kind = entry["kind"]
        if kind not in _KIND_KEYS:
            raise SpecError(f"key '{field}.kind': {kind[:40]!r} is not one of {', '.join(KINDS)}", where=where)
        for key in entry:
            if key != "kind" and key not in _KIND_KEYS[kind] and not str(key).startswith("_"):
                raise SpecError(f"key '{field}.{str(key)[:40]}' is not known for {kind}; known: "
                                f"{', '.join(sorted(_KIND_KEYS[kind]))}", where=where)
        reader = _Entry(entry, field, where)
        if kind in ("rotation", "brightness", "contrast", "brightness+contrast"):
            regions = _continuous(kind, reader, image)
            for region_theta, transform in regions:
                region = Manipulated(transform, region_theta, eps=eps_model)
                cases.append(Case(region.enclosing_box(valid.lower, valid.upper), disjuncts, region=region))
                described.append({"manipulation": kind, "params_lower": region_theta.lower.tolist(),
                                  "params_upper": region_theta.upper.tolist()})
        else:
            members = _finite(kind, reader, image)
            for member in members:
                low = np.clip(member.lower - epsilon, lo, hi)
                high = np.clip(member.upper + epsilon, lo, hi)
                cases.append(Case(image.box(low, high).holding_float32()[0], disjuncts))
                described.append(member.described)
        summary.append({k: v for k, v in entry.items() if not str(k).startswith("_")})
        if len(cases) > MAX_CASES:
            raise SpecError(f"key '{field}': the spec makes more than {MAX_CASES} cases; raise 'stride' or lower "
                            "'splits'", where=where)
    if not cases:
        raise SpecError("key 'manipulations': no manipulation makes any image (is the patch larger than the "
                        "image?)", where=where)
    details = {"label": label, "clip": [lo, hi], "epsilon": epsilon, "manipulations": summary,
               "cases": described, **({"output": ranked} if ranked else {})}
    notes = (f"{len(cases)} case(s) from {len(manipulations)} manipulation(s)",)
    return Property(tuple(cases), x.size, num_classes, source=source, sha256=sha256, notes=notes,
                    kind="perturbation", details=details)


def _as_chw(x: np.ndarray) -> np.ndarray:
    """x as (C, H, W): the last two axes are the image, everything before them channels."""
    if x.ndim < 2:
        return x.reshape(1, 1, -1)
    return x.reshape(-1, x.shape[-2], x.shape[-1])


class _Entry:
    """Typed access to one manipulation object, every error naming `manipulations[i].key`."""

    def __init__(self, entry: dict, field: str, where: str | None):
        self.entry, self.field, self.where = entry, field, where

    def fail(self, key: str, message: str):
        raise SpecError(f"key '{self.field}.{key}': {message}", where=self.where)

    def interval(self, key: str, default=None, positive: bool = False) -> tuple[float, float]:
        value = self.entry.get(key, default)
        if value is None:
            self.fail(key, "is missing (expected [low, high])")
        ok = (isinstance(value, list) and len(value) == 2 and all(_is_number(v) and math.isfinite(v) for v in value)
              and value[0] <= value[1] and (not positive or value[0] > 0))
        if not ok:
            self.fail(key, f"expected [low, high] with finite low <= high{' and low > 0' if positive else ''}, "
                           f"got {value!r}")
        return float(value[0]), float(value[1])

    def integer(self, key: str, default: int | None, least: int = 1, most: int = 100_000) -> int:
        value = self.entry.get(key, default)
        if not _is_int(value) or not least <= value <= most:
            self.fail(key, f"expected an integer in {least}..{most}, got {value!r}")
        return int(value)

    def number(self, key: str, default: float | None, image: m.Image | None = None) -> float:
        value = self.entry.get(key, default)
        if not _is_number(value) or not math.isfinite(value):
            self.fail(key, f"expected a finite number, got {value!r}")
        if image is not None and not image.lo <= value <= image.hi:
            self.fail(key, f"{value!r} lies outside the clip range [{image.lo}, {image.hi}]")
        return float(value)

    def fill(self, key: str, image: m.Image):
        value = self.entry.get(key, 0.0)
        if isinstance(value, list):
            low, high = self.interval(key)
            if not image.lo <= low <= high <= image.hi:
                self.fail(key, f"the range {value!r} leaves the clip range [{image.lo}, {image.hi}]")
            return [low, high]
        return self.number(key, 0.0, image)


def _pieces(low: float, high: float, count: int) -> list[tuple[float, float]]:
    edges = np.linspace(low, high, count + 1)
    edges[0], edges[-1] = low, high
    return [(float(a), float(b)) for a, b in zip(edges[:-1], edges[1:])]


def _continuous(kind: str, entry: _Entry, image: m.Image) -> list[tuple[Box, object]]:
    """(theta box, transform) per piece of a continuous manipulation's range."""
    if kind == "rotation":
        if image.raw.shape[1] < 2:
            entry.fail("kind", "rotation needs an image: give 'input_shape', e.g. [1, 28, 28]")
        angles = entry.interval("range")
        splits = entry.integer("splits", max(1, math.ceil(angles[1] - angles[0])), most=MAX_CASES)
        scaled = "scale" in entry.entry
        axes = [_pieces(*angles, splits)]
        if scaled:
            axes.append(_pieces(*entry.interval("scale", positive=True), entry.integer("scale_splits", 1)))
        transform = m.Rotation(image, fill=entry.number("fill", 0.0, image), scaling=scaled)
    else:
        brightness, contrast = kind != "contrast", kind != "brightness"
        centre = entry.number("centre", float(image.raw.mean()))
        splits = entry.integer("splits", 1, most=MAX_CASES)
        axes = []
        if brightness:
            axes.append(_pieces(*entry.interval("range" if kind == "brightness" else "brightness"), splits))
        if contrast:
            axes.append(_pieces(*entry.interval("range" if kind == "contrast" else "contrast"), splits))
        transform = m.PixelAffine(image, brightness=brightness, contrast=contrast, centre=centre)
    if math.prod(len(a) for a in axes) > MAX_CASES:
        entry.fail("splits", f"makes more than {MAX_CASES} cases")
    return [(Box([p[0] for p in piece], [p[1] for p in piece]), transform) for piece in itertools.product(*axes)]


def _finite(kind: str, entry: _Entry, image: m.Image) -> list[m.Member]:
    _, height, width = image.raw.shape
    if height < 2:
        entry.fail("kind", f"{kind} needs an image: give 'input_shape', e.g. [1, 28, 28]")
    if kind == "occlusion":
        size = entry.integer("size", None, most=max(height, width))
        return m.occlusion_members(image, size, fill=entry.fill("fill", image), stride=entry.integer("stride", 1))
    if kind == "translation":
        shift = entry.integer("shift", None, most=max(height, width))
        return m.translation_members(image, shift, fill=entry.number("fill", 0.0, image))
    angles = entry.entry.get("angles", [0, 45, 90, 135])
    if not (isinstance(angles, list) and angles and all(_is_number(a) and math.isfinite(a) for a in angles)):
        entry.fail("angles", f"expected a non-empty list of degrees, got {angles!r}")
    length = entry.number("length", None)
    if length <= 0:
        entry.fail("length", "must be > 0")
    width_ = entry.number("width", 1.0)
    if width_ <= 0:
        entry.fail("width", "must be > 0")
    return m.scratch_members(image, length, width_, value=entry.number("value", image.hi, image),
                             angles=tuple(float(a) for a in angles), stride=entry.integer("stride", 4))
