"""Whether the OS process that owns a shared registry entry still lives.

An owner is ``(os_pid, start_time)``: the start time tells a reused pid from the process
that wrote the entry. On Linux it is the kernel's start time in clock ticks since boot
(``/proc/PID/stat``), which a step of the wall clock does not move (psutil's
``create_time`` adds the boot time, re-read from the wall clock on every call); elsewhere
psutil's ``create_time``. A zombie counts as dead. Deaths are final, so they are cached
forever; "alive" answers are trusted for ``interval`` seconds.
"""

from __future__ import annotations

import os
import time
import weakref

import psutil  # type: ignore[import-untyped]

Owner = tuple[int, float]

# os.getpid() is a system call on current glibc; the answer changes only across fork.
_self: list[Owner | None] = [None]
_leases: weakref.WeakSet[Liveness] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    # A new process: a new identity, and the parent's own lease (shared by the entries
    # the parent cached as its own) must stop matching in the child.
    _self[0] = None
    for live in list(_leases):
        live.forked()


os.register_at_fork(after_in_child=_after_fork_in_child)


def self_owner() -> Owner:
    """This process as an owner: ``(os_pid, start_time)``."""
    owner = _self[0]
    if owner is None:
        pid = os.getpid()
        owner = _self[0] = (pid, start_time(pid))
    return owner


def start_time(pid: int) -> float:
    """The start time of ``pid``: clock ticks since boot on Linux, else psutil's
    ``create_time``. Raises ``psutil.NoSuchProcess`` when there is no such process."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except FileNotFoundError:
        if os.path.isdir("/proc/self"):
            raise psutil.NoSuchProcess(pid) from None
    except OSError:
        pass
    else:
        # Field 22; the command name (field 2) may hold spaces and parentheses.
        return float(stat[stat.rindex(b")") + 2 :].split()[19])
    return float(psutil.Process(pid).create_time())


def probe(owner: Owner) -> bool:
    """A fresh check: is ``owner`` still running?"""
    pid, started = owner
    try:
        if abs(start_time(pid) - started) > 0.01:
            return False
        return bool(psutil.Process(pid).status() != psutil.STATUS_ZOMBIE)
    except psutil.NoSuchProcess:
        return False
    except psutil.AccessDenied:
        return True  # it exists; another user's process that we cannot inspect


_INF = float("inf")


class Liveness:
    """Cached liveness of owners, plus this process's own identity (fork-aware).

    Each owner found alive has one lease, a mutable ``[start, deadline]`` (monotonic
    seconds) that is extended in place by the next check, so entries cached by many
    keys share it (one object to read on a cached hit, one check revives them all).
    """

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self._alive: dict[int, list[float]] = {}  # os pid -> [start, deadline]
        self._dead: set[Owner] = set()
        self._own: list[float] | None = None
        self.me = self_owner
        _leases.add(self)

    def forked(self) -> None:
        """In a child after fork: the parent's own lease ends (entries it cached as its
        own no longer match), and what it learned about others is re-checked."""
        if self._own is not None:
            self._own[1] = 0.0
            self._own = None
        self._alive.clear()

    def lease(self, pid: int, started: float) -> list[float] | None:
        """The lease of owner ``(pid, started)``: ``[start, deadline]``, the deadline
        infinite for this process; None when the owner is dead."""
        me = _self[0] or self_owner()
        if pid == me[0]:
            if abs(started - me[1]) > 0.01:
                return None  # an earlier process that had our pid
            own = self._own
            if own is None or own[0] != me[1]:
                own = self._own = [me[1], _INF]
            return own
        rec = self._alive.get(pid)
        now = time.monotonic()
        if rec is not None and rec[0] == started and rec[1] > now:
            return rec
        owner = (pid, started)
        if owner in self._dead or not probe(owner):
            self.forget(owner)
            return None
        if rec is None or rec[0] != started:
            if len(self._alive) > 4096:
                self._alive.clear()
            rec = self._alive[pid] = [started, 0.0]
        rec[1] = now + self.interval
        return rec

    def until(self, pid: int, started: float) -> float:
        """Monotonic time until which owner ``(pid, started)`` counts as alive (0.0 when
        dead, infinity for this process)."""
        rec = self.lease(pid, started)
        return rec[1] if rec is not None else 0.0

    def fresh(self, owner: Owner) -> bool:
        """A check that trusts no cached "alive" (used before reclaiming)."""
        pid, started = owner
        if pid == self.me()[0]:
            return self.lease(pid, started) is not None
        if owner in self._dead or not probe(owner):
            self.forget(owner)
            return False
        return True

    def forget(self, owner: Owner) -> None:
        """Record ``owner`` as dead; entries cached under its lease stop matching."""
        rec = self._alive.get(owner[0])
        if rec is not None and rec[0] == owner[1]:
            rec[1] = 0.0
            del self._alive[owner[0]]
        if len(self._dead) > 4096:
            self._dead.clear()
        self._dead.add(owner)
