"""`verikit demo` (what `make demo` runs): verify the bundled examples, write reports under reports/demo/,
check the expected answers."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from verikit.cli.base import handles_errors, main

ROOT = Path(__file__).resolve().parents[2]  # the repository: the bundled examples are not installed
INSTANCES = ROOT / "specs" / "instances.csv"
GROUND_TRUTH = ROOT / "specs" / "expected.csv"
OUT = ROOT / "reports" / "demo"


def run_demo() -> int:
    """Run the demo; 0 when every bundled instance gets its expected answer."""
    from verikit.apps import bench
    from verikit.cli.bench_cmd import print_summary
    from verikit.cli.options import console as make_console
    from verikit.portfolio.options import Options
    from verikit.report import json as json_report
    from verikit.report import vnncomp
    from verikit.run import run_instance

    console = make_console()
    first = bench.read_instances(INSTANCES)[0]
    console.rule(f"verikit verify {first.onnx.relative_to(ROOT)} {first.vnnlib.relative_to(ROOT)}")
    result = run_instance(first.onnx, first.vnnlib, Options(timeout=first.timeout))
    report = json_report.write(result, OUT / "run.json")
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


@main.command("demo")
@handles_errors
def demo_command() -> None:
    """Verify the bundled examples in specs/ and write reports under reports/demo/ (a source checkout)."""
    if not INSTANCES.is_file():
        raise click.UsageError(f"the bundled examples are not here ({INSTANCES}); run it in a source checkout")
    sys.exit(run_demo())
