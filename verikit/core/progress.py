"""What a run has done so far, left where the deadline's answer can read it.

Under `verikit.core.deadline.supervise` the answer at the deadline is written by the supervising parent,
which has just killed the verifying child: all it knows of the run is what the child left here. The runner
replaces the file after every engine attempt and when one starts (a JSON object: the stages with their
seconds, the stage running and since when, per case the attempts and the best lower bounds reached), so the
timeout report still says which stages ran, for how long, and the best margin reached.
"""

from __future__ import annotations

import json
import os
from pathlib import Path


class ProgressLog:
    """A JSON snapshot file, replaced atomically (write to a sibling, then rename)."""

    def __init__(self, path: str | Path, *, owns_folder: bool = False):
        self.path = Path(path)
        self.owns_folder = owns_folder  # remove() also removes the folder (a temporary one made for the log)

    def write(self, snapshot: dict) -> None:
        partial = self.path.with_name(self.path.name + ".partial")
        try:
            partial.write_text(json.dumps(snapshot, default=str))
            os.replace(partial, self.path)
        except OSError:
            pass  # progress is a courtesy to the timeout answer; a full disk must not end the run

    def read(self) -> dict | None:
        """The last snapshot written, or None when there is none (or it cannot be read)."""
        try:
            snapshot = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return None
        return snapshot if isinstance(snapshot, dict) else None

    def remove(self) -> None:
        """Remove the file (and its folder, when the log owns it); nothing to do when already gone."""
        for leftover in (self.path, self.path.with_name(self.path.name + ".partial")):
            try:
                leftover.unlink()
            except OSError:
                pass
        if self.owns_folder:
            try:
                self.path.parent.rmdir()
            except OSError:
                pass
