"""The node's limit watchdog: samples running tasks and stops those over their limits.

``TaskWatchdog`` is a permanent child of the node's tree. The connection's work table
sends it a ``Watch`` when a limited attempt starts (the pid of its worker process, its
``TaskLimits``, its temporary output directory) and an ``Unwatch`` when it ends. While
anything is watched, a timer on the runtime clock fires every ``limit_check_s``: the
sample runs in a worker thread (``/proc`` reads and a bounded directory walk, never on
the event loop) and measures, per attempt, the RSS of the worker's process tree and the
size of its outputs.

An attempt over a limit gets one ``LimitHit`` to its owner (the connection), which
marks it so that its end is reported as ``memory_limit`` / ``disk_limit`` with the
hit's message. Then it is killed: a process that runs this attempt alone
(``isolation="process"``) is killed here at once, with its whole tree (SIGKILL: the
task is over its limit, there is nothing to wait for); a pool worker is stopped by its
``PoolWorker``, the one actor that knows which of the attempts written into its pipe the
process is running, so an attempt that had already finished keeps its result and the
ones behind it run on a new worker.

The verdict of a sample is handled as a message the watchdog sends itself, after the
``Watch`` / ``Unwatch`` messages that came in while the thread measured: an attempt that
ended meanwhile is never blamed. Between two samples a task can allocate more than its
limit (the watchdog samples; it does not enforce in the kernel).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import psutil  # type: ignore[import-untyped]

from foundation import Actor, ActorRef, TimerRef

from ._node_setup import NodeSetup
from ._node_tasks import Key
from ._task_limits import (
    MIB,
    WALK_ENTRIES,
    LimitKind,
    TaskLimits,
    disk_error,
    memory_error,
    output_bytes,
    process_tree,
    tree_rss,
)
from ._worker_proc import kill_group

__all__ = ("LimitHit", "TaskWatchdog", "Unwatch", "Watch")

_TICK: Final = "tick"


@dataclass(frozen=True, slots=True)
class Watch:
    """Connection -> watchdog: sample this started attempt until its ``Unwatch``.

    ``dedicated``: the process runs this attempt alone (the watchdog may kill it).
    """

    key: Key
    pid: int
    limits: TaskLimits
    outputs: Path  # the attempt's temporary output directory
    owner: ActorRef  # who gets the LimitHit
    dedicated: bool


@dataclass(frozen=True, slots=True)
class Unwatch:
    """Connection -> watchdog: the attempt ended (or went back to the queue)."""

    key: Key


@dataclass(frozen=True, slots=True)
class LimitHit:
    """Watchdog -> owner: the attempt went over a limit; ``error`` says by how much."""

    key: Key
    kind: LimitKind
    error: str


@dataclass(frozen=True, slots=True, eq=False)
class _Watched:
    watch: Watch
    root: psutil.Process  # made at once: it knows the pid's start time (no reuse)


@dataclass(frozen=True, slots=True)
class _Hit:
    watched: _Watched
    kind: LimitKind
    error: str
    tree: list[psutil.Process] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class _Verdicts:
    hits: list[_Hit]


class TaskWatchdog(Actor):
    """Samples watched attempts every ``limit_check_s``; see the module docstring."""

    async def init(self, setup: NodeSetup) -> None:
        self._interval = setup.task.limit_check_s
        self._counters = setup.counters
        self._node_id = setup.node_id
        self._watched: dict[Key, _Watched] = {}
        self._timer: TimerRef | None = None
        self._sampling = False

    async def handle_cast(self, msg: Any) -> None:
        cls = type(msg)
        if cls is Watch:
            try:
                self._watched[msg.key] = _Watched(msg, psutil.Process(msg.pid))
            except psutil.Error:
                return  # it ended already: its Unwatch follows
            self._arm()
        elif cls is Unwatch:
            self._watched.pop(msg.key, None)
        elif cls is _Verdicts:
            self._sampling = False
            for hit in msg.hits:
                self._act(hit)
            self._counters.limit_checks += 1
            telemetry = self.runtime.telemetry
            if telemetry.active:
                event = ("mabeam", "node", "limit_checked")
                telemetry.emit(event, {"hits": len(msg.hits)}, {"node_id": self._node_id})
            self._arm()
        else:
            raise ValueError(f"TaskWatchdog got an unknown message {msg!r}")

    async def handle_info(self, msg: Any) -> None:
        if msg != _TICK:
            return
        self._timer = None
        if not self._watched:
            return
        self._sampling = True
        hits = await self.runtime.to_thread(_sample, list(self._watched.values()))
        self.ref.cast(_Verdicts(hits))  # after what came in while the thread measured

    def _arm(self) -> None:
        if self._timer is None and not self._sampling and self._watched:
            self._timer = self.send_after(self._interval, _TICK)

    def _act(self, hit: _Hit) -> None:
        watch = hit.watched.watch
        if self._watched.get(watch.key) is not hit.watched:
            return  # it ended (or started again) while the sample ran
        del self._watched[watch.key]  # one hit per attempt
        watch.owner.cast(LimitHit(watch.key, hit.kind, hit.error))  # before its end
        if watch.dedicated:
            for proc in reversed(hit.tree):  # leaves first, then the group (for any started since)
                with contextlib.suppress(psutil.Error):
                    proc.kill()
            kill_group(watch.pid)


def _sample(watched: list[_Watched]) -> list[_Hit]:
    """In a worker thread: measure each attempt; the ones over a limit."""
    hits: list[_Hit] = []
    for item in watched:
        try:
            hit = _measure(item)
        except (psutil.Error, OSError):
            continue  # it ended under our feet: its Unwatch is on its way
        if hit is not None:
            hits.append(hit)
    return hits


def _measure(item: _Watched) -> _Hit | None:
    watch, limits = item.watch, item.watch.limits
    tree: list[psutil.Process] = []
    if limits.memory_mb is not None:
        tree = process_tree(item.root)
        used = tree_rss(tree)
        if used > limits.memory_mb * MIB:
            return _Hit(item, "memory_limit", memory_error(used, limits), tree)
    if limits.disk_mb is not None:
        limit = limits.disk_mb * MIB
        size = output_bytes(watch.outputs, stop_above=limit, max_entries=WALK_ENTRIES)
        if size > limit:
            if watch.dedicated and not tree:
                tree = process_tree(item.root)
            return _Hit(item, "disk_limit", disk_error(size, limits.disk_mb, running=True), tree)
    return None
