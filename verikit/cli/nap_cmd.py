"""`verikit nap mine|check|verify`: neural activation patterns as specifications (verikit.nap).

Exit codes of `nap verify`: 0 every question verified, 1 some falsified, 5 otherwise (open); bad input 3.
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from verikit.cli.base import handles_errors, main


def _load(model: Path, data: Path | None):
    from verikit.apps.data import load_dataset
    from verikit.onnx.load import load_network

    network = load_network(model)
    dataset = None
    if data is not None:
        dataset = load_dataset(data)
        dataset.check_fits(network.n_inputs, network.n_outputs)
    return network, dataset


@main.group()
def nap() -> None:
    """Neural activation patterns: mine them from data, check their recall, verify them."""


@nap.command("mine")
@click.argument("model", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--data", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Labelled samples (.npz with x, y; or .csv), in the model's input units.")
@click.option("--delta", type=float, default=0.99, show_default=True,
              help="A neuron joins class c's NAP when it has one phase on at least this share of c's samples.")
@click.option("--layers", default="", help="Comma-separated Relu input tensors (or indices 0,1,..); default all.")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), default=Path("naps.json"),
              show_default=True)
@click.option("--debug", is_flag=True, help="Show tracebacks of internal errors.")
@handles_errors
def mine_cmd(model, data, delta, layers, output, debug):
    """Mine every class's NAP from MODEL's hidden values (onnxruntime) on the samples of --data."""
    from verikit.nap.mine import mine, write

    network, dataset = _load(model, data)
    chosen = tuple(name.strip() for name in layers.split(",") if name.strip()) or None
    naps = mine(network, dataset.x, dataset.y, delta, layers=chosen, data_sha256=dataset.sha256)
    write(naps, output)
    for c in naps.classes:
        click.echo(f"class {c.label}: {c.size} neurons, support {c.support:.3f} of {c.samples} samples")
    click.echo(f"wrote {output}")


@nap.command("check")
@click.argument("model", type=click.Path(dir_okay=False, path_type=Path))
@click.argument("naps_file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--data", required=True, type=click.Path(dir_okay=False, path_type=Path), help="Test samples.")
@click.option("--json", "json_out", type=click.Path(dir_okay=False, path_type=Path), help="Write the numbers here.")
@click.option("--debug", is_flag=True, help="Show tracebacks of internal errors.")
@handles_errors
def check_cmd(model, naps_file, data, json_out, debug):
    """Per class: recall, precision, and how many samples follow no NAP or two."""
    from verikit.nap.mine import check, read

    network, dataset = _load(model, data)
    report = check(network, read(naps_file, network), dataset.x, dataset.y)
    for c in report["classes"]:
        click.echo(f"class {c['label']}: size {c['size']}, recall {c['recall']:.3f} of {c['test_samples']}, "
                   f"precision {c['precision']:.3f}")
    click.echo(f"recall {report['recall']:.3f} of {report['samples']}; follow none {report['follow_none']}, "
               f"two or more {report['follow_two_or_more']}")
    if json_out is not None:
        Path(json_out).write_text(json.dumps(report, indent=1) + "\n")


@nap.command("verify")
@click.argument("model", type=click.Path(dir_okay=False, path_type=Path))
@click.argument("naps_file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--region", type=click.Choice(["domain"]), default=None, help="The whole input domain (default).")
@click.option("--eps", type=float, default=None, help="Instead: an L∞ ball of this radius around each --data sample.")
@click.option("--data", type=click.Path(dir_okay=False, path_type=Path), help="Ball centres for --eps.")
@click.option("--limit", type=int, default=None, help="Only the first N samples of --data.")
@click.option("--lower", type=float, default=0.0, show_default=True, help="The input domain's lower bound.")
@click.option("--upper", type=float, default=1.0, show_default=True, help="The input domain's upper bound.")
@click.option("--timeout", type=float, default=10.0, show_default=True, help="Seconds per question.")
@click.option("--engine", "engines", multiple=True, help="Engines to use (repeatable); default the portfolio's.")
@click.option("--no-ambiguity", is_flag=True, help="Skip the non-ambiguity pairs.")
@click.option("--json", "json_out", type=click.Path(dir_okay=False, path_type=Path), default=Path("nap-verify.json"),
              show_default=True)
@click.option("--html", "html_out", type=click.Path(dir_okay=False, path_type=Path), help="Also an HTML report.")
@click.option("--debug", is_flag=True, help="Show tracebacks of internal errors.")
@handles_errors
def verify_cmd(model, naps_file, region, eps, data, limit, lower, upper, timeout, engines, no_ambiguity,
               json_out, html_out, debug):
    """NAP robustness (follows NAP_c ⇒ argmax = c) and non-ambiguity (no input follows two NAPs)."""
    from verikit.core.errors import UsageError
    from verikit.nap.mine import read
    from verikit.nap.verify import verify_naps
    from verikit.portfolio.options import Options

    if eps is not None and region is not None:
        raise UsageError("give --region domain or --eps, not both")
    if eps is not None and data is None:
        raise UsageError("--eps needs --data (the samples the balls are centred on)")
    network, dataset = _load(model, data if eps is not None else None)
    naps = read(naps_file, network)
    options = Options(engines=tuple(engines)) if engines else Options()
    samples = None if dataset is None else (dataset.x[:limit], dataset.y[:limit])
    report = verify_naps(network, naps, lower=lower, upper=upper, eps=eps, samples=samples, timeout=timeout,
                         options=options, ambiguity=not no_ambiguity)
    Path(json_out).write_text(json.dumps(report, indent=1) + "\n")
    for e in report["entries"]:
        note = " (no input follows the pattern)" if e.get("pattern_infeasible") else ""
        click.echo(f"{e['question']} {e['labels']} {e['region']}: {e['verdict']} [{e['engine'] or '-'}] "
                   f"{e['seconds']:.2f} s{note}")
    click.echo(f"{report['counts']} in {report['seconds']:.1f} s; wrote {json_out}")
    if html_out is not None:
        from verikit.apps.html_inputs import nap_html
        from verikit.report.html import write

        write(nap_html(report, network), html_out)
        click.echo(f"wrote {html_out}")
    counts = report["counts"]
    raise SystemExit(1 if counts["falsified"] else 0 if counts["verified"] == len(report["entries"]) else 5)
