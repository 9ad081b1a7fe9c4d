"""Check a verikit certificate against the model and spec files, independently of the engines.

For every case of the spec and every disjunct of the case, the certificate holds a split tree. The checker
walks it: input splits must cut a coordinate strictly inside the node's box (the two halves cover it),
ReLU splits must name a hidden neuron not split above (the phases z <= 0, z >= 0 cover it). At each leaf
it re-derives, in outward-rounded float64 (verikit.checker.rigorous), the hidden bounds and the CROWN
lower bound of the named row with the leaf's α and β, and requires it above 0 — or finds the leaf's
split constraints contradictory (an empty domain). Nothing the certificate claims about bounds is taken
on trust; the tree, the row, α and β are only hints that make the bound easy to re-derive.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from verikit.checker.network import Chain, UnsupportedNetwork, read_chain
from verikit.core.errors import ExitCode, ModelError, VerikitError
from verikit.checker.rigorous import backward_bound, layer_bounds

FORMAT = "verikit-certificate"
VERSION = 1


class BadCertificate(VerikitError):
    """The certificate file is unreadable or not a verikit certificate (bad input, exit 3)."""

    exit_code = ExitCode.BAD_INPUT


@dataclass
class CheckReport:
    """`status`: valid, invalid or unsupported; `reason` names the first failure."""

    status: str
    reason: str = ""
    leaves: int = 0
    empty_leaves: int = 0
    min_margin: float = float("inf")
    notes: list[str] = field(default_factory=list)

    @property
    def valid(self) -> bool:
        return self.status == "valid"


class _Invalid(Exception):
    pass


def sha256_file(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def load_certificate(path: str | Path) -> dict:
    """The certificate's JSON object; BadCertificate when it is not one."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise BadCertificate(f"cannot read the certificate {path}: {error}") from error
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise BadCertificate(f"{path} is not a {FORMAT} file")
    if data.get("version") != VERSION:
        raise BadCertificate(f"{path}: certificate version {data.get('version')!r}, this checker reads {VERSION}")
    return data


def check_certificate(model: str | Path, spec: str | Path, certificate: dict) -> CheckReport:
    """Check `certificate` (a loaded JSON object) against the files; never raises for a wrong proof."""
    from verikit.spec.load import load_spec  # the spec reader is trusted (docs/certificates.md)

    try:
        data = Path(model).read_bytes()
    except OSError as error:
        raise ModelError(f"cannot read the model: {error.strerror or error}", where=str(model)) from error
    if certificate.get("model_sha256") != hashlib.sha256(data).hexdigest():
        return CheckReport("invalid", "the certificate is for another model (sha256 differs)")
    try:
        spec_digest = sha256_file(spec)
    except OSError as error:
        from verikit.core.errors import SpecError

        raise SpecError(f"cannot read the spec: {error.strerror or error}", where=str(spec)) from error
    if certificate.get("spec_sha256") != spec_digest:
        return CheckReport("invalid", "the certificate is for another spec (sha256 differs)")
    if "unsupported" in certificate:
        return CheckReport("unsupported", f"the certificate says: {certificate['unsupported']}")
    try:
        chain = read_chain(data)
    except UnsupportedNetwork as reason:
        return CheckReport("unsupported", str(reason))
    prop = load_spec(spec)
    report = CheckReport("valid")
    try:
        cases = certificate.get("cases")
        if not isinstance(cases, list) or len(cases) != len(prop.cases):
            raise _Invalid(f"the spec has {len(prop.cases)} case(s), the certificate {_count(cases)}")
        for index, (case, entry) in enumerate(zip(prop.cases, cases)):
            _check_case(chain, index, case, entry, report)
    except _Invalid as failure:
        report.status, report.reason = "invalid", str(failure)
    except (KeyError, TypeError, ValueError, IndexError) as error:
        report.status, report.reason = "invalid", f"malformed certificate: {type(error).__name__}: {error}"
    return report


def _count(value) -> str:
    return str(len(value)) if isinstance(value, list) else "none"


def _array(value, shape: tuple[int, ...] | None = None) -> np.ndarray:
    array = np.asarray(value, dtype=np.float64)
    if shape is not None and array.shape != shape:
        raise _Invalid(f"an array of shape {array.shape} where {shape} belongs")
    return array


def _check_case(chain: Chain, index: int, case, entry: dict, report: CheckReport) -> None:
    where = f"case {index}"
    n = chain.n_inputs
    lower, upper = _array(entry["box"]["lower"], (n,)), _array(entry["box"]["upper"], (n,))
    if not (np.array_equal(lower, case.box.lower) and np.array_equal(upper, case.box.upper)):
        raise _Invalid(f"{where}: the certificate's box differs from the spec's")
    if not (np.all(np.isfinite(lower)) and np.all(np.isfinite(upper))):
        raise _Invalid(f"{where}: the box is unbounded")
    if len(entry["disjuncts"]) != len(case.disjuncts):
        raise _Invalid(f"{where}: the certificate lists {len(entry['disjuncts'])} disjuncts, the spec {len(case.disjuncts)}")
    for k, (stated, conjunction) in enumerate(zip(entry["disjuncts"], case.disjuncts)):
        C, d = _array(stated["C"]), _array(stated["d"])
        if C.shape != conjunction.C.shape or not (np.array_equal(C, conjunction.C) and np.array_equal(d, conjunction.d)):
            raise _Invalid(f"{where}, disjunct {k}: the certificate's rows differ from the spec's")
    if np.any(lower > upper):
        report.notes.append(f"{where}: empty box")
        return
    proofs = {int(p["disjunct"]): p["tree"] for p in entry["proofs"]}
    for k, conjunction in enumerate(case.disjuncts):
        if k not in proofs:
            raise _Invalid(f"{where}: no proof for disjunct {k}")
        if conjunction.rows == 0:
            raise _Invalid(f"{where}, disjunct {k} has no rows: it holds everywhere and cannot be refuted")
        phases = [np.zeros(size, dtype=np.int8) for size in chain.hidden_sizes]
        _check_tree(chain, proofs[k], lower.copy(), upper.copy(), phases, conjunction, f"{where}, disjunct {k}", report)


def _check_tree(chain: Chain, root: dict, lower: np.ndarray, upper: np.ndarray, phases: list[np.ndarray],
                conjunction, where: str, report: CheckReport) -> None:
    stack = [(root, lower, upper, phases, "root")]
    while stack:
        node, lo, hi, ph, path = stack.pop()
        if not isinstance(node, dict):
            raise _Invalid(f"{where}, node {path}: not an object")
        split = node.get("split")
        if split is None:
            _check_leaf(chain, node, lo, hi, ph, conjunction, f"{where}, leaf {path}", report)
            continue
        children = node["children"]
        if not isinstance(children, list) or len(children) != 2:
            raise _Invalid(f"{where}, node {path}: a split needs exactly two children")
        if split == "input":
            dim, at = int(node["dim"]), float(node["at"])
            if not (0 <= dim < lo.size and lo[dim] < at < hi[dim]):
                raise _Invalid(f"{where}, node {path}: input split x{dim} = {at!r} is not strictly inside "
                               f"[{lo[dim]!r}, {hi[dim]!r}]")
            left_hi, right_lo = hi.copy(), lo.copy()
            left_hi[dim], right_lo[dim] = at, at
            stack.append((children[1], right_lo, hi, ph, path + ".1"))
            stack.append((children[0], lo, left_hi, ph, path + ".0"))
        elif split == "relu":
            layer, neuron = int(node["layer"]), int(node["neuron"])
            if not (0 <= layer < len(ph) and 0 <= neuron < ph[layer].size) or ph[layer][neuron] != 0:
                raise _Invalid(f"{where}, node {path}: ReLU split ({layer}, {neuron}) is out of range or split twice")
            for child, sign, suffix in ((children[0], -1, ".0"), (children[1], 1, ".1")):
                child_phases = [p.copy() for p in ph]
                child_phases[layer][neuron] = sign
                stack.append((child, lo, hi, child_phases, path + suffix))
        else:
            raise _Invalid(f"{where}, node {path}: unknown split kind {split!r}")


def _per_layer(chain: Chain, values, name: str, where: str) -> list[np.ndarray | None] | None:
    if values is None:
        return None
    if len(values) != len(chain.hidden_sizes):
        raise _Invalid(f"{where}: {name} has {len(values)} layers, the network {len(chain.hidden_sizes)}")
    found = []
    for size, layer in zip(chain.hidden_sizes, values):
        array = None if layer is None else _array(layer, (size,))[None, :]
        found.append(array)
    return found


def _check_leaf(chain: Chain, leaf: dict, lower: np.ndarray, upper: np.ndarray, phases: list[np.ndarray],
                conjunction, where: str, report: CheckReport) -> None:
    report.leaves += 1
    bounds = layer_bounds(chain, (lower, upper), phases)
    if bounds is None:
        report.empty_leaves += 1
        return
    if leaf.get("empty"):
        raise _Invalid(f"{where}: claimed empty, but its split constraints are consistent as far as bounds show")
    row = int(leaf["row"])
    if not 0 <= row < conjunction.rows:
        raise _Invalid(f"{where}: row {row} does not exist")
    alphas = _per_layer(chain, leaf.get("alpha"), "alpha", where)
    betas = _per_layer(chain, leaf.get("beta"), "beta", where)
    for alpha in alphas or []:
        if alpha is not None and not np.all((alpha >= 0) & (alpha <= 1)):
            raise _Invalid(f"{where}: an α slope outside [0, 1]")
    for beta in betas or []:
        if beta is not None and not np.all(beta >= 0):
            raise _Invalid(f"{where}: a negative β multiplier")
    if betas is not None:
        betas = [b if b is not None else np.zeros((1, size)) for b, size in zip(betas, chain.hidden_sizes)]
    margin = backward_bound(chain, len(chain.hidden_sizes), conjunction.C[row : row + 1], -conjunction.d[row : row + 1],
                            (lower, upper), bounds, phases, alphas, betas)[0]
    report.min_margin = min(report.min_margin, float(margin))
    if not margin > 0:
        raise _Invalid(f"{where}: the re-derived lower bound of row {row} is {margin:.6g}, not above 0")
