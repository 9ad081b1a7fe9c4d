"""Top-k output conditions in normal form: the violation of each as a disjunction of conjunctions.

Every kind below is a question about the ranking of the n outputs y; ties count against the property
(as in plain robustness, where `y[j] >= y[label]` is a violation).

| kind | holds when | violation DNF | size |
| --- | --- | --- | --- |
| `top-k` (label l, k) | l is among the k highest | some set S of k others has `y[j] >= y[l]` for all j in S | C(n-1, k) disjuncts of k rows |
| `top-k-set` (classes T, k=|T|) | T is the set of the k highest | some i in T, j not in T with `y[j] >= y[i]` | k (n-k) disjuncts of 1 row |
| `top-k-order` (t1..tk) | t1 > ... > tk > every other | some `y[t(i+1)] >= y[t(i)]`, or some other `y[j] >= y[tk]` | n-1 disjuncts of 1 row |
| `targeted-order` (t1..tK) | the attacker fails: t1..tK cannot be made the ordered top K | one conjunction `y[t1] >= ... >= y[tK] >= every other` | 1 disjunct of n-1 rows |

Only `top-k` grows combinatorially: C(9, 5) = 126 for 10 classes, but C(99, 5) ~ 7.5e7 for 100 and
C(999, 5) ~ 8e12 for ImageNet. Past `MAX_TOPK_DISJUNCTS` the normal form is refused with a pointer to the
direct method (`verikit.engines.topk.decide_top_k`), which needs only the n-1 pairwise margins.
"""

from __future__ import annotations

import itertools
import math

import numpy as np

from verikit.core.errors import SpecError
from verikit.core.property import Conjunction

KINDS = ("robustness", "top-k", "top-k-set", "top-k-order", "targeted-order")
MAX_TOPK_DISJUNCTS = 20_000
"""The most disjuncts (C(n-1, k) of k rows each) a `top-k` normal form may have; past it, refused."""


def pairwise_rows(high: int, lows, n: int) -> np.ndarray:
    """Rows (len(lows), n) of `y[high] - y[low]`, one per `low`, in the order given: the margins of class
    `high` over each other class (the violation row `y[high] - y[low] <= 0` means low scores >= high)."""
    lows = np.asarray(lows, dtype=np.int64).reshape(-1)
    rows = np.zeros((lows.size, n))
    rows[:, high] = 1.0
    rows[np.arange(lows.size), lows] = -1.0
    return rows


def top_k_disjunct_count(n: int, k: int) -> int:
    """Disjuncts of the `top-k` normal form over n classes: C(n-1, k)."""
    return math.comb(n - 1, k)


def top_k_disjuncts(label: int, k: int, n: int, *, cap: int = MAX_TOPK_DISJUNCTS,
                    where: str | None = None) -> tuple[Conjunction, ...]:
    """The violation of "label is among the k highest of n outputs": one conjunction per set S of k
    other classes, rows `y[label] - y[j] <= 0` for j in S. SpecError past `cap` disjuncts."""
    if isinstance(label, bool) or not isinstance(label, (int, np.integer)) or not 0 <= label < n:
        raise SpecError(f"top-k needs a label in 0..{n - 1}, got {label!r}", where=where)
    _check_k(k, n, where)
    count = top_k_disjunct_count(n, k)
    if count > cap:
        raise SpecError(
            f"top-{k} over {n} classes has C({n - 1}, {k}) = {count} disjuncts in normal form, more than the cap "
            f"of {cap}; decide it with the direct method (verikit.engines.topk.decide_top_k: n-1 pairwise "
            "margin bounds, refined by input splitting) instead", where=where)
    others = [j for j in range(n) if j != label]
    return tuple(Conjunction(pairwise_rows(label, subset, n), np.zeros(k))
                 for subset in itertools.combinations(others, k))


def top_k_set_disjuncts(classes: list[int], n: int, *, where: str | None = None) -> tuple[Conjunction, ...]:
    """The violation of "the k highest outputs are the set `classes`": some i in the set, j outside it,
    with `y[j] >= y[i]`."""
    _check_classes(classes, n, where)
    outside = [j for j in range(n) if j not in classes]
    return tuple(Conjunction(pairwise_rows(i, [j], n), np.zeros(1)) for i in classes for j in outside)


def top_k_order_disjuncts(classes: list[int], n: int, *, where: str | None = None) -> tuple[Conjunction, ...]:
    """The violation of "the ordered top k is t1 > ... > tk": a neighbour pair out of order, or some other
    class at least as high as tk."""
    _check_classes(classes, n, where)
    pairs = list(zip(classes[:-1], classes[1:])) + [(classes[-1], j) for j in range(n) if j not in classes]
    return tuple(Conjunction(pairwise_rows(high, [low], n), np.zeros(1)) for high, low in pairs)


def targeted_order_rows(targets: list[int], n: int, *, where: str | None = None) -> Conjunction:
    """The attacker's goal as one conjunction: `y[t1] >= ... >= y[tK] >= y[j]` for every other j
    (rows `y[t(i+1)] - y[t(i)] <= 0` and `y[j] - y[tK] <= 0`)."""
    _check_classes(targets, n, where)
    rows = [pairwise_rows(low, [high], n)[0] for high, low in zip(targets[:-1], targets[1:])]
    rows += [pairwise_rows(j, [targets[-1]], n)[0] for j in range(n) if j not in targets]
    return Conjunction(np.stack(rows), np.zeros(len(rows)))


def targeted_order_disjuncts(targets: list[int], n: int, *, where: str | None = None) -> tuple[Conjunction, ...]:
    return (targeted_order_rows(targets, n, where=where),)


def disjuncts_for(kind: str, n: int, *, label: int | None = None, k: int | None = None,
                  classes: list[int] | None = None, where: str | None = None) -> tuple[Conjunction, ...]:
    """The violation DNF of one of the top-k kinds (see the module docstring)."""
    if kind == "top-k":
        return top_k_disjuncts(label, k, n, where=where)
    if kind == "top-k-set":
        return top_k_set_disjuncts(classes, n, where=where)
    if kind == "top-k-order":
        return top_k_order_disjuncts(classes, n, where=where)
    if kind == "targeted-order":
        return targeted_order_disjuncts(classes, n, where=where)
    raise SpecError(f"unknown property kind {kind!r}; known: {', '.join(KINDS)}", where=where)


def top_k_form(disjuncts, n: int) -> tuple[int, int] | None:
    """(label, k) when `disjuncts` are exactly the `top-k` normal form of `top_k_disjuncts(label, k, n)` (any
    order, from any spec file: VNN-LIB written by `verikit spec topk` is recognised too), with k >= 2; else None."""
    if not disjuncts:
        return None
    k = disjuncts[0].rows
    if k < 2 or k > n - 1 or len(disjuncts) != top_k_disjunct_count(n, k):
        return None
    label, seen = None, set()
    for conjunction in disjuncts:
        C, d = np.asarray(conjunction.C), np.asarray(conjunction.d)
        if C.shape != (k, n) or np.any(d != 0.0) or np.any(conjunction.strict):
            return None
        if not (np.all(np.count_nonzero(C, axis=1) == 2) and np.all(C.max(axis=1) == 1.0)
                and np.all(C.min(axis=1) == -1.0)):
            return None
        positive, negative = C.argmax(axis=1), C.argmin(axis=1)
        if label is None:
            label = int(positive[0])
        if np.any(positive != label):
            return None
        subset = frozenset(int(j) for j in negative)
        if len(subset) != k or label in subset:
            return None
        seen.add(subset)
    if len(seen) != len(disjuncts):
        return None
    return label, k


def _check_k(k, n: int, where: str | None) -> None:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 1 <= k <= n - 1:
        raise SpecError(f"k must be an integer in 1..{n - 1} (the number of classes less one), got {k!r}", where=where)


def _check_classes(classes, n: int, where: str | None) -> None:
    valid = (isinstance(classes, (list, tuple)) and classes
             and all(isinstance(c, (int, np.integer)) and not isinstance(c, bool) and 0 <= c < n for c in classes))
    if not valid:
        raise SpecError(f"expected a non-empty list of class indices in 0..{n - 1}, got {classes!r}", where=where)
    if len(set(classes)) != len(classes):
        raise SpecError(f"the class list {list(classes)} repeats a class", where=where)
    if len(classes) >= n:
        raise SpecError(f"the class list names {len(classes)} of {n} classes; at most {n - 1} make a ranking question",
                        where=where)
