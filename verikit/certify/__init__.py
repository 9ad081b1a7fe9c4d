"""Certificates: a self-contained, versioned proof artefact that `verikit certificate check` (the
independent checker, verikit.checker) re-derives. Format and trust: docs/certificates.md.

    certificate = write_certificate(network, prop, Budget.seconds(60))
    json.dump(certificate, open("proof.json", "w"))
"""

from __future__ import annotations

import time

from verikit.certify.prove import ProofFailed, ProofSettings, prove_disjunct
from verikit.checker.check import FORMAT, VERSION
from verikit.checker.network import UnsupportedNetwork, read_chain
from verikit.core.errors import ModelError
from verikit.core.network import Network
from verikit.core.property import Property
from verikit.core.pwl import NotPiecewiseLinear
from verikit.core.result import Budget

__all__ = ["ProofSettings", "write_certificate"]


def write_certificate(network: Network, prop: Property, budget: Budget,
                      settings: ProofSettings = ProofSettings()) -> dict:
    """The certificate (a JSON-ready dict) for `prop` on `network`, to be written after a `verified` run.

    A network the checker cannot read gives a certificate that says so (`unsupported`); a case whose
    proof search fails within the budget gets `incomplete` with the reason (the checker rejects it)."""
    import torch

    from verikit.engines.crown.propagate import ReluMlp
    from verikit.onnx.pwl import check_piecewise_linear, to_piecewise_linear

    started = time.monotonic()
    head = {"format": FORMAT, "version": VERSION, "model_sha256": network.sha256, "spec_sha256": prop.sha256,
            "arithmetic": "real", "source": {"model": network.source, "spec": prop.source}}
    try:
        chain = read_chain(network.onnx_bytes)
        pwl = to_piecewise_linear(network)
        if not pwl.is_relu_mlp or len(pwl.layers) < 3:
            raise NotPiecewiseLinear("not a ReLU MLP with a hidden layer")
    except (UnsupportedNetwork, NotPiecewiseLinear) as reason:
        return {**head, "unsupported": f"the checker cannot read this network: {reason}"}
    net = ReluMlp.from_pwl(pwl, torch.float64)
    if list(net.hidden_sizes) != list(chain.hidden_sizes):
        return {**head, "unsupported": f"hidden layers {list(net.hidden_sizes)} in verikit's translation, "
                                       f"{list(chain.hidden_sizes)} in the checker's reading"}
    cases = []
    leaves = 0
    for index, case in enumerate(prop.cases):
        entry = {"index": index, "box": {"lower": case.box.lower.tolist(), "upper": case.box.upper.tolist()},
                 "disjuncts": [{"C": c.C.tolist(), "d": c.d.tolist()} for c in case.disjuncts], "proofs": []}
        cases.append(entry)
        if case.box.is_empty:
            continue
        try:
            check_piecewise_linear(network, pwl, case.box)
            for k, conjunction in enumerate(case.disjuncts):
                tree, count = prove_disjunct(net, conjunction.C, conjunction.d, case.box.lower, case.box.upper,
                                             budget.share(1.0), settings)
                entry["proofs"].append({"disjunct": k, "tree": tree})
                leaves += count
        except (ProofFailed, ModelError) as reason:
            entry["incomplete"] = str(reason)
    head["statistics"] = {"leaves": leaves, "seconds": round(time.monotonic() - started, 3)}
    return {**head, "cases": cases}

