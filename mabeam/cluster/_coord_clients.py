"""The coordinator's client part: SUBMIT, WATCH, STATUS and CANCEL requests.

Every request becomes one ``StoreRequest`` and is answered from its reply, i.e. after
the batch committed: SUBMITTED only once the jobs are durable. Replies echo the
request's ``request_id``; a refused request gets ERROR with ``in_reply_to`` set:

- SUBMIT: a spec the store refuses -> ``bad_spec`` naming the spec and key; an
  idempotency key reused for other specs -> ``bad_value``. The submitter is the
  constant ``"client"``; a repeated key returns the first jobs with ``duplicate``.
- WATCH: ``unknown_job`` / ``unknown_sweep`` for ids it cannot resolve,
  ``too_many_watches`` past ``max_watches_per_client`` open watches of one client; see
  ``_coord_watch`` for the events.
- STATUS: the nodes (from the scheduler, last-seen from each session), the listed jobs
  (``unknown_job`` if one is not known) or the sweep's, else the most recent
  ``status_jobs`` with the unfinished ones first, and the counts by state.
- CANCEL: the job's state after the request (``cancelled`` for a queued job; ``leased``
  or ``running`` while its node stops it, the scheduler sending the CANCEL; the final
  state of a finished one); ``unknown_job`` for an id the store does not know.

A HEARTBEAT from a peer with no watch (nor node session) gets ERROR ``hello_first``:
the coordinator restarted or dropped the watch; a node says HELLO, a client re-WATCHes.

Sweeps: the jobs of a ``sweep_id`` are those SUBMITs named it with (in memory), plus,
after a restart, what the store's idempotency keys say (the client's key is the sweep
id, or ``<sweep id>#<index>`` per chunk).
"""

from __future__ import annotations

import logging
from typing import Any, Final

from foundation import Actor, ActorRef

from . import protocol as p
from ._coord_config import CoordinatorConfig
from ._coord_ledger import market_reply, market_request
from ._coord_messages import ClientFrames, PeerGone
from ._coord_shared import Outlet, Shared
from ._coord_status import (
    SUBMITTER,
    job_info,
    node_infos,
    records,
    status_payload,
    status_read,
    store_spec,
    sweep_jobs,
)
from ._coord_store import Committed, StoreReply, StoreRequest, Subscribe, WatchEvents, read_failed
from ._coord_sweeps import SweepCache
from ._coord_watch import Watch, WatchTable, event_frame, record_frame
from .store import (
    Accepted,
    Cancel,
    Cancelled,
    CancelRequested,
    Complete,
    Completed,
    IdempotencyConflictError,
    InvalidSpecError,
    JobStore,
    NotCancelled,
    Outcome,
    Progress,
    Pruned,
    QuotaExceededError,
    Rejected,
    Submit,
    Submitted,
)

__all__ = ("ClientHub",)

log = logging.getLogger("mabeam.coordinator")

_LIVENESS: Final = "liveness"


_STORE_REQUESTS: Final = frozenset({p.Submit, p.Watch, p.Status, p.CancelJob, p.Market})
"""Client requests answered from the store: bounded in flight (``max_client_requests``)."""
_REQUEST_TAGS: Final = frozenset({"submit", "watch", "status", "cancel", "market"})


class ClientHub(Actor):
    """Answers client requests and streams WATCH events (see the module docstring)."""

    async def init(self, config: CoordinatorConfig, shared: Shared) -> None:
        rt = self.runtime
        self._config = config
        self._names = shared.names
        self._counters = shared.counters
        store = rt.whereis(shared.names.store)
        if store is None:
            raise RuntimeError("the coordinator's store is not running")
        self._store: ActorRef = store
        self._outlet: Outlet = await rt.call(shared.names.router, "outlet")
        self._clock = rt.clock
        self._watches = WatchTable()
        self._starting: dict[bytes, int] = {}  # peers with a WATCH being read
        self._sweeps = SweepCache()
        self._events_on = False
        self._events_of: frozenset[str] | None = None  # the jobs named to the store
        self._liveness_armed = False
        self._sent_at: dict[bytes, float] = {}  # watcher -> when it was last sent a frame
        self._owners: dict[bytes, str] = {}  # the submitters of the batch in hand
        self._in_flight = 0  # client requests sent to the store, not answered yet
        store.cast(Subscribe(self.ref))

    # -- requests -----------------------------------------------------------------------

    async def handle_cast(self, msg: Any) -> None:
        kind = type(msg)
        if kind is ClientFrames:
            now = self._clock.now()
            self._owners = msg.owners
            for peer, frame in msg.items:
                try:
                    await self._request(peer, frame, now)
                except Exception as exc:  # one request's failure must not stop the rest
                    self._internal(peer, frame, exc)
        elif kind is PeerGone:
            self._drop_peer(msg.peer)
        else:
            raise ValueError(f"unknown client-part message {msg!r}")

    async def _request(self, peer: bytes, frame: p.Frame, now: float) -> None:
        known = self._watches.heard(peer, now)
        kind = type(frame)
        if kind in _STORE_REQUESTS and self._in_flight >= self._config.max_client_requests:
            self._counters.busy_refusals += 1
            message = (
                f"the coordinator has {self._in_flight} client requests in flight"
                " (max_client_requests): send it again in a moment"
            )
            self._refuse(peer, frame.request_id, "busy", message)  # type: ignore[union-attr]
            return
        if kind is p.Submit:
            self._submit(peer, frame)  # type: ignore[arg-type]
        elif kind is p.Watch:
            self._watch(peer, frame)  # type: ignore[arg-type]
        elif kind is p.Status:
            self._status(peer, frame)  # type: ignore[arg-type]
        elif kind is p.CancelJob:
            self._cancel(peer, frame)  # type: ignore[arg-type]
        elif kind is p.Market:
            owner = self._owners.get(peer, "")
            self._ask_store(market_request(self.ref, peer, frame, owner))  # type: ignore[arg-type]
        elif kind is p.Bye:
            self._drop_peer(peer)
        elif kind is p.Heartbeat and not known and peer not in self._starting:
            message = (
                "HEARTBEAT from a peer this coordinator has no node session or watch for:"
                " a node sends HELLO, a client its WATCH again"
            )
            self._send(peer, p.Error("hello_first", message))

    def _submit(self, peer: bytes, frame: p.Submit) -> None:
        specs = []
        for index, spec in enumerate(frame.specs):
            try:
                specs.append(store_spec(spec))
            except InvalidSpecError as exc:
                self._refuse(peer, frame.request_id, "bad_spec", f"specs[{index}]: {exc}")
                return
        owner = self._owners.get(peer, SUBMITTER)  # the client key's name, when keyed
        quota = self._config.max_queued_per_submitter
        op = Submit(tuple(specs), SUBMITTER, frame.idempotency_key, owner, quota)
        self._ask_store(StoreRequest([op], self.ref, ("submit", peer, frame)))

    def _submitted(self, peer: bytes, frame: p.Submit, reply: StoreReply) -> None:
        out = reply.outcomes[0] if reply.error is None else None
        if isinstance(out, Submitted):
            if frame.sweep_id is not None:
                self._sweeps.add(frame.sweep_id, out.job_ids)
            self._send(
                peer, p.Submitted(frame.request_id, out.job_ids, frame.sweep_id, out.duplicate)
            )
        elif isinstance(out, Rejected):
            error = out.error
            if isinstance(error, IdempotencyConflictError):
                self._refuse(
                    peer, frame.request_id, "bad_value", f"SUBMIT.idempotency_key: {error}"
                )
            elif isinstance(error, QuotaExceededError):
                self._refuse(peer, frame.request_id, "quota_exceeded", str(error))
            else:
                self._refuse(peer, frame.request_id, "bad_spec", str(error))
        else:
            self._refuse(peer, frame.request_id, "internal", f"the job store failed: {reply.error}")

    def _cancel(self, peer: bytes, frame: p.CancelJob) -> None:
        job_id = frame.job_id

        def state_after(store: JobStore, outcomes: list[Outcome]) -> str | None:
            if outcomes and isinstance(outcomes[0], CancelRequested):
                return store.job(job_id).state
            return None

        request = StoreRequest(
            [Cancel(job_id)], self.ref, ("cancel", peer, frame), read=state_after
        )
        self._ask_store(request)

    def _cancelled(self, peer: bytes, frame: p.CancelJob, reply: StoreReply) -> None:
        out = reply.outcomes[0] if reply.error is None else None
        if isinstance(out, Cancelled):
            state = "cancelled"
        elif isinstance(out, CancelRequested):
            state = reply.read if isinstance(reply.read, str) else "running"
        elif isinstance(out, NotCancelled):
            state = out.state
        elif isinstance(out, Rejected):
            self._refuse(peer, frame.request_id, "unknown_job", f"unknown job id {frame.job_id!r}")
            return
        else:
            self._refuse(peer, frame.request_id, "internal", f"the job store failed: {reply.error}")
            return
        self._send(peer, p.Cancelled(frame.request_id, frame.job_id, state))

    # -- watches ------------------------------------------------------------------------

    def _watch(self, peer: bytes, frame: p.Watch) -> None:
        if self._over_watch_limit(peer, frame.request_id):
            limit = self._config.max_watches_per_client
            message = f"this client has {limit} watches open, the limit: wait for one to end"
            self._refuse(peer, frame.request_id, "too_many_watches", message)
            return
        listed = list(dict.fromkeys(frame.job_ids))
        sweep_id = frame.sweep_id
        in_memory = self._sweeps.members(sweep_id)

        def snapshot(store: JobStore, outcomes: list[Outcome]) -> Any:
            members: list[str] = []
            if sweep_id is not None:
                members = list(dict.fromkeys([*in_memory, *sweep_jobs(store, sweep_id)]))
            return members, records(store, list(dict.fromkeys([*listed, *members])))

        self._starting[peer] = self._starting.get(peer, 0) + 1
        self._events_on = True  # the store reads its event log from this request on
        self._events_of = None  # ... every job's, until told whose again
        request = StoreRequest([], self.ref, ("watch", peer, frame), read=snapshot, watch=True)
        self._ask_store(request)

    def _over_watch_limit(self, peer: bytes, request_id: str) -> bool:
        """Whether a new WATCH puts ``peer`` over its limit (a re-sent one never does)."""
        watches = self._watches.by_peer.get(peer, ())
        if len(watches) + self._starting.get(peer, 0) < self._config.max_watches_per_client:
            return False
        return all(watch.request_id != request_id for watch in watches)

    def _watch_started(self, peer: bytes, frame: p.Watch, reply: StoreReply) -> None:
        left = self._starting.pop(peer, 1) - 1
        if left > 0:
            self._starting[peer] = left
        self._open_watch(peer, frame, reply)
        self._events_switch()  # a refused watch too: the store reads no events for it

    def _open_watch(self, peer: bytes, frame: p.Watch, reply: StoreReply) -> None:
        if reply.error is not None or read_failed(reply.read) is not None:
            why = reply.error or read_failed(reply.read)
            self._refuse(peer, frame.request_id, "internal", f"the job store failed: {why}")
            return
        members, (found, unknown) = reply.read
        if self._refused_missing(peer, frame, members, unknown):
            return
        if frame.sweep_id is not None:
            self._sweeps.note(frame.sweep_id, members)
        pending = {rec.job_id for rec in found if rec.state not in p.TERMINAL_STATES}
        watch = Watch(peer, frame.request_id, pending, reply.event_seq)
        for rec in found:
            watch.attempts[rec.job_id] = rec.attempt
            if not self._emit(watch, record_frame(frame.request_id, rec)):
                return
        if pending:
            for old in list(self._watches.by_peer.get(peer, ())):
                if old.request_id == frame.request_id:
                    self._watches.remove(old)  # a re-sent WATCH restates, never doubles
            self._watches.add(watch, self._clock.now())
            self._arm_liveness()

    def _refused_missing(
        self, peer: bytes, frame: p.Watch | p.Status, members: Any, unknown: Any
    ) -> bool:
        """Answer ERROR for an unknown sweep or job of a WATCH / STATUS; True if it did."""
        if frame.sweep_id is not None and not members:
            self._refuse(
                peer, frame.request_id, "unknown_sweep", f"unknown sweep id {frame.sweep_id!r}"
            )
            return True
        if unknown:
            self._refuse(peer, frame.request_id, "unknown_job", f"unknown job id {unknown[0]!r}")
            return True
        return False

    def _committed(self, batch: Committed) -> None:
        for out in batch.outcomes:
            if type(out) is Pruned and out.job_ids:
                self._forget(out.job_ids)
        table = self._watches
        if not table:
            return
        values: dict[str, Any] = {}
        progress: list[Progress] = []
        for op, out in zip(batch.ops, batch.outcomes, strict=True):
            kind = type(op)
            if kind is Complete and type(out) is Completed:
                values[op.job_id] = op.result  # type: ignore[union-attr]
            elif kind is Progress and type(out) is Accepted and op.job_id in table.by_job:  # type: ignore[union-attr]
                progress.append(op)  # type: ignore[arg-type]
        for event in batch.events:
            watches = table.by_job.get(event.job_id)
            if not watches:
                continue
            value = None
            if event.kind == "succeeded":
                source = event.detail.get("via") or event.job_id
                if source not in values:
                    self._late_value(event, list(watches))
                    continue
                value = values[source]
            for watch in list(watches):
                if event.seq > watch.since:
                    frame = event_frame(watch.request_id, event, value)
                    if frame is not None:
                        watch.attempts[event.job_id] = event.attempt
                        self._emit(watch, frame)
        for op in progress:  # after the state changes of the batch (ACCEPT: running)
            self._progress(op)
        self._events_switch()

    def _progress(self, op: Progress) -> None:
        data = op.data if isinstance(op.data, dict) else {}
        step, metrics = data.get("step"), data.get("metrics") or {}
        for watch in list(self._watches.by_job.get(op.job_id, ())):
            event = p.Event(
                watch.request_id, op.job_id, "running", watch.attempts.get(op.job_id, 0),
                None, step, metrics,
            )  # fmt: skip
            self._emit(watch, event)

    def _late_value(self, event: Any, watches: list[Watch]) -> None:
        """A succeeded event whose value is not in the batch (served from the cache):
        read the job, then send it."""
        job_id = event.job_id

        def read(store: JobStore, outcomes: list[Outcome]) -> Any:
            return store.job(job_id).result

        self._store.cast(StoreRequest([], self.ref, ("value", event, watches), read=read))

    def _emit(self, watch: Watch, frame: p.Event) -> bool:
        """Send one EVENT; a terminal one ends the job's part of the watch. False when
        the client is unreachable (its watches are dropped)."""
        try:
            payload = p.encode(frame)
        except p.ProtocolError as exc:  # a result too large for an EVENT
            note = f"the job's result cannot be sent in an EVENT: {exc.message}"
            payload = p.encode(
                p.Event(frame.request_id, frame.job_id, frame.state, frame.attempt,
                        frame.node_id, error=p.clip(note))
            )  # fmt: skip
        if self._outlet.send_payload(watch.peer, payload) != "sent":
            self._drop_peer(watch.peer)
            return False
        self._sent_at[watch.peer] = self._clock.now()
        if frame.state in p.TERMINAL_STATES and frame.step is None:
            self._watches.done(watch, frame.job_id)
        return True

    def _drop_peer(self, peer: bytes) -> None:
        if self._watches.drop_peer(peer):
            log.info("dropped the watches of client %r", peer)
        self._events_switch()

    def _events_switch(self) -> None:
        """Tell the store whether to read events, and whose once none is starting."""
        on = bool(self._watches) or bool(self._starting)
        if self._events_on and not on:
            self._store.cast(WatchEvents(False))
        elif on and not self._starting and (jobs := self._watches.named()) != self._events_of:
            self._events_of = jobs
            self._store.cast(WatchEvents(True, jobs))
        self._events_on = on

    def _arm_liveness(self) -> None:
        if not self._liveness_armed:
            self._liveness_armed = True
            self.send_after(self._config.heartbeat_s, _LIVENESS)

    def _check_liveness(self) -> None:
        """Every interval while watches are open: drop silent clients, and send a
        HEARTBEAT to each watcher that got nothing for an interval (so it knows the
        coordinator is there while its jobs run quietly)."""
        self._liveness_armed = False
        now = self._clock.now()
        for peer in self._watches.silent(now, self._config.peer_timeout_s):
            log.info("client %r silent: its watches end", peer)
            self._drop_peer(peer)
        interval = self._config.heartbeat_s
        heartbeat = p.encode(p.Heartbeat())
        for peer in list(self._watches.by_peer):
            if now - self._sent_at.get(peer, 0.0) >= interval * 0.999:
                if self._outlet.send_payload(peer, heartbeat) == "sent":
                    self._sent_at[peer] = now
                else:
                    self._drop_peer(peer)
        for peer in [peer for peer in self._sent_at if peer not in self._watches.by_peer]:
            del self._sent_at[peer]
        if self._watches:
            self._arm_liveness()

    # -- status -------------------------------------------------------------------------

    def _status(self, peer: bytes, frame: p.Status) -> None:
        sweep_id = frame.sweep_id
        in_memory = self._sweeps.members(sweep_id)
        read = status_read(
            list(dict.fromkeys(frame.job_ids)), sweep_id, in_memory, self._config.status_jobs
        )
        self._ask_store(StoreRequest([], self.ref, ("status", peer, frame), read=read))

    async def _status_reply(self, peer: bytes, frame: p.Status, reply: StoreReply) -> None:
        if reply.error is not None or read_failed(reply.read) is not None:
            why = reply.error or read_failed(reply.read)
            self._refuse(peer, frame.request_id, "internal", f"the job store failed: {why}")
            return
        members, (found, unknown), counts = reply.read
        if self._refused_missing(peer, frame, members, unknown):
            return
        nodes = await node_infos(self.runtime, self._names.scheduler)
        jobs = [job_info(rec, self._sweeps.sweep_of(rec.job_id)) for rec in found]
        status = p.StatusReply(frame.request_id, tuple(nodes), tuple(jobs), counts)
        self._outlet.send_payload(peer, status_payload(status))

    # -- store replies ------------------------------------------------------------------

    async def handle_info(self, msg: Any) -> None:
        kind = type(msg)
        if kind is Committed:
            self._committed(msg)
        elif kind is StoreReply:
            await self._reply(msg)
        elif msg == _LIVENESS:
            self._check_liveness()

    async def _reply(self, reply: StoreReply) -> None:
        what, peer_or_event, rest = reply.tag
        if what in _REQUEST_TAGS:
            self._in_flight -= 1
        try:
            if what == "submit":
                self._submitted(peer_or_event, rest, reply)
            elif what == "watch":
                self._watch_started(peer_or_event, rest, reply)
            elif what == "status":
                await self._status_reply(peer_or_event, rest, reply)
            elif what == "cancel":
                self._cancelled(peer_or_event, rest, reply)
            elif what == "market":
                await market_reply(self, peer_or_event, rest, reply, self._names.scheduler)
            elif what == "value":
                value = reply.read if read_failed(reply.read) is None else None
                for watch in rest:
                    if watch.pending and peer_or_event.job_id in watch.pending:
                        frame = event_frame(watch.request_id, peer_or_event, value)
                        if frame is not None:
                            self._emit(watch, frame)
        except Exception as exc:
            if what in _REQUEST_TAGS:
                self._internal(peer_or_event, rest, exc)
            else:
                log.exception("internal error sending a watch event")

    def _forget(self, job_ids: tuple[str, ...]) -> None:
        """Retention deleted these jobs: drop them from the sweep caches."""
        telemetry = self.runtime.telemetry
        if telemetry.active:
            telemetry.emit(("mabeam", "coordinator", "pruned"), {"jobs": len(job_ids)}, {})
        self._sweeps.forget(job_ids)

    def _ask_store(self, request: StoreRequest) -> None:
        """Send a client request's store work; counted in flight until its reply."""
        self._in_flight += 1
        self._store.cast(request)

    # -- replies ------------------------------------------------------------------------

    def _send(self, peer: bytes, frame: p.Frame) -> None:
        self._outlet.send(peer, frame)

    def _refuse(self, peer: bytes, request_id: str, code: str, message: str) -> None:
        self._send(peer, p.Error(code, p.clip(message), request_id))

    def _internal(self, peer: bytes, frame: p.Frame, exc: Exception) -> None:
        self._counters.internal_errors += 1
        log.error("internal error handling %s from %r", frame.TYPE, peer, exc_info=exc)
        message = f"internal error handling {frame.TYPE}: {type(exc).__name__}: {exc}"
        self._send(peer, p.Error("internal", p.clip(message), getattr(frame, "request_id", None)))
