"""Helpers shared by the job-store tests."""

from __future__ import annotations


class Clock:
    """A settable clock: the store's time when an op passes no ``now``."""

    def __init__(self, t: float = 1000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t
