"""The client's connection actor: one DEALER to the coordinator, requests retried on a timer.

``Client`` (client.py) encodes each request and hands it here with a request id. This
actor owns the socket (a ``Wire`` plus a linked ``WireReader``) and keeps every request
until its reply arrives:

- A request is sent at once and re-sent, same bytes and same request id, until it is
  answered: soon (20 ms, doubling) while the socket has no connection yet (IMMEDIATE
  refuses the send), then after ``retry_s`` (doubling to 8 s) while no reply comes.
  Every client request is safe to repeat: SUBMIT carries its idempotency key, STATUS
  reads, CANCEL of a cancelled job answers its state, WATCH starts with current states.
- Past ``timeout`` seconds without an answer the caller gets ``CoordinatorUnreachable``
  naming the address. An ERROR ``busy`` (the coordinator has too many requests in
  flight) is no answer either: the request is sent again after its back-off.
- A watch is a group of WATCH requests (one per chunk of job ids) feeding one memory
  stream with EVENT frames (or an exception, which ends it). Its WATCHes are re-sent
  like requests until the first EVENT (or ERROR) arrives. While watches are open the
  actor sends a HEARTBEAT whenever it has sent nothing for ``heartbeat_s``; when the
  coordinator has been silent for ``silence_s``, said BYE, or asked for a HELLO (it
  restarted and forgot this peer), the WATCHes go out again, which restates every
  job (the client drops repeated states). A watch may have a deadline: then it ends
  with ``ResultTimeout``.

One timer at a time is armed, for the earliest thing due; with nothing pending the
actor is idle.
"""

from __future__ import annotations

import contextlib
import logging
import math
import random
from dataclasses import dataclass, field
from typing import Any, Final

import anyio
import zmq
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from foundation import Actor, ActorRef, Caller, NoReply, TimerRef

from . import protocol
from ._client_errors import (
    ClientError,
    CoordinatorUnreachable,
    ResultTimeout,
    Unauthorized,
    refusal,
)
from ._security import CurveClient
from ._sockets import configure_dealer, for_address, handshake_refused
from ._wire import Incoming, Wire, WireReader, context

__all__ = ("ClientConnection",)

log = logging.getLogger("mabeam.client")

UNSENT_RETRY_S: Final = 0.02
"""First re-send delay while the DEALER has no connection yet (doubling to 0.5 s)."""
UNSENT_RETRY_CAP_S: Final = 0.5
RETRY_CAP_S: Final = 8.0
"""Longest wait between two sends of an unanswered request."""


@dataclass(slots=True)
class _Request:
    """An unanswered request: its bytes, who waits, and when to send it again."""

    request_id: str
    payload: bytes
    deadline: float
    caller: Caller | None = None  # None: a WATCH of a watch group
    group: _WatchGroup | None = None
    next_send: float = 0.0
    backoff: float = 0.0
    confirmed: bool = False  # a WATCH that got its first EVENT


@dataclass(slots=True)
class _WatchGroup:
    """The WATCHes of one ``Client.watch`` and the stream their EVENTs go to."""

    gid: str
    send: MemoryObjectSendStream[Any]
    requests: list[_Request] = field(default_factory=list)
    timer: TimerRef | None = None


class ClientConnection(Actor):
    """Owns the DEALER connection of one ``Client``; see the module docstring."""

    async def init(
        self,
        address: str,
        routing_id: bytes,
        timeout: float,
        retry_s: float,
        heartbeat_s: float,
        silence_s: float,
        curve: CurveClient | None = None,
    ) -> None:
        self.address = address
        self.curve = curve
        self.timeout = timeout
        self.retry_s = retry_s
        self.heartbeat_s = heartbeat_s
        self.silence_s = silence_s
        sock = context().socket(zmq.DEALER)
        try:
            configure_dealer(sock, routing_id=routing_id)
            if curve is not None:
                curve.apply(sock)
            for_address(sock, address)
            sock.connect(address)
        except (zmq.ZMQError, ValueError) as exc:
            sock.close(linger=0)
            raise ClientError(
                f"cannot connect to {address!r}: {exc} (expected tcp://HOST:PORT)",
                code="bad_address",
            ) from None
        self.wire = Wire(sock)
        self.requests: dict[str, _Request] = {}
        self.groups: dict[str, _WatchGroup] = {}
        now = self.runtime.clock.now()
        self.last_sent = now
        self.heard = now
        self._timer: TimerRef | None = None
        self._timer_at = math.inf
        self.reader: ActorRef = await self.spawn_link(WireReader, self.wire, self.ref)
        self.monitor_wire: Wire | None = None
        self.refused: Unauthorized | None = None  # the last handshake was refused
        if curve is not None:  # a refused handshake is an answer: say so at once
            monitor = sock.get_monitor_socket(
                zmq.EVENT_HANDSHAKE_FAILED_AUTH | zmq.EVENT_HANDSHAKE_SUCCEEDED
            )
            self.monitor_wire = Wire(monitor)
            await self.spawn_link(WireReader, self.monitor_wire, self.ref, "monitor")

    # -- requests from the Client ------------------------------------------------------

    async def handle_call(self, request: Any, caller: Caller) -> Any:
        kind = request[0]
        now = self.runtime.clock.now()
        if self.refused is not None and kind in ("request", "watch"):
            raise self.refused
        if kind == "request":
            _, request_id, payload = request
            req = _Request(request_id, payload, now + self.timeout, caller=caller)
            self.requests[request_id] = req
            self._send(req, now)
            self._arm(now)
            return NoReply
        if kind == "watch":
            _, frames, timeout = request
            return self._open_watch(frames, timeout, now)
        raise ValueError(f"ClientConnection: unknown call {request!r}")

    def _open_watch(
        self, frames: list[tuple[str, bytes]], timeout: float | None, now: float
    ) -> MemoryObjectReceiveStream[Any]:
        send, receive = anyio.create_memory_object_stream[Any](math.inf)
        group = _WatchGroup(frames[0][0], send)
        for request_id, payload in frames:
            req = _Request(request_id, payload, now + self.timeout, group=group)
            group.requests.append(req)
            self.requests[request_id] = req
            self._send(req, now)
        self.groups[group.gid] = group
        if timeout is not None:
            group.timer = self.send_after(timeout, ("watch_deadline", group.gid, timeout))
        self._arm(now)
        return receive

    async def handle_cast(self, msg: Any) -> None:
        if isinstance(msg, Incoming):
            if msg.source == "monitor":
                self._handshake_refused(msg.messages)
            else:
                self._incoming(msg.messages)
        elif isinstance(msg, tuple) and msg[0] == "unwatch":
            self._close_group(msg[1], None)
        else:
            log.warning("client connection dropped unexpected cast %r", msg)

    async def handle_info(self, msg: Any) -> None:
        if msg == "tick":
            self._timer, self._timer_at = None, math.inf
            now = self.runtime.clock.now()
            self._tick(now)
            self._arm(now)
        elif isinstance(msg, tuple) and msg[0] == "watch_deadline":
            _, gid, seconds = msg
            self._close_group(
                gid, ResultTimeout(f"the watched jobs did not finish within {seconds:g} s")
            )
        else:
            await super().handle_info(msg)

    async def terminate(self, reason: Any) -> None:
        closing = ClientError("the client connection is closed", code="closed")
        for req in list(self.requests.values()):
            if req.caller is not None:
                req.caller.fail(closing)
        for gid in list(self.groups):
            self._close_group(gid, closing)
        self.requests.clear()
        if self._timer is not None:
            self._timer.cancel()
        if not self.wire.closed:
            with contextlib.suppress(zmq.ZMQError):
                self.wire.send(protocol.encode(protocol.Bye(reason="client closing")))
        self.reader.kill()
        if self.monitor_wire is not None:
            with contextlib.suppress(zmq.ZMQError):
                self.wire.sock.disable_monitor()
            self.monitor_wire.close()
        self.wire.close()

    def _handshake_refused(self, events: list[list[bytes]]) -> None:
        """The coordinator's ZAP handler refused this client's key: fail everything
        (and every request until a handshake succeeds: libzmq keeps trying)."""
        refused = handshake_refused(events)
        if refused is None:
            return
        if not refused:
            self.refused = None
            return
        key = self.curve.key if self.curve is not None else None
        name = f"{key.name!r} ({key.public_text})" if key is not None else "?"
        error = Unauthorized(
            f"the coordinator at {self.address} refused this client's key {name}: it is"
            " not in the coordinator's clients allow-list (give its operator the public"
            " .key file; docs/security.md)"
        )
        if self.refused is None:
            log.info("%s", error.message)  # the caller raises it: no second line
        self.refused = error
        for req in list(self.requests.values()):
            self._fail(req, error)

    # -- sending and the timer ---------------------------------------------------------

    def _send(self, req: _Request, now: float) -> None:
        if self.wire.send(req.payload):
            self.last_sent = now
            req.backoff = (
                self.retry_s if req.backoff < self.retry_s else min(req.backoff * 2, RETRY_CAP_S)
            )
        else:
            req.backoff = (
                UNSENT_RETRY_S if req.backoff == 0 else min(req.backoff * 2, UNSENT_RETRY_CAP_S)
            )
        req.next_send = now + req.backoff

    def _tick(self, now: float) -> None:
        for req in list(self.requests.values()):
            if req.confirmed:
                continue
            if req.caller is not None and not req.caller.waiting:
                del self.requests[req.request_id]  # the caller gave up (cancelled)
            elif now >= req.deadline:
                self._unreachable(req)
            elif now >= req.next_send:
                self._send(req, now)
        if not self.groups:
            return
        if now - self.heard >= self.silence_s:
            log.info(
                "coordinator at %s silent for %.1f s; re-sending watches",
                self.address,
                now - self.heard,
            )
            self.heard = now
            self._resend_watches(now)
        if now - self.last_sent >= self.heartbeat_s:
            self.wire.send(protocol.encode(protocol.Heartbeat()))
            self.last_sent = now  # sent or not (no connection yet): next one in an interval

    def _unreachable(self, req: _Request) -> None:
        self._fail(req, CoordinatorUnreachable(self.address, self.timeout))

    def _fail(self, req: _Request, error: Exception) -> None:
        """End ``req`` (with every chunk of its group) by raising ``error`` in its caller."""
        if req.group is not None:
            self._close_group(req.group.gid, error)
        else:
            del self.requests[req.request_id]
            if req.caller is not None:
                req.caller.fail(error)

    def _arm(self, now: float) -> None:
        due = math.inf
        for req in self.requests.values():
            if not req.confirmed:
                due = min(due, req.next_send, req.deadline)
        if self.groups:
            due = min(due, self.last_sent + self.heartbeat_s, self.heard + self.silence_s)
        if due == math.inf or due >= self._timer_at:
            return
        if self._timer is not None:
            self._timer.cancel()
        self._timer_at = due
        self._timer = self.send_after(max(due - now, 0.0), "tick")

    def _resend_watches(self, now: float) -> None:
        for group in self.groups.values():
            for req in group.requests:
                req.confirmed = False
                req.backoff = 0.0
                req.deadline = now + self.timeout
                self._send(req, now)

    def _close_group(self, gid: str, error: BaseException | None) -> None:
        group = self.groups.pop(gid, None)
        if group is None:
            return
        for req in group.requests:
            self.requests.pop(req.request_id, None)
        if group.timer is not None:
            group.timer.cancel()
        if error is not None:
            self._deliver(group, error)
        group.send.close()

    def _deliver(self, group: _WatchGroup, item: Any) -> None:
        """Hand an EVENT (or the error that ends it) to a watch's reader. A reader that
        has gone (its watch ended; the "unwatch" is still queued behind this) drops the
        group: never an exception here, which would end the whole connection."""
        try:
            group.send.send_nowait(item)
        except (anyio.BrokenResourceError, anyio.ClosedResourceError):
            if self.groups.get(group.gid) is group:
                self._close_group(group.gid, None)

    # -- frames from the coordinator ---------------------------------------------------

    def _incoming(self, messages: list[list[bytes]]) -> None:
        now = self.runtime.clock.now()
        self.heard = now
        for message in messages:
            if len(message) != 1:
                log.warning("dropped a %d-part message from %s", len(message), self.address)
                continue
            try:
                frame = protocol.decode(message[0])
            except protocol.ProtocolError as exc:
                log.warning(
                    "dropped a bad frame from %s: %s %s", self.address, exc.code, exc.message
                )
                continue
            self._frame(frame, now)
        self._arm(now)

    def _frame(self, frame: protocol.Frame, now: float) -> None:
        if isinstance(frame, protocol.Event):
            req = self.requests.get(frame.request_id)
            if req is not None and req.group is not None:
                req.confirmed = True
                self._deliver(req.group, frame)
        elif isinstance(
            frame,
            protocol.Submitted | protocol.StatusReply | protocol.Cancelled | protocol.MarketReply,
        ):
            self._answer(frame.request_id, frame)
        elif isinstance(frame, protocol.Error):
            self._error(frame, now)
        elif isinstance(frame, protocol.Bye):
            log.info("the coordinator at %s said BYE (%s)", self.address, frame.reason)
            for group in self.groups.values():
                for req in group.requests:
                    req.confirmed = False
                    req.deadline = now + self.timeout
                    req.backoff = 0.0
                    req.next_send = now + self.retry_s
        elif not isinstance(frame, protocol.Heartbeat):
            log.warning("dropped an unexpected %s frame from %s", frame.TYPE, self.address)

    def _answer(self, request_id: str, frame: Any) -> None:
        req = self.requests.get(request_id)
        if req is None or req.caller is None:
            return  # a late answer to a re-sent request that was answered already
        del self.requests[request_id]
        req.caller.reply(frame)

    def _error(self, frame: protocol.Error, now: float) -> None:
        req = None if frame.in_reply_to is None else self.requests.get(frame.in_reply_to)
        if req is not None and frame.code == "busy":  # not refused: sent again, later
            # Within its back-off (doubled at each send), spread so that the requests
            # turned away together do not all come back together.
            req.confirmed = False
            req.next_send = now + req.backoff * random.uniform(0.5, 1.0)
        elif req is not None:
            self._fail(req, refusal(frame.code, frame.message))
        elif frame.code == "hello_first":
            # The coordinator restarted and no longer knows this peer: say it all again.
            self._resend_watches(now)
            for pending in self.requests.values():
                if pending.caller is not None:
                    self._send(pending, now)
        else:
            log.warning(
                "the coordinator at %s refused a frame: %s %s",
                self.address,
                frame.code,
                frame.message,
            )
