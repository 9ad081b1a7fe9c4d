"""`verikit certificate check MODEL SPEC CERT`: the independent certificate checker (verikit.checker)."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from verikit.cli.base import handles_errors, main
from verikit.core.errors import ExitCode


@main.group()
def certificate() -> None:
    """Check verikit certificates (written by `verikit verify --certificate FILE`)."""


@certificate.command("check")
@click.argument("model", type=click.Path(dir_okay=False, path_type=Path))
@click.argument("spec", type=click.Path(dir_okay=False, path_type=Path))
@click.argument("cert", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--debug", is_flag=True, help="Show tracebacks of internal errors.")
@handles_errors
def check(model, spec, cert, debug):
    """Re-derive every leaf of CERT on MODEL and SPEC: exit 0 valid, 1 invalid, 3 bad input or a network
    the checker cannot read (unsupported)."""
    from verikit.checker import check_certificate, load_certificate

    report = check_certificate(model, spec, load_certificate(cert))
    if report.status == "valid":
        margin = f", smallest re-derived margin {report.min_margin:.6g}" if report.leaves > report.empty_leaves else ""
        click.echo(f"VALID: {report.leaves} leaves re-derived ({report.empty_leaves} empty){margin}")
        sys.exit(int(ExitCode.VERIFIED))
    if report.status == "unsupported":
        click.echo(f"verikit: error: unsupported: {report.reason}", err=True)
        sys.exit(int(ExitCode.BAD_INPUT))
    click.echo(f"INVALID: {report.reason}")
    sys.exit(int(ExitCode.FALSIFIED))
