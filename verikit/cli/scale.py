"""Options shared by the commands that run many independent tasks: where they run, and an HTML report."""

from __future__ import annotations

from pathlib import Path

import click

from verikit.apps.executors import EXECUTORS


def executor_options(command):
    """--executor, --ray-address, --task-threads (with the command's own --jobs, the worker count)."""
    decorators = [
        click.option("--executor", "executor_kind", type=click.Choice(EXECUTORS), default="local", show_default=True,
                     help="local: a process pool of --jobs workers; ray: Ray tasks (pip install 'verikit[ray]')."),
        click.option("--ray-address", help="Join this Ray cluster (e.g. HEAD:6379) instead of starting a local "
                     "Ray with --jobs CPUs; see docs/scale-out.md."),
        click.option("--task-threads", type=click.IntRange(min=1),
                     help="torch threads per task [default: chosen per instance from the model's size and the CPUs free, as verify does]."),
    ]
    for decorator in reversed(decorators):
        command = decorator(command)
    return command


def html_option(command):
    return click.option("--html", "html_path", type=click.Path(dir_okay=False, path_type=Path),
                        help="Also write a self-contained HTML report to this file.")(command)


def open_executor(executor_kind: str, jobs: int, ray_address: str | None):
    """The executor the options ask for (a context manager that frees its workers)."""
    from verikit.apps.executors import make_executor
    from verikit.core.errors import UsageError

    if ray_address and executor_kind != "ray":
        raise UsageError("--ray-address needs --executor ray")
    return make_executor(executor_kind, jobs=jobs, address=ray_address)
