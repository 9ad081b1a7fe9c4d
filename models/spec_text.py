"""Properties of the example specs and their VNN-LIB 1.0 text (used by build_examples.py).

VNN-LIB is written with verikit.spec.vnnlib, robustness JSON (verikit-robustness/1) here; both are read
back with verikit's readers, and the build fails unless they give the same property bit for bit.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from verikit.core.property import Box, Case, Conjunction, Property

from verikit.spec.robustness import FORMAT, read_robustness_spec, robustness_property
from verikit.spec.vnnlib import read_vnnlib, write_vnnlib


def robustness_spec(x: np.ndarray, label: int, eps: float, num_classes: int = 10) -> Property:
    """L-inf ball of radius eps around x (flat), clipped to [0, 1]; violated iff some y_j >= y_label."""
    x = np.asarray(x, dtype=np.float64).reshape(-1)
    return robustness_property(x, label, eps, num_classes=num_classes, lower=0.0, upper=1.0)


def threshold_spec(lower: list[float], upper: list[float], relation: str, threshold: float) -> Property:
    """One output, violated iff some x in the box has `y relation threshold` (relation "<=" or ">=")."""
    sign = 1.0 if relation == "<=" else -1.0
    conjunction = Conjunction([[sign]], [sign * threshold])
    return Property((Case(Box(lower, upper), (conjunction,)),), n_inputs=len(lower), n_outputs=1)


def save_spec(prop: Property, path: Path, comments: list[str]) -> None:
    """Writes `prop` as VNN-LIB 1.0 to path, with `; comment` lines on top."""
    header = "".join(f"; {line}\n" for line in comments)
    Path(path).write_text(header + write_vnnlib(prop), encoding="utf-8")
    again = read_vnnlib(path)
    if not _same(prop, again):
        raise RuntimeError(f"{path}: does not read back as the property written")


def save_robustness_json(
    prop: Property, path: Path, image: np.ndarray, label: int, eps: float, description: str
) -> None:
    """Writes a verikit-robustness/1 spec for an 8x8 image (pixels in [0, 1]) fed as [1, 1, 8, 8]."""
    rows = ",\n".join(f"    [{', '.join(repr(float(v)) for v in row)}]" for row in np.reshape(image, (8, 8)))
    text = (
        "{\n"
        f'  "format": "{FORMAT}",\n'
        f'  "description": "{description}",\n'
        f'  "input": [\n{rows}\n  ],\n'
        '  "input_shape": [1, 1, 8, 8],\n'
        f'  "label": {int(label)},\n'
        f'  "epsilon": {float(eps)!r},\n'
        '  "num_classes": 10,\n'
        '  "clip": [0.0, 1.0]\n'
        "}\n"
    )
    Path(path).write_text(text, encoding="utf-8")
    if not _same(prop, read_robustness_spec(path)):
        raise RuntimeError(f"{path}: does not read back as the property written")


def _same(a: Property, b: Property) -> bool:
    """Same cases, boxes and disjuncts, bit for bit."""
    if (a.n_inputs, a.n_outputs, len(a.cases)) != (b.n_inputs, b.n_outputs, len(b.cases)):
        return False
    for left, right in zip(a.cases, b.cases):
        if not left.box.same_as(right.box) or len(left.disjuncts) != len(right.disjuncts):
            return False
        for p, q in zip(left.disjuncts, right.disjuncts):
            if not (np.array_equal(p.C, q.C) and np.array_equal(p.d, q.d)):
                return False
    return True
