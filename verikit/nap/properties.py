"""NAP questions as verikit properties (Property(kind="nap")): the region is the case's box, the NAP its
hidden constraints (`case.hidden`), so every engine sees them as it sees any other property.

- robustness of class c: violated iff some x of the box follows NAP_c and some other output j has
  y_j >= y_c (one disjunct `y_c - y_j <= 0` per j ≠ c);
- non-ambiguity of classes i, j: violated iff some x of the box follows NAP_i and NAP_j (the hidden
  constraints are both NAPs' patterns, the output condition one row `0 · y <= 0` that always holds).
"""

from __future__ import annotations

import numpy as np

from verikit.core.property import Box, Case, Conjunction, Property
from verikit.nap.mine import ClassNap, Naps
from verikit.spec.robustness import misclassification_disjuncts


def _details(naps: Naps, question: str, region: dict, **extra) -> dict:
    return {"question": question, "delta": naps.delta, "model_sha256": naps.model_sha256,
            "data_sha256": naps.data_sha256, "region": region, **extra}


def robustness(naps: Naps, label: int, box: Box, n_outputs: int, region: dict) -> Property:
    """NAP robustness of `label` over `box`: follows NAP_label ⇒ argmax = label (ties count against it)."""
    nap = naps.of(label)
    case = Case(box, misclassification_disjuncts(label, n_outputs), hidden=nap.patterns)
    return Property((case,), box.size, n_outputs, source=f"nap:robustness:{label}", kind="nap",
                    details=_details(naps, "robustness", region, label=label, nap_size=nap.size))


def ambiguity(naps: Naps, first: int, second: int, box: Box, n_outputs: int, region: dict) -> Property:
    """Non-ambiguity of NAP_first and NAP_second over `box`: violated iff some x follows both."""
    a, b = naps.of(first), naps.of(second)
    always = Conjunction(np.zeros((1, n_outputs)), np.zeros(1))
    case = Case(box, (always,), hidden=a.patterns + b.patterns)
    return Property((case,), box.size, n_outputs, source=f"nap:ambiguity:{first},{second}", kind="nap",
                    details=_details(naps, "non-ambiguity", region, labels=[first, second],
                                     nap_sizes=[a.size, b.size]))


def conflict(a: ClassNap, b: ClassNap) -> bool:
    """Whether the two NAPs ask one neuron for opposite phases (then no input follows both)."""
    for p in a.patterns:
        for q in b.patterns:
            if p.tensor == q.tensor and (np.intersect1d(p.active, q.inactive).size
                                         or np.intersect1d(p.inactive, q.active).size):
                return True
    return False
