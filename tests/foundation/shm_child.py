"""The parent's handle on a child process of test_registry_multiprocess.py: JSON lines
out, command lines in, SIGKILL and reaping; waits are bounded, never slept."""

from __future__ import annotations

import contextlib
import json
import os
import queue
import secrets
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

WORKER = str(Path(__file__).with_name("shm_worker.py"))


def new_name() -> str:
    """A random table name for a test (``mbreg-mp-*``)."""
    return f"mbreg-mp-{secrets.token_hex(6)}"


def remove_table(name: str) -> None:
    """Unlink a table's segment and lock file whoever made them (idempotent)."""
    from foundation._backends import _shm_table

    for path in (f"/dev/shm/{name}", _shm_table.default_lock_path(name)):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
WAIT = 45.0  # seconds any single child step may take before the test fails


class Child:
    """One worker process; stdout lines arrive on a queue filled by a reader thread."""

    def __init__(self, args: dict[str, Any]) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, WORKER, json.dumps(args)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True, bufsize=1,
        )
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.err: list[str] = []
        assert self.proc.stdout is not None and self.proc.stderr is not None
        self._threads = [
            threading.Thread(target=self._pump, args=(self.proc.stdout, self.lines.put)),
            threading.Thread(target=self._pump, args=(self.proc.stderr, self.err.append)),
        ]
        for t in self._threads:
            t.start()

    @staticmethod
    def _pump(stream: Any, put: Callable[[Any], None]) -> None:
        for line in stream:
            put(line)
        put(None)

    def read(self) -> Any:
        """The next JSON line; fails with the child's stderr when it exited instead."""
        try:
            line = self.lines.get(timeout=WAIT)
        except queue.Empty:
            raise AssertionError(f"worker {self.proc.pid} said nothing for {WAIT}s") from None
        if line is None:
            raise AssertionError(f"worker exited (rc={self.wait()}):\n{self.stderr()}")
        return json.loads(line)

    def rest(self) -> list[Any]:
        """Every line still to come, up to end of output (the child must be ending)."""
        out = []
        while (line := self.lines.get(timeout=WAIT)) is not None:
            out.append(json.loads(line))
        return out

    def send(self, line: Any) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write((line if isinstance(line, str) else json.dumps(line)) + "\n")
        self.proc.stdin.flush()

    def request(self, req: dict[str, Any]) -> Any:
        self.send(req)
        return self.read()

    def kill(self) -> int:
        """SIGKILL the child and reap it; its exit status."""
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.proc.pid, signal.SIGKILL)
        return self.wait()

    def wait(self) -> int:
        return self.proc.wait(timeout=WAIT)

    def stderr(self) -> str:
        for t in self._threads:
            t.join(timeout=WAIT)
        return "".join(x for x in self.err if x)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.kill()
        self.wait()
        for t in self._threads:
            t.join(timeout=WAIT)
        for stream in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()
