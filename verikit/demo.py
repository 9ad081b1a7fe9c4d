"""`make demo`: verify the bundled examples, write reports under reports/demo/, check the expected answers."""

from __future__ import annotations

import sys
from pathlib import Path

from verikit import bench
from verikit.cli.bench_cmd import print_summary
from verikit.cli.options import console as make_console
from verikit.report import json as json_report
from verikit.report import vnncomp
from verikit.verify import Options, verify_files

ROOT = Path(__file__).resolve().parents[1]
INSTANCES = ROOT / "specs" / "instances.csv"
GROUND_TRUTH = ROOT / "specs" / "expected.csv"
OUT = ROOT / "reports" / "demo"


def main() -> int:
    console = make_console()
    first = bench.read_instances(INSTANCES)[0]
    console.rule(f"verikit verify {first.onnx.relative_to(ROOT)} {first.vnnlib.relative_to(ROOT)}")
    network, result = verify_files(str(first.onnx), str(first.vnnlib), Options(timeout=first.timeout))
    report = json_report.write(result, OUT / "run.json", network)
    console.print(f"{result.verdict.value} ({result.verdict.vnncomp}) by {result.engine}/{result.method} "
                  f"in {result.seconds:.2f} s; report: {report.relative_to(ROOT)}")

    console.rule("verikit bench specs/instances.csv --ground-truth specs/expected.csv")
    instances = bench.read_instances(INSTANCES)
    results_file = OUT / "bench" / "results.csv"
    results_file.unlink(missing_ok=True)  # the demo always runs afresh
    rows = bench.run(instances, OUT / "bench", options=Options(),
                     on_row=lambda row: console.print(f"  {row.result:8} {Path(row.onnx).name} "
                                                      f"{Path(row.vnnlib).name} ({row.run_s:.2f} s)"))
    summary = bench.summarise(rows, instances, bench.read_ground_truth(GROUND_TRUTH))
    print_summary(summary, console)
    for row in rows:
        if row.witness:
            console.print(f"  witness: {Path(row.witness).relative_to(ROOT)}")
    vnncomp.write(result, OUT / "run.result")
    console.print(f"reports written under {OUT.relative_to(ROOT)}/")
    return 1 if summary.wrong or summary.counts.get("error") else 0


if __name__ == "__main__":
    sys.exit(main())
