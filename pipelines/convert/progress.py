"""Units finished / total while a local conversion runs.

Beam reports nothing until the pipeline ends, and local workers are separate processes, so they
share progress through a file: each worker appends one line per finished unit, and a thread of the
driver counts the lines and draws a bar. Both ends of that file are here.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading


def record_unit(path: str, unit: str) -> None:
    """Append one finished unit to the log (one ``O_APPEND`` write per line, so concurrent workers
    never overwrite each other's). Progress is best effort: a failed write never fails the unit."""
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, (json.dumps(unit) + "\n").encode())
        finally:
            os.close(fd)


class ProgressBar:
    """Shows units finished / total by following the workers' progress log (none: no bar)."""

    def __init__(self, path: str | None, total: int, label: str, enabled: bool):
        self.path, self.total, self.label = path, total, label
        self.enabled = enabled and path is not None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self):
        if self.enabled:
            self._thread = threading.Thread(target=self._run, daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=5)

    def _count(self) -> int:
        try:
            with open(self.path, "rb") as fh:
                return fh.read().count(b"\n")
        except OSError:
            return 0

    def _run(self) -> None:
        from tqdm import tqdm

        with tqdm(total=self.total, desc=f"convert {self.label}", unit="unit", mininterval=1.0) as bar:
            while not self._stop.wait(0.5):
                bar.update(self._count() - bar.n)
            bar.update(self._count() - bar.n)
