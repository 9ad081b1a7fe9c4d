"""The run leaves its progress where the deadline's answer reads it: a run ended by the watchdog still says
which stages ran, for how long, which was running, and the best margin reached."""

from __future__ import annotations

import time

import numpy as np

from tests.onnx_factory import mlp
from verikit.cli.options import deadline_result, progress_log
from verikit.core.property import Box, Case, Conjunction, Property
from verikit.core.result import Verdict
from verikit.onnx.load import load_network_bytes
from verikit.portfolio.options import Options
from verikit.portfolio.runner import verify
from verikit.report.json import to_dict


def _snapshots_of_an_open_run() -> list[dict]:
    network = load_network_bytes(mlp((4, 20, 20, 2), seed=1), "mlp")
    y = network.replay(np.random.default_rng(0).uniform(-1, 1, (2000, 4)))
    threshold = float(y[:, 0].max()) * 1.2 + 0.1  # true, and far beyond what the bounds prove at once
    case = Case(Box(-np.ones(4), np.ones(4)), (Conjunction(np.array([[-1.0, 0.0]]), [-threshold]),))
    snapshots: list[dict] = []
    verify(network, Property((case,), 4, 2), Options(timeout=2, engines=("attack", "bounds")),
           progress=snapshots.append)
    return snapshots


def test_the_deadline_answer_names_the_stages_the_running_one_and_the_best_margin(tmp_path):
    snapshots = _snapshots_of_an_open_run()
    assert snapshots[0]["schedule"] and snapshots[0]["running"] is None
    running = next(s for s in snapshots if s["running"] and s["running"]["stage"].startswith("bounds"))
    started = time.monotonic() - running["running"]["started_at_s"] - 3.0  # the deadline came 3 s in
    result = deadline_result(tmp_path / "m.onnx", tmp_path / "s.vnnlib", 2.0, 0, started, running)
    report = to_dict(result)
    assert result.verdict is Verdict.TIMEOUT
    assert [stage["stage"] for stage in report["schedule"]] == [s["stage"] for s in running["schedule"]]
    ran = {stage["stage"]: stage["seconds"] for stage in report["schedule"]}
    assert ran[running["running"]["stage"]] >= 2.9  # credited with the time it ran until the deadline
    assert f"{running['running']['stage']} was running on case 0" in result.reason
    assert report["cases"][0]["attempts"] and report["cases"][0]["attempts"][0]["engine"] == "attack"
    last = snapshots[-1]
    best = max(a["best_lower_bounds"][0] for a in last["attempts"]["0"] if a.get("best_lower_bounds"))
    assert last["best_lower_bounds"]["0"] == [best]
    at_last = deadline_result(tmp_path / "m", tmp_path / "s", 2.0, 0, started, last)
    assert f"best margin lower bound reached: {best:.6g}" in at_last.reason
    # the same bound, structured: the open case's bounds in the JSON report
    bounds = to_dict(at_last)["cases"][0]["bounds"]
    assert [b["margin_lower_bounds"] for b in bounds] == [[best]] and not bounds[0]["refuted"]
    assert [s["stage"] for s in report["schedule"] if s.get("running_at_deadline")] == [running["running"]["stage"]]


def test_the_progress_log_is_replaced_whole_and_removed_with_its_folder():
    log = progress_log()
    assert log.read() is None
    log.write({"elapsed_s": 1.0})
    log.write({"elapsed_s": 2.0})
    assert log.read() == {"elapsed_s": 2.0}
    log.remove()
    assert not log.path.parent.exists() and log.read() is None
