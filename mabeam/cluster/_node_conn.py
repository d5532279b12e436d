"""The node's connection actor: the link to the coordinator and the node's whole state.

``NodeConnection`` owns the socket (``Link``), the outbox (results on disk until ACKed)
and the work table (``Work``: running attempts, GPUs, pool workers). Everything the
node does passes through its mailbox, one at a time: credit, slots and outbox agree.

The handshake. On every new socket the node sends HELLO (its inventory, and in
``running`` every attempt it still holds: tasks running and results in the outbox),
retried every ~20 ms while the DEALER has no connection yet, then READY with its free
slots, then every un-ACKed result. The coordinator's first frame after HELLO marks the
node connected (the listeners print "connected" / "reconnected"). An ERROR
``hello_first`` (the coordinator restarted and forgot this peer) gets a HELLO at once.

Credit. A HELLO resets the coordinator's credit for the node to 0; READY adds to it
(``slots + prefetch`` in all: ``Work`` runs ``slots`` at once and holds the rest in
order). Each DISPATCH uses one; one without credit or a free place is handed back.
A slot freed by an ending task, or by a DISPATCH that never started (refused), is
granted again, coalesced into one READY per wake-up. A lost READY would leave the two
sides' credit out of step, so it makes the node HELLO again.

Results. A ``TaskEnded`` becomes a RESULT frame in the pending batch; the ``_FLUSH``
message the actor sends itself when the batch opens runs after the messages already
queued, so one SQLite transaction stores every result of the wake-up before any is
sent. An ACK drops its result; one not ACKed within a few heartbeat intervals is sent
again, and a DISPATCH or CANCEL for an attempt already in the outbox resends it.

Liveness. A housekeeping tick (a quarter heartbeat) sends a HEARTBEAT when nothing was
sent for an interval; when nothing was heard for ``peer_timeout_s`` it closes the
socket and opens a new one after the back-off (``Link``), then HELLOs again; so does a
connection that libzmq dropped and reconnected by itself (``Link.dropped``). Cut off
for longer than ``lease_s``, the node fences itself: its running tasks are stopped and
forgotten without a result (their leases go to other nodes); the outbox stays.
Draining: ``_node_drain``; task limits: ``_node_watchdog``; a refused key: ``Link``.
"""

from __future__ import annotations

import contextlib
import logging
from typing import Any, Final

from foundation import Actor, Caller, Down, Exit, NoReply

from ._limits import MAX_CREDIT
from ._node_drain import DRAIN, DRAIN_DEADLINE, DRAIN_LAST, Drain
from ._node_link import HELLO_RETRY, REOPEN, Link, decoded
from ._node_outbox import Outbox, OutboxEntry, in_order
from ._node_setup import NodeSetup
from ._node_tasks import (
    Key,
    TaskEnded,
    TaskProgress,
    TaskStarted,
    failure_payload,
    progress_payload,
    result_payload,
)
from ._node_watchdog import LimitHit
from ._node_work import Work
from ._wire import Incoming
from .protocol import (
    Ack,
    Bye,
    Cancel,
    Dispatch,
    Error,
    ErrorKind,
    Heartbeat,
    Hello,
    ProtocolError,
    Ready,
    encode,
)
from .task import TaskOutcome, check_entrypoint_allowed, entrypoint_allowed

__all__ = ("DRAIN", "NodeConnection")

log = logging.getLogger("mabeam.node")

_TICK: Final = "tick"
_FLUSH: Final = "flush"
_HEARTBEAT: Final = encode(Heartbeat())
_LOGGED: Final = 20  # bad frames logged at WARNING; the rest at DEBUG (all counted)


class NodeConnection(Actor):
    """The node agent's connection and state; see the module docstring."""

    async def init(self, setup: NodeSetup) -> None:
        self.trap_exits = True
        self._setup = setup
        self._counters = counters = setup.counters
        self._outbox = Outbox(setup.work_dir)
        self._work = Work(self, setup)
        self._link = link = Link(self, setup)
        self._hello_due = False
        self._credit = 0  # granted by READY, not yet used by a DISPATCH
        self._credit_due = 0  # slots freed since the last READY
        self._pending: list[OutboxEntry] = []  # results to store, then send
        # ACCEPTs of this wake-up, each with the count of results queued before it
        self._accepts: dict[Key, int] = {}
        self._queued = 0  # results ever queued (HELLO may store some mid-wake-up)
        self._acked_keys: list[Key] = []  # results to drop from the outbox
        self._flush_due = False
        self._sent_at: dict[Key, float] = {}
        self._next_resend = link.now() + setup.resend_s
        self._drain: Drain | None = None
        self._bye_sent = False
        counters.outbox, counters.running, counters.connected = len(self._outbox), 0, False
        try:
            await self._open()
        except BaseException:
            self._outbox.close()
            raise
        self.send_after(setup.tick_s, _TICK)

    # -- messages ------------------------------------------------------------------------

    async def handle_cast(self, msg: Any) -> None:
        cls = type(msg)
        if cls is Incoming:
            if not msg.source:
                await self._incoming(msg.messages)
            elif msg.source == self._link.monitor_source:  # not an earlier socket's
                if self._link.handshake_events(msg.messages):
                    self._emit("refused")
                if self._link.dropped(msg.messages):  # libzmq reconnects: HELLO first
                    self._emit("disconnected")
                    self._need_hello()
        elif cls is TaskEnded:
            await self._ended(msg)
        elif cls is TaskProgress:
            self._progress(msg)
        elif cls is TaskStarted:
            if self._work.started(msg.key, msg.pid):  # its ACCEPT goes out in the flush
                self._accepts[msg.key] = self._queued
                self._want_flush()
        elif cls is LimitHit:
            self._work.limit_hit(msg)
        elif msg == _FLUSH:
            self._flush()
        else:
            raise ValueError(f"NodeConnection got an unknown cast {msg!r}")

    async def handle_info(self, msg: Any) -> None:
        cls = type(msg)
        if msg == _TICK:
            await self._tick()
        elif cls is Down:
            for key, reason in self._work.down(msg):
                why = f"the node's runner for this task failed: {reason!r}"
                await self._ended(TaskEnded(key, TaskOutcome.failure("crashed", why)))
            await self._work.fill()  # what it never started is placed again
        elif cls is Exit:
            reader = self._link.reader
            if reader is not None and msg.pid == reader.pid:
                await self._reconnect(f"the socket reader failed: {msg.reason!r}")
        elif msg == HELLO_RETRY:
            self._link.hello_retry_fired()
            self._try_hello()
        elif msg == REOPEN:
            if self._link.wire is None:
                await self._open()
        elif msg == DRAIN_DEADLINE and self._drain is not None and self._drain.expire():
            for key in list(self._work.running):
                self._work.stop(key, "handed_back")
            self._check_drained()
        elif msg == DRAIN_LAST and self._drain is not None:
            self._drain.final = True
            self._check_drained()

    async def handle_call(self, request: Any, caller: Caller) -> Any:
        if request == DRAIN:
            return self._start_drain(caller)
        raise ValueError(f"NodeConnection got an unknown call {request!r}")

    async def terminate(self, reason: Any) -> None:
        for key in list(self._work.running):
            self._work.stop(key, "shutdown")
        with contextlib.suppress(Exception):
            self._store_pending()  # a result reported is on disk before the node goes
        if not self._bye_sent:
            self._link.send(encode(Bye("node stopping")))
        self._link.cancel_reopen()
        await self._link.close()
        self._outbox.close()
        self._counters.running = self._counters.queued = 0
        self._counters.connected = False

    # -- the socket ----------------------------------------------------------------------

    async def _open(self) -> None:
        await self._link.open()
        self._hello_due = True
        self._try_hello()

    async def _reconnect(self, why: str) -> None:
        """Close the socket; a new one opens after the back-off."""
        if await self._link.reconnect(why):
            self._hello_due = False
            self._counters.reconnects += 1
            self._counters.connected = False
            self._emit("disconnected")

    def _try_hello(self) -> None:
        """Send HELLO (then READY and the outbox) if one is due and a connection takes it."""
        link, setup = self._link, self._setup
        if link.wire is None or not self._hello_due:
            return
        self._store_pending()  # so that HELLO lists them
        held = self._work.held(self._outbox)
        if not link.send_hello(encode(Hello(setup.node_id, setup.inventory, held))):
            return
        self._hello_due = False
        self._credit = self._credit_due = 0  # the coordinator's credit for us is 0 now
        free = 0 if self._drain is not None else self._work.free_slots()
        if free:
            if not link.send(encode(Ready(free))):
                self._need_hello()
                return
            self._credit = free
        for entry in self._outbox:
            self._send_result(entry)

    def _need_hello(self) -> None:
        """A frame that keeps credit in step was lost: start over with a HELLO."""
        self._hello_due = True
        self._link.retry_hello_soon()

    # -- frames from the coordinator -----------------------------------------------------

    async def _incoming(self, messages: list[list[bytes]]) -> None:
        link = self._link
        if link.wire is None:
            return  # read before the socket was closed
        if link.heard_now():  # the first answer on this connection
            self._emit("connected")
        acked: list[Key] = []
        for frame in decoded(messages):
            if not link.is_open:
                break  # a BYE closed the socket
            if isinstance(frame, ProtocolError):  # a bad BATCH entry is dropped alone
                self._bad(frame.code, frame.message)
                continue
            if isinstance(frame, Dispatch):
                await self._dispatch(frame)
            elif isinstance(frame, Ack):
                acked.append((frame.job_id, frame.lease))
            elif isinstance(frame, Cancel):
                self._cancel((frame.job_id, frame.lease))
            elif isinstance(frame, Error):
                self._error(frame)
            elif isinstance(frame, Bye):
                await self._reconnect(f"the coordinator said BYE ({frame.reason or 'no reason'})")
            elif not isinstance(frame, Heartbeat):
                self._bad("unexpected", f"a {frame.TYPE} frame is not for a node")
        if acked:
            self._acked(acked)

    def _bad(self, code: str, message: str) -> None:
        level = logging.WARNING if self._counters.reject(code) <= _LOGGED else logging.DEBUG
        log.log(level, "node %s dropped a bad frame (%s): %s", self._setup.node_id, code, message)

    def _error(self, frame: Error) -> None:
        if frame.code == "hello_first":
            log.info("node %s: the coordinator asks for HELLO", self._setup.node_id)
            self._hello_due = True
            self._try_hello()
        elif self._link.refused_frame(frame.code, frame.message):  # the key was revoked
            self._emit("refused")

    async def _dispatch(self, d: Dispatch) -> None:
        key = (d.job_id, d.lease)
        work = self._work
        if key in work.running or any(e.key == key for e in self._pending):
            return  # a repeated DISPATCH of an attempt already held
        stored = self._outbox.get(key)
        if stored is not None:
            self._send_result(stored, resend=True)
            return
        over = self._credit <= 0 or work.free_slots() <= 0
        if not over:
            self._credit -= 1
        if self._drain is not None:
            self._refuse(d, "handed_back", "the node is draining (shutting down)")
        elif over:
            setup = self._setup
            why = f"all {setup.slots} are in use" + (
                f" and {setup.prefetch} more wait" if setup.prefetch else ""
            )
            self._refuse(d, "handed_back", f"the node has no free slot ({why})")
        elif not entrypoint_allowed(d.entrypoint, self._setup.allow):
            try:
                check_entrypoint_allowed(d.entrypoint, self._setup.allow)
            except ValueError as exc:
                self._refuse(d, "refused", str(exc), regrant=True)
        else:
            problem = await work.start(d, self._link.now())
            if problem is not None:
                self._refuse(d, problem[0], problem[1], regrant=True)
                return
            self._counters.tasks_run += 1

    def _refuse(self, d: Dispatch, kind: ErrorKind, why: str, *, regrant: bool = False) -> None:
        """Answer a DISPATCH that will not run with a failed RESULT."""
        key = (d.job_id, d.lease)
        self._queue_result(OutboxEntry(*key, d.attempt, failure_payload(key, d.attempt, kind, why)))
        counters = self._counters
        counters.tasks_failed += 1
        counters.handed_back += kind == "handed_back"
        counters.refused += kind == "refused"
        log.info("node %s: %s %s (%s): %s", self._setup.node_id, kind, d.job_id, d.entrypoint, why)
        if regrant:
            self._grant(1)

    def _cancel(self, key: Key) -> None:
        stored = None if self._work.stop(key, "cancelled") else self._outbox.get(key)
        if stored is not None:
            self._send_result(stored, resend=True)  # it ended already: this is how

    def _acked(self, keys: list[Key]) -> None:
        """Drop these results from the outbox, in the wake-up's one transaction."""
        self._acked_keys.extend(keys)
        for key in keys:
            self._sent_at.pop(key, None)
        self._want_flush()

    # -- what the runners report ---------------------------------------------------------

    async def _ended(self, msg: TaskEnded) -> None:
        entry = self._work.ended(msg)
        await self._work.fill()  # the freed slot (or a returned attempt) is placed
        if entry is None:
            return  # forgotten (fenced), already ended, or back in the queue
        outcome = self._work.outcome(entry, msg.outcome)  # a limit hit says how it ended
        kind: ErrorKind | None = None
        if not outcome.ok and entry.stopping in ("cancelled", "handed_back"):
            kind = "cancelled" if entry.stopping == "cancelled" else "handed_back"
        duration = self._link.now() - entry.started
        payload = result_payload(msg.key, entry.number, outcome, duration, kind=kind)
        self._queue_result(OutboxEntry(*msg.key, entry.number, payload))
        counters = self._counters
        if outcome.ok and kind is None:
            # Started and succeeded in one wake-up: the success says it started, so its
            # ACCEPT is left out (docs/protocol.md); a short task costs one frame less.
            self._accepts.pop(msg.key, None)
            counters.tasks_ok += 1
        else:
            counters.tasks_failed += 1
            counters.handed_back += kind == "handed_back"
        self._grant(1)

    def _progress(self, msg: TaskProgress) -> None:
        entry = self._work.running.get(msg.key)
        if entry is None or entry.stopping is not None:
            return
        payload = progress_payload(msg.key, msg.step, msg.metrics)
        if payload is None or not self._link.send(payload):
            self._counters.progress_dropped += 1

    # -- results, credit and the flush ---------------------------------------------------

    def _queue_result(self, entry: OutboxEntry) -> None:
        self._queued += 1
        self._pending.append(entry)
        self._want_flush()

    def _grant(self, slots: int) -> None:
        if self._drain is None:
            self._credit_due += slots
            self._want_flush()

    def _want_flush(self) -> None:
        if not self._flush_due:
            self._flush_due = True
            self.ref.cast(_FLUSH)  # runs after what is queued now: one batch per wake-up

    def _flush(self) -> None:
        """Send what this wake-up made ready in one message (a BATCH): the ACCEPTs and
        the RESULTs (once in the outbox) in the order they happened, so an attempt's
        ACCEPT comes before its RESULT, then READY with the credit freed."""
        self._flush_due = False
        accepts, self._accepts = self._accepts, {}
        results = self._store_pending()
        payloads, sources = in_order(accepts, results, self._queued - len(results))
        due = min(self._credit_due, MAX_CREDIT)
        ready = bool(due and self._link.greeted and self._drain is None)
        if ready:
            payloads.append(encode(Ready(due)))
        sent = self._link.send_many(payloads)
        for source in sources[:sent]:
            if source is not None:
                self._result_sent(source)
        if ready:
            if sent == len(payloads):
                self._credit += due
                self._credit_due -= due
            else:
                self._need_hello()
        self._check_drained()

    def _store_pending(self) -> list[OutboxEntry]:
        """Write the pending results to the outbox and drop the ACKed ones, in one
        transaction; return the results written."""
        pending, acked = self._pending, self._acked_keys
        if pending or acked:
            self._pending, self._acked_keys = [], []
            removed = self._outbox.write(pending, acked)
            counters = self._counters
            counters.outbox = len(self._outbox)
            if removed:
                counters.acks += removed
                self._emit("acked")
        return pending

    def _send_result(self, entry: OutboxEntry, *, resend: bool = False) -> None:
        if self._link.send(entry.payload):
            self._result_sent(entry, resend=resend)

    def _result_sent(self, entry: OutboxEntry, *, resend: bool = False) -> None:
        self._sent_at[entry.key] = self._link.now()
        self._counters.results_resent += resend
        self._counters.results_sent += not resend
        self._emit("result_sent")

    # -- time: heartbeats, liveness, resends, fencing ------------------------------------

    async def _tick(self) -> None:
        setup, link = self._setup, self._link
        now = link.now()
        if link.wire is not None:
            if link.silent_for(now) >= setup.peer_timeout_s:
                await self._reconnect(f"the coordinator was silent for {setup.peer_timeout_s:g} s")
            elif link.greeted:
                if now - link.last_sent >= setup.heartbeat_s:
                    link.send(_HEARTBEAT)
                if now >= self._next_resend:
                    self._resend_overdue(now)
        if self._work.running and now - link.last_heard >= setup.lease_s:
            self._fence(now)
        self.send_after(setup.tick_s, _TICK)

    def _resend_overdue(self, now: float) -> None:
        setup = self._setup
        self._next_resend = now + setup.heartbeat_s
        oldest = now - setup.resend_s
        for entry in self._outbox:
            sent = self._sent_at.get(entry.key)
            if sent is None or sent <= oldest:
                self._send_result(entry, resend=True)

    def _fence(self, now: float) -> None:
        keys = list(self._work.running)
        for key in keys:
            self._work.forget(key)
        self._counters.fenced += len(keys)
        silent, setup = now - self._link.last_heard, self._setup
        log.warning("node %s: cut off from the coordinator for %.1f s (lease %g s): stopped "
                    "%d tasks without a result", setup.node_id, silent, setup.lease_s,
                    len(keys))  # fmt: skip
        self._emit("fenced")
        if self._link.greeted:
            self._need_hello()  # the coordinator must hear at once what the node still holds
        self._check_drained()

    # -- draining ------------------------------------------------------------------------

    def _start_drain(self, caller: Caller) -> Any:
        if self._drain is not None:
            return self._drain.join(caller)
        setup, work = self._setup, self._work
        log.info("node %s draining: %d tasks running, %d waiting (handed back), %g s to finish",
                 setup.node_id, work.active, work.waiting(), setup.drain_timeout_s)  # fmt: skip
        for key in [k for k, entry in work.running.items() if not entry.launched]:
            work.stop(key, "handed_back")  # never started: back to the coordinator now
        self._drain = Drain(self, setup, caller)
        self._credit_due = 0
        self._counters.draining = True
        self._emit("draining")
        self._check_drained()
        return NoReply

    def _check_drained(self) -> None:
        drain = self._drain
        busy = bool(self._work.running or self._pending or self._acked_keys)
        unacked = self._link.greeted and len(self._outbox) > 0
        if drain is None or not drain.can_finish(busy=busy, unacked=unacked):
            return
        self._bye_sent = self._link.send(encode(Bye("node drained")))
        log.info("node %s drained (%d un-ACKed results stay in the outbox)",
                 self._setup.node_id, len(self._outbox))  # fmt: skip
        self._emit("drained")
        drain.finish()

    def _emit(self, event: str) -> None:
        telemetry = self.runtime.telemetry
        if telemetry.active:
            telemetry.emit(("mabeam", "node", event), {}, {"node_id": self._setup.node_id})
