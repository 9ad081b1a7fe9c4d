"""`make fuzz`: the hostile-input corpus (tests/hostile.py) plus seeded mutations, every command a subprocess.

    python benchmarks/fuzz.py --examples 25 --jobs 2 [--seed 0] [--out benchmarks/results/fuzz.json]

Prints and writes the number of inputs per class, the outcomes (exit codes, hangs, signals) per class,
and every run that misbehaved (exit 4, traceback, hang, more than one error line, a file not named, beyond
its timeout + 1 s + start-up). Exit 1 when any run misbehaved.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT))

import hostile  # noqa: E402
import hostile_mutations  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=25, help="seeded mutations per input class")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "fuzz.json")
    args = parser.parse_args()
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="verikit-fuzz-") as folder:
        cases = hostile.build_cases(folder)
        cases += hostile_mutations.mutations(folder, examples=args.examples, seed=args.seed)
        slack = 2.0 * hostile.startup_seconds()
        print(f"{len(cases)} runs, start-up {slack / 2:.1f} s, {args.jobs} at a time", file=sys.stderr)
        with ThreadPoolExecutor(max_workers=args.jobs) as pool:
            outcomes = list(pool.map(lambda case: hostile.run_case(case, slack=slack), cases))
    per_class: dict[str, Counter] = defaultdict(Counter)
    bad = []
    for case, outcome in zip(cases, outcomes):
        per_class[case.kind][hostile.outcome_word(outcome)] += 1
        found = hostile.problems(case, outcome, slack=slack)
        if found:
            bad.append({"case": case.name, "args": list(case.args), "problems": found, "stderr": outcome.stderr[-500:]})
    totals = Counter(hostile.outcome_word(o) for o in outcomes)
    record = {
        "runs": len(cases), "examples_per_class": args.examples, "seed": args.seed,
        "inputs_per_class": {kind: sum(c.values()) for kind, c in sorted(per_class.items())},
        "outcomes_per_class": {kind: dict(sorted(c.items())) for kind, c in sorted(per_class.items())},
        "outcomes": dict(sorted(totals.items())),
        "misbehaved": bad, "startup_s": round(slack / 2, 2), "seconds": round(time.monotonic() - started, 1),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=2) + "\n")
    for kind, counts in record["outcomes_per_class"].items():
        outcomes = ", ".join(f"{n} {w}" for w, n in counts.items())
        print(f"{kind:9} {record['inputs_per_class'][kind]:4} inputs: {outcomes}")
    print(f"total {len(cases)} runs in {record['seconds']} s: " + ", ".join(f"{n} {w}" for w, n in totals.items()))
    for item in bad:
        print(f"MISBEHAVED {item['case']}: {'; '.join(item['problems'])}")
    print(f"written to {args.out}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
