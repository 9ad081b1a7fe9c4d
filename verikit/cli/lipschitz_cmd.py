"""`verikit lipschitz MODEL`: a proven Lipschitz upper bound (naive, LipSDP-Layer, LipSDP-Neuron; MaxMin
layers by the extension's constraints or a ReLU rewriting) and a
witnessed lower bound. Exit codes: 0 a bound was reported (notes say when it fell back to the naive
one, JSON `timed_out` when --timeout ended the SDP), 2 usage, 3 unreadable model or region."""

from __future__ import annotations

import json
from pathlib import Path

import click

from verikit.cli import params
from verikit.cli.base import command_started, exit_now, handles_errors, hard_deadline, main
from verikit.core.errors import ModelError, UsageError


def parse_pair(text: str | None) -> tuple[int, int] | None:
    if text is None:
        return None
    try:
        i, j = (int(part) for part in text.split(","))
    except ValueError:
        raise UsageError(f"--output-pair takes two output indices I,J, got {text!r}") from None
    return i, j


def read_model(model: Path):
    """The model's bytes and its LipNet; ModelError with the reason when it is not such a chain."""
    from verikit.lipschitz import NotLipschitzReadable, read_lipnet

    try:
        data = model.read_bytes()
    except OSError as error:
        raise ModelError(f"cannot read {model}: {error.strerror}") from None
    try:
        return data, read_lipnet(data)
    except NotLipschitzReadable as reason:
        raise ModelError(f"{model}: the Lipschitz methods read chains of Gemm/MatMul/Add/Sub with "
                         f"Relu/Tanh/Sigmoid/MaxMin between them: {reason}") from None


def region_box(spec: Path, n_inputs: int, n_outputs: int):
    """The hull (lower, upper) of the spec's case boxes (each encloses its case's input set)."""
    import numpy as np

    from verikit.spec.load import load_spec

    prop = load_spec(spec, n_inputs=n_inputs, n_outputs=n_outputs)
    lower = np.min([case.box.lower for case in prop.cases], axis=0)
    upper = np.max([case.box.upper for case in prop.cases], axis=0)
    return lower.astype(np.float64), upper.astype(np.float64)


def summary(result, model: Path) -> str:
    pair = f" of y{result.output_pair[0]} - y{result.output_pair[1]}" if result.output_pair else ""
    where = "local, over the region" if result.region else "global"
    lines = [f"LIPSCHITZ{pair} (ℓ{'∞' if result.norm == 'inf' else '2'}, {where}) <= {result.upper:.6g} "
             f"by {result.method_used}" + (f" (asked: {result.method})" if result.method_used != result.method else "")]
    lines.append(f"  naive product of layer norms: {result.naive:.6g}")
    if result.lower is not None:
        lines.append(f"  lower bound (witnessed pair, onnxruntime): {result.lower:.6g}"
                     + (f"  (upper/lower = {result.upper / result.lower:.3g})" if result.lower > 0 else ""))
    if result.solver:
        objective = "none" if result.solver_objective is None else f"{result.solver_objective:.6g}"
        lines.append(f"  solver: {result.solver} ({result.solver_status}), its own objective {objective} "
                     f"(not used: the bound is re-proven)")
    if result.proof:
        lines.append(f"  proof: {result.proof}")
    if result.region:
        lines.append(f"  region: {result.region['stable_neurons']} of {result.region['neurons']} neurons stable")
    lines.append("  seconds: " + ", ".join(f"{k} {v:.2f}" for k, v in result.seconds.items()))
    lines += [f"  note: {note}" for note in result.notes]
    lines.append(f"  model: {model}")
    return "\n".join(lines)


def emit(result, model: Path, as_json: bool, report: Path | None) -> None:
    from verikit.core import output

    payload = {"model": str(model), **result.to_dict()}
    text = json.dumps(payload, indent=2, default=float)
    if report is not None:
        output.write_text(report, text)
    click.echo(text if as_json else summary(result, model))


@main.command()
@click.argument("model", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--norm", type=click.Choice(["2", "inf"]), default="2", show_default=True)
@click.option("--method", type=click.Choice(["naive", "lipsdp-layer", "lipsdp-neuron"]),
              default="lipsdp-neuron", show_default=True)
@click.option("--region", type=click.Path(dir_okay=False, path_type=Path),
              help="A spec (VNN-LIB or JSON robustness) whose input sets bound the region: a local bound.")
@click.option("--output-pair", help="I,J: bound the margin y_I - y_J instead of the whole output.")
@click.option("--maxmin", type=click.Choice(["extension", "relu-rewrite"]), default="extension", show_default=True,
              help="How LipSDP constrains MaxMin layers: the extension's quadratic constraints, or the "
                   "slope-restricted baseline on their ReLU rewriting (docs/lipschitz.md).")
@click.option("--timeout", type=params.TIMEOUT, default=120.0, show_default=True,
              help="Wall-clock seconds; an SDP not done by then leaves the naive bound.")
@click.option("--lower-seconds", type=params.SECONDS, default=2.0, show_default=True,
              help="Seconds for the lower bound's search (0: none).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print the JSON result.")
@click.option("--report", type=click.Path(dir_okay=False, path_type=Path), help="Write the JSON result here.")
@click.option("--debug", is_flag=True)
@handles_errors
def lipschitz(model, norm, method, region, output_pair, maxmin, timeout, lower_seconds, seed, as_json, report, debug):
    """A proven upper bound of MODEL's Lipschitz constant, with a witnessed lower bound."""
    started = command_started()
    pair = parse_pair(output_pair)
    data, net = read_model(model)
    from verikit.lipschitz import lipschitz_bound

    try:
        fallback = lipschitz_bound(net, norm=norm, method="naive", pair=pair)  # before the fork: the answer at the deadline
    except ValueError as error:
        raise UsageError(str(error)) from None
    fallback.method = method
    fallback.notes.append(f"{method} did not finish within --timeout {timeout:g} s; the global naive bound "
                          "is reported")

    def answer_timeout() -> int:
        emit(fallback, model, as_json, report)
        return 0

    watchdog = hard_deadline(started, timeout, answer_timeout)
    try:
        box = None if region is None else region_box(region, net.n_inputs, net.n_outputs)
        replay = None
        if lower_seconds > 0:
            from verikit.onnx.load import load_network

            replay = load_network(model).replay
        result = lipschitz_bound(net, norm=norm, method=method, region=box, pair=pair, replay=replay,
                                 deadline=started + timeout - 0.5, lower_seconds=lower_seconds, seed=seed,
                                 maxmin=maxmin)
        watchdog.claim()
        emit(result, model, as_json, report)
    finally:
        watchdog.cancel()
    exit_now(0)
