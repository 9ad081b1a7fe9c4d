"""Local robustness specs: "every input within eps (L-inf or L2) of x keeps the label".

`robustness_property` builds the property in normal form: one case whose box is the L-inf ball
`x ± eps`, clipped to the valid range, and optionally normalised; one disjunct per other class j,
`y[label] - y[j] <= 0` (the violation: class j scores at least as high as the label).

With `"norm": 2` the case's input set is the L2 ball `||x' - x||_2 <= eps` (raw units) intersected with
that box: the case carries an `L2Ball` region in model units (centre `(x - mean) / std`, radius
`eps / std` rounded up), which needs one std for every input (a per-channel std makes the ball an
ellipsoid: refused). Engines that know the ball use it (docs/l2-balls.md); a counterexample must lie in
the ball. L1 and other norms are refused.

Spec file format (JSON, `verikit-robustness/1`; the `#` comments are explanations, not JSON)::

    {
      "format": "verikit-robustness/1",   # required
      "input": [[0.0, 0.5], [0.25, 1.0]], # the point x in raw units (nested lists), or instead
      "input_file": "x.npy",              # a .npy file, relative to the spec file
      "input_shape": [1, 2, 2],           # optional; x is reshaped to it (sizes must agree)
      "label": 3,                         # the class x must keep, 0 <= label < num_classes
      "epsilon": 0.03,                    # L-inf radius in raw units, >= 0
      "num_classes": 10,                  # number of network outputs
      "clip": [0.0, 1.0],                 # optional valid range of the raw input
      "mean": [0.49, 0.48, 0.45],         # optional normalisation: box = (clip(x ± eps) - mean) / std
      "std": [0.25, 0.24, 0.26],          # std > 0; scalars, per-channel lists or full arrays
      "norm": "inf",                      # optional; "inf" (default) or 2 (the L2 ball, see above)
      "description": "free text",         # optional; keys starting with "_" are ignored too
      "property": "top-k",                # optional: "robustness" (default), "top-k", "top-k-set",
                                          # "top-k-order" or "targeted-order" (see verikit.spec.topk)
      "k": 3,                             # top-k: the label must stay among the k highest outputs
      "classes": [3, 5, 0],               # top-k-set / top-k-order: the (ordered) top k to keep
      "targets": [7, 1, 4]                # targeted-order: the attacker's ordered top K (verified:
    }                                     #   no point of the ball ranks them first, in this order)

`label` is required for "robustness" and "top-k" only. The normal form of "top-k" has C(n-1, k)
disjuncts and is refused past `verikit.spec.topk.MAX_TOPK_DISJUNCTS`; the other kinds are linear in n.

`mean`/`std`: a scalar; an array with x's size; or a flat list of length k, applied per channel
along the first axis of x's shape (leading 1s skipped) that has length k — e.g. 3 for (1, 3, 32, 32).
The property's sha256 covers the JSON bytes (gunzipped, without a BOM) followed by the input file's
bytes, if any.
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

import numpy as np

from verikit.core import limits
from verikit.core.errors import SpecError
from verikit.core.property import Box, Case, Conjunction, L2Ball, Property
from verikit.spec.cases import float32_note
from verikit.spec.topk import pairwise_rows
from verikit.spec.vnnlib import read_spec_text

FORMAT = "verikit-robustness/1"
_KNOWN_KEYS = frozenset({"format", "input", "input_file", "input_shape", "label", "epsilon", "num_classes",
                         "clip", "mean", "std", "norm", "description", "property", "k", "classes", "targets"})
_INF_NORMS = ("inf", "linf", "l-inf", "l_inf")
_L2_NORMS = ("2", "l2", "l-2", "l_2")


def robustness_property(
    x,
    label: int,
    eps: float,
    *,
    num_classes: int,
    lower=None,
    upper=None,
    norm: str | float = "inf",
    mean=None,
    std=None,
    source: str = "",
    sha256: str = "",
    ranking: dict | None = None,
) -> Property:
    """The property "no point of the L-inf ball of radius eps around x changes the label".

    `x` has any shape (flattened in C order); `lower`/`upper` clip the raw box (scalars or arrays
    broadcastable to x); `mean`/`std` then normalise it. `ranking` asks a top-k question instead of the
    label's: {"property": kind, "k": .., "classes": [..]} (verikit.spec.topk; label may then be None
    except for "top-k"). Raises SpecError on bad arguments.
    """
    norm = _check_norm(norm)
    x = np.asarray(x, dtype=np.float64)
    if x.size == 0:
        raise SpecError("the input x is empty", where=source or None)
    if not np.isfinite(x).all():
        raise SpecError("the input x contains NaN or infinite values", where=source or None)
    needs_label = ranking is None or ranking.get("property") in ("robustness", "top-k")
    if (label is not None or needs_label) and (isinstance(label, bool) or not isinstance(label, (int, np.integer))):
        raise SpecError(f"label must be an integer, got {label!r}", where=source or None)
    most = limits.current().max_classes
    if isinstance(num_classes, bool) or not isinstance(num_classes, (int, np.integer)) or not 2 <= num_classes <= most:
        raise SpecError(f"num_classes must be an integer in 2..{most} (VERIKIT_MAX_CLASSES), got {num_classes!r}",
                        where=source or None)
    if label is not None and not 0 <= label < num_classes:
        raise SpecError(f"label {label} is outside 0..{num_classes - 1}", where=source or None)
    eps = float(eps)
    if not math.isfinite(eps) or eps < 0.0:
        raise SpecError(f"epsilon must be a finite number >= 0, got {eps!r}", where=source or None)

    low, high = x - eps, x + eps
    notes = [f"L-inf ball of radius {eps!r} around the input" if norm == "inf" else
             f"L2 ball of radius {eps!r} around the input, within its L-inf box"]
    if lower is not None or upper is not None:
        clip_low = _broadcast(lower if lower is not None else -np.inf, x.shape, "lower", source)
        clip_high = _broadcast(upper if upper is not None else np.inf, x.shape, "upper", source)
        if (clip_low > clip_high).any():
            raise SpecError("the clip range is empty (lower > upper)", where=source or None)
        outside = np.flatnonzero(((x < clip_low) | (x > clip_high)).reshape(-1))
        if outside.size:
            i = int(outside[0])
            raise SpecError(
                f"input element {i} = {x.reshape(-1)[i]!r} lies outside the clip range; "
                "is x in raw units, before normalisation?",
                where=source or None,
            )
        low, high = np.clip(low, clip_low, clip_high), np.clip(high, clip_low, clip_high)
        notes.append("box clipped to the valid input range")
    centre, scale = x, 1.0
    if mean is not None or std is not None:
        mean_array = _broadcast(0.0 if mean is None else mean, x.shape, "mean", source)
        std_array = _broadcast(1.0 if std is None else std, x.shape, "std", source)
        if norm == "2" and np.ptp(std_array) > 0:
            raise SpecError("norm 2 needs one std for every input: a per-channel std turns the L2 ball into an "
                            "ellipsoid in the model's units, which verikit does not bound", where=source or None)
        if not (np.isfinite(std_array).all() and (std_array > 0).all()):
            raise SpecError("std must be finite and > 0", where=source or None)
        if not np.isfinite(mean_array).all():
            raise SpecError("mean must be finite", where=source or None)
        centre, scale = (x - mean_array) / std_array, float(std_array.reshape(-1)[0])
        low, high = (low - mean_array) / std_array, (high - mean_array) / std_array
        notes.append("box normalised as (raw - mean) / std")

    disjuncts, kind, details = output_condition(label, num_classes, ranking, where=source or None)
    if details:
        details["epsilon"] = eps
        notes.append(f"{kind}: {len(disjuncts)} disjuncts in normal form")
    region = None
    if norm == "2":
        # the model-unit radius covers the raw ball: eps / std rounded up, plus the centre's rounding
        radius = np.nextafter(eps / scale, np.inf) + 4 * np.finfo(np.float64).eps * float(np.abs(centre).max())
        region = L2Ball(centre.reshape(-1), float(radius))
        details = {**details, "norm": 2, "epsilon": eps}
    box, widened = Box(low.reshape(-1), high.reshape(-1)).holding_float32()
    if widened.size:
        notes.append(float32_note(widened.tolist()))
    case = Case(box, disjuncts, region=region)
    return Property((case,), x.size, num_classes, source=source, sha256=sha256, notes=tuple(notes), kind=kind,
                    details=details)


def output_condition(label: int | None, num_classes: int, ranking: dict | None, *,
                     where: str | None = None) -> tuple[tuple[Conjunction, ...], str, dict]:
    """(the violation disjuncts, the property kind, its details) of a spec's output condition: the label's
    misclassification (kind "vnnlib", no details), or the top-k question `ranking` (verikit.spec.topk).
    One place for every spec kind that takes a "property" key (robustness and perturbation specs)."""
    if ranking is None or ranking.get("property") == "robustness":
        return misclassification_disjuncts(label, num_classes), "vnnlib", {}
    from verikit.spec import topk

    kind = ranking["property"]
    classes = ranking.get("classes")
    disjuncts = topk.disjuncts_for(kind, num_classes, label=label, k=ranking.get("k"), classes=classes, where=where)
    details = {"property": kind, "label": label, "num_classes": num_classes,
               "k": ranking.get("k") if kind == "top-k" else len(classes),
               "classes": list(classes) if classes else None, "disjuncts": len(disjuncts)}
    return disjuncts, kind, details


def ranking_from_dict(spec: dict, where: str | None) -> dict | None:
    """The top-k question of a spec ("property", "k", "classes"/"targets"), or None for plain robustness."""
    kind = spec.get("property", "robustness")
    from verikit.spec.topk import KINDS

    if kind not in KINDS:
        raise SpecError(f"key 'property': expected one of {', '.join(KINDS)}, got {kind!r}", where=where)
    if kind == "robustness":
        stray = [key for key in ("k", "classes", "targets") if key in spec]
        if stray:
            raise SpecError(f"key '{stray[0]}' needs a top-k 'property'", where=where)
        return None
    key = {"top-k": "k", "targeted-order": "targets"}.get(kind, "classes")
    if key not in spec:
        raise SpecError(f"key '{key}' is missing (property {kind})", where=where)
    uses = ("k",) if kind == "top-k" else (key, "k")
    stray = [name for name in ("k", "classes", "targets") if name in spec and name not in uses]
    if stray:
        raise SpecError(f"key '{stray[0]}' is not used by property {kind} (it takes {' and '.join(uses)})",
                        where=where)
    if kind == "top-k":
        return {"property": kind, "k": spec["k"]}
    classes = spec[key]
    if "k" in spec and not (isinstance(classes, list) and spec["k"] == len(classes)):
        raise SpecError(f"key 'k' ({spec['k']!r}) differs from the length of '{key}'", where=where)
    return {"property": kind, "classes": classes}


def misclassification_disjuncts(label: int, num_classes: int) -> tuple[Conjunction, ...]:
    """One disjunct per other class j, `y[label] - y[j] <= 0`: class j scores at least as high as the label."""
    return tuple(Conjunction(pairwise_rows(label, [other], num_classes), np.zeros(1))
                 for other in range(num_classes) if other != label)


def read_robustness_spec(path: str | Path) -> Property:
    """Read a `verikit-robustness/1` JSON spec file (see the module docstring)."""
    path = Path(path)
    where = str(path)
    text, _ = read_spec_text(path)
    spec = limits.load_json(text, "spec", SpecError, where)
    return robustness_from_dict(spec, base_dir=path.parent, source=where, spec_bytes=text.encode("utf-8"))


def robustness_from_dict(
    spec: dict, *, base_dir: str | Path = ".", source: str = "<dict>", spec_bytes: bytes | None = None
) -> Property:
    """The property of an already-decoded `verikit-robustness/1` spec; `input_file` is relative to `base_dir`."""
    where = source or None
    if not isinstance(spec, dict):
        raise SpecError("a robustness spec must be a JSON object", where=where)
    for key in spec:
        if key not in _KNOWN_KEYS and not str(key).startswith("_"):
            raise SpecError(f"unknown key {str(key)[:60]!r}; known keys: {', '.join(sorted(_KNOWN_KEYS))}", where=where)
    if "format" not in spec:
        raise SpecError(f"key 'format' is missing; expected \"{FORMAT}\"", where=where)
    if spec["format"] != FORMAT:
        raise SpecError(f"key 'format': expected \"{FORMAT}\", got {spec['format']!r}", where=where)
    ranking = ranking_from_dict(spec, where)
    for key in ("label", "epsilon", "num_classes") if ranking is None or ranking["property"] == "top-k" \
            else ("epsilon", "num_classes"):
        if key not in spec:
            raise SpecError(f"key '{key}' is missing", where=where)

    digest = hashlib.sha256(spec_bytes if spec_bytes is not None else json.dumps(spec, sort_keys=True).encode())
    x = _load_input(spec, Path(base_dir), where, digest)
    if "input_shape" in spec:
        shape = spec["input_shape"]
        if not (isinstance(shape, list) and len(shape) <= 32 and all(_is_int(n) and n > 0 for n in shape)):
            raise SpecError("key 'input_shape': expected a list of positive integers", where=where)
        if math.prod(shape) != x.size:
            raise SpecError(
                f"key 'input_shape': {shape} holds {math.prod(shape)} values but the input has {x.size}",
                where=where,
            )
        x = x.reshape(shape)

    label, num_classes, epsilon = spec.get("label"), spec["num_classes"], spec["epsilon"]
    most = limits.current().max_classes
    if not _is_int(num_classes) or not 2 <= num_classes <= most:
        raise SpecError(f"key 'num_classes': expected an integer in 2..{most} (VERIKIT_MAX_CLASSES), "
                        f"got {num_classes!r}", where=where)
    if (label is not None or ranking is None) and (not _is_int(label) or not 0 <= label < num_classes):
        raise SpecError(f"key 'label': expected an integer in 0..{num_classes - 1}, got {label!r}", where=where)
    if not _is_number(epsilon) or not math.isfinite(epsilon) or epsilon < 0:
        raise SpecError(f"key 'epsilon': expected a finite number >= 0, got {epsilon!r}", where=where)
    lower = upper = None
    if "clip" in spec:
        clip = spec["clip"]
        well_formed = isinstance(clip, list) and len(clip) == 2 and all(_is_number(v) for v in clip)
        if not (well_formed and clip[0] <= clip[1]):
            raise SpecError(f"key 'clip': expected [lo, hi] with lo <= hi, got {clip!r}", where=where)
        lower, upper = clip
    mean = _channel_values(spec, "mean", x.shape, where)
    std = _channel_values(spec, "std", x.shape, where)
    norm = spec.get("norm", "inf")
    if isinstance(norm, bool) or not isinstance(norm, (str, int, float)):
        raise SpecError(f"key 'norm': expected \"inf\" or 2, got {norm!r}", where=where)
    return robustness_property(x, None if label is None else int(label), float(epsilon),
                               num_classes=int(num_classes), lower=lower, upper=upper, norm=norm, mean=mean,
                               std=std, source=source, sha256=digest.hexdigest(), ranking=ranking)


def _load_input(spec: dict, base_dir: Path, where: str | None, digest) -> np.ndarray:
    """x from 'input' or 'input_file' (whose bytes are added to `digest`)."""
    if ("input" in spec) == ("input_file" in spec):
        raise SpecError("give exactly one of the keys 'input' and 'input_file'", where=where)
    if "input" in spec:
        try:
            x = np.asarray(spec["input"], dtype=np.float64)
        except (TypeError, ValueError, OverflowError):
            message = "key 'input': expected a (nested) list of numbers of regular shape"
            raise SpecError(message, where=where) from None
    else:
        name = spec["input_file"]
        if not isinstance(name, str):
            raise SpecError("key 'input_file': expected a file name", where=where)
        file = base_dir / name
        try:
            data = limits.read_file(file, "spec", SpecError)
            x = limits.load_npy(data, "spec", SpecError, str(file))
        except SpecError as error:
            raise SpecError(f"key 'input_file': {error}", where=where) from None
        digest.update(data)
        x = x.astype(np.float64)
    if x.size == 0 or not np.isfinite(x).all():
        raise SpecError("the input is empty or holds NaN/infinite values", where=where)
    return x


def _channel_values(spec: dict, key: str, shape: tuple, where: str | None):
    """'mean'/'std' as an array that broadcasts to `shape` (see the module docstring), or None."""
    if key not in spec:
        return None
    value = spec[key]
    try:
        array = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError, OverflowError):
        raise SpecError(f"key '{key}': expected a number or a list of numbers", where=where) from None
    if array.ndim == 0 or array.size == math.prod(shape):
        return array.reshape(shape) if array.ndim else array
    if array.ndim == 1:
        axis = next((i for i, n in enumerate(shape) if n != 1), None)
        if axis is not None and shape[axis] == array.size:
            return array.reshape((array.size,) + (1,) * (len(shape) - axis - 1))
    raise SpecError(
        f"key '{key}': {array.size} values fit neither the input shape {list(shape)} nor its channels "
        "(give 'input_shape')",
        where=where,
    )


def _broadcast(value, shape: tuple, name: str, source: str) -> np.ndarray:
    try:
        return np.broadcast_to(np.asarray(value, dtype=np.float64), shape)
    except (TypeError, ValueError, OverflowError):
        raise SpecError(f"{name} does not broadcast to the input shape {shape}", where=source or None) from None


def _check_norm(norm) -> str:
    """The norm as "inf" or "2", or SpecError."""
    if isinstance(norm, str) and norm.strip().lower() in _INF_NORMS:
        return "inf"
    if isinstance(norm, str) and norm.strip().lower() in _L2_NORMS:
        return "2"
    if isinstance(norm, (int, float)) and not isinstance(norm, bool):
        if math.isinf(norm) and norm > 0:
            return "inf"
        if norm == 2:
            return "2"
    raise SpecError(
        f"norm {norm!r} is not supported: only the L-inf ball (a box) and the L2 ball. Verifying an enclosing "
        "box instead would report counterexamples that lie outside the ball"
    )


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value) -> bool:
    """A JSON number that is a float64 (an integer of 400 digits is not)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    return isinstance(value, float) or abs(value) <= 2**1023
