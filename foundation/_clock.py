"""Runtime clocks: the monotonic clock, and ``VirtualClock`` for deterministic tests.

Every deadline in the kernel (call timeouts, ``send_after``, sleeps, sync waits) reads
``runtime.clock``. ``VirtualClock`` follows trio's ``MockClock``: time moves only when
told (``advance``) or, with ``autojump=True``, jumps to the next timer as soon as no task
is ready to run, so a test of a 5-second timeout takes microseconds and always sees the
same times.
"""

from __future__ import annotations

import time
from typing import Any


class Clock:
    """Base class of runtime clocks; the default reads ``time.monotonic()``."""

    virtual = False

    def now(self) -> float:
        """Current time in seconds; only differences are meaningful."""
        return time.monotonic()

    def _attach(self, timers: Any) -> None:
        """Called by the runtime that starts using this clock."""


class MonotonicClock(Clock):
    """The real clock: ``time.monotonic()`` (never ``time.time()``, which can jump)."""


class VirtualClock(Clock):
    """A clock that only moves when advanced, or jumps when the runtime is idle.

    Args:
        start: the initial reading.
        autojump: jump to the next timer deadline whenever no task is runnable.
        autojump_threshold: real seconds the runtime must stay idle before a jump
            (0 jumps at once; raise it when tests also wait on real I/O or threads,
            as with trio's ``MockClock``).
    """

    virtual = True

    def __init__(
        self, start: float = 0.0, *, autojump: bool = True, autojump_threshold: float = 0.0
    ) -> None:
        if autojump_threshold < 0:
            raise ValueError(f"autojump_threshold must be >= 0, got: {autojump_threshold!r}")
        self._now = float(start)
        self.autojump = autojump
        self.autojump_threshold = autojump_threshold
        self._timers: Any = None

    def now(self) -> float:
        return self._now

    def advance(self, seconds: float) -> None:
        """Move time forward by ``seconds``; timers now due fire on the next tick."""
        if seconds < 0:
            raise ValueError(f"a clock cannot go backwards, got: {seconds!r}")
        self._now += seconds
        if self._timers is not None:
            self._timers.wake()

    def _jump_to(self, deadline: float) -> None:
        if deadline > self._now:
            self._now = deadline

    def _attach(self, timers: Any) -> None:
        if self._timers is not None and self._timers is not timers:
            raise RuntimeError("a VirtualClock drives one runtime at a time")
        self._timers = timers

    def __repr__(self) -> str:
        return f"VirtualClock(now={self._now!r}, autojump={self.autojump!r})"
