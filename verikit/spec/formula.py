"""VNN-LIB 1.0 formulas: linear atoms and their disjunctive normal form (DNF).

A formula is read into a list of *terms* (the DNF): the formula holds iff every atom of some term holds.
Each atom is either an `InputBound` (one input against a constant) or an `OutputRow`
(`sum coefs * y[cols] <= rhs`). `true` is one empty term (`[[]]`), `false` is no term (`[]`).

Comparisons: `<=`, `>=`, `=`, and the strict `<` and `>`: their atoms carry `strict`, which the engines
drop (they search the closure of the violation set, so a proof covers the strict spec) and the witness
check keeps. Chains such as `(<= a b c)` mean
`a <= b` and `b <= c`, as in SMT-LIB. Terms: numbers, declared variables, `(+ ...)`, `(- ...)`,
`(* ...)` with at most one non-constant factor, and `(/ t c)` with a constant divisor.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from verikit.spec.sexpr import Atom, SList, SourceText

Var = tuple[str, int]  # ("X", i) for input i, ("Y", j) for output j
Linear = tuple[dict, float]  # ({var: coefficient}, constant)

COMPARISONS = frozenset({"<=", ">=", "<", ">", "="})
ARITHMETIC = frozenset({"+", "-", "*", "/"})
MAX_TERMS = 100_000
MAX_ATOM_REFERENCES = 20_000_000  # total atoms over all DNF terms: bounds the memory the DNF can take

_NUMBER = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_NUMBER_LIKE = re.compile(r"[+-]?\.?[0-9]")
_VARIABLE_LIKE = re.compile(r"[XY]_[0-9]+")


@dataclass(frozen=True, slots=True)
class InputBound:
    """`x[index] <= value` when `upper`, else `x[index] >= value` (`<`, `>` when `strict`)."""

    index: int
    upper: bool
    value: float
    pos: int
    strict: bool = False


@dataclass(frozen=True, slots=True)
class OutputRow:
    """`sum_k coefs[k] * y[cols[k]] <= rhs` (`<` when `strict`); `cols` are distinct."""

    cols: tuple[int, ...]
    coefs: tuple[float, ...]
    rhs: float
    pos: int
    strict: bool = False


class FormulaReader:
    """Turns formula nodes into DNF terms; `variables` maps declared names to `Var`s (filled by the caller)."""

    def __init__(self, source: SourceText, variables: dict[str, Var], *, max_terms: int = MAX_TERMS):
        self.source = source
        self.variables = variables
        self.max_terms = max_terms
        self.strict_seen = False

    # ----- formulas -----

    def dnf(self, node: SList | Atom) -> list[list]:
        """The DNF terms of a formula node."""
        if isinstance(node, Atom):
            if node.text == "true":
                return [[]]
            if node.text == "false":
                return []
            raise self.source.error(
                f"expected a formula such as (<= X_0 1.0) or (and ...), got '{node.text}'", node.pos
            )
        head = node.head
        args = node.items[1:]
        if head == "and":
            return self.conjoin([self.dnf(child) for child in args], node.pos)
        if head == "or":
            terms: list[list] = []
            for child in args:
                terms.extend(self.dnf(child))
                self._check_terms(len(terms), node.pos)
            return terms
        if head in COMPARISONS:
            atoms = self._comparison(node, head, args)
            return [] if atoms is None else [atoms]
        if head is None:
            raise self.source.error("expected an operator such as and, or, <= after '('", node.pos)
        if head in ARITHMETIC:
            raise self.source.error(f"expected a formula, got the arithmetic term ({head} ...)", node.pos)
        raise self.source.error(
            f"unknown operator '{head}'; VNN-LIB 1.0 formulas use and, or, <=, >=, <, >, =", node.pos
        )

    def conjoin(self, dnfs: list[list[list]], pos: int, child_pos: list[int] | None = None) -> list[list]:
        """The DNF of the conjunction of several DNFs (distributes `and` over `or`).

        Errors point at `pos`, or at `child_pos[k]` when the k-th DNF makes the result too large.
        """
        terms: list[list] = [[]]
        size = 0
        for k, child in enumerate(dnfs):
            if not child:
                return []
            where = child_pos[k] if child_pos is not None else pos
            if len(child) == 1:
                only = child[0]
                for term in terms:
                    term.extend(only)
                size += len(terms) * len(only)
            else:
                self._check_terms(len(terms) * len(child), where)
                size = size * len(child) + sum(len(u) for u in child) * len(terms)
                terms = [term + extra for term in terms for extra in child]
            if size > MAX_ATOM_REFERENCES:
                raise self.source.error(
                    f"the formula's disjunctive normal form would hold more than {MAX_ATOM_REFERENCES:,} atoms; "
                    "split the spec into several files",
                    where,
                )
        return terms

    def _check_terms(self, count: int, pos: int) -> None:
        if count > self.max_terms:
            raise self.source.error(
                f"the formula expands to {count:,} terms in disjunctive normal form, more than the limit of "
                f"{self.max_terms:,}; split the spec into several files or raise max_terms",
                pos,
            )

    # ----- atoms -----

    def _comparison(self, node: SList, op: str, args: list) -> list | None:
        """The atoms of `(op a b ...)`, or None when a constant comparison is false."""
        if len(args) < 2:
            raise self.source.error(f"'{op}' needs at least two operands", node.pos)
        strict = op in ("<", ">")
        self.strict_seen = self.strict_seen or strict
        atoms: list = []
        for left, right in zip(args, args[1:]):
            fast = self._simple_atoms(op, left, right, strict)
            if fast is not None:
                atoms.extend(fast)
                continue
            a, b = self._linear(left), self._linear(right)
            pairs = {"<=": [(a, b)], "<": [(a, b)], ">=": [(b, a)], ">": [(b, a)], "=": [(a, b), (b, a)]}[op]
            for small, large in pairs:
                atom = self._atom(_difference(small, large), node.pos, strict)
                if atom is False:
                    return None
                if atom is not True:
                    atoms.append(atom)
        return atoms

    def _simple_atoms(self, op: str, left, right, strict: bool) -> list | None:
        """Atoms for the common shapes `(op V c)`, `(op c V)` and `(op Y_i Y_j)`, taking c exactly as written."""
        if not (isinstance(left, Atom) and isinstance(right, Atom)):
            return None
        var_left, var_right = self.variables.get(left.text), self.variables.get(right.text)
        below = op in ("<=", "<")  # left <= right
        if var_left is not None and var_right is None:
            var, value, var_is_small = var_left, self._number(right), below
        elif var_right is not None and var_left is None:
            var, value, var_is_small = var_right, self._number(left), not below
        elif var_left is not None and var_left[0] == var_right[0] == "Y" and var_left != var_right and op != "=":
            small, large = (var_left, var_right) if below else (var_right, var_left)
            return [OutputRow((small[1], large[1]), (1.0, -1.0), 0.0, left.pos, strict)]
        else:
            return None
        pos = left.pos
        if op == "=":
            return [_var_bound(var, value, True, pos), _var_bound(var, value, False, pos)]
        return [_var_bound(var, value, var_is_small, pos, strict)]

    def _atom(self, form: Linear, pos: int, strict: bool = False):
        """The atom for `form <= 0` (`form < 0` when strict), or True/False when no variable is left."""
        coefs, const = form
        if not coefs:
            return const < 0.0 if strict else const <= 0.0
        kinds = {var[0] for var in coefs}
        if kinds == {"Y"}:
            cols = tuple(sorted(var[1] for var in coefs))
            return OutputRow(cols, tuple(coefs[("Y", j)] for j in cols), -const, pos, strict)
        if kinds == {"X"}:
            nonzero = [(var, coef) for var, coef in coefs.items() if coef != 0.0]
            if not nonzero:
                return const < 0.0 if strict else const <= 0.0
            if len(nonzero) == 1:
                (_, index), coef = nonzero[0]
                value = -const / coef
                if math.isfinite(value):
                    return InputBound(index, coef > 0.0, value, pos, strict)
            raise self.source.error(
                "unsupported input constraint: VNN-LIB 1.0 input constraints must bound one input by a "
                "constant, like (<= X_0 0.5) or (>= X_0 -0.5)",
                pos,
            )
        raise self.source.error(
            "unsupported constraint: one comparison mixes inputs (X_i) and outputs (Y_j); "
            "bound the inputs and the outputs in separate comparisons",
            pos,
        )

    # ----- arithmetic terms -----

    def _linear(self, node: SList | Atom) -> Linear:
        """The linear form of a term; SpecError when arithmetic leaves the float64 range (1e308 * 1e308)."""
        form = self._linear_form(node)
        if isinstance(node, SList) and not (math.isfinite(form[1]) and all(map(math.isfinite, form[0].values()))):
            raise self.source.error("this term's value is out of the float64 range (overflow)", node.pos)
        return form

    def _linear_form(self, node: SList | Atom) -> Linear:
        if isinstance(node, Atom):
            var = self.variables.get(node.text)
            if var is not None:
                return {var: 1.0}, 0.0
            return {}, self._number(node)
        head = node.head
        args = node.items[1:]
        if head == "+" and args:
            forms = [self._linear(arg) for arg in args]
            total = forms[0]
            for form in forms[1:]:
                total = _sum(total, form)
            return total
        if head == "-" and args:
            forms = [self._linear(arg) for arg in args]
            if len(forms) == 1:
                return _scale(forms[0], -1.0)
            total = forms[0]
            for form in forms[1:]:
                total = _difference(total, form)
            return total
        if head == "*" and len(args) >= 2:
            forms = [self._linear(arg) for arg in args]
            variable = [form for form in forms if form[0]]
            if len(variable) > 1:
                raise self.source.error("nonlinear term: a product may have only one non-constant factor",
                                        node.pos)
            factor = 1.0
            for form in forms:
                if not form[0]:
                    factor *= form[1]
            return _scale(variable[0], factor) if variable else ({}, factor)
        if head == "/" and len(args) == 2:
            numerator, divisor = self._linear(args[0]), self._linear(args[1])
            if divisor[0] or divisor[1] == 0.0:
                raise self.source.error("(/ t c) needs a nonzero constant divisor c", node.pos)
            return ({var: coef / divisor[1] for var, coef in numerator[0].items()}, numerator[1] / divisor[1])
        if head in ARITHMETIC:
            raise self.source.error(f"'{head}' has the wrong number of operands ({len(args)})", node.pos)
        if head is None:
            raise self.source.error("expected an arithmetic term after '('", node.pos)
        raise self.source.error(
            f"unknown operator '{head}' in an arithmetic term; use numbers, X_i, Y_j, +, -, * and /",
            node.pos,
        )

    def _number(self, atom: Atom) -> float:
        """The value of a numeric literal; a helpful SpecError for anything else."""
        text = atom.text
        if _NUMBER.fullmatch(text):
            value = float(text)
            if not math.isfinite(value):
                raise self.source.error(f"number '{text}' is out of the float64 range", atom.pos)
            return value
        if _VARIABLE_LIKE.fullmatch(text):
            raise self.source.error(
                f"undeclared variable '{text}'; declare it with (declare-const {text} Real) before it is used",
                atom.pos,
            )
        if _NUMBER_LIKE.match(text):
            raise self.source.error(
                f"bad number '{text}'; write decimals like 0.5, -0.5, 1e-3 or 3", atom.pos
            )
        raise self.source.error(
            f"unknown symbol '{text}'; expected a number or a declared variable X_i / Y_j", atom.pos
        )


def _var_bound(var: Var, value: float, var_is_small: bool, pos: int, strict: bool = False):
    """The atom `var <= value` (var_is_small) or `var >= value` (`<`, `>` when strict), value bit-exact."""
    kind, index = var
    if kind == "X":
        return InputBound(index, var_is_small, value, pos, strict)
    if var_is_small:
        return OutputRow((index,), (1.0,), value, pos, strict)
    return OutputRow((index,), (-1.0,), -value, pos, strict)


def _sum(a: Linear, b: Linear) -> Linear:
    coefs = dict(a[0])
    for var, coef in b[0].items():
        coefs[var] = coefs[var] + coef if var in coefs else coef
    return coefs, a[1] + b[1]


def _scale(a: Linear, factor: float) -> Linear:
    return {var: coef * factor for var, coef in a[0].items()}, a[1] * factor


def _difference(a: Linear, b: Linear) -> Linear:
    coefs = dict(a[0])
    for var, coef in b[0].items():
        coefs[var] = coefs[var] - coef if var in coefs else -coef
    return coefs, a[1] - b[1]
