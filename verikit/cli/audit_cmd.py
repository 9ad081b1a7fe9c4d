"""`verikit audit MODEL --data FILE --eps E`: clean, empirical robust and certified robust accuracy;
with `--perturbation KIND:MAGNITUDES` instead of `--eps`, the same under semantic manipulations."""

from __future__ import annotations

import contextlib
import json
import sys
from pathlib import Path
from typing import Iterator

import click

from verikit.cli import params
from verikit.cli.base import handles_errors, main
from verikit.cli.scale import executor_options, html_option, open_executor

from verikit.core.errors import OutputError, UsageError


@contextlib.contextmanager
def progress_bar(enabled: bool) -> Iterator:
    """A `progress(task, done, total)` callback drawing rich bars on stderr (a no-op when disabled)."""
    if not enabled:
        yield None
        return
    from verikit.cli.options import console as make_console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    bar = Progress(TextColumn("{task.description:<18}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                   console=make_console(stderr=True), transient=False)
    tasks: dict[str, int] = {}

    def update(task: str, done: int, total: int) -> None:
        if task not in tasks:
            tasks[task] = bar.add_task(task, total=total)
        bar.update(tasks[task], completed=done, total=total)

    with bar:
        yield update


def audit_settings(eps, norm, method, mean, std, clip_min, clip_max, seed, device, timeout, restarts, steps,
                   batch_size, check_all, lipschitz="none", top_k=1):
    """AuditSettings from the command-line values."""
    from verikit.apps.audit import AuditSettings
    from verikit.apps.data import Normalization
    from verikit.engines.attack.pgd import PGDSettings

    normalization = Normalization(
        mean=mean if mean is not None else 0.0, std=std if std is not None else 1.0,
        clip_min=clip_min, clip_max=clip_max,  # parsed and checked by params.FloatList
    )
    return AuditSettings(eps=tuple(eps), norm=norm, method=method, normalization=normalization, seed=seed,
                         attack=PGDSettings(restarts=restarts, steps=steps), batch_size=batch_size,
                         device=device, timeout=timeout, check_all=check_all,
                         lipschitz=lipschitz if norm == "2" and top_k == 1 else "none", top_k=top_k)


def print_summary(result, written: dict, console) -> None:
    from rich.table import Table

    from verikit.report.audit import summary

    norm = "L∞" if result.settings.norm == "inf" else "L2"
    top = f", top-{result.settings.top_k}" if result.settings.top_k > 1 else ""
    table = Table(title=f"verikit audit: {result.samples} samples, {norm}{top}, {result.settings.method}")
    for column in ("ε", "clean", "empirical", "certified", "#cert", "#fals", "#unk", "#miscl", "s"):
        table.add_column(column, justify="right")
    for outcome in result.per_eps:
        row = summary(outcome)
        counts = row["counts"]
        lipschitz = row.get("certified_by_lipschitz_accuracy")
        ball = row.get("certified_by_ball_accuracy")
        certified = (f"{row['certified_robust_accuracy']:.2%}" + ("" if lipschitz is None else f" (Lip {lipschitz:.0%})")
                     + ("" if ball is None else f" (ball {ball:.0%})"))
        table.add_row(f"{outcome.eps:g}", f"{row['clean_accuracy']:.2%}", f"{row['empirical_robust_accuracy']:.2%}",
                      certified, str(counts["certified"]), str(counts["falsified"]),
                      str(counts["unknown"]), str(counts["misclassified"]),
                      f"{sum(outcome.seconds.values()):.2f}")  # fmt: skip
    console.print(table)
    console.print("empirical = robust accuracy upper bound (correct, not broken by a replayed attack); "
                  "certified = lower bound (proven)")
    rate = result.samples * len(result.per_eps) / max(result.seconds, 1e-9)
    console.print(f"{result.seconds:.2f} s in all ({rate:.1f} sample-ε per second); every falsified sample has "
                  "a counterexample replayed through onnxruntime")
    if result.timed_out:
        console.print("[yellow]timeout reached[/]: undecided samples count as unknown (bounds stay valid)")
    for note in result.notes:
        console.print(f"[yellow]note[/]: {note}")
    for kind, path in written.items():
        console.print(f"{kind}: {path}")


@main.command()
@click.argument("model", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--data", "data_path", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Samples: .npz (x, y), .npy (with --labels) or .csv (see docs/audit.md).")
@click.option("--labels", "labels_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Labels .npy when --data is an x .npy file.")
@click.option("--eps", multiple=True, type=params.EPS,
              help="Radius in raw input units (repeatable: several give a curve).")
@click.option("--perturbation", "perturbations", multiple=True, metavar="KIND:M[,M...]",
              help="Instead of --eps: a manipulation and its magnitudes (brightness:0.1, contrast:0.2, "
                   "rotation:5,15, translation:2, occlusion:3, scratch:8), each sample decided by `verify` "
                   "(repeatable; see docs/perturbations.md).")
@click.option("--image-shape", type=params.FloatList(), metavar="H,W|C,H,W",
              help="Image shape for --perturbation (default: the model's input shape, or a square).")
@click.option("--sample-timeout", type=params.TIMEOUT, default=10.0, show_default=True,
              help="Seconds per sample and perturbation (--perturbation).")
@click.option("--norm", type=click.Choice(["inf", "2"]), default="inf", show_default=True,
              help="inf: L∞ box; 2: L2 ball (certified through its L∞ box, attacked in the ball).")
@click.option("--method", type=click.Choice(["ibp", "crown", "alpha-crown"]), default="crown", show_default=True,
              help="Bound method for certification (alpha-crown runs CROWN first, then α-CROWN on the rest).")
@click.option("--lipschitz", type=click.Choice(["none", "naive", "lipsdp-layer", "lipsdp-neuron"]),
              default="lipsdp-neuron", show_default=True,
              help="With --norm 2: also certify every sample from one proven Lipschitz bound "
                   "(docs/lipschitz.md).")
@click.option("--top-k", "top_k", type=click.IntRange(min=1), default=1, show_default=True,
              help="Robust means the label stays among the K highest outputs (accuracy is top-K accuracy; "
                   "certified from pairwise margin bounds, attacked on the K-th margin).")
@click.option("--mean", type=params.FloatList(),
              help="Normalisation mean: a number, or comma-separated per channel / per input.")
@click.option("--std", type=params.FloatList(positive=True),
              help="Normalisation std (> 0): a number, or comma-separated per channel / per input.")
@click.option("--clip-min", type=params.FloatList(), help="Lowest valid raw input value (number or comma-separated).")
@click.option("--clip-max", type=params.FloatList(), help="Highest valid raw input value (number or comma-separated).")
@click.option("--limit", type=click.IntRange(min=1), help="Audit only the first N samples.")
@click.option("--seed", type=params.SEED, default=0, show_default=True, help="Seed of the attack's random starts.")
@click.option("--device", type=click.Choice(["cpu", "cuda"]), default="cpu", show_default=True,
              help="Device for bound propagation.")
@click.option("--timeout", type=params.TIMEOUT,
              help="Wall-clock budget in seconds (undecided samples count as unknown).")
@click.option("--restarts", type=click.IntRange(min=1), default=8, show_default=True, help="PGD starts per sample.")
@click.option("--steps", type=click.IntRange(min=1), default=40, show_default=True, help="PGD steps per start.")
@click.option("--batch-size", type=click.IntRange(min=1), default=64, show_default=True,
              help="Samples per bound-propagation (and attack) batch.")
@click.option("--threads", type=click.IntRange(min=1), help="torch CPU threads (default: torch's choice).")
@click.option("--self-check", "check_all", is_flag=True,
              help="Certify and attack every sample (also decided ones) to cross-check soundness; slower.")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path),
              help="Write audit.json, samples.csv, witnesses.npz and (several ε) curve.png here "
                   "(and, when sharded, each finished shard under shards/, so a rerun resumes).")
@click.option("--jobs", type=click.IntRange(min=1), default=1, show_default=True,
              help="Shards audited in parallel (local workers, or the CPUs of a local Ray).")
@click.option("--shard-size", type=click.IntRange(min=1),
              help=f"Samples per task; shards the audit (default {100} when --jobs > 1 or --executor ray). "
                   "Results depend on the shard size, not on the executor. --timeout then bounds each shard.")
@executor_options
@html_option
@click.option("--json", "as_json", is_flag=True, help="Print the JSON report on stdout (no progress bar).")
@click.option("--debug", is_flag=True, help="Show tracebacks of internal errors.")
@handles_errors
def audit(model, data_path, labels_path, limit, threads, out_dir, jobs, shard_size, executor_kind, ray_address,
          task_threads, html_path, as_json, debug, perturbations, image_shape, sample_timeout, **options):
    """Audit MODEL's robustness on a labelled dataset at one or more ε.

    Prints clean accuracy, empirical robust accuracy (upper bound: correct and not broken by a PGD attack
    replayed through onnxruntime) and certified robust accuracy (lower bound: proven by bound propagation).
    """
    import torch

    from verikit.apps.audit import audit_files
    from verikit.report import audit as audit_report

    if threads is not None:
        torch.set_num_threads(threads)
    if bool(perturbations) == bool(options["eps"]):
        raise UsageError("give --eps (L-inf / L2 robustness) or --perturbation (manipulations), one of the two")
    if perturbations:
        if shard_size is not None or jobs > 1 or executor_kind != "local":
            raise UsageError("--perturbation audits run in one process (no --jobs, --shard-size or --executor)")
        perturbation_audit_command(model, data_path, labels_path, limit, perturbations, image_shape,
                                   sample_timeout, out_dir, html_path, as_json, options)
        return
    settings = audit_settings(**options)
    labels = str(labels_path) if labels_path else None
    sharded = shard_size is not None or jobs > 1 or executor_kind != "local"
    with progress_bar(enabled=sys.stderr.isatty() and not as_json) as progress:
        if sharded:
            from verikit.apps.audit_shards import SHARD_SIZE, audit_sharded

            with open_executor(executor_kind, jobs, ray_address) as executor:
                result = audit_sharded(str(model), str(data_path), settings, executor, labels_path=labels,
                                       limit=limit, shard_size=shard_size or SHARD_SIZE, out_dir=out_dir,
                                       threads=task_threads, progress=progress)
        else:
            result = audit_files(str(model), str(data_path), settings, labels_path=labels, limit=limit,
                                 progress=progress)
    written, unwritten = {}, None  # an unwritable --out must not cost the numbers: printed, then the error
    try:
        if out_dir is not None:
            written = audit_report.write_all(result, out_dir)
        if html_path is not None:
            from verikit.apps.html_inputs import audit_html
            from verikit.report.html import write

            witnesses = [(i, o.eps, x) for o in result.per_eps for i, x in sorted(o.witnesses.items())]
            written["html"] = write(audit_html(audit_report.to_dict(result), witnesses), html_path)
    except OutputError as error:
        unwritten = error
    if as_json:
        click.echo(json.dumps(audit_report.to_dict(result), indent=2))
    else:
        from verikit.cli.options import console as make_console

        print_summary(result, written, make_console())
    if unwritten is not None:
        click.echo(f"verikit: error: {unwritten}", err=True)


def perturbation_audit_command(model, data_path, labels_path, limit, perturbations, image_shape, sample_timeout,
                               out_dir, html_path, as_json, options) -> None:
    """The --perturbation branch of `verikit audit` (verikit.apps.perturbation_audit)."""
    from verikit.apps.data import Normalization, load_dataset
    from verikit.apps.perturbation_audit import PerturbationAuditSettings, parse_perturbations, perturbation_audit
    from verikit.onnx.load import load_network
    from verikit.report.html import perturbation_audit_page, write

    if image_shape is not None and not all(v == int(v) and v > 0 for v in image_shape):
        raise UsageError("--image-shape: expected positive integers, e.g. 28,28")
    normalization = Normalization(
        mean=options["mean"] if options["mean"] is not None else 0.0,
        std=options["std"] if options["std"] is not None else 1.0,
        clip_min=options["clip_min"] if options["clip_min"] is not None else 0.0,
        clip_max=options["clip_max"] if options["clip_max"] is not None else 1.0)
    settings = PerturbationAuditSettings(
        parse_perturbations(perturbations), normalization,
        tuple(int(v) for v in image_shape) if image_shape is not None else None,
        sample_timeout=sample_timeout, timeout=options["timeout"], seed=options["seed"])
    network = load_network(str(model))
    dataset = load_dataset(str(data_path), str(labels_path) if labels_path else None).head(limit)
    with progress_bar(enabled=sys.stderr.isatty() and not as_json) as progress:
        report = perturbation_audit(network, dataset, settings, progress)
    pictures = report.pop("_pictures")
    written = {}
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
        path = out_dir / "perturbation_audit.json"
        try:
            path.write_text(json.dumps(report, indent=2))
        except OSError as error:
            raise OutputError(f"cannot write: {error.strerror}", where=str(path)) from None
        written["json"] = path
    if html_path is not None:
        written["html"] = write(perturbation_audit_page(report, pictures), html_path)
    if as_json:
        click.echo(json.dumps(report, indent=2))
        return
    from rich.table import Table

    from verikit.cli.options import console as make_console

    console = make_console()
    table = Table(title=f"verikit audit: {report['data']['samples']} samples, manipulations")
    for column in ("perturbation", "clean", "empirical", "certified", "#cert", "#fals", "#open", "#miscl",
                   "s/sample"):
        table.add_column(column, justify="right")
    for row in report["results"]:
        counts = row["counts"]
        table.add_row(row["perturbation"], f"{row['clean_accuracy']:.2%}", f"{row['empirical_accuracy']:.2%}",
                      f"{row['certified_accuracy']:.2%}", str(counts["certified"]), str(counts["falsified"]),
                      str(counts["unknown"] + counts["timeout"]), str(counts["misclassified"]),
                      f"{row['seconds_per_sample']:.2f}")
    console.print(table)
    console.print("certified = verified for every member / every theta; empirical = not broken by a manipulated "
                  "image replayed through onnxruntime")
    for kind, path in written.items():
        console.print(f"{kind}: {path}")
