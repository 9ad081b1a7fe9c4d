"""`verikit spec`: write specs in other tools' formats. `verikit spec topk SPEC.json` writes the top-k,
top-k-set, top-k-order or targeted-order question of a `verikit-robustness/1` spec as VNN-LIB 1.0 (its
normal form, verikit.spec.topk), for any VNN-LIB verifier. Exit codes: 0 written, 2 usage, 3 bad spec
(a top-k normal form past its size cap included)."""

from __future__ import annotations

from pathlib import Path

import click

from verikit.cli.base import handles_errors, main
from verikit.core.errors import UsageError


@main.group("spec")
def spec_group() -> None:
    """Write specs for other tools."""


def _classes(text: str | None) -> list[int] | None:
    if text is None:
        return None
    try:
        return [int(part) for part in text.split(",")]
    except ValueError:
        raise UsageError(f"--classes takes comma-separated class indices such as 3,5,0, got {text!r}") from None


@spec_group.command("topk")
@click.argument("spec", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--property", "kind", type=click.Choice(["top-k", "top-k-set", "top-k-order", "targeted-order"]),
              default=None, help="The question (default: the spec's own \"property\", else top-k).")
@click.option("--k", type=int, default=None, help="top-k: the label must stay among the k highest outputs.")
@click.option("--classes", default=None, help="top-k-set / top-k-order / targeted-order: class indices, e.g. 3,5,0.")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="The VNN-LIB file to write.")
@click.option("--debug", is_flag=True, help="Show tracebacks of internal errors.")
@handles_errors
def topk(spec, kind, k, classes, output, debug):
    """Write SPEC's ε-ball with a top-k output condition as VNN-LIB 1.0 (its violation in normal form).

    --property/--k/--classes override the spec's own keys, so a plain robustness spec (x, label, ε)
    becomes its top-k question: `verikit spec topk x.json --k 3 -o x_top3.vnnlib`.
    """
    from verikit.core import limits
    from verikit.core.errors import SpecError
    from verikit.spec.robustness import robustness_from_dict
    from verikit.spec.vnnlib import read_spec_text
    from verikit.spec.vnnlib_writer import save_vnnlib

    text, _ = read_spec_text(spec)
    data = limits.load_json(text, "spec", SpecError, str(spec))
    if not isinstance(data, dict):
        raise SpecError("a robustness spec must be a JSON object", where=str(spec))
    own = data.get("property")
    if kind is None:
        kind = own if own not in (None, "robustness") else "top-k"
    if kind != own:  # another question: the spec's own ranking keys do not apply
        data = {key: value for key, value in data.items() if key not in ("k", "classes", "targets")}
    data["property"] = kind
    listed = _classes(classes)
    key = {"top-k": "k", "targeted-order": "targets"}.get(kind, "classes")
    if k is not None and kind != "top-k":
        raise UsageError(f"--k is for --property top-k; {kind} takes --classes")
    if listed is not None and kind == "top-k":
        raise UsageError("--classes is for top-k-set, top-k-order and targeted-order; top-k takes --k")
    if k is not None or listed is not None:
        data[key] = k if kind == "top-k" else listed
    if key not in data:
        raise UsageError(f"--property {kind} needs " + ("--k K" if kind == "top-k" else "--classes I,J,..."))
    prop = robustness_from_dict(data, base_dir=spec.parent, source=str(spec), spec_bytes=text.encode("utf-8"))
    save_vnnlib(prop, output)
    disjuncts = sum(len(case.disjuncts) for case in prop.cases)
    click.echo(f"wrote {output}: {kind}, {disjuncts} disjunct(s) in normal form")
