"""`verikit soundness generate|run`: hidden-counterexample benchmarks, and judging any verifier on them."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import click

from verikit.cli import params
from verikit.core import output
from verikit.cli.base import handles_errors, main
from verikit.cli.options import build_options, portfolio_options
from verikit.cli.scale import executor_options, html_option, open_executor
from verikit.witness.check import DEFAULT_TOLERANCE


@main.group()
def soundness() -> None:
    """Test verifiers' soundness on benchmarks whose counterexamples are known but hidden."""


@soundness.command()
@click.argument("out", type=click.Path(file_okay=False, path_type=Path))
@click.option("--arch", type=click.Choice(["mlp", "cnn"]), default="mlp", show_default=True)
@click.option("--activation", type=click.Choice(["relu", "tanh", "sigmoid"]), default="relu", show_default=True)
@click.option("--count", type=click.IntRange(min=1), default=10, show_default=True, help="Instances to keep.")
@click.option("--seed", type=params.SEED, default=0, show_default=True)
@click.option("--input-size", "input_sizes", type=click.IntRange(min=3), multiple=True,
              help="MLP: number of inputs (default 10); CNN: image side s, input 1 x s x s (default 5). "
                   "Repeat to cycle networks through several sizes.")
@click.option("--eps", "eps_values", type=params.POSITIVE_EPS, multiple=True,
              help="L-inf radius of the boxes (default 0.2); repeat to cycle networks through several.")
@click.option("--num-classes", type=click.IntRange(min=2), default=3, show_default=True)
@click.option("--planted-fraction", type=params.FiniteFloat(0.0, 1.0, what="a fraction"), default=0.5,
              show_default=True,
              help="Share of instances with a planted (hidden) counterexample.")
@click.option("--instances-per-model", type=click.IntRange(min=1), default=5, show_default=True)
@click.option("--hidden", type=click.IntRange(min=2), default=32, show_default=True, help="Hidden units per layer.")
@click.option("--timeout", type=params.TIMEOUT, default=30.0, show_default=True,
              help="Per-instance timeout written to instances.csv (s).")
@click.option("--train-steps", type=click.IntRange(min=0), default=600, show_default=True)
@click.option("--attack-seconds", type=params.SECONDS, default=8.0, show_default=True,
              help="Strong-attack budget per candidate instance (s).")
@click.option("--prove-seconds", type=params.SECONDS, default=5.0, show_default=True,
              help="Complete-engine budget per clean instance (s); 0 leaves clean truths unknown.")
@click.option("--threads", type=click.IntRange(min=1), default=1, show_default=True, help="torch CPU threads.")
@click.option("--debug", is_flag=True, help="Show tracebacks of internal errors.")
@handles_errors
def generate(out, arch, activation, count, seed, input_sizes, eps_values, num_classes, planted_fraction,
             instances_per_model, hidden, timeout, train_steps, attack_seconds, prove_seconds, threads, debug):
    """Write a VNN-COMP style benchmark to OUT with planted counterexamples that strong PGD misses.

    The answers (truth per instance, planted witnesses) go to OUT/answers/, apart from instances.csv.
    """
    import torch

    from verikit.apps.soundness.generate import GenerateConfig
    from verikit.apps.soundness.generate import generate as generate_benchmark
    from verikit.apps.soundness.training import TrainSettings

    torch.set_num_threads(threads)
    config = GenerateConfig(
        arch=arch, activation=activation, count=count, seed=seed,
        input_sizes=tuple(input_sizes) or ((10,) if arch == "mlp" else (5,)), eps_values=tuple(eps_values) or (0.2,),
        num_classes=num_classes, planted_fraction=planted_fraction, instances_per_model=instances_per_model,
        hidden=hidden, timeout=timeout, train=TrainSettings(steps=train_steps), attack_seconds=attack_seconds,
        prove_seconds=prove_seconds,
    )
    record = generate_benchmark(config, out, progress=lambda message: click.echo(message, err=True))
    counts = record["counts"]
    click.echo(f"wrote {sum(counts.values())} instances to {out} in {record['seconds']:.1f} s: "
               f"{counts['sat']} sat, {counts['unsat']} unsat, {counts['unknown']} unknown "
               f"({len(record['rejected'])} candidate(s) rejected); answers in {out / 'answers'}")


def _default_answers(bench: Path) -> Path | None:
    folder = bench if bench.is_dir() else bench.parent
    candidate = folder / "answers" / "answers.csv"
    return candidate if candidate.is_file() else None


def print_report(data: dict, console) -> None:
    from rich.table import Table

    style = {"soundness_bug": "bold red", "false_alarm": "red", "truth_wrong": "bold yellow",
             "correct": "green", "new_sat": "green"}
    table = Table(title=f"soundness of {data['verifier']}")
    for column in ("instance", "truth", "answer", "judgement", "s", "reason"):
        table.add_column(column, overflow="fold")
    for item in data["judgements"]:
        name = f"{Path(item['onnx']).name} {Path(item['vnnlib']).name}"
        mark = style.get(item["judgement"], "")
        judgement = f"[{mark}]{item['judgement']}[/]" if mark else item["judgement"]
        table.add_row(name, item["truth"], item["answer"], judgement, f"{item['seconds']:.1f}", item["reason"])
    console.print(table)
    counts = ", ".join(f"{count} {name}" for name, count in data["counts"].items() if count)
    console.print(f"{counts} in {data['seconds']:.1f} s")
    if not data["sound"]:
        console.print(f"[bold red]SOUNDNESS BUGS: {data['counts']['soundness_bug']}[/] (unsat where a "
                      "counterexample is known)")


@soundness.command("run")
@click.argument("bench", type=click.Path(exists=True, path_type=Path))
@click.option("--verifier", "command", help="External tool, called as CMD v1 CATEGORY ONNX VNNLIB RESULT TIMEOUT "
              "(VNN-COMP run_instance convention). Default: verikit in process.")
@click.option("--answers", "answers_file", type=click.Path(dir_okay=False, path_type=Path),
              help="Truth per instance (answers.csv or a ground-truth CSV; matched by content hash). "
                   "Default: BENCH/answers/answers.csv when present.")
@click.option("--timeout-scale", type=params.SCALE, default=1.0, show_default=True)
@click.option("--grace", type=params.SECONDS, default=10.0, show_default=True,
              help="Seconds past the timeout before an external tool is killed.")
@click.option("--jobs", type=click.IntRange(min=1), default=1, show_default=True)
@executor_options
@click.option("--tolerance", type=params.TOLERANCE, default=DEFAULT_TOLERANCE, show_default=True,
              help="Absolute tolerance when validating sat witnesses.")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path),
              default=Path("reports/soundness"), show_default=True,
              help="Folder for result files and soundness.json.")
@portfolio_options
@html_option
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.option("--debug", is_flag=True, help="Show tracebacks of internal errors.")
@handles_errors
def run(bench, command, answers_file, timeout_scale, grace, jobs, executor_kind, ray_address, task_threads, tolerance,
        out_dir, html_path, as_json, debug, **portfolio):
    """Run a verifier on every instance of BENCH (folder or instances CSV) and judge its answers.

    unsat where a counterexample is known is a soundness bug (exit 1); sat without a valid witness is a
    false alarm; sat with a valid witness where the truth says unsat means the truth is wrong.
    """
    from verikit.cli.options import console as make_console

    from verikit.apps.bench import read_instances
    from verikit.apps.soundness.answers import read_answers
    from verikit.apps.soundness.harness import Verifier, report, run_harness

    instances = read_instances(bench)
    answers_file = answers_file or _default_answers(bench)
    answers = read_answers(answers_file) if answers_file else {}
    verifier = Verifier.external(command, grace) if command else Verifier(options=build_options(0.0, **portfolio))
    console = make_console(stderr=True)
    started = time.monotonic()
    say = (lambda j: console.print(f"{Path(j.vnnlib).name}: {j.answer} → {j.judgement}", highlight=False)
           if not as_json else None)
    if executor_kind == "local" and task_threads is None:  # the harness's own pool (threads for external tools)
        judgements = run_harness(instances, verifier, answers, out_dir, timeout_scale=timeout_scale, jobs=jobs,
                                 tolerance=tolerance, on_judgement=say)
    else:
        with open_executor(executor_kind, jobs, ray_address) as executor:
            judgements = run_harness(instances, verifier, answers, out_dir, timeout_scale=timeout_scale,
                                     tolerance=tolerance, on_judgement=say, executor=executor,
                                     threads=task_threads)
    data = report(judgements, benchmark=str(bench), verifier=verifier,
                  answers_file=str(answers_file) if answers_file else None, tolerance=tolerance,
                  timeout_scale=timeout_scale, seconds=time.monotonic() - started)
    output.write_text(out_dir / "soundness.json", json.dumps(data, indent=2) + "\n")
    if html_path is not None:
        from verikit.report.html import soundness_page, write

        write(soundness_page(data), html_path)
    if as_json:
        click.echo(json.dumps(data, indent=2))
    else:
        print_report(data, make_console())
        click.echo(f"report: {out_dir / 'soundness.json'}")
    sys.exit(0 if data["sound"] else 1)
