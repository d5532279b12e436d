"""One ZeroMQ socket driven from the event loop: the owner actor sends, a reader receives.

A socket actor (the coordinator's router, a node's connection, a client) owns a ``Wire``
and spawns a linked ``WireReader``. The reader waits for the socket's FD with
``anyio.wait_readable`` (cancelling that wait is safe: it receives nothing), then drains
every ready message with NOBLOCK and casts them to the owner as one ``Incoming`` batch.
A receive is never wrapped in a timeout or a cancel scope (pyzmq issue 1925).

The ZeroMQ FD is edge triggered and any socket operation may consume its edge. So the
reader drains until ``Again`` before it waits, and every send through the wire checks
``EVENTS``: if a message became readable meanwhile, it ends the reader's wait at once.
Both run in the one event-loop thread, so the socket is never used from two threads.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any, Final

import anyio
import zmq

from foundation import Actor, ActorRef

from ._sockets import SendOutcome, drain, drain_authenticated, send_to, try_send

__all__ = ("Incoming", "Wire", "WireReader", "context")

DRAIN_LIMIT: Final = 1_000
"""Messages taken per wake-up; more stay queued for the next round (fair to timers)."""


def context() -> zmq.Context[Any]:
    """The process-wide ZeroMQ context (one I/O thread serves every socket)."""
    return zmq.Context.instance()


@dataclass(frozen=True, slots=True)
class Incoming:
    """A batch of received messages, each a list of frames (ROUTER: [peer, payload]);
    on an authenticating wire, ``users`` holds each sender's key (ZAP ``User-Id``)."""

    messages: list[list[bytes]]
    users: list[str] | None = None
    source: str = ""
    """The reader's ``source`` tag (an owner with two wires tells them apart)."""


class Wire:
    """A ZeroMQ socket used from the event loop only; see the module docstring."""

    def __init__(self, sock: zmq.Socket[Any], *, authenticated: bool = False) -> None:
        self.sock = sock
        self.authenticated = authenticated
        """Receive each message's ZAP ``User-Id`` with it (a CURVE server's wire)."""
        self._fd = int(sock.getsockopt(zmq.FD))
        self._waiting: anyio.CancelScope | None = None
        self._closed = False
        self.sent = 0
        self.received = 0

    def send(self, payload: bytes) -> bool:
        """DEALER side: send without blocking; False when no connection takes it now."""
        ok = try_send(self.sock, payload)
        self.sent += ok
        self._kick()
        return ok

    def send_to(self, peer: bytes, payload: bytes) -> SendOutcome:
        """ROUTER side: send to ``peer``; "unreachable" / "busy" instead of a silent drop."""
        outcome = send_to(self.sock, peer, payload)
        self.sent += outcome == "sent"
        self._kick()
        return outcome

    def send_parts(self, parts: list[bytes]) -> bool:
        """Send a multipart message without blocking; False when it cannot go now."""
        try:
            self.sock.send_multipart(parts, flags=zmq.NOBLOCK)
        except zmq.Again:
            ok = False
        else:
            ok = True
        self.sent += ok
        self._kick()
        return ok

    def _kick(self) -> None:
        waiting = self._waiting
        if waiting is not None and int(self.sock.getsockopt(zmq.EVENTS)) & zmq.POLLIN:
            waiting.cancel()

    async def receive(self, limit: int = DRAIN_LIMIT) -> Incoming:
        """Wait until at least one message is ready and return up to ``limit`` of them."""
        while True:
            if self.closed:
                raise anyio.ClosedResourceError("the wire is closed")
            if self.authenticated:
                messages, users = drain_authenticated(self.sock, limit)
                batch = Incoming(messages, users)
            else:
                messages = drain(self.sock, limit)
                batch = Incoming(messages)
            if messages:
                self.received += len(messages)
                return batch
            with anyio.CancelScope() as scope:
                self._waiting = scope
                try:
                    await anyio.wait_readable(self._fd)
                finally:
                    self._waiting = None

    @property
    def closed(self) -> bool:
        """True once ``close()`` ran."""
        return self._closed

    def close(self) -> None:
        """Wake a waiting reader and close the socket (LINGER=0: never blocks)."""
        if self._closed:
            return
        self._closed = True
        with contextlib.suppress(Exception):
            anyio.notify_closing(self._fd)
        self.sock.close(linger=0)


class WireReader(Actor):
    """Receives for its owner: spawn it linked; it casts ``Incoming`` batches until killed."""

    async def init(self, wire: Wire, owner: ActorRef, source: str = "") -> None:
        self._wire = wire
        self._owner = owner
        self._source = source
        self.ref.cast("run")

    async def handle_cast(self, msg: Any) -> None:
        if msg != "run":
            raise ValueError(f"WireReader takes no messages, got {msg!r}")
        wire, owner = self._wire, self._owner
        while True:  # receive() raises ClosedResourceError once the wire is closed
            try:
                batch = await wire.receive()
            except (anyio.ClosedResourceError, zmq.ZMQError):
                if wire.closed:
                    return
                raise
            if self._source:
                batch = Incoming(batch.messages, batch.users, self._source)
            # An owner with a bounded mailbox ("block") holds the reader here: the
            # messages wait in libzmq (up to its HWM, then TCP pushes back on the peers).
            await owner.cast_wait(batch)
