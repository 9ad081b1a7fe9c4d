"""`verikit settings`: every setting `--set` (and a gate policy's `settings`) can change, with its default."""

from __future__ import annotations

import json

import click

from verikit.cli.base import handles_errors, main


@main.command("settings")
@click.option("--json", "as_json", is_flag=True, help="Print the defaults as JSON.")
@handles_errors
def settings_command(as_json: bool) -> None:
    """List every GROUP.FIELD setting with its default value."""
    from verikit.portfolio.options import SETTING_GROUPS, Options

    recorded = Options().as_dict()
    if as_json:
        click.echo(json.dumps({group: recorded[group] for group in SETTING_GROUPS}, indent=2))
        return
    for group in SETTING_GROUPS:
        for field, value in recorded[group].items():
            click.echo(f"{group}.{field} = {json.dumps(value)}")
