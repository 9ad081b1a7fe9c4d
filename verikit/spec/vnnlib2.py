"""VNN-LIB 2.0 reader: query text -> `Query` -> `Property`, through the optional `vnnlib` package.

    pip install 'verikit[vnnlib2]'     # the reference parser (no wheel for Linux aarch64 yet)

The package parses and type-checks the text; each assertion is put in disjunctive normal form with its
`to_dnf()`, and the assertions are conjoined here, term by term, in the VNN-LIB 1.0 reader's order
(`vnnlib.compat.transform` is not used: it merges disjunctions across assertions and drops half of `==`).
Cases are then built exactly as for 1.0 (see `verikit.spec.vnnlib2_formula`): the same property written
in 1.0 and in 2.0 gives the same cases. Tensors X[i,j] are flattened in C order of the declared shape.

Malformed text raises SpecError located at source:line:col. Before the package sees the text, nesting
deeper than `MAX_DEPTH` parentheses is refused, because its C++ parser crashes the whole process
(stack overflow) on very deep nesting (around 40,000 levels).

Well-formed queries verikit cannot answer raise `UnsupportedQuery` (exit code 5, *unknown*): several
networks, several inputs or outputs, hidden nodes, element types other than float32 and real, inputs
without finite bounds, and (unless `to_property(relax=True)`) constraints other than single-input bounds
and linear output rows.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from pathlib import Path

import numpy as np

from verikit.core.errors import ExitCode, SpecError, VerikitError
from verikit.spec import vnnlib2_formula as formula
from verikit.spec.formula import MAX_TERMS
from verikit.core.property import Property
from verikit.spec.sexpr import MAX_DEPTH

SUPPORTED_ELEMENT_TYPES = ("float32", "real")
INSTALL_HINT = "pip install 'verikit[vnnlib2]'"
_FIRST_HEAD = re.compile(r"(?:\s|;[^\n]*)*\(\s*([^\s()]+)")
_HIDDEN_TEXT = re.compile(r";[^\n]*|\"(?:[^\"\\]|\\.)*\"")  # comments, and strings (with \-escapes)
_COMMENT = re.compile(r";[^\n]*")
_DECLARATION = re.compile(r"\(\s*declare-(?:input|hidden|output)\s+([A-Za-z][A-Za-z0-9_]*)\s+([^\s()\[\]]+)")
_SYNTAX = re.compile(r"syntax error at line (\d+), column (\d+): '(.*)'", re.S)
_TYPE_NAMES = {
    "F16": "float16", "F32": "float32", "F64": "float64", "BF16": "bfloat16", "F8E4M3FN": "float8e4m3fn",
    "F8E5M2": "float8e5m2", "F8E4M3FNUZ": "float8e4m3fnuz", "F8E5M2FNUZ": "float8e5m2fnuz",
    "F4E2M1": "float4e2m1", "I8": "int8", "I16": "int16", "I32": "int32", "I64": "int64", "U8": "uint8",
    "U16": "uint16", "U32": "uint32", "U64": "uint64", "C64": "complex64", "C128": "complex128",
    "Bool": "bool", "String": "string", "Real": "real",
}


class UnsupportedQuery(VerikitError):
    """A well-formed query verikit cannot answer: the answer is *unknown*, with this reason.

    `kind`: element-type, networks, inputs-outputs, hidden, unbounded-input or constraints.
    """

    exit_code = ExitCode.UNKNOWN

    def __init__(self, message: str, *, kind: str, where: str | None = None):
        super().__init__(message, where=where)
        self.kind = kind


class Tensor:
    """One declared tensor: `kind` input/hidden/output, `element_type` an ONNX name or 'real'."""

    def __init__(self, name: str, kind: str, element_type: str, shape: tuple[int, ...],
                 onnx_name: str | None, network: str):
        self.name, self.kind, self.element_type = name, kind, element_type
        self.shape, self.onnx_name, self.network = shape, onnx_name, network

    @property
    def size(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64)) if self.shape else 1

    def __repr__(self) -> str:
        return f"Tensor({self.name} {self.element_type} {list(self.shape)})"


class NetworkDeclaration:
    """One `declare-network`: its tensors in declaration order, and `equal_to`/`isomorphic_to` ('' if none)."""

    def __init__(self, name: str, tensors: list[Tensor], equal_to: str, isomorphic_to: str):
        self.name, self.tensors, self.equal_to, self.isomorphic_to = name, tuple(tensors), equal_to, isomorphic_to

    def of_kind(self, kind: str) -> tuple[Tensor, ...]:
        return tuple(t for t in self.tensors if t.kind == kind)


def looks_like_vnnlib2(text: str) -> bool:
    """Whether the first command of `text` is `vnnlib-version` or `declare-network` (VNN-LIB 2.0)."""
    match = _FIRST_HEAD.match(text)
    return bool(match) and match.group(1) in ("vnnlib-version", "declare-network")


def read_vnnlib2(path: str | Path, *, max_terms: int = MAX_TERMS) -> "Query":
    """Read a VNN-LIB 2.0 file (gzip-compressed too); `sha256` is that of its (uncompressed) bytes."""
    from verikit.spec.vnnlib import read_spec_text

    text, digest = read_spec_text(path)
    return parse_vnnlib2(text, source=str(path), sha256=digest, max_terms=max_terms)


def parse_vnnlib2(text: str, *, source: str = "<string>", sha256: str | None = None,
                  max_terms: int = MAX_TERMS) -> "Query":
    """Parse VNN-LIB 2.0 text; SpecError (source:line:col) when malformed."""
    vnnlib = _package(source)
    digest = sha256 if sha256 is not None else hashlib.sha256(text.encode("utf-8")).hexdigest()
    if "\0" in text:
        raise SpecError("the text contains a NUL byte; is this really a query file?",
                        where=_where(source, text, text.index("\0")))
    code = _blank(_HIDDEN_TEXT, text)  # comments and strings blanked, offsets kept
    # Nesting is measured twice, with strings blanked and without: whichever way the package's lexer
    # reads a quote, deep nesting cannot hide from both (a parse that crashes would take the process down).
    _check_depth(code, text, source)
    _check_depth(_blank(_COMMENT, text), text, source)
    try:
        parsed = vnnlib.parse_query_string(text)
    except vnnlib.VNNLibException as error:
        raise _located(str(error), text, code, source) from None
    except (IndexError, OverflowError, ValueError) as error:  # its std::stod throws out_of_range as IndexError
        raise SpecError(f"the vnnlib parser refuses a literal ({error}): {_number_problem(code)}",
                        where=_where(source, text, _first_bad_number(code))) from None
    return Query(parsed, vnnlib, text, code, source, digest, max_terms)


_LITERAL = re.compile(r"(?<![\w.\[,])[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?(?![\w.])")


def _out_of_range(token: str) -> bool:
    """Whether std::stod would refuse a numeric literal: overflow to inf, or a nonzero number that underflows."""
    value = float(token)
    mantissa = re.split(r"[eE]", token)[0]
    return not math.isfinite(value) or (value == 0.0 and any(c in "123456789" for c in mantissa))


def _first_bad_number(code: str) -> int:
    """Offset of the first literal out of the float64 range (0 when none is found)."""
    return next((m.start() for m in _LITERAL.finditer(code) if _out_of_range(m.group())), 0)


def _number_problem(code: str) -> str:
    bad = next((m.group() for m in _LITERAL.finditer(code) if _out_of_range(m.group())), None)
    if bad is None:
        return "a number or index is out of range"
    return f"number {bad[:30]}{'…' if len(bad) > 30 else ''} is out of the float64 range"


class Query:
    """A parsed VNN-LIB 2.0 query: declarations, and (for the queries verikit answers) its exact DNF."""

    def __init__(self, parsed, vnnlib, text: str, code: str, source: str, sha256: str, max_terms: int):
        self.source, self.sha256, self._text, self._code = source, sha256, text, code
        lexemes = {m.group(1): (m.group(2), m.start(2)) for m in _DECLARATION.finditer(code)}
        self.networks = tuple(
            NetworkDeclaration(net.name, [_tensor(d, kind, lexemes, text, source)
                                          for kind, decls in (("input", net.inputs), ("hidden", net.hidden),
                                                              ("output", net.outputs)) for d in decls],
                               net.equal_to, net.isometric_to)
            for net in parsed.networks
        )
        self.unsupported: UnsupportedQuery | None = self._unsupported()
        self.terms: list[list[formula.Atom]] = []
        if self.unsupported is None:
            shapes = {t.name: t.shape for t in self.tensors}
            starts = [m.start() for m in re.finditer(r"\(\s*assert\b", code)]

            def place(k: int) -> str:  # computed on error only: each costs a pass over the text
                return _where(source, text, starts[k]) if k < len(starts) else source

            per_assertion = []
            for k, assertion in enumerate(parsed.assertions):
                if formula.dnf_size(assertion.expr, vnnlib, max_terms) > max_terms:
                    raise SpecError(f"the assertion expands to more than {max_terms:,} terms in disjunctive "
                                    "normal form; split the query or raise max_terms", where=place(k))
                try:
                    per_assertion.append(formula.assertion_terms(assertion.expr, shapes, vnnlib))
                except SpecError as error:
                    raise SpecError(error.message, where=place(k)) from None
            self.terms = formula.conjoin(per_assertion, max_terms, place)
        self._properties: dict[tuple, Property] = {}

    @property
    def tensors(self) -> tuple[Tensor, ...]:
        """Every declared tensor, in declaration order (the order of an assignment block)."""
        return tuple(t for net in self.networks for t in net.tensors)

    @property
    def network_names(self) -> tuple[str, ...]:
        """The networks that need an ONNX file (those not declared `equal-to` another)."""
        return tuple(net.name for net in self.networks if not net.equal_to)

    def to_property(self, *, relax: bool = False, fill_unbounded: float | None = None) -> Property:
        """The query in normal form; UnsupportedQuery when verikit cannot answer it.

        With `relax`, constraints outside the normal form are left out (proofs stay valid) and the caller
        must check any counterexample with `holds`; without it they make the query unsupported.
        With `fill_unbounded`, inputs without a finite bound are confined to a sub-region of that radius
        (see `vnnlib2_formula.to_cases`): a proof then proves nothing, only a counterexample counts.
        """
        if self.unsupported is not None:
            raise self.unsupported
        key = (relax, fill_unbounded)
        if key not in self._properties:
            self._properties[key] = self._build(relax, fill_unbounded)
        return self._properties[key]

    def holds(self, x: np.ndarray, y: np.ndarray) -> bool:
        """Whether input x and output y (flat, C order) satisfy the query exactly, strictness included."""
        if self.unsupported is not None:
            raise self.unsupported
        (net,) = self.networks
        (inp,), (out,) = net.of_kind("input"), net.of_kind("output")
        return formula.holds(self.terms, {inp.name: np.asarray(x), out.name: np.asarray(y)})

    def check_network(self, network) -> None:
        """SpecError unless `network` fits the declaration: names (where declared), element types, sizes."""
        if self.unsupported is not None:
            raise self.unsupported
        import onnx

        (net,) = self.networks
        model = onnx.load_model_from_string(network.onnx_bytes)
        types = {v.name: v.type.tensor_type.elem_type for v in (*model.graph.input, *model.graph.output)}
        for tensor, onnx_name, count in ((net.of_kind("input")[0], network.input_name, network.n_inputs),
                                         (net.of_kind("output")[0], network.output_name, network.n_outputs)):
            where = self._declared_at(tensor.name)
            if tensor.onnx_name is not None and tensor.onnx_name.strip('"') != onnx_name:
                raise SpecError(f"{tensor.kind} {tensor.name} names ONNX node {tensor.onnx_name} but the model's "
                                f"{tensor.kind} is '{onnx_name}'", where=where)
            actual = _onnx_type_name(types.get(onnx_name, 0))
            if tensor.element_type != "real" and tensor.element_type != actual:
                raise SpecError(f"{tensor.kind} {tensor.name} is declared {tensor.element_type} but the model's "
                                f"{tensor.kind} '{onnx_name}' is {actual}; declare it {actual}, or real to allow "
                                "any type", where=where)
            if tensor.size != count:
                raise SpecError(f"{tensor.kind} {tensor.name} has {tensor.size} elements {list(tensor.shape)} "
                                f"but the model's {tensor.kind} '{onnx_name}' has {count}", where=where)

    # ----- helpers -----

    def _unsupported(self) -> UnsupportedQuery | None:
        for tensor in self.tensors:
            if tensor.element_type not in SUPPORTED_ELEMENT_TYPES:
                return UnsupportedQuery(
                    f"{tensor.kind} {tensor.name} has element type {tensor.element_type}; verikit analyses "
                    f"{' and '.join(SUPPORTED_ELEMENT_TYPES)} only", kind="element-type",
                    where=self._declared_at(tensor.name))
        if len(self.networks) > 1:
            names = ", ".join(net.name for net in self.networks)
            return UnsupportedQuery(f"the query declares {len(self.networks)} networks ({names}); verikit "
                                    "verifies queries over one network", kind="networks", where=self.source)
        (net,) = self.networks
        if net.of_kind("hidden"):
            first = net.of_kind("hidden")[0].name
            return UnsupportedQuery(f"network {net.name} declares hidden nodes; verikit constrains only its "
                                    "input and output", kind="hidden", where=self._declared_at(first))
        if len(net.of_kind("input")) != 1 or len(net.of_kind("output")) != 1:
            return UnsupportedQuery(f"network {net.name} declares {len(net.of_kind('input'))} inputs and "
                                    f"{len(net.of_kind('output'))} outputs; verikit verifies networks with one "
                                    "input and one output", kind="inputs-outputs", where=self.source)
        return None

    def _build(self, relax: bool, fill: float | None) -> Property:
        (net,) = self.networks
        (inp,), (out,) = net.of_kind("input"), net.of_kind("output")
        notes: list[str] = []

        def unbounded(index: int, side: str, label: str) -> UnsupportedQuery:
            return UnsupportedQuery(
                f"input {inp.name} element {index} (flat, C order) has no finite {side} bound{label}; verikit "
                "needs a bounded input region", kind="unbounded-input", where=self._declared_at(inp.name))

        cases, relaxed, filled = formula.to_cases(self.terms, (inp.name, inp.size), (out.name, out.size), notes,
                                                  unbounded, fill)
        if filled:
            notes.append(f"{filled} missing input bound(s) were filled in to search a bounded sub-region (radius "
                         f"{fill}): a counterexample found there is one, a proof there proves nothing")
        if any(atom.strict for term in self.terms for atom in term):
            notes.append("strict comparisons (<, >, !=): the engines bound their closure, so a proof covers the "
                         "strict query; a counterexample must satisfy them strictly")
        if relaxed:
            if not relax:
                raise UnsupportedQuery(
                    f"{relaxed} constraint(s) are neither single-input bounds nor linear in the outputs alone "
                    "(linear input constraints, inputs mixed with outputs, or products)", kind="constraints",
                    where=self.source)
            notes.append(f"{relaxed} constraint(s) outside verikit's normal form were left out for the search: a "
                         "proof still holds; a counterexample must satisfy them (Query.holds)")
        if not cases:
            notes.append("no satisfiable term is left: the property can never be violated")
        return Property(tuple(cases), inp.size, out.size, source=self.source, sha256=self.sha256, notes=tuple(notes))

    def _declared_at(self, name: str) -> str:
        match = re.search(r"\(\s*declare-(?:input|hidden|output)\s+" + re.escape(name) + r"\b", self._code)
        return _where(self.source, self._text, match.start() if match else 0)


def _package(source: str):
    try:
        import vnnlib
    except (ImportError, OSError) as error:
        raise SpecError(f"reading VNN-LIB 2.0 needs the optional 'vnnlib' package ({error}); install it with "
                        f"{INSTALL_HINT} (it has no wheel for Linux aarch64 yet)", where=source) from None
    return vnnlib


def _tensor(decl, kind: str, lexemes: dict, text: str, source: str) -> Tensor:
    element_type = _TYPE_NAMES.get(decl.dtype.name, "")
    if not element_type:
        lexeme, offset = lexemes.get(decl.name, ("?", 0))
        if lexeme != "Real":
            raise SpecError(f"unknown element type '{lexeme}' for {decl.name}; use an ONNX element type such as "
                            "float32, or real", where=_where(source, text, offset))
        element_type = "real"
    onnx_name = decl.onnx_name.strip('"') if decl.onnx_name else None
    return Tensor(decl.name, kind, element_type, tuple(int(d) for d in decl.shape), onnx_name, decl.network_name)


def _onnx_type_name(code: int) -> str:
    """The VNN-LIB (ONNX IR) name of an ONNX element type code, e.g. 1 -> float32."""
    import onnx

    names = {onnx.TensorProto.FLOAT: "float32", onnx.TensorProto.DOUBLE: "float64"}
    return names.get(code) or onnx.TensorProto.DataType.Name(code).lower()


def _where(source: str, text: str, offset: int) -> str:
    line = text.count("\n", 0, offset) + 1
    return f"{source}:{line}:{offset - (text.rfind(chr(10), 0, offset) + 1) + 1}"


def _blank(pattern: re.Pattern, text: str) -> str:
    """`text` with every match of `pattern` replaced by as many spaces (offsets kept)."""
    return pattern.sub(lambda m: " " * len(m.group()), text)


def _check_depth(code: str, text: str, source: str) -> None:
    """SpecError at the first '(' nested deeper than MAX_DEPTH (cheap: one vectorised pass)."""
    data = np.frombuffer(code.encode("utf-8"), dtype=np.uint8)
    at = np.flatnonzero((data == ord("(")) | (data == ord(")")))
    depth = np.cumsum(np.where(data[at] == ord("("), 1, -1), dtype=np.int64)
    too_deep = np.flatnonzero(depth > MAX_DEPTH)
    if too_deep.size:
        offset = len(data[: at[too_deep[0]]].tobytes().decode("utf-8", errors="ignore"))  # bytes -> characters
        raise SpecError(f"expressions are nested more than {MAX_DEPTH} levels deep", where=_where(source, text, offset))


def _located(message: str, text: str, code: str, source: str) -> SpecError:
    """A one-line SpecError at source:line:col from the package's exception text."""
    syntax = _SYNTAX.search(message)
    if syntax:
        line, col, token = int(syntax.group(1)), int(syntax.group(2)) + 1, syntax.group(3)  # columns are 0-based
        what = f"unexpected '{token}'" if token else "unexpected end of the text (is a ')' missing?)"
        if not looks_like_vnnlib2(code) or _FIRST_HEAD.match(code).group(1) != "vnnlib-version":
            what += "; a VNN-LIB 2.0 query starts with (vnnlib-version <2.0>)"
        return SpecError(f"VNN-LIB 2.0 syntax error: {what}", where=f"{source}:{line}:{col}")
    try:
        report = json.loads(message)
        errors = report["errors"]
        first = errors[0]
    except (ValueError, KeyError, IndexError, TypeError):
        return SpecError(" ".join(message.split()), where=source)
    line = int(first.get("line") or 1)
    symbol = str(first.get("offendingSymbol", ""))
    more = f" (and {len(errors) - 1} more error(s))" if len(errors) > 1 else ""
    hint = f": {first['hint']}" if first.get("hint") else ""
    return SpecError(f"{first.get('message', 'invalid query')} '{symbol}'{hint}{more}",
                     where=f"{source}:{line}:{_column(code, line, symbol)}")


def _column(code: str, line: int, symbol: str) -> int:
    """1-based column of `symbol` (or of its name before '[') on `line`; 1 when not found."""
    lines = code.split("\n", line)
    if line < 1 or line > len(lines):
        return 1
    text = lines[line - 1]
    for candidate in (symbol, symbol.split("[")[0]):
        if candidate:
            match = re.search(r"(?<![A-Za-z0-9_.])" + re.escape(candidate) + r"(?![A-Za-z0-9_])", text)
            if match:
                return match.start() + 1
    return 1
