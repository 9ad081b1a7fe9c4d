"""VNN-LIB 1.0 reader (and, re-exported, the writer): spec text -> `Property` in normal form.

Accepted: `;` comments, `(declare-const X_i Real)` / `(declare-const Y_j Real)` (also
`(declare-fun X_i () Real)`), `(assert F)` with F built from `and`, `or`, `<=`, `>=`, `=`, `<`, `>`
(strict kept as open box sides and strict rows, noted in `Property.notes`), `true`/`false`, and linear terms (see
`verikit.spec.formula`). `set-logic`, `set-info`, `set-option`, `check-sat`, `get-model` and `exit`
are ignored. Inputs X_0..X_{n-1} and outputs Y_0..Y_{m-1} must be declared before use, indices
contiguous from 0.

Normal form: the conjunction of all asserts is expanded into DNF. In each term, the input atoms are
intersected into a box and the output atoms become the rows of one `Conjunction` `C @ y <= d` (a term
without output atoms gives a conjunction with 0 rows, which always holds). Terms with the same box
(bit-identical bounds) form one `Case`, in order of first appearance; their conjunctions are that case's
disjuncts, in term order. Terms with an empty box are dropped (noted). Every input needs finite lower
and upper bounds in every remaining term.
"""

from __future__ import annotations

import gc
import hashlib
import re
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from verikit.core import limits
from verikit.core.errors import SpecError
from verikit.spec.formula import MAX_TERMS, FormulaReader, InputBound
from verikit.spec.cases import CaseGroups, TermBuilder
from verikit.core.property import Case, Property
from verikit.spec.sexpr import Atom, SList, SourceText, read_sexprs
from verikit.spec.vnnlib_writer import format_number, save_vnnlib, write_vnnlib

__all__ = [
    "MAX_TERMS",
    "format_number",
    "parse_vnnlib",
    "read_spec_text",
    "read_vnnlib",
    "save_vnnlib",
    "write_vnnlib",
]

VNNLIB2_COMMANDS = frozenset({"declare-network", "declare-input", "declare-output", "declare-hidden",
                              "vnnlib-version"})
IGNORED_COMMANDS = frozenset({"set-logic", "set-info", "set-option", "check-sat", "get-model", "exit"})
_NAME = re.compile(r"([A-Za-z][A-Za-z0-9]*)_([0-9]+)")
_KIND_WORDS = {"X": ("input", "inputs"), "Y": ("output", "outputs")}


def parse_vnnlib(
    text: str, *, source: str = "<string>", max_terms: int = MAX_TERMS, sha256: str | None = None
) -> Property:
    """Parse VNN-LIB 1.0 text; raises SpecError with source:line:col.

    `sha256` defaults to that of the text's UTF-8 bytes (pass the file's when it was read elsewhere).
    """
    digest = sha256 if sha256 is not None else hashlib.sha256(text.encode("utf-8")).hexdigest()
    return _parse(SourceText(text, source), digest, max_terms)


def read_vnnlib(path: str | Path, *, max_terms: int = MAX_TERMS) -> Property:
    """Read a VNN-LIB 1.0 file (gzip-compressed too); `sha256` is that of its (uncompressed) bytes."""
    text, digest = read_spec_text(path)
    return _parse(SourceText(text, str(path)), digest, max_terms)


def read_spec_text(path: str | Path) -> tuple[str, str]:
    """(text, sha256 of the bytes) of a spec file, gunzipped when compressed; SpecError when unreadable."""
    where = str(path)
    data = limits.read_file(path, "spec", SpecError)
    if data[:2] == b"\x1f\x8b":
        data = limits.gunzip(data, "spec", SpecError, where)
    return limits.decode(data, "spec", SpecError, where), hashlib.sha256(data).hexdigest()


@contextmanager
def _collector_paused():
    """Pause the cyclic garbage collector: parsing allocates many small acyclic objects, and the
    collector's passes over them would double the parse time of large specs. The prior state is restored."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _parse(src: SourceText, digest: str, max_terms: int) -> Property:
    with _collector_paused():
        return _parse_text(src, digest, max_terms)


def _parse_text(src: SourceText, digest: str, max_terms: int) -> Property:
    nodes = read_sexprs(src)
    if not nodes:
        raise SpecError("the spec is empty: it has no declarations and no asserts", where=src.where(0))
    for node in nodes:
        if isinstance(node, SList) and node.head in VNNLIB2_COMMANDS:
            raise src.error(
                f"VNN-LIB 2.0 is not supported by the 1.0 reader ('{node.head}'); load the file with "
                "verikit.spec.load.load_spec, which reads both versions", node.pos
            )
    variables: dict = {}
    declared_at: dict = {}
    reader = FormulaReader(src, variables, max_terms=max_terms)
    dnfs: list[list[list]] = []
    assert_pos: list[int] = []
    for node in nodes:
        if isinstance(node, Atom):
            raise src.error(
                f"expected a command such as (declare-const X_0 Real) or (assert ...), got '{node.text}'",
                node.pos,
            )
        head = node.head
        if head in ("declare-const", "declare-fun"):
            _declare(src, node, variables, declared_at)
        elif head == "assert":
            if len(node.items) != 2:
                raise src.error(f"assert takes exactly one formula, got {len(node.items) - 1}", node.pos)
            dnfs.append(reader.dnf(node.items[1]))
            assert_pos.append(node.pos)
        elif head in IGNORED_COMMANDS:
            continue
        elif head is None:
            raise src.error("expected a command name after '(', such as assert or declare-const", node.pos)
        else:
            raise src.error(
                f"unknown command '{head}'; VNN-LIB 1.0 uses declare-const and assert", node.pos
            )
    n_inputs = _count(src, "X", declared_at)
    n_outputs = _count(src, "Y", declared_at)
    terms = reader.conjoin(dnfs, 0, assert_pos)
    notes: list[str] = []
    if reader.strict_seen:
        notes.append(
            "strict comparisons (<, >): the engines bound their closure (<=, >=), so a proof covers the strict "
            "spec; a counterexample must satisfy them strictly"
        )
    cases = _cases(src, terms, n_inputs, n_outputs, notes, declared_at)
    if not cases:
        notes.append("no satisfiable term is left: the property can never be violated")
    return Property(tuple(cases), n_inputs, n_outputs, source=src.source, sha256=digest, notes=tuple(notes))


def _declare(src: SourceText, node: SList, variables: dict, declared_at: dict) -> None:
    """Record `(declare-const NAME Real)` or `(declare-fun NAME () Real)`."""
    items = node.items
    if node.head == "declare-const":
        shape_ok = len(items) == 3
        usage = "(declare-const X_0 Real)"
    else:
        shape_ok = len(items) == 4 and isinstance(items[2], SList) and not items[2].items
        usage = "(declare-fun X_0 () Real)"
    if not shape_ok or not isinstance(items[1], Atom) or not isinstance(items[-1], Atom):
        raise src.error(f"malformed {node.head}; expected {usage}", node.pos)
    name, sort = items[1].text, items[-1].text
    match = _NAME.fullmatch(name)
    if match is None:
        raise src.error(
            f"cannot read variable name '{name}'; VNN-LIB 1.0 names inputs X_0, X_1, ... and outputs Y_0, ...",
            items[1].pos,
        )
    prefix, digits = match.groups()
    if prefix not in _KIND_WORDS:
        raise src.error(
            f"unknown variable prefix '{prefix}' in '{name}'; VNN-LIB 1.0 names inputs X_i and outputs Y_j",
            items[1].pos,
        )
    if len(digits) > 1 and digits[0] == "0":
        raise src.error(f"variable '{name}' has a leading zero in its index; write {prefix}_{int(digits)}",
                        items[1].pos)
    if sort != "Real":
        raise src.error(f"'{name}' must be declared Real, got '{sort}'", items[-1].pos)
    if name in variables:
        raise src.error(f"'{name}' is declared twice (first at {src.where(declared_at[variables[name]])})",
                        node.pos)
    var = (prefix, int(digits))
    variables[name] = var
    declared_at[var] = node.pos


def _count(src: SourceText, kind: str, declared_at: dict) -> int:
    """How many X (or Y) variables are declared; checks the indices run 0..n-1."""
    indices = sorted(index for k, index in declared_at if k == kind)
    singular, plural = _KIND_WORDS[kind]
    if not indices:
        raise SpecError(f"the spec declares no {plural}; add (declare-const {kind}_0 Real)", where=src.source)
    if indices[-1] != len(indices) - 1:
        missing = next(i for i, index in enumerate(indices) if i != index)
        raise src.error(
            f"{kind}_{indices[-1]} is declared but {kind}_{missing} is not: {singular} indices must run "
            f"contiguously from {kind}_0",
            declared_at[(kind, indices[-1])],
        )
    return len(indices)


def _cases(
    src: SourceText, terms: list[list], n_inputs: int, n_outputs: int, notes: list[str], declared_at: dict
) -> list[Case]:
    """Group DNF terms into cases by identical box (see the module docstring)."""
    groups = CaseGroups(notes)
    for number, atoms in enumerate(terms, 1):
        term = TermBuilder(n_inputs, n_outputs)
        for atom in atoms:
            if type(atom) is InputBound:
                term.bound(atom.index, atom.upper, atom.value, atom.strict)
            else:
                term.row(atom.cols, atom.coefs, atom.rhs, atom.strict)
        label = f" (DNF term {number} of {len(terms)})" if len(terms) > 1 else ""
        low, high = term.box_arrays()
        if groups.drop_empty(term, low, high, lambda i: (
                f"empty input box{label}: X_{i} >= {float(low[i])!r} and X_{i} <= {float(high[i])!r}")):
            continue
        for bounds, side, op in ((low, "lower", ">="), (high, "upper", "<=")):
            unbounded = np.flatnonzero(~np.isfinite(bounds))
            if unbounded.size:
                i = int(unbounded[0])
                raise SpecError(
                    f"input X_{i} (declared here) has no {side} bound{label}; every input needs finite lower "
                    f"and upper bounds in every case: add (assert ({op} X_{i} ...))",
                    where=src.where(declared_at[("X", i)]),
                )
        groups.add(term, low, high)
    return groups.cases()
