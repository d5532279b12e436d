"""Loop-blockage watchdog: reports an actor that held the event loop too long.

A heartbeat task on the loop expects to run every ``threshold / 2`` seconds (real
time: blockage is a wall-clock matter even under a ``VirtualClock``). A kernel thread
samples the loop thread every ``threshold / 4``; when the heartbeat is overdue by more
than ``threshold`` it reads the loop thread's stack (``sys._current_frames``) to find
the actor loop frame and so the actor that is running. When the loop is free again the
heartbeat emits ``("foundation", "loop", "blocked")`` with ``duration`` (how long the
heartbeat was overdue: a lower bound of the blockage) and the actor's pid and name.
The sampler and the report use the same measure, so every detection is reported.
CPU-bound work belongs in ``rt.to_thread``, a thread actor, or a subprocess.
"""

from __future__ import annotations

import sys
import threading
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._runtime import Runtime


class Watchdog:
    """The loop-blockage detector of one runtime."""

    def __init__(self, rt: Runtime, threshold: float) -> None:
        self.rt = rt
        self.threshold = threshold
        self.interval = threshold / 2
        self.detected = threading.Event()  # set (from the sampler) on each detection
        self.reports = 0
        self._due = time.perf_counter()  # when the next heartbeat should run
        self._culprit: dict[str, Any] | None = None
        self._stop = threading.Event()
        self._loop_thread = threading.get_ident()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._due = time.perf_counter()  # the first heartbeat is due at once
        self._thread = threading.Thread(
            target=self._sample, name="foundation-watchdog", daemon=True
        )
        self._thread.start()
        self.rt._backend.start(self._heartbeat)

    def stop(self) -> None:
        self._stop.set()

    async def _heartbeat(self) -> None:
        backend = self.rt._backend
        while not self._stop.is_set():
            now = time.perf_counter()
            late = now - self._due
            self._due = now + self.interval
            if late > self.threshold:
                self._report(late)
            else:
                # A sample taken just as the loop came free: nothing to report. Clear
                # it, or the sampler would skip every later blockage.
                self._culprit = None
            await backend.wait_future_until(backend.new_future(), self.interval)

    def _report(self, duration: float) -> None:
        culprit = self._culprit or {}
        self._culprit = None
        self.reports += 1
        self.rt.telemetry.emit(
            ("foundation", "loop", "blocked"),
            {"duration": duration},
            {
                "pid": culprit.get("pid"),
                "name": culprit.get("name"),
                "actor": culprit.get("actor"),
                "threshold": self.threshold,
            },
        )

    def _sample(self) -> None:
        from ._process import serve

        serve_code = serve.__code__
        while not self._stop.wait(self.threshold / 4):
            if self._culprit is not None:
                continue  # this blockage is already identified; the heartbeat reports it
            # Overdue by more than the threshold, the measure the heartbeat reports on.
            # (Measured from the last beat instead, the sampler fired after threshold -
            # interval of lateness, the report needed threshold, and a blockage ending
            # soon after detection was never reported while the culprit stayed stuck.)
            if time.perf_counter() - self._due <= self.threshold:
                continue
            frame = sys._current_frames().get(self._loop_thread)
            found: dict[str, Any] = {"pid": None, "name": None, "actor": None}
            while frame is not None:
                if frame.f_code is serve_code:
                    proc = frame.f_locals.get("proc")
                    if proc is not None:
                        found = {
                            "pid": proc.pid,
                            "name": proc.name,
                            "actor": type(proc.actor).__qualname__,
                        }
                    break
                frame = frame.f_back
            self._culprit = found
            self.detected.set()
