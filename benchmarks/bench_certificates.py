"""Certificates on the VNN-COMP unsat instances in ../shared: verify, write the certificate, check it.

    /work/main/.venv/bin/python benchmarks/bench_certificates.py                 # test, acasxu, mnistfc 256x2
    /work/main/.venv/bin/python benchmarks/bench_certificates.py --sets acasxu --jobs 2 --limit 10

Per instance whose ground truth is unsat: `verikit.run.run_instance` under the instance's timeout (proof time),
`write_certificate` (certificate time: the certifying search, verikit.certify), the JSON written to
benchmarks/results/certificates/<set>/, then `check_certificate` from the file (check time: the
independent checker, verikit.checker). Writes benchmarks/results/certificates.json (per instance and
totals) and prints a summary. One torch thread per job.
"""

from __future__ import annotations

import argparse
import csv
import json
import platform
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
SHARED = ROOT.parent / "shared" / "benchmarks"
OUT = ROOT / "benchmarks" / "results"
SETS = {"test": ("test.csv", None), "acasxu": ("acasxu.csv", None), "mnistfc": ("mnistfc.csv", "256x2")}


def unsat_instances(name: str) -> list[tuple[str, str, str]]:
    """(set, onnx, vnnlib) of every unsat row of the set's ground truth (paths relative to SHARED)."""
    table, only = SETS[name]
    with (SHARED / "ground_truth" / table).open(newline="") as handle:
        rows = [r for r in csv.DictReader(handle) if r["truth"] == "unsat"]
    return [(name, r["onnx"], r["vnnlib"]) for r in rows if only is None or only in r["onnx"]]


def timeouts(name: str) -> dict[tuple[str, str], float]:
    found = {}
    for listing in (SHARED / name).glob("*instances.csv"):
        for row in csv.reader(listing.open()):
            if len(row) >= 3:
                found[(f"{name}/{row[0].lstrip('./')}", f"{name}/{row[1].lstrip('./')}")] = float(row[2])
    return found


def run_one(item: tuple[str, str, str, float, float]) -> dict:
    import torch

    torch.set_num_threads(1)
    from verikit.certify import write_certificate
    from verikit.checker import check_certificate, load_certificate
    from verikit.core.result import Budget
    from verikit.onnx.load import load_network
    from verikit.portfolio.options import Options
    from verikit.run import run_instance

    name, onnx, vnnlib, timeout, certify_timeout = item
    model, spec = SHARED / onnx, SHARED / vnnlib
    entry = {"set": name, "onnx": onnx, "vnnlib": vnnlib}
    started = time.monotonic()
    result = run_instance(model, spec, Options(timeout=timeout))
    network = load_network(model)
    entry.update(verdict=result.verdict.value, proof_s=round(time.monotonic() - started, 3),
                 engines=sorted({c.engine for c in result.cases}))
    if result.verdict.value != "verified":
        return entry
    from verikit.spec.load import load_spec

    prop = load_spec(spec, n_inputs=network.n_inputs, n_outputs=network.n_outputs)
    started = time.monotonic()
    certificate = write_certificate(network, prop, Budget.seconds(certify_timeout))
    entry["certificate_s"] = round(time.monotonic() - started, 3)
    path = OUT / "certificates" / name / f"{Path(onnx).stem}__{Path(vnnlib).stem}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(certificate))
    entry.update(certificate=str(path.relative_to(ROOT)), certificate_bytes=path.stat().st_size,
                 leaves=certificate.get("statistics", {}).get("leaves"),
                 incomplete=[c["incomplete"] for c in certificate.get("cases", []) if "incomplete" in c])
    started = time.monotonic()
    report = check_certificate(model, spec, load_certificate(path))
    entry.update(check_s=round(time.monotonic() - started, 3), check=report.status, check_reason=report.reason,
                 checked_leaves=report.leaves, min_margin=report.min_margin)
    return entry


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sets", nargs="+", default=list(SETS), choices=list(SETS))
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--limit", type=int, default=0, help="at most this many instances per set (0: all)")
    parser.add_argument("--certify-timeout", type=float, default=300.0)
    args = parser.parse_args()
    items = []
    for name in args.sets:
        limits = timeouts(name)
        found = unsat_instances(name)
        found = found[: args.limit] if args.limit else found
        items += [(s, o, v, limits.get((o, v), 120.0), args.certify_timeout) for s, o, v in found]
    started = time.monotonic()
    entries = []
    with ProcessPoolExecutor(max_workers=args.jobs) as pool:
        for entry in pool.map(run_one, items):
            entries.append(entry)
            print(json.dumps({k: entry.get(k) for k in ("set", "onnx", "vnnlib", "verdict", "proof_s",
                                                          "certificate_s", "leaves", "check", "check_s")}), flush=True)
    totals = {}
    for name in args.sets:
        mine = [e for e in entries if e["set"] == name]
        totals[name] = {
            "unsat_instances": len(mine),
            "verified": sum(e["verdict"] == "verified" for e in mine),
            "certificates_valid": sum(e.get("check") == "valid" for e in mine),
            "certificates_invalid": sum(e.get("check") == "invalid" for e in mine),
            "certificates_unsupported": sum(e.get("check") == "unsupported" for e in mine),
            "proof_s": round(sum(e["proof_s"] for e in mine), 2),
            "certificate_s": round(sum(e.get("certificate_s", 0.0) for e in mine), 2),
            "check_s": round(sum(e.get("check_s", 0.0) for e in mine), 2),
            "leaves": sum(e.get("leaves") or 0 for e in mine),
        }
    summary = {"command": " ".join(sys.argv), "wall_s": round(time.monotonic() - started, 1), "jobs": args.jobs,
               "machine": platform.platform(), "totals": totals, "instances": entries}
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "certificates.json").write_text(json.dumps(summary, indent=1))
    print(json.dumps(totals, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
