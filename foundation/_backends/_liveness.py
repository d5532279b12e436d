"""Whether the OS process that owns a shared registry entry still lives.

An owner is ``(os_pid, start_time)``: the start time (psutil's ``create_time``) tells a
reused pid from the process that wrote the entry. A zombie counts as dead. Deaths are
final, so they are cached forever; "alive" answers are trusted for ``interval`` seconds.
"""

from __future__ import annotations

import os
import time

import psutil  # type: ignore[import-untyped]

Owner = tuple[int, float]

# os.getpid() is a system call on current glibc; the answer changes only across fork.
_self: list[Owner | None] = [None]
os.register_at_fork(after_in_child=lambda: _self.__setitem__(0, None))


def self_owner() -> Owner:
    """This process as an owner: ``(os_pid, start_time)``."""
    owner = _self[0]
    if owner is None:
        pid = os.getpid()
        owner = _self[0] = (pid, start_time(pid))
    return owner


def start_time(pid: int) -> float:
    """psutil's start time of ``pid`` (seconds since the epoch)."""
    return float(psutil.Process(pid).create_time())


def probe(owner: Owner) -> bool:
    """A fresh check: is ``owner`` still running?"""
    pid, started = owner
    try:
        proc = psutil.Process(pid)
        if abs(proc.create_time() - started) > 0.01:
            return False
        return bool(proc.status() != psutil.STATUS_ZOMBIE)
    except psutil.NoSuchProcess:
        return False
    except psutil.AccessDenied:
        return True  # it exists; another user's process that we cannot inspect


_INF = float("inf")


class Liveness:
    """Cached liveness of owners, plus this process's own identity (fork-aware)."""

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self._alive: dict[int, tuple[float, float]] = {}  # os pid -> (start, until)
        self._dead: set[Owner] = set()
        self.me = self_owner

    def until(self, pid: int, started: float) -> float:
        """Monotonic time until which owner ``(pid, started)`` counts as alive (0.0 when
        dead, infinity for this process)."""
        me = _self[0] or self_owner()
        if pid == me[0]:
            return _INF if abs(started - me[1]) <= 0.01 else 0.0
        rec = self._alive.get(pid)
        if rec is not None and rec[0] == started:
            until = rec[1]
            if until > time.monotonic():
                return until
        owner = (pid, started)
        if owner in self._dead or not probe(owner):
            self.forget(owner)
            return 0.0
        until = time.monotonic() + self.interval
        if len(self._alive) > 4096:
            self._alive.clear()
        self._alive[pid] = (started, until)
        return until

    def fresh(self, owner: Owner) -> bool:
        """A check that trusts no cached "alive" (used before reclaiming)."""
        pid, started = owner
        if pid == self.me()[0]:
            return self.until(pid, started) != 0.0
        if owner in self._dead or not probe(owner):
            self.forget(owner)
            return False
        return True

    def forget(self, owner: Owner) -> None:
        rec = self._alive.get(owner[0])
        if rec is not None and rec[0] == owner[1]:
            del self._alive[owner[0]]
        if len(self._dead) > 4096:
            self._dead.clear()
        self._dead.add(owner)
