"""VNN-LIB 2.0 formulas held exactly: polynomial atoms, their DNF, and the map to verikit's normal form.

A variable is `(tensor name, flat index)`, the index in C order of the declared shape. An `Atom` says
`poly <= 0` (or `poly < 0` when strict), with rational coefficients read exactly from the literals' text,
so a witness can be checked against the query with no rounding at all (`holds`).

`to_cases` maps DNF terms to `Case`s with the VNN-LIB 1.0 reader's semantics: per term, single-input
bounds form the box and output-only linear atoms the rows `C @ y <= d`; terms with the same box form one
case. Atoms outside that form (several inputs, inputs mixed with outputs, products of variables) are
*relaxed*: left out of the case, which only enlarges the set of violations, so a proof stays a proof;
a counterexample then has to pass `holds` on the exact formula before anyone may call it one.
"""

from __future__ import annotations

import math
from fractions import Fraction
from typing import Callable

import numpy as np

from verikit.core.errors import SpecError
from verikit.spec.formula import MAX_ATOM_REFERENCES
from verikit.spec.cases import CaseGroups, TermBuilder
from verikit.core.property import Case

Var = tuple[str, int]
Monomial = tuple[Var, ...]  # sorted variables with repetition; () is the constant term
Poly = dict[Monomial, Fraction]

MAX_MONOMIALS = 10_000


class Atom:
    """`poly < 0` when `strict`, else `poly <= 0`."""

    __slots__ = ("poly", "strict")

    def __init__(self, poly: Poly, strict: bool):
        self.poly = poly
        self.strict = strict

    @property
    def degree(self) -> int:
        return max((len(monomial) for monomial in self.poly), default=0)

    def variables(self) -> set[Var]:
        return {var for monomial in self.poly for var in monomial}


Term = tuple[Atom, ...]


# ----- polynomials -----

def _add(a: Poly, b: Poly, sign: int = 1) -> Poly:
    out = dict(a)
    for monomial, coef in b.items():
        term = coef if sign > 0 else -coef
        value = out[monomial] + term if monomial in out else term
        if value:
            out[monomial] = value
        else:
            del out[monomial]
    return out


def _multiply(a: Poly, b: Poly) -> Poly:
    out: Poly = {}
    for ma, ca in a.items():
        for mb, cb in b.items():
            monomial = tuple(sorted(ma + mb))
            value = out.get(monomial, 0) + ca * cb
            if value:
                out[monomial] = value
            else:
                out.pop(monomial, None)
    if len(out) > MAX_MONOMIALS:
        raise SpecError(f"a product expands to more than {MAX_MONOMIALS:,} monomials; simplify the query")
    return out


def poly_of(expr, shapes: dict[str, tuple[int, ...]], vnnlib) -> Poly:
    """The exact polynomial of a `vnnlib` arithmetic expression (recursion depth = the text's nesting)."""
    if isinstance(expr, vnnlib.Var):
        flat = 0
        for index, size in zip(expr.indices, shapes[expr.name]):
            flat = flat * size + index
        return {((expr.name, flat),): Fraction(1)}
    if isinstance(expr, vnnlib.Literal):
        value = Fraction(expr.lexeme)
        return {(): value} if value else {}
    if isinstance(expr, vnnlib.Negate):
        return _add({}, poly_of(expr.expr, shapes, vnnlib), -1)
    if isinstance(expr, vnnlib.Plus):
        total: Poly = {}
        for arg in expr.args:
            total = _add(total, poly_of(arg, shapes, vnnlib))
        return total
    if isinstance(expr, vnnlib.Minus):
        total = poly_of(expr.head, shapes, vnnlib)
        for arg in expr.rest:
            total = _add(total, poly_of(arg, shapes, vnnlib), -1)
        return total
    if isinstance(expr, vnnlib.Multiply):
        product: Poly = {(): Fraction(1)}
        for arg in expr.args:
            product = _multiply(product, poly_of(arg, shapes, vnnlib))
        return product
    raise SpecError(f"unsupported arithmetic expression {str(expr).strip()!r}")


def comparison_alternatives(comparison, shapes: dict, vnnlib) -> list[list[Atom]]:
    """A comparison as a disjunction of conjunctions of atoms: `==` gives two atoms, `!=` two alternatives."""
    left = poly_of(comparison.lhs, shapes, vnnlib)
    right = poly_of(comparison.rhs, shapes, vnnlib)
    if isinstance(comparison, (vnnlib.LessEqual, vnnlib.LessThan)):  # left - right <= 0 (< 0)
        return [[Atom(_add(left, right, -1), isinstance(comparison, vnnlib.LessThan))]]
    if isinstance(comparison, (vnnlib.GreaterEqual, vnnlib.GreaterThan)):  # right - left <= 0 (< 0)
        return [[Atom(_add(right, left, -1), isinstance(comparison, vnnlib.GreaterThan))]]
    below, above = _add(left, right, -1), _add(right, left, -1)
    if isinstance(comparison, vnnlib.Equal):
        return [[Atom(below, False), Atom(above, False)]]
    if isinstance(comparison, vnnlib.NotEqual):
        return [[Atom(below, True)], [Atom(above, True)]]
    raise SpecError(f"unsupported comparison {str(comparison).strip()!r}")


def dnf_size(expr, vnnlib, cap: int) -> int:
    """How many terms `assertion_terms` will make of `expr` (stops counting above `cap`)."""
    if isinstance(expr, vnnlib.And):
        size = 1
        for arg in expr.args:
            size *= dnf_size(arg, vnnlib, cap)
            if size > cap:
                return size
        return size
    if isinstance(expr, vnnlib.Or):
        return sum(dnf_size(arg, vnnlib, cap) for arg in expr.args)
    return 2 if isinstance(expr, vnnlib.NotEqual) else 1


def assertion_terms(expr, shapes: dict, vnnlib) -> list[list[Atom]]:
    """The DNF terms of one assertion: `to_dnf()` of the package, then `==`/`!=` expanded in place."""
    terms: list[list[Atom]] = []
    for conjunction in expr.to_dnf():
        partial: list[list[Atom]] = [[]]
        for comparison in conjunction:
            alternatives = comparison_alternatives(comparison, shapes, vnnlib)
            partial = [done + more for done in partial for more in alternatives]
        terms.extend(partial)
    return terms


def conjoin(per_assertion: list[list[list[Atom]]], max_terms: int, place: Callable[[int], str]) -> list[list[Atom]]:
    """The DNF of the conjunction of all assertions, in the 1.0 reader's order; SpecError past the limits
    (located by `place(k)`, the position of assertion k)."""
    terms: list[list[Atom]] = [[]]
    size = 0
    for k, child in enumerate(per_assertion):
        if len(terms) * len(child) > max_terms:
            raise SpecError(f"the query expands to more than {max_terms:,} terms in disjunctive normal form; "
                            "split it into several queries or raise max_terms", where=place(k))
        size = size * len(child) + sum(len(t) for t in child) * len(terms)
        if size > MAX_ATOM_REFERENCES:
            raise SpecError(f"the query's disjunctive normal form would hold more than {MAX_ATOM_REFERENCES:,} "
                            "atoms; split it into several queries", where=place(k))
        if len(child) == 1:  # the common case (one bound per assertion): extend in place, no copies
            for term in terms:
                term.extend(child[0])
        else:
            terms = [term + extra for term in terms for extra in child]
    return terms


# ----- the map to cases -----

def _float(value: Fraction, what: str) -> float:
    try:
        result = float(value)
    except OverflowError:
        result = math.inf
    if not math.isfinite(result):
        raise SpecError(f"{what} {value} is out of the float64 range")
    return result


def _constant_holds(atom: Atom) -> bool:
    value = atom.poly.get((), Fraction(0))
    return value < 0 if atom.strict else value <= 0


def _reading(atom: Atom, x_name: str, y_name: str) -> tuple:
    """('bound', index, is_upper, value), ('row', (coefs, rhs)), ('constant', holds) or ('relaxed',)."""
    nonconstant = [monomial for monomial in atom.poly if monomial]
    if not nonconstant:
        return ("constant", _constant_holds(atom))
    if atom.degree > 1:
        return ("relaxed",)
    names = {monomial[0][0] for monomial in nonconstant}
    constant = atom.poly.get((), Fraction(0))
    if names == {x_name} and len(nonconstant) == 1:
        (monomial,) = nonconstant
        coef = atom.poly[monomial]
        value = -constant if coef == 1 else constant if coef == -1 else -constant / coef
        return ("bound", monomial[0][1], coef > 0, _float(value, "input bound"))
    if names == {y_name}:
        coefs = {m[0][1]: _float(c, "coefficient") for m, c in atom.poly.items() if m}
        return ("row", (coefs, _float(-constant, "constant")))
    return ("relaxed",)


def to_cases(
    terms: list[list[Atom]], inputs: tuple[str, int], outputs: tuple[str, int], notes: list[str],
    unbounded: Callable[[int, str, str], Exception], fill: float | None = None,
) -> tuple[list[Case], int, int]:
    """(cases, relaxed atoms, filled bounds) for DNF terms over one input and one output tensor `(name, size)`.

    An input without a finite bound in a term raises `unbounded(index, side, label)`, unless `fill` is
    given: then the missing side is put `2 * fill` from the other ([-fill, fill] when both are missing),
    which confines the search to a sub-region, so that only a counterexample may be trusted.
    """
    (x_name, n_inputs), (y_name, n_outputs) = inputs, outputs
    groups = CaseGroups(notes)
    relaxed = filled = 0
    kinds: dict[int, tuple] = {}  # id(atom) -> its reading; terms share atoms, so each is read once
    for number, atoms in enumerate(terms, 1):
        term = TermBuilder(n_inputs, n_outputs)
        feasible = True
        for atom in atoms:
            kind = kinds.get(id(atom))
            if kind is None:
                kind = kinds[id(atom)] = _reading(atom, x_name, y_name)
            if kind[0] == "bound":
                _, index, is_upper, value = kind
                term.bound(index, is_upper, value, atom.strict)
            elif kind[0] == "row":
                coefs, rhs = kind[1]
                term.row(coefs.keys(), coefs.values(), rhs, atom.strict)
            elif kind[0] == "constant":
                feasible = feasible and kind[1]
            else:
                relaxed += 1
        if not feasible:
            continue
        low, high = term.box_arrays()
        label = f" (DNF term {number} of {len(terms)})" if len(terms) > 1 else ""
        if groups.drop_empty(term, low, high, lambda i: (
                f"empty input box{label}: {x_name}[{i}] >= {low[i]!r} and <= {high[i]!r}")):
            continue
        for bounds, side in ((low, "lower"), (high, "upper")):
            missing = np.flatnonzero(~np.isfinite(bounds))
            if missing.size and fill is None:
                raise unbounded(int(missing[0]), side, label)
        if fill is not None:
            no_low, no_high = ~np.isfinite(low), ~np.isfinite(high)
            filled += int(no_low.sum() + no_high.sum())
            low = np.where(no_low, np.where(no_high, -fill, high - 2 * fill), low)
            high = np.where(no_high, np.where(no_low, fill, low + 2 * fill), high)
        groups.add(term, low, high)
    return groups.cases(), relaxed, filled


# ----- exact evaluation -----

def holds(terms: list[list[Atom]], values: dict[str, np.ndarray]) -> bool:
    """Whether the flat tensors `values` (name -> array) satisfy some term exactly (NaN/inf never do)."""
    cache: dict[Var, Fraction | None] = {}

    def exact(var: Var) -> Fraction | None:
        if var not in cache:
            value = float(values[var[0]].reshape(-1)[var[1]])
            cache[var] = Fraction(value) if math.isfinite(value) else None
        return cache[var]

    def atom_holds(atom: Atom) -> bool:
        total = Fraction(0)
        for monomial, coef in atom.poly.items():
            product = coef
            for var in monomial:
                value = exact(var)
                if value is None:
                    return False
                product *= value
            total += product
        return total < 0 if atom.strict else total <= 0

    return any(all(atom_holds(atom) for atom in term) for term in terms)
