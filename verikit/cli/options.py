"""Options shared by the commands that run the verification portfolio."""

from __future__ import annotations

import hashlib
import time
from pathlib import Path

import click
import numpy as np

from verikit.cli import params
from verikit.core.result import CaseResult, DisjunctBounds, Unknown, Result, Verdict
from verikit.portfolio import ENGINES, METHODS


def portfolio_options(command):
    """--engine, --method, --seed, --device, --box-tolerance, --formula-tolerance, --set."""
    decorators = [
        click.option("--engine", "engines", multiple=True, default=("auto",), show_default=True,
                     type=click.Choice(["auto", *ENGINES]),
                     help="Engines to run (repeatable); auto = attack, bounds, branch-and-bound, SMT."),
        click.option("--method", "methods", multiple=True, type=click.Choice(list(METHODS)),
                     help="Bound methods for the bounds engine (repeatable; default all, cheapest first)."),
        click.option("--seed", type=params.SEED, default=0, show_default=True, help="Seed of every random choice."),
        click.option("--device", type=click.Choice(["cpu", "cuda"]), default="cpu", show_default=True),
        click.option("--box-tolerance", type=params.TOLERANCE, default=0.0, show_default=True,
                     help="Slack allowed for a witness outside the input box (absolute)."),
        click.option("--formula-tolerance", type=params.TOLERANCE, default=0.0, show_default=True,
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


def _sha256(path: Path) -> str:
    try:
        return hashlib.sha256(Path(path).read_bytes()).hexdigest()
    except OSError:
        return ""


def progress_log():
    """A ProgressLog in a fresh temporary folder: the command removes it once its answer is written (the
    supervisor reads it after killing the verifying child, so it must outlive that child)."""
    import tempfile

    from verikit.core.progress import ProgressLog

    return ProgressLog(Path(tempfile.mkdtemp(prefix="verikit-progress-")) / "progress.json", owns_folder=True)


def deadline_result(model: Path, spec: Path, timeout: float, seed: int, started: float,
                    snapshot: dict | None = None) -> Result:
    """The `timeout` Result the deadline watchdog reports when the run itself did not answer in time.
    Its settings hold only the timeout and seed: building Options imports torch, too slow at a deadline.
    `snapshot` (verikit.core.progress) is what the run left of its progress: the stages that ran and for
    how long, the one running at the deadline, per case its attempts and the best margin reached."""
    reason = (f"the {timeout:g} s deadline (counted from the command's start) passed before an answer: "
              "the watchdog ended the run")
    schedule, cases = [], []
    if snapshot:
        schedule, cases, said = _progress_at_deadline(snapshot, time.monotonic() - started)
        reason += said
    return Result(
        verdict=Verdict.TIMEOUT, model_sha256=_sha256(model), spec_sha256=_sha256(spec), model_path=str(model),
        spec_path=str(spec), seconds=time.monotonic() - started, seed=seed,
        settings={"timeout_s": timeout, "seed": seed}, reason=reason, schedule=schedule, cases=cases)


def _progress_at_deadline(snapshot: dict, now: float) -> tuple[list[dict], list[CaseResult], str]:
    """(schedule with seconds, per-case results, what to add to the reason) from a progress snapshot;
    the running stage is credited with the time from its start to `now` (seconds since the command began)."""
    running = snapshot.get("running") or None
    schedule = [dict(stage) for stage in snapshot.get("schedule", []) if isinstance(stage, dict)]
    said = ""
    if running:
        ran_for = max(0.0, now - float(running.get("started_at_s", now)))
        for stage in schedule:
            if stage.get("stage") == running.get("stage"):
                stage["seconds"] = round(float(stage.get("seconds", 0.0)) + ran_for, 4)
                stage["running_at_deadline"] = True
        said += f"; {running.get('stage')} was running on case {running.get('case')} for {ran_for:.1f} s"
    best = snapshot.get("best_lower_bounds") or {}
    margins = [min(bounds) for bounds in best.values() if bounds]  # a case holds once every disjunct is > 0
    if margins:
        said += f"; best margin lower bound reached: {min(margins):.6g} (verified once above 0)"
    attempts = snapshot.get("attempts") or {}
    open_cases = sorted(int(i) for i in snapshot.get("open_cases") or [])
    decided = len([key for key in attempts if int(key) not in open_cases])
    if decided:
        said += f"; {decided} case(s) decided before the deadline"
    cases = []
    for index in open_cases:
        # per disjunct the best lower bound of its margins any finished attempt reached: the report's bounds
        reached = tuple(DisjunctBounds(np.array([float(b)]), "best before the deadline")
                        for b in best.get(str(index)) or [])
        case = CaseResult(index, Unknown("open at the deadline", reached, timed_out=True), "", "", 0.0)
        case.attempts = list(attempts.get(str(index), []))
        cases.append(case)
    return schedule, cases, said


def choose_torch_threads(*model_paths: Path | str) -> int:
    """Set torch's thread count once at the start of a run, from the models' size (ONNX bytes / 4 estimates
    the float32 parameters: this runs before the model is parsed) and the CPUs free now."""
    from verikit.core.threads import apply_threads

    size = 0
    for path in model_paths:
        try:
            size += Path(path).stat().st_size
        except OSError:
            pass  # a missing model is reported by the loader, with its exit code
    return apply_threads(size // 4)
