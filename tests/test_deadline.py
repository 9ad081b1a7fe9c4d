"""Hard deadlines: the whole command (start-up, parsing, engines, report) ends within --timeout + 1 s.

Each check runs a fresh process, as users and VNN-COMP do, and times it from the outside.
"""

import os
import subprocess
import sys
import time

import numpy as np
import pytest

from onnx_factory import mlp
from tests.conftest import ROOT

ENV = {"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "2"}


def run_timed(args: list[str], limit: float) -> tuple[subprocess.CompletedProcess, float]:
    started = time.monotonic()
    done = subprocess.run([sys.executable, *args], capture_output=True, text=True, cwd=ROOT, env=ENV,
                          timeout=limit + 30)
    return done, time.monotonic() - started


@pytest.fixture(scope="module")
def hard_instance(tmp_path_factory):
    """A 10-input MLP (3 x 100 ReLUs) and a true property far beyond what its bounds can prove:
    y0 stays below 1.5 x the largest y0 seen on 20,000 samples (CROWN's margin bound is about -8000)."""
    import onnxruntime as ort

    folder = tmp_path_factory.mktemp("deadline")
    data = mlp((10, 100, 100, 100, 3), seed=3, batch="dynamic")
    session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).uniform(-1, 1, size=(20_000, 10)).astype(np.float32)
    threshold = 1.5 * float(session.run(None, {"x": x})[0][:, 0].max())
    lines = [f"(declare-const X_{i} Real)" for i in range(10)] + [f"(declare-const Y_{j} Real)" for j in range(3)]
    lines += [f"(assert (>= X_{i} -1.0))\n(assert (<= X_{i} 1.0))" for i in range(10)]
    lines.append(f"(assert (>= Y_0 {threshold:.6f}))")
    model, spec = folder / "hard.onnx", folder / "hard.vnnlib"
    model.write_bytes(data)
    spec.write_text("\n".join(lines) + "\n")
    return model, spec


@pytest.mark.slow
@pytest.mark.parametrize("timeout", [2, 5, 20])
def test_verify_ends_within_timeout_plus_one_second(hard_instance, tmp_path, timeout):
    model, spec = hard_instance
    result_file = tmp_path / "result.txt"
    done, wall = run_timed(["-m", "verikit", "verify", str(model), str(spec), "--timeout", str(timeout),
                            "--result-file", str(result_file)], timeout)
    assert wall <= timeout + 1.0, f"took {wall:.2f} s at --timeout {timeout}\n{done.stdout}{done.stderr}"
    assert done.returncode == 5, done.stdout + done.stderr
    assert done.stdout.startswith("TIMEOUT (timeout)"), done.stdout + done.stderr
    assert result_file.read_text() == "timeout\n"


@pytest.mark.slow
def test_run_instance_ends_within_timeout_plus_one_second(hard_instance, tmp_path):
    model, spec = hard_instance
    result_file = tmp_path / "result.txt"
    done, wall = run_timed(["-m", "verikit", "run-instance", "v1", "test", str(model), str(spec),
                            str(result_file), "2"], 2)
    assert wall <= 3.0, f"took {wall:.2f} s\n{done.stdout}{done.stderr}"
    assert done.returncode == 5 and result_file.read_text() == "timeout\n", done.stdout + done.stderr


@pytest.mark.slow
def test_vnnlib_solver_ends_within_timeout_plus_one_second(hard_instance):
    model, spec = hard_instance
    done, wall = run_timed(["-c", "from verikit.cli.vnnlib_solver import main; main()", "verify", str(spec),
                            "--network", f"N={model}", "--timeout", "2"], 2)
    assert wall <= 3.0, f"took {wall:.2f} s\n{done.stdout}{done.stderr}"
    assert done.returncode == 0 and done.stdout == "timed-out\n", done.stdout + done.stderr


GUARDS = """
import os, signal, sys, time
from verikit.core.deadline import Watchdog, supervise

def answer():
    print("timeout")
    return 5

form, what = sys.argv[1:3]
deadline = time.monotonic() + 0.5
guard = supervise(deadline, answer) if form == "fork" else Watchdog(deadline, answer).start()
if what == "claim":
    guard.claim()
    print("answered")
    sys.stdout.flush()
    time.sleep(1.0)  # past the deadline: once claimed, the answer is this process's to write
    sys.exit(0)
if what == "crash":
    os.kill(os.getpid(), signal.SIGSEGV)
time.sleep(30)  # stands for a stage that cannot be interrupted
"""


@pytest.mark.parametrize("form", ["fork", "thread"])
def test_at_the_deadline_the_timeout_answer_is_written_and_the_process_ends(form):
    done, wall = run_timed(["-c", GUARDS, form, "stuck"], 1)
    assert wall < 10 and done.returncode == 5 and done.stdout == "timeout\n", done.stdout + done.stderr


@pytest.mark.parametrize("form", ["fork", "thread"])
def test_a_claimed_answer_is_never_overwritten(form):
    done, _ = run_timed(["-c", GUARDS, form, "claim"], 2)
    assert done.returncode == 0 and done.stdout == "answered\n", done.stdout + done.stderr


def test_a_crashed_verifying_process_is_one_line_and_exit_code_4():
    done, _ = run_timed(["-c", GUARDS, "fork", "crash"], 1)
    assert done.returncode == 4 and done.stdout == "", done.stdout + done.stderr
    assert done.stderr.strip().splitlines() == ["verikit: error: internal error: the verifying process ended by signal 11"]


def test_the_clock_starts_at_the_process_start():
    script = "import time; from verikit.core.deadline import process_started; print(time.monotonic() - process_started())"
    done, wall = run_timed(["-c", script], 1)
    since_start = float(done.stdout)
    tick = 1.0 / os.sysconf("SC_CLK_TCK")  # /proc records the start in whole clock ticks, rounded down
    assert 0.0 < since_start <= wall + tick  # start-up counts, and the clock never starts before the process did
