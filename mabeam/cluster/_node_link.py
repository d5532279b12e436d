"""The node's socket to the coordinator: opening, closing, back-off, who spoke last.

``Link`` is plain state of the connection actor (used from its handlers only): a DEALER
whose routing id is ``NODE_ID#RANDOM`` (new per socket), wrapped in a ``Wire`` with a
linked ``WireReader`` that casts ``Incoming`` batches to the actor, and a socket monitor
(a dropped connection, a refused key). It knows whether HELLO went out on the
current socket (``greeted``: only then may other frames follow) and whether the
coordinator answered since (``heard``), when anything was last sent and heard, and the
reconnect back-off: ``reconnect_min_s`` doubling to ``reconnect_max_s``, each delay
drawn within +-20 % so that nodes cut off together do not come back in step. The
back-off returns to its minimum whenever the coordinator is heard.

Reopening is a timer message (``REOPEN``) to the actor, as is the retry of a HELLO that
no connection took yet (``HELLO_RETRY``): DEALER's IMMEDIATE option refuses a send
before the TCP connection completes, and a refused frame is never queued.

A socket monitor reports each dropped TCP connection (``EVENT_DISCONNECTED``). libzmq
reconnects the DEALER by itself, often before any heartbeat is missed, but the frames
in flight on the old connection are lost both ways: a DISPATCH the node never gets, a
READY the coordinator never counts. So a dropped connection ends ``greeted`` like a
closed socket does, and the next connection starts with HELLO: the coordinator then
releases the leases the node does not hold and starts its credit afresh. (Without it a
reset that libzmq healed could leave the node with no credit at the coordinator, never
sent work again, and a lost DISPATCH's job leased to it for good.)
"""

from __future__ import annotations

import logging
import random
import secrets
from typing import Final

import zmq

from foundation import Actor, ActorRef, TimerRef

from ._node_setup import NodeSetup
from ._sockets import configure_dealer, connection_dropped, for_address, handshake_refused
from ._wire import Wire, WireReader, context
from .protocol import Frame, ProtocolError, batches, decode_batch, pack_batch

__all__ = ("HELLO_RETRY", "REOPEN", "Link", "decoded", "stop_reader")

log = logging.getLogger("mabeam.node")

REOPEN: Final = "reopen"
HELLO_RETRY: Final = "hello"
_READER_EXIT_S: Final = 5.0
_LOGGED_ERRORS: Final = 20  # ERROR frames logged at WARNING; the rest at DEBUG


async def stop_reader(owner: Actor, reader: ActorRef) -> None:
    """Kill ``owner``'s linked reader actor and wait until it is gone.

    A reader waits on an fd with ``anyio.wait_readable``, and its cancellation takes the
    fd off the event loop's watch list. That must happen before the owner closes the
    fd: once closed, the number may be reused for a new pipe or socket, whose watch
    the late clean-up would remove instead.
    """
    owner.unlink(reader)
    gone = owner.runtime.monitor(reader)
    reader.kill()
    await gone.wait(_READER_EXIT_S)


class Link:
    """The connection actor's socket state; see the module docstring."""

    def __init__(self, actor: Actor, setup: NodeSetup) -> None:
        self._actor = actor
        self._setup = setup
        now = self.now()
        self.wire: Wire | None = None
        self._reader: ActorRef | None = None
        self._monitor: tuple[Wire, ActorRef] | None = None
        self._errors = 0  # ERROR frames heard (all but hello_first)
        self._answered = 0  # connections the coordinator answered
        self.greeted = False  # HELLO went out on this socket
        self.heard = False  # ... and the coordinator answered since
        self.opened_at = self.last_heard = self.last_sent = now
        self._backoff = setup.reconnect_min_s
        self._hello_timer: TimerRef | None = None
        self._reopen_timer: TimerRef | None = None
        self._sockets = 0
        self.monitor_source = ""

    def now(self) -> float:
        """The runtime clock."""
        return self._actor.runtime.clock.now()

    @property
    def is_open(self) -> bool:
        """Whether a socket is open (it may not be connected yet)."""
        return self.wire is not None

    @property
    def reader(self) -> ActorRef | None:
        """The current socket's reader (its Exit means the socket broke)."""
        return self._reader

    # -- opening and closing -------------------------------------------------------------

    async def open(self) -> None:
        """A fresh DEALER connecting to the coordinator (HELLO not sent yet)."""
        self._reopen_timer = None
        sock = context().socket(zmq.DEALER)
        try:
            # A fresh, unguessable routing id per connection (NODE_ID#RANDOM): the
            # ROUTER hands an id over to its newest connection, so a guessable one would
            # let another peer take this node's traffic (docs/security.md).
            routing_id = f"{self._setup.node_id}#{secrets.token_hex(8)}".encode()
            configure_dealer(sock, routing_id=routing_id)
            if self._setup.curve is not None:
                self._setup.curve.apply(sock)
            for_address(sock, self._setup.endpoint)
            sock.connect(self._setup.endpoint)
        except BaseException:
            sock.close(linger=0)
            raise
        self.wire = Wire(sock)
        self._reader = await self._actor.spawn_link(WireReader, self.wire, self._actor.ref)
        events = zmq.EVENT_DISCONNECTED
        if self._setup.curve is not None:  # a refused handshake must be told, not silent
            events |= zmq.EVENT_HANDSHAKE_FAILED_AUTH | zmq.EVENT_HANDSHAKE_SUCCEEDED
        monitor = Wire(sock.get_monitor_socket(events))
        self._sockets += 1  # tells this socket's events from an earlier one's, still queued
        self.monitor_source = f"monitor:{self._sockets}"
        actor = self._actor
        reader = await actor.spawn_link(WireReader, monitor, actor.ref, self.monitor_source)
        self._monitor = (monitor, reader)
        self.opened_at = self.now()
        self.greeted = self.heard = False

    async def close(self) -> None:
        """Close the socket (its reader first: nothing read from it arrives later)."""
        reader, self._reader = self._reader, None
        if reader is not None:
            await stop_reader(self._actor, reader)
        monitor, self._monitor = self._monitor, None
        wire, self.wire = self.wire, None
        if monitor is not None:
            await stop_reader(self._actor, monitor[1])
            if wire is not None:
                wire.sock.disable_monitor()
            monitor[0].close()
        if wire is not None:
            wire.close()
        self.cancel_hello_retry()
        self.greeted = self.heard = False

    async def reconnect(self, why: str) -> bool:
        """Close the socket and open a new one after the back-off; False if one is
        already scheduled."""
        if self._reopen_timer is not None:
            return False
        await self.close()
        setup = self._setup
        delay = self._backoff * random.uniform(0.8, 1.2)
        self._backoff = min(self._backoff * 2, setup.reconnect_max_s)
        log.warning(
            "node %s: %s; reconnecting to %s in %.2f s", setup.node_id, why, setup.endpoint, delay
        )
        self._reopen_timer = self._actor.send_after(delay, REOPEN)
        return True

    def cancel_reopen(self) -> None:
        """Forget a scheduled reopen (the node is stopping)."""
        if self._reopen_timer is not None:
            self._reopen_timer.cancel()
            self._reopen_timer = None

    # -- sending -------------------------------------------------------------------------

    def send_hello(self, payload: bytes) -> bool:
        """Send HELLO; if no connection takes it yet, retry soon (False)."""
        wire = self.wire
        if wire is None:
            return False
        if not wire.send(payload):
            if self._hello_timer is None:
                self._hello_timer = self._actor.send_after(self._setup.hello_retry_s, HELLO_RETRY)
            return False
        self.cancel_hello_retry()
        self.greeted = True
        self.heard = False  # the answer to a HELLO starts a session (again, after the first)
        self.last_sent = self.now()
        return True

    def retry_hello_soon(self) -> None:
        """Schedule a HELLO retry (after a frame that keeps credit in step was lost)."""
        if self._hello_timer is None and self.wire is not None:
            self._hello_timer = self._actor.send_after(self._setup.hello_retry_s, HELLO_RETRY)

    def hello_retry_fired(self) -> None:
        """The retry timer fired: the next one may be scheduled."""
        self._hello_timer = None

    def cancel_hello_retry(self) -> None:
        if self._hello_timer is not None:
            self._hello_timer.cancel()
            self._hello_timer = None

    def send(self, payload: bytes) -> bool:
        """Send on a greeted connection; False when there is none or it refused the frame."""
        wire = self.wire
        if wire is None or not self.greeted or not wire.send(payload):
            return False
        self.last_sent = self.now()
        return True

    def send_many(self, payloads: list[bytes]) -> int:
        """Send encoded frames in as few messages as fit (BATCH frames, in order); how
        many went out (a prefix: it stops at the first message not taken)."""
        sent = 0
        for group in batches(payloads):
            if not self.send(pack_batch(group)):
                break
            sent += len(group)
        return sent

    # -- hearing -------------------------------------------------------------------------

    def refused_frame(self, code: str, message: str) -> bool:
        """The coordinator refused a frame (ERROR): log it; a key refusal ("unauthorized",
        it was revoked) at ERROR once, until the coordinator answers again (True then)."""
        node_id = self._setup.node_id
        if code != "unauthorized":
            self._errors += 1  # a flood of ERRORs must not flood the log
            level = logging.WARNING if self._errors <= _LOGGED_ERRORS else logging.DEBUG
            log.log(level, "node %s: a frame was refused (%s): %s", node_id, code, message)
            return False
        if self._setup.counters.key_refused:
            return False
        self._setup.counters.key_refused = True
        log.error("node %s: the coordinator refused this node's key: %s", node_id, message)
        return True

    def handshake_events(self, messages: list[list[bytes]]) -> bool:
        """Read the socket monitor's events; True when the coordinator's ZAP handler
        just refused this node's key (logged once until a handshake succeeds)."""
        refused = handshake_refused(messages)
        counters = self._setup.counters
        if refused is None or refused == counters.key_refused:
            return False
        counters.key_refused = refused
        curve, setup = self._setup.curve, self._setup
        if refused and curve is not None:
            log.error(
                "node %s: the coordinator at %s refused this node's key %r (%s): add its"
                " public file %s.key to the coordinator's nodes allow-list",
                setup.node_id,
                setup.endpoint,
                curve.key.name,
                curve.key.public_text,
                curve.key.name,
            )
        return refused

    def dropped(self, messages: list[list[bytes]]) -> bool:
        """Read the socket monitor's events; True when the greeted connection dropped
        (libzmq reconnects by itself): the next connection must start with HELLO."""
        if not self.greeted or not connection_dropped(messages):
            return False
        self.greeted = self.heard = False
        setup = self._setup
        setup.counters.reconnects += 1
        setup.counters.connected = False
        log.warning("node %s: the connection to %s dropped; HELLO again once libzmq has"
                    " reconnected", setup.node_id, setup.endpoint)  # fmt: skip
        return True

    def heard_now(self) -> bool:
        """Frames arrived: the coordinator is alive. True when this is its first answer
        since HELLO on this socket: then the node counts as connected (logged, and the
        connect listeners called with ``again``)."""
        self.last_heard = self.now()
        self._backoff = self._setup.reconnect_min_s
        if not self.greeted or self.heard:
            return False
        self.heard = True
        setup, counters = self._setup, self._setup.counters
        counters.key_refused = False  # answered: the key is good again
        counters.connected = True
        again = self._answered > 0
        self._answered += 1
        log.info("node %s %s to %s", setup.node_id, "reconnected" if again else "connected",
                 setup.endpoint)  # fmt: skip
        for listener in setup.listeners:
            try:
                listener(again)
            except Exception:
                log.exception("node %s: a connect listener failed", setup.node_id)
        return True

    def silent_for(self, now: float) -> float:
        """Seconds since the coordinator was last heard, or this socket was opened."""
        return now - max(self.last_heard, self.opened_at)


def decoded(messages: list[list[bytes]]) -> list[Frame | ProtocolError]:
    """The frames of received messages in order, a BATCH's entries one by one; a message
    or an entry that is not a valid frame is its ``ProtocolError`` there."""
    frames: list[Frame | ProtocolError] = []
    for parts in messages:
        try:
            if len(parts) != 1:
                raise ProtocolError("bad_msgpack", f"a message of {len(parts)} parts")
            frames += decode_batch(parts[0])
        except ProtocolError as exc:
            frames.append(exc)
    return frames
