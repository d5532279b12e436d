"""Restart intensity: at most ``max_restarts`` restarts within ``max_seconds``.

Counted per supervisor over all its children (Erlang's rule; a per-child count lets a
tree with many flapping children restart forever). The window slides on the runtime
clock, so tests assert exact virtual times: with 3 in 5 s, crashes at t=0, 1, 2, 3 shut
the supervisor down at t=3, while crashes at t=0, 1, 2, 6 are all restarted.
"""

from __future__ import annotations

from collections import deque


class RestartWindow:
    """The restart times still inside the window (Erlang's ``add_restart``)."""

    __slots__ = ("max_restarts", "max_seconds", "times")

    def __init__(self, max_restarts: int, max_seconds: float) -> None:
        self.max_restarts = max_restarts
        self.max_seconds = max_seconds
        self.times: deque[float] = deque()

    def add(self, now: float) -> bool:
        """Record a restart at ``now``; False when it exceeds the intensity."""
        times = self.times
        threshold = now - self.max_seconds
        # Erlang keeps restarts at or after the threshold (the window is closed).
        while times and times[0] < threshold:
            times.popleft()
        times.append(now)
        return len(times) <= self.max_restarts

    def count(self, now: float) -> int:
        """Restarts inside the window at ``now``."""
        threshold = now - self.max_seconds
        return sum(1 for t in self.times if t >= threshold)
