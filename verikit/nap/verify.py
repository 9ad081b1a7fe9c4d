"""`nap verify`: every NAP question over a region, each one property through the one run path
(verikit.run.run_loaded), collected into one report (schema REPORT below).

Regions: the whole input domain [lower, upper]^n, or an L∞ ball of radius ε around each sample (clipped to
the domain), where the sample's own label's NAP is asked. Non-ambiguity is asked over the domain only (a
pair proven there is proven in every sub-region). A pair whose NAPs ask one neuron for opposite phases is
proven without an engine (no input follows both: "conflicting phases").
"""

from __future__ import annotations

import time
from itertools import combinations

import numpy as np

from verikit.core.network import Network
from verikit.core.property import Box
from verikit.core.result import Proven, Result, Verdict
from verikit.nap import properties
from verikit.nap.mine import Naps
from verikit.portfolio.options import Options

REPORT = "verikit-nap-verify/1"


def infeasible(result: Result) -> bool:
    """Whether the verdict came from the hidden pattern alone: no input of the region follows it."""
    for case in result.cases:
        if isinstance(case.outcome, Proven):
            detail = case.outcome.certificate.detail or {}
            if "hidden_pattern" in detail or "no input follows" in str(detail.get("reason", "")):
                return True
    return False


def _entry(network: Network, result: Result, **where) -> dict:
    from verikit.report.json import to_dict

    entry = {**where, "verdict": result.verdict.value, "engine": result.engine, "method": result.method,
             "seconds": round(result.seconds, 4), "reason": result.reason,
             "pattern_infeasible": result.verdict is Verdict.VERIFIED and infeasible(result)}
    witness = result.counterexample
    if witness is not None:
        entry["counterexample"] = {"x": [float(v) for v in witness.x],
                                   "prediction": int(np.argmax(network.replay(witness.x[None, :])[0]))}
    entry["result"] = to_dict(result)
    return entry


def verify_naps(network: Network, naps: Naps, *, lower: float = 0.0, upper: float = 1.0,
                eps: float | None = None, samples: tuple[np.ndarray, np.ndarray] | None = None,
                timeout: float = 10.0, options: Options = Options(), ambiguity: bool = True,
                labels: tuple[int, ...] | None = None) -> dict:
    """Robustness of every class's NAP (and, over the domain, non-ambiguity of every pair), each property
    given `timeout` seconds. With `eps`, `samples` (x (N, n), y (N,)) name the ball centres."""
    from verikit.run import run_loaded

    started = time.monotonic()
    options = Options(**{**{f: getattr(options, f) for f in options.__dataclass_fields__}, "timeout": timeout})
    n = network.n_inputs
    chosen = [c.label for c in naps.classes if labels is None or c.label in labels]
    entries = []
    if eps is None:
        box = Box(np.full(n, lower, dtype=np.float64), np.full(n, upper, dtype=np.float64))
        region = {"kind": "domain", "lower": lower, "upper": upper}
        for label in chosen:
            prop = properties.robustness(naps, label, box, network.n_outputs, region)
            entries.append(_entry(network, run_loaded(network, prop, options), question="robustness",
                                  labels=[label], region="domain"))
        for first, second in combinations(chosen, 2) if ambiguity else ():
            if properties.conflict(naps.of(first), naps.of(second)):
                entries.append({"question": "non-ambiguity", "labels": [first, second], "region": "domain",
                                "verdict": "verified", "engine": "nap", "method": "conflicting-phases",
                                "seconds": 0.0, "pattern_infeasible": True,
                                "reason": "the two NAPs ask one neuron for opposite phases"})
                continue
            prop = properties.ambiguity(naps, first, second, box, network.n_outputs, region)
            entries.append(_entry(network, run_loaded(network, prop, options), question="non-ambiguity",
                                  labels=[first, second], region="domain"))
    else:
        if samples is None:
            raise ValueError("--eps needs samples (the ball centres)")
        x, y = samples
        for index, (centre, label) in enumerate(zip(np.asarray(x, np.float64), np.asarray(y).astype(int))):
            if int(label) not in chosen:
                continue
            box = Box(np.clip(centre - eps, lower, upper), np.clip(centre + eps, lower, upper))
            region = {"kind": "linf-ball", "eps": eps, "sample": index}
            prop = properties.robustness(naps, int(label), box, network.n_outputs, region)
            entries.append(_entry(network, run_loaded(network, prop, options), question="robustness",
                                  labels=[int(label)], region=f"eps={eps:g} around sample {index}",
                                  sample=index, eps=eps))
    counts = {v: sum(e["verdict"] == v for e in entries) for v in ("verified", "falsified", "unknown", "timeout",
                                                                 "error")}
    return {"schema": REPORT, "model": {"path": network.source, "sha256": network.sha256},
            "naps": {"delta": naps.delta, "data_sha256": naps.data_sha256,
                     "sizes": {str(c.label): c.size for c in naps.classes}},
            "settings": {"timeout": timeout, "eps": eps, "lower": lower, "upper": upper, "engines":
                         list(options.engines)},
            "counts": counts, "seconds": round(time.monotonic() - started, 3), "entries": entries}
