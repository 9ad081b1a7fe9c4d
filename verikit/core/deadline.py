"""Hard deadlines for a whole command: a watchdog thread that, once the deadline passes, writes the command's
`timeout` answer and ends the process with os._exit, whatever the main thread is stuck in.

Engines poll their Budget and stop on time; the watchdog is the backstop for what cannot be polled
(auto_LiRPA's preparation, one long α step, a huge parse, a slow report). It needs the GIL to run, which
Python code, torch, numpy and z3 hand over; a single C call that holds the GIL can still delay it.
"""

from __future__ import annotations

import os
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
