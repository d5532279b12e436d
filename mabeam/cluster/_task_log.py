"""A pool worker's ``sys.stdout``/``sys.stderr``: the current attempt's log, opened on
the first write.

A pool task that prints nothing costs no file: creating one costs more than a trivial
task itself on some file systems (~0.5 ms here). Only Python-level writes are routed;
what C code or a child process writes to fds 1 and 2 lands in the pool worker's own
log (``pool-worker-N.log`` in the node's log directory), as does anything written
between tasks. One object serves as both streams, so their lines stay in order, and it
stays installed across tasks, so a logging handler a task created earlier writes into
the log of the task running now.
"""

from __future__ import annotations

import io
import os
from typing import TextIO

__all__ = ("AttemptLog",)


class AttemptLog(io.TextIOBase):
    """Text stream writing to the current attempt's log (or ``fallback`` between tasks)."""

    def __init__(self, fallback: TextIO) -> None:
        super().__init__()
        self._fallback = fallback
        self._path: str | None = None
        self._file: TextIO | None = None

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return "utf-8"

    def begin(self, path: str | None) -> None:
        """Route writes to ``path`` (created with its directory on the first write)."""
        self.end()
        self._path = path

    def end(self) -> None:
        """Close the attempt's log, if one was opened; writes go to the fallback again."""
        file, self._file, self._path = self._file, None, None
        if file is not None:
            file.close()

    def _target(self) -> TextIO:
        if self._file is not None:
            return self._file
        if self._path is None:
            return self._fallback
        os.makedirs(os.path.dirname(self._path), exist_ok=True)
        self._file = open(  # noqa: SIM115 - closed by end()
            self._path, "a", encoding="utf-8", errors="backslashreplace", buffering=1
        )
        return self._file

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        return self._target().write(text)

    def flush(self) -> None:
        (self._file or self._fallback).flush()

    def fileno(self) -> int:
        """The log's descriptor (opening it): code that writes to ``fileno()`` directly,
        or passes the stream to a child process, still reaches the attempt's log."""
        return self._target().fileno()

    def isatty(self) -> bool:
        return False
