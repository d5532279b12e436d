"""The coordinator's store actor: group commit of job-store ops from every part.

Sessions (ACCEPT, PROGRESS, RESULT), the scheduler (leases, requeues) and the client
part (SUBMIT, CANCEL) cast ``StoreRequest``s here. Requests that arrive while a batch
is being written wait in the mailbox; the next flush takes all of them (up to
``max_batch_ops`` ops) into ONE ``JobStore.apply`` call, run in ``rt.to_thread`` so the
event loop keeps serving the socket meanwhile. Only after the commit does each sender
get its ``StoreReply`` (outcomes in the order of its ops), so nothing is acknowledged
or dispatched before it is durable.

After the replies, every subscriber gets one ``Committed`` per batch: the ops, their
outcomes and, while someone watches jobs, the batch's rows of the store's event log.
The scheduler keeps its in-memory ready queue from these; the client part turns them
into WATCH events. A request may also carry a ``read``: a function of the store and its
outcomes, run on the store's thread after the batch, whose result comes back in the
reply (the requests that need a consistent view: a watch's first state, reconcile).

A batch that raises is retried request by request, so one request that cannot be
written fails alone (its sender gets ``StoreReply.error``) and the rest commit.

Retention: with ``retention_s``, a timer queues a ``Prune`` of the finished jobs older
than that every ``prune_interval(retention_s)`` seconds, as a request of its own (its
``Pruned`` outcome reaches the subscribers like any other).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from foundation import Actor, ActorRef, Down, Exit

from .store import Event, JobStore, Op, Outcome, Prune

__all__ = ("Committed", "StoreActor", "StoreReply", "StoreRequest", "Subscribe", "WatchEvents")

log = logging.getLogger("mabeam.coordinator")

ReadFn = Callable[[JobStore, list[Outcome]], Any]
_FLUSH: Final = "flush"
_PRUNE: Final = "prune"
PRUNE_LIMIT: Final = 10_000
"""Finished jobs deleted by one ``Prune`` at most (the next one takes the rest)."""


def prune_interval(retention_s: float) -> float:
    """Seconds between two prunes: a quarter of the retention, within 0.5 s and 60 s."""
    return min(max(retention_s / 4, 0.5), 60.0)


_ALL_EVENTS: Final = 1 << 62


@dataclass(frozen=True, slots=True)
class StoreRequest:
    """Ops to commit (maybe none) and an optional read; the reply goes to ``reply_to``."""

    ops: Sequence[Op]
    reply_to: ActorRef | None = None
    tag: Any = None
    read: ReadFn | None = None
    watch: bool = False
    """The read starts a watch: publish event-log rows from here on."""


@dataclass(frozen=True, slots=True)
class StoreReply:
    """The committed outcomes of a request (and its read's result), or why it failed."""

    tag: Any
    outcomes: list[Outcome]
    read: Any = None
    error: BaseException | None = None
    event_seq: int = 0
    """The newest event-log seq the request's read could see (where its watch starts)."""


@dataclass(frozen=True, slots=True)
class Committed:
    """One committed batch, published to every subscriber after the replies."""

    ops: list[Op]
    outcomes: list[Outcome]
    events: list[Event] = field(default_factory=list)
    balances: dict[str, int] = field(default_factory=dict)
    """Accounts whose available money the batch changed -> that amount (the market)."""


@dataclass(frozen=True, slots=True)
class Subscribe:
    """Send ``Committed`` batches to ``ref`` from now on (until it exits)."""

    ref: ActorRef


@dataclass(frozen=True, slots=True)
class WatchEvents:
    """Whether any watch is open, so the batches carry event-log rows (costs a read),
    and of which jobs (None: all). The client part names the jobs only while no watch
    is starting: a request that starts one makes the store read every job's rows until
    the next ``WatchEvents``, so none of the new watch's events can be left out."""

    on: bool
    jobs: frozenset[str] | None = None


@dataclass(slots=True)
class _Work:
    """What one flush hands to the store's thread and gets back."""

    requests: list[StoreRequest]
    watching: bool
    cursor: int
    jobs: frozenset[str] | None = None  # whose event-log rows to read (None: all)
    outcomes: list[list[Outcome]] = field(default_factory=list)
    reads: list[Any] = field(default_factory=list)
    errors: list[BaseException | None] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    event_seq: int = 0
    balances: dict[str, int] = field(default_factory=dict)


class StoreActor(Actor):
    """Owns the ``JobStore``; commits ops in groups (see the module docstring)."""

    trap_exits = True  # a stop runs terminate, which closes the database

    async def init(
        self,
        path: str,
        *,
        synchronous: str = "FULL",
        backoff_base_s: float = 1.0,
        backoff_cap_s: float = 60.0,
        max_batch_ops: int = 5_000,
        counters: Any = None,
        retention_s: float | None = None,
    ) -> None:
        self.store = JobStore(
            path,
            synchronous=synchronous,  # type: ignore[arg-type]
            backoff_base_s=backoff_base_s,
            backoff_cap_s=backoff_cap_s,
        )
        self._max_ops = max_batch_ops
        self._pending: list[StoreRequest] = []
        self._pending_ops = 0
        self._flush_queued = False
        self._subscribers: dict[Any, ActorRef] = {}
        self._watching = False
        self._watched: frozenset[str] | None = None  # WatchEvents.jobs
        self._cursor = 0
        self._counters = counters
        self._retention_s = retention_s
        if retention_s is not None:
            self.send_after(prune_interval(retention_s), _PRUNE)

    async def terminate(self, reason: Any) -> None:
        store = getattr(self, "store", None)
        if store is not None:
            store.close()

    async def handle_call(self, request: Any, caller: Any) -> Any:
        if request == "store_id":
            return self.store.store_id
        if request == "path":
            return str(self.store.path)
        if request == "counts":
            return await self.runtime.to_thread(self.store.counts)
        raise ValueError(f"unknown store request {request!r}")

    async def handle_cast(self, msg: Any) -> None:
        kind = type(msg)
        if kind is StoreRequest:
            if msg.watch:
                self._watched = None  # every job's events until told whose (WatchEvents)
            self._pending.append(msg)
            self._pending_ops += len(msg.ops)
            if not self._flush_queued:
                self._flush_queued = True
                self.ref.cast(_FLUSH)  # behind what is queued already: they join this batch
        elif msg == _FLUSH:
            self._flush_queued = False
            await self._flush()
        elif kind is Subscribe:
            self._subscribers[msg.ref.pid] = msg.ref
            self.monitor(msg.ref)
        elif kind is WatchEvents:
            self._watched = msg.jobs
            if not msg.on:
                self._watching = False
        else:
            raise ValueError(f"unknown store message {msg!r}")

    async def handle_info(self, msg: Any) -> None:
        if msg == _PRUNE and self._retention_s is not None:
            before = self.store.now() - self._retention_s
            self.ref.cast(StoreRequest([Prune(before, PRUNE_LIMIT)], tag="prune"))
            self.send_after(prune_interval(self._retention_s), _PRUNE)
        elif type(msg) is Down:
            self._subscribers.pop(msg.pid, None)
        elif type(msg) is Exit:
            self.stop(msg.reason)

    # -- the batch ----------------------------------------------------------------------

    def _take(self) -> list[StoreRequest]:
        """The requests of the next batch: all pending ones, up to ``max_batch_ops`` ops."""
        pending = self._pending
        if self._pending_ops <= self._max_ops:
            self._pending, self._pending_ops = [], 0
            return pending
        taken, ops = 0, 0
        while taken < len(pending) and (
            taken == 0 or ops + len(pending[taken].ops) <= self._max_ops
        ):
            ops += len(pending[taken].ops)
            taken += 1
        batch, self._pending = pending[:taken], pending[taken:]
        self._pending_ops -= ops
        return batch

    async def _flush(self) -> None:
        batch = self._take()
        if self._pending and not self._flush_queued:
            self._flush_queued = True
            self.ref.cast(_FLUSH)
        if not batch:
            return
        work = _Work(batch, self._watching, self._cursor, self._watched)
        await self.runtime.to_thread(self._run, work)
        if self._counters is not None:
            self._counters.store_batches += 1
            self._counters.store_ops += sum(len(r.ops) for r in batch)
            self._counters.store_errors += sum(error is not None for error in work.errors)
        if any(r.watch for r in batch):
            self._watching = True
        self._cursor = work.event_seq if work.event_seq else self._cursor
        ops: list[Op] = []
        outcomes: list[Outcome] = []
        for request, outs, read, error in zip(
            batch, work.outcomes, work.reads, work.errors, strict=True
        ):
            if error is None:
                ops.extend(request.ops)
                outcomes.extend(outs)
            if request.reply_to is not None:
                request.reply_to.send(StoreReply(request.tag, outs, read, error, work.event_seq))
        if ops or work.events:
            committed = Committed(ops, outcomes, work.events, work.balances)
            for ref in list(self._subscribers.values()):
                ref.send(committed)

    def _run(self, work: _Work) -> None:
        """On the store's thread: apply the batch, read events, run the reads."""
        store = self.store
        requests = work.requests
        ops = [op for request in requests for op in request.ops]
        try:
            flat = store.apply(ops) if ops else []
        except Exception as exc:  # one bad request must not sink its batch-mates
            if len(requests) == 1:
                log.error("job store batch failed: %s: %s", type(exc).__name__, exc)
                work.outcomes.append([])
                work.errors.append(exc)
            else:
                self._one_by_one(work)
        else:
            at = 0
            for request in requests:
                n = len(request.ops)
                work.outcomes.append(flat[at : at + n])
                work.errors.append(None)
                at += n
        work.balances = store.take_balances()
        if work.watching:  # only the named jobs' rows become events (~3.5 us each)
            work.events = store.events(since=work.cursor, limit=_ALL_EVENTS, jobs=work.jobs)
            work.event_seq = store.last_event_seq()  # this thread is the only writer
        for request, outs, error in zip(requests, work.outcomes, work.errors, strict=True):
            result = None
            if request.read is not None and error is None:
                try:
                    result = request.read(store, outs)
                except Exception as exc:
                    log.exception("job store read failed")
                    result = _ReadFailed(exc)
            work.reads.append(result)
        if any(request.watch for request in requests):
            # No write since the events and reads above: a watch starts exactly here.
            work.event_seq = store.last_event_seq()

    def _one_by_one(self, work: _Work) -> None:
        for request in work.requests:
            try:
                outs = self.store.apply(list(request.ops)) if request.ops else []
            except Exception as exc:
                log.error(
                    "job store ops %s failed: %s: %s",
                    [type(op).__name__ for op in request.ops][:5],
                    type(exc).__name__,
                    exc,
                )
                work.outcomes.append([])
                work.errors.append(exc)
            else:
                work.outcomes.append(outs)
                work.errors.append(None)


@dataclass(frozen=True, slots=True)
class _ReadFailed:
    """A request's read raised: its reply carries this instead of a result."""

    error: BaseException


def read_failed(value: Any) -> BaseException | None:
    """The exception a reply's read raised, or None if it returned a value."""
    return value.error if type(value) is _ReadFailed else None
