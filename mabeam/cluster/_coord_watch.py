"""WATCH bookkeeping: who watches which job, and the EVENT frames they get.

A watch starts with one EVENT per job carrying its current state (so a late watcher
learns terminal states), then one per change: the store's event log, read after each
committed batch while any watch is open, gives the state changes; PROGRESS reports
(stored without an event) come from the batch's ``Progress`` ops. A watch ends when all
its jobs are terminal, when its client is silent for the peer timeout, or when sending
to it fails.

The store's event kinds map to the protocol's job states: ``submitted``, ``joined``,
``promoted``, ``retry`` and ``requeued`` -> ``queued``; ``leased``, ``running`` and the
terminal ``succeeded``, ``failed``, ``cancelled`` as named. ``cancel_requested`` is no
state change (the job keeps running until its node stops it).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Final

from . import protocol as p
from .store import Event as StoreEvent
from .store import JobRecord

__all__ = ("STATE_OF_KIND", "WatchTable", "event_frame", "record_frame")

STATE_OF_KIND: Final = {
    "submitted": "queued",
    "joined": "queued",
    "promoted": "queued",
    "retry": "queued",
    "requeued": "queued",
    "leased": "leased",
    "running": "running",
    "succeeded": "succeeded",
    "failed": "failed",
    "cancelled": "cancelled",
}
CANCELLED_TEXT: Final = "cancelled on request"
_ON_A_NODE: Final = frozenset({"leased", "running", "succeeded", "failed"})


def _text(value: Any) -> str | None:
    return p.clip(value) if isinstance(value, str) else None


def _node(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def event_frame(request_id: str, event: StoreEvent, value: Any = None) -> p.Event | None:
    """The EVENT for one store event (None for a kind that is no state change)."""
    state = STATE_OF_KIND.get(event.kind)
    if state is None:
        return None
    detail = event.detail if isinstance(event.detail, dict) else {}
    error = None
    if state in ("failed", "queued"):
        error = _text(detail.get("error"))
    elif state == "cancelled":
        error = CANCELLED_TEXT
    return p.Event(
        request_id=request_id,
        job_id=event.job_id,
        state=state,
        attempt=event.attempt,
        node_id=_node(detail.get("node")) if state in _ON_A_NODE else None,
        value=value if state == "succeeded" else None,
        error=error,
    )


def record_frame(request_id: str, rec: JobRecord) -> p.Event:
    """The EVENT that tells a new watcher where a job stands."""
    state = rec.state
    step, metrics = None, {}
    if state == "running" and isinstance(rec.progress, dict):
        raw_step, raw_metrics = rec.progress.get("step"), rec.progress.get("metrics")
        if type(raw_step) is int and raw_step >= 0:
            step = raw_step
        if isinstance(raw_metrics, dict):
            metrics = raw_metrics
    error = None
    if state == "cancelled":
        error = CANCELLED_TEXT
    elif state != "succeeded":
        error = _text(rec.error)
    return p.Event(
        request_id=request_id,
        job_id=rec.job_id,
        state=state,
        attempt=rec.attempt,
        node_id=_node(rec.node) if state in _ON_A_NODE else None,
        step=step,
        metrics=metrics,
        value=rec.result if state == "succeeded" else None,
        error=error,
    )


@dataclass(eq=False, slots=True)
class Watch:
    """One WATCH: the client, its request id, and the jobs not terminal yet."""

    peer: bytes
    request_id: str
    pending: set[str]
    since: int
    """Store events up to this seq are already in the first EVENTs."""
    attempts: dict[str, int] = field(default_factory=dict)


NAMED_JOBS: Final = 1024


class WatchTable:
    """Open watches, by job and by client peer, and when each client was last heard."""

    def __init__(self) -> None:
        self.by_job: dict[str, list[Watch]] = {}
        self.by_peer: dict[bytes, list[Watch]] = {}
        self.last_seen: dict[bytes, float] = {}

    def __len__(self) -> int:
        return sum(len(watches) for watches in self.by_peer.values())

    def __bool__(self) -> bool:
        return bool(self.by_peer)

    def add(self, watch: Watch, now: float) -> None:
        self.by_peer.setdefault(watch.peer, []).append(watch)
        self.last_seen[watch.peer] = now
        for job_id in watch.pending:
            self.by_job.setdefault(job_id, []).append(watch)

    def named(self) -> frozenset[str] | None:
        """The watched jobs, for the store to read only their events; None (every job's)
        past ``NAMED_JOBS``, where naming them would cost more than it saves."""
        return frozenset(self.by_job) if len(self.by_job) <= NAMED_JOBS else None

    def heard(self, peer: bytes, now: float) -> bool:
        """Note a frame from ``peer``; whether it has watches open."""
        if peer in self.by_peer:
            self.last_seen[peer] = now
            return True
        return False

    def done(self, watch: Watch, job_id: str) -> None:
        """``job_id`` reached a terminal state for ``watch``; drop the watch when empty."""
        watch.pending.discard(job_id)
        self._unindex(watch, job_id)
        if not watch.pending:
            self.remove(watch)

    def remove(self, watch: Watch) -> None:
        for job_id in list(watch.pending):
            self._unindex(watch, job_id)
        watch.pending.clear()
        watches = self.by_peer.get(watch.peer)
        if watches is not None:
            if watch in watches:
                watches.remove(watch)
            if not watches:
                del self.by_peer[watch.peer]
                self.last_seen.pop(watch.peer, None)

    def drop_peer(self, peer: bytes) -> int:
        """Forget every watch of ``peer``; how many there were."""
        watches = list(self.by_peer.get(peer, ()))
        for watch in watches:
            self.remove(watch)
        return len(watches)

    def silent(self, now: float, timeout: float) -> list[bytes]:
        """Peers with watches that sent nothing for ``timeout`` seconds."""
        return [peer for peer, seen in self.last_seen.items() if now - seen >= timeout]

    def _unindex(self, watch: Watch, job_id: str) -> None:
        watches = self.by_job.get(job_id)
        if watches is None:
            return
        if watch in watches:
            watches.remove(watch)
        if not watches:
            del self.by_job[job_id]
