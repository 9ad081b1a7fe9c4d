"""Options shared by the commands that run the verification portfolio."""

from __future__ import annotations

import click

from verikit.portfolio import ENGINES, METHODS


def portfolio_options(command):
    """--engine, --method, --seed, --device, --box-tolerance, --formula-tolerance, --set."""
    decorators = [
        click.option("--engine", "engines", multiple=True, default=("auto",), show_default=True,
                     type=click.Choice(["auto", *ENGINES]),
                     help="Engines to run (repeatable); auto = attack, bounds, branch-and-bound, SMT."),
        click.option("--method", "methods", multiple=True, type=click.Choice(list(METHODS)),
                     help="Bound methods for the bounds engine (repeatable; default all, cheapest first)."),
        click.option("--seed", type=int, default=0, show_default=True, help="Seed of every random choice."),
        click.option("--device", type=click.Choice(["cpu", "cuda"]), default="cpu", show_default=True),
        click.option("--box-tolerance", type=click.FloatRange(min=0.0), default=0.0, show_default=True,
                     help="Slack allowed for a witness outside the input box (absolute)."),
        click.option("--formula-tolerance", type=click.FloatRange(min=0.0), default=0.0, show_default=True,
                     help="Slack allowed for a witness's output constraints (absolute)."),
        click.option("--set", "settings", multiple=True, metavar="GROUP.FIELD=VALUE",
                     help="Set an engine or portfolio setting (repeatable), e.g. bab.batch_size=512, "
                          "attack.restarts=16, smt.max_relus=200; `verikit settings` lists them all."),
    ]
    for decorator in reversed(decorators):
        command = decorator(command)
    return command


def build_options(timeout: float, engines, methods, seed, device, box_tolerance, formula_tolerance,
                  settings=()):
    """The Options the portfolio flags ask for (a SettingError, exit 2, for an unknown or invalid --set)."""
    from verikit.portfolio.options import Options
    from verikit.witness.replay import Tolerances

    return Options(
        timeout=timeout,
        engines=ENGINES if "auto" in engines else tuple(engines),
        methods=tuple(methods) or METHODS,
        seed=seed,
        device=device,
        tolerances=Tolerances(box=box_tolerance, formula=formula_tolerance),
    ).with_settings(settings)


def console(*, stderr: bool = False):
    """A rich console. Piped into a file or a CI log, it does not wrap lines at rich's default 80 columns."""
    from rich.console import Console

    screen = Console(stderr=stderr)
    return screen if screen.is_terminal else Console(stderr=stderr, width=160, soft_wrap=True)
