"""Hard deadlines for a whole command: once the deadline passes, the command's `timeout` answer is written
and the process ends, whatever the verification is stuck in.

Engines poll their Budget and stop on time; this is the backstop for what cannot be polled (auto_LiRPA's
preparation, one long α step, a huge parse, a slow report). Two forms:

- `supervise` (POSIX): the command forks before importing anything heavy; the parent only waits, kills
  the child at the deadline and writes the answer. Nothing the child does (a C call holding the GIL,
  loading libtorch on a busy machine) can delay it; a child that crashes becomes a one-line error.
- `Watchdog`: a daemon thread that writes the answer and calls os._exit. It needs the GIL, so a long C
  call in the main thread delays it (0.6-0.8 s seen while torch loads on a loaded machine).
"""

from __future__ import annotations

import os
import select
import signal
import sys
import threading
import time
from typing import Callable


def process_started() -> float:
    """When this process started, on time.monotonic()'s clock (Linux: from /proc; elsewhere, or when that
    was more than a minute ago (not a fresh command-line process): now).

    VNN-COMP and users time a command from its launch, so interpreter start-up and imports count too.
    """
    now = time.monotonic()
    try:
        with open("/proc/self/stat", "rb") as stat:
            fields = stat.read().rsplit(b")", 1)[1].split()
        ticks = int(fields[19])  # field 22 of proc(5), counted after the ")" closing the command name
        since_boot = time.clock_gettime(time.CLOCK_BOOTTIME) - ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError, AttributeError):
        return now
    return now - since_boot if 0.0 <= since_boot < 60.0 else now


class Watchdog:
    """At `deadline` (time.monotonic()), calls `on_expiry()` (writes the timeout answer, returns the exit
    code), flushes stdout/stderr and calls `exit(code)` (os._exit: no clean-up, no waiting for threads).

    The main thread calls `claim()` before it writes its own answer, so that exactly one of the two writes.
    """

    def __init__(self, deadline: float, on_expiry: Callable[[], int], *,
                 exit: Callable[[int], None] = os._exit):
        self.deadline = deadline
        self._on_expiry = on_expiry
        self._exit = exit
        self._stop = threading.Event()
        self._answer = threading.Lock()  # held by whoever writes the answer: the main thread or the watchdog
        self._claimed = False
        self._thread = threading.Thread(target=self._watch, name="verikit-deadline", daemon=True)

    def start(self) -> "Watchdog":
        self._thread.start()
        return self

    def _watch(self) -> None:
        if self._stop.wait(max(0.0, self.deadline - time.monotonic())):
            return
        if not self._answer.acquire(blocking=False):
            return  # the main thread is writing its answer
        code = 5  # ExitCode.UNKNOWN (timeout); core.errors is not imported here to keep this module bare
        try:
            code = int(self._on_expiry())
        except BaseException as error:  # noqa: BLE001  the process ends now either way; say why in one line
            sys.stderr.write(f"verikit: error: the deadline passed and writing the timeout answer failed: "
                             f"{type(error).__name__}: {error}\n")
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):
                pass
        self._exit(code)

    def claim(self) -> None:
        """Stop the watchdog before writing the answer; if it already fired, wait while it ends the process."""
        if self._claimed:
            return
        if self._answer.acquire(blocking=False):
            self._claimed = True
            self._stop.set()
            return
        threading.Event().wait()  # the watchdog holds the answer and calls os._exit: never returns

    def cancel(self) -> None:
        """Stop watching (the command ended, or raised); a no-op after claim()."""
        self._stop.set()

    def __enter__(self) -> "Watchdog":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.cancel()


class Guard:
    """What the verifying process holds under `supervise`: `claim()` before writing the answer (blocks
    until the supervisor agrees; past the deadline the supervisor kills this process instead)."""

    def __init__(self, ask: int, reply: int):
        self._ask, self._reply = ask, reply
        self._claimed = False

    def claim(self) -> None:
        if self._claimed:
            return
        os.write(self._ask, b"?")
        if os.read(self._reply, 1) != b"!":
            threading.Event().wait()  # the supervisor is ending the run: it kills this process
        self._claimed = True

    def cancel(self) -> None:
        """Whatever this process writes next (an error message) is its answer: claim the right to write."""
        self.claim()


INTERNAL = 4  # ExitCode.INTERNAL; core.errors is not imported here to keep this module bare


def supervise(deadline: float, on_expiry: Callable[[], int]) -> Guard:
    """Fork: the child returns a Guard and verifies; the parent never returns. It waits until the child
    asks to write its answer (then waits for it and exits with its code) or until `deadline`
    (time.monotonic()), when it kills the child, calls `on_expiry()` and exits with the code it returns.
    Call before anything heavy is imported or any thread is started (fork copies only this thread)."""
    for stream in (sys.stdout, sys.stderr):
        stream.flush()  # else what is buffered would be written twice
    ask_read, ask_write = os.pipe()
    reply_read, reply_write = os.pipe()
    child = os.fork()
    if child == 0:
        os.close(ask_read)
        os.close(reply_write)
        return Guard(ask_write, reply_read)
    os.close(ask_write)
    os.close(reply_read)
    os._exit(_wait(child, deadline, ask_read, reply_write, on_expiry))


def _wait(child: int, deadline: float, ask: int, reply: int, on_expiry: Callable[[], int]) -> int:
    """The supervisor's life: the exit code of the whole command."""
    def end_child(signum, frame):  # a killed command takes its verifying process along
        os.kill(child, signal.SIGKILL)
        os._exit(128 + signum)

    signal.signal(signal.SIGTERM, end_child)
    signal.signal(signal.SIGHUP, end_child)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the child too; it answers `interrupted`
    while (remaining := deadline - time.monotonic()) > 0:
        ready, _, _ = select.select([ask], [], [], remaining)
        if not ready:
            continue
        if os.read(ask, 1) == b"?":
            os.write(reply, b"!")
        return _exit_code(child)  # the child writes its answer and ends, or ended without asking
    os.kill(child, signal.SIGKILL)
    os.waitpid(child, 0)
    code = INTERNAL
    try:
        code = int(on_expiry())
    except BaseException as error:  # noqa: BLE001  the command ends now either way; say why in one line
        sys.stderr.write(f"verikit: error: the deadline passed and writing the timeout answer failed: "
                         f"{type(error).__name__}: {error}\n")
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    return code


def _exit_code(child: int) -> int:
    _, status = os.waitpid(child, 0)
    code = os.waitstatus_to_exitcode(status)
    if code < 0:  # killed by a signal (a crash in native code, the OOM killer): one line, never a verdict
        sys.stderr.write(f"verikit: error: internal error: the verifying process ended by signal {-code}\n")
        sys.stderr.flush()
        return INTERNAL
    return code
