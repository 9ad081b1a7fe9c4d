"""Run a verifier on every instance of a benchmark and judge each answer (verikit.apps.soundness.judge).

The verifier is verikit itself, in process (through `verikit.apps.bench.run_row` and the one run path `verikit.run.run_instance`), or any external
tool called the VNN-COMP way: `CMD v1 CATEGORY ONNX VNNLIB RESULT_FILE TIMEOUT`, whose result file
starts with sat / unsat / unknown / timeout / error and, for sat, holds the witness. A tool that runs
past its timeout (plus a grace period) is killed and answers `timeout`; one that leaves no result file
answers `error`.
"""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import time
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path
from typing import Callable

from verikit.apps.bench import Instance, file_sha256
from verikit.core.errors import VerikitError
from verikit.apps.soundness.answers import Answer
from verikit.apps.soundness.judge import Judgement, judge
from verikit.portfolio.options import Options
from verikit.witness.check import DEFAULT_TOLERANCE
from verikit.witness.formats import Witness, read_result_file


@dataclass(frozen=True)
class Verifier:
    """verikit in process (`command` empty) with `options`, or an external VNN-COMP style command."""

    command: tuple[str, ...] = ()
    options: Options = field(default_factory=Options)
    grace: float = 10.0  # seconds past the timeout before an external tool is killed

    @classmethod
    def external(cls, command: str, grace: float = 10.0) -> "Verifier":
        return cls(tuple(shlex.split(command)), grace=grace)

    @property
    def name(self) -> str:
        return shlex.join(self.command) if self.command else "verikit (in process)"


@dataclass
class Answered:
    """What a verifier said about one instance."""

    answer: str
    witness: Witness | None
    seconds: float
    message: str = ""
    result_file: str = ""


def run_external(command: tuple[str, ...], instance: Instance, result_file: Path, timeout: float,
                 grace: float) -> Answered:
    """Call `command v1 CATEGORY ONNX VNNLIB RESULT_FILE TIMEOUT`; read the result file it writes."""
    result_file.parent.mkdir(parents=True, exist_ok=True)
    result_file.unlink(missing_ok=True)
    argv = [*command, "v1", instance.category, str(Path(instance.onnx).resolve()),
            str(Path(instance.vnnlib).resolve()), str(result_file.resolve()), f"{timeout:g}"]
    started = time.monotonic()
    try:
        process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                   start_new_session=True)
    except OSError as error:
        return Answered("error", None, 0.0, f"cannot start {command[0]}: {error.strerror}")
    try:
        output, _ = process.communicate(timeout=timeout + grace)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)  # the tool's whole process group, started above
        process.communicate()
        return Answered("timeout", None, time.monotonic() - started,
                        f"killed after {timeout + grace:g} s", str(result_file))
    seconds = time.monotonic() - started
    if not result_file.is_file():
        tail = " | ".join((output or "").strip().splitlines()[-3:])
        return Answered("error", None, seconds, f"no result file (exit {process.returncode}): {tail}")
    answer, witness = read_result_file(result_file)
    return Answered(answer, witness, seconds, f"exit {process.returncode}", str(result_file))


def run_verikit(instance: Instance, result_file: Path, options: Options, timeout_scale: float) -> Answered:
    """verikit in process, through verikit.apps.bench.run_row (its witness file read back)."""
    from verikit.apps.bench import run_row

    row = run_row(instance, result_file.parent / "witnesses", options, timeout_scale)
    witness = None
    if row.result == "sat" and row.witness:
        _, witness = read_result_file(row.witness)
    return Answered(row.result, witness, row.prepare_s + row.run_s, row.message, row.witness)


def _result_file(out_dir: Path, index: int, instance: Instance) -> Path:
    return out_dir / "results" / f"{index:04d}_{Path(instance.onnx).stem}_{Path(instance.vnnlib).stem}.result"


def _ask(verifier: Verifier, instance: Instance, result_file: Path, timeout_scale: float) -> Answered:
    if verifier.command:
        return run_external(verifier.command, instance, result_file, instance.timeout * timeout_scale,
                            verifier.grace)
    return run_verikit(instance, result_file, verifier.options, timeout_scale)


@dataclass
class _Loaded:
    """Models and specs loaded for witness replay, and file hashes, cached by path."""

    hashes: dict[Path, str] = field(default_factory=dict)
    networks: dict[Path, object] = field(default_factory=dict)

    def key(self, instance: Instance) -> tuple[str, str]:
        for path in (Path(instance.onnx), Path(instance.vnnlib)):
            if path not in self.hashes:
                self.hashes[path] = file_sha256(path) if path.is_file() else f"missing:{path}"
        return self.hashes[Path(instance.onnx)], self.hashes[Path(instance.vnnlib)]

    def load(self, instance: Instance):
        """(network, property), or (None, None) when verikit cannot read them."""
        from verikit.onnx.load import load_network
        from verikit.spec.load import load_spec

        try:
            path = Path(instance.onnx)
            if path not in self.networks:
                self.networks[path] = load_network(path)
            network = self.networks[path]
            return network, load_spec(instance.vnnlib, n_inputs=network.n_inputs, n_outputs=network.n_outputs)
        except VerikitError:
            return None, None


def _executor(verifier: Verifier, jobs: int) -> Executor:
    if verifier.command:
        return ThreadPoolExecutor(max_workers=jobs)
    return ProcessPoolExecutor(max_workers=jobs, mp_context=get_context("spawn"))


def run_harness(
    instances: list[Instance],
    verifier: Verifier,
    answers: dict[tuple[str, str], Answer],
    out_dir: Path,
    *,
    timeout_scale: float = 1.0,
    jobs: int = 1,
    tolerance: float = DEFAULT_TOLERANCE,
    on_judgement: Callable[[Judgement], None] = lambda judgement: None,
) -> list[Judgement]:
    """Ask `verifier` about every instance and judge each answer against `answers` (by content hash)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    loaded = _Loaded()
    files = [_result_file(out_dir, i, instance) for i, instance in enumerate(instances)]
    if jobs <= 1:
        replies = (_ask(verifier, i, f, timeout_scale) for i, f in zip(instances, files))
    else:
        pool = _executor(verifier, jobs)
        futures = [pool.submit(_ask, verifier, i, f, timeout_scale) for i, f in zip(instances, files)]
        replies = (future.result() for future in futures)
    judgements = []
    try:
        for instance, reply in zip(instances, replies):
            network, prop = loaded.load(instance) if reply.answer == "sat" else (None, None)
            item = judge(str(instance.onnx), str(instance.vnnlib), reply.answer,
                         answers.get(loaded.key(instance)), witness=reply.witness, network=network, prop=prop,
                         tolerance=tolerance, seconds=reply.seconds)
            if reply.message and item.judgement == "undecided":
                item.reason += f": {reply.message}"
            judgements.append(item)
            on_judgement(item)
    finally:
        if jobs > 1:
            pool.shutdown(cancel_futures=True)
    return judgements


def report(judgements: list[Judgement], *, benchmark: str, verifier: Verifier, answers_file: str | None,
           tolerance: float, timeout_scale: float, seconds: float) -> dict:
    """The JSON report of a harness run: counts per judgement, then every instance."""
    from verikit.apps.soundness.judge import SOUNDNESS_BUG, tally

    counts = tally(judgements)
    return {
        "format": "verikit-soundness-run/1",
        "benchmark": benchmark,
        "verifier": verifier.name,
        "answers": answers_file,
        "witness_tolerance": tolerance,
        "timeout_scale": timeout_scale,
        "seconds": round(seconds, 2),
        "counts": counts,
        "answers_given": {word: sum(1 for j in judgements if j.answer == word)
                          for word in sorted({j.answer for j in judgements})},
        "sound": counts[SOUNDNESS_BUG] == 0,
        "judgements": [j.to_dict() for j in judgements],
    }
