"""ZeroMQ socket options for the cluster, each set on purpose, and the send/receive rules.

The coordinator binds one ROUTER for nodes and clients; nodes and clients connect a
DEALER. ``configure_router`` / ``configure_dealer`` set the options below before the
socket binds or connects; docs/protocol.md explains each one. ``send_to`` turns the
ROUTER's refusals into values a caller can act on (requeue the job, drop the watcher),
and ``drain`` is the only way a message is received: after a poll, without blocking.

==================  =======  ===============================================================
option              sockets  why
==================  =======  ===============================================================
ROUTER_MANDATORY=1  ROUTER   a send to an unknown or vanished peer raises EHOSTUNREACH, and
                             a full pipe raises EAGAIN, instead of a silent drop
ROUTER_HANDOVER=1   ROUTER   a node reconnecting under its old routing id takes it over at
                             once, even while the ROUTER still holds the dead connection
HANDSHAKE_IVL       ROUTER   a TCP connection that does not finish the ZMTP handshake within
                             ``handshake_s`` (10 s) is closed: a client that connects and
                             sends nothing, or half a greeting, holds nothing for longer
HEARTBEAT_IVL,      ROUTER   a ZMTP PING every ``idle_s / 2`` (30 s); a connection from which
HEARTBEAT_TIMEOUT            nothing arrives within ``idle_s / 2`` after one is closed: a peer
                             that vanished without a FIN (half-open) is let go (libzmq
                             answers PINGs itself, so a live but quiet peer stays)
MAXMSGSIZE          both     a bigger message from a peer is dropped and its connection
                             reset by libzmq before it is buffered (the sender never hears
                             of it, so ``protocol.encode`` refuses such frames first)
SNDHWM/RCVHWM       both     a bound on queued messages per peer, so a stuck peer costs
                             bounded memory; with ROUTER_MANDATORY a full pipe is reported
LINGER=0            both     close never blocks; delivery rests on application ACKs (the
                             node's outbox), not on libzmq flushing at close
IMMEDIATE=1         DEALER   messages are queued only to a completed connection: while the
                             coordinator is unreachable a send fails (EAGAIN) and the result
                             stays in the outbox instead of in a pipe to nowhere
ROUTING_ID          DEALER   optional: a node's NODE_ID#RANDOM (a new random part per
                             connection), so nobody else can claim it (ROUTER_HANDOVER)
IPV6=1              both     only for an IPv6 address (tcp://[::1]:5555): set by
                             ``for_address`` (with it, IPv4 endpoints read back as
                             [::ffff:a.b.c.d])
==================  =======  ===============================================================
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Final, Literal, TypeAlias

import zmq
from zmq.utils.monitor import parse_monitor_message

from .protocol import MAX_FRAME_BYTES

__all__ = (
    "CONNECTION_IDLE_S",
    "DEFAULT_HWM",
    "HANDSHAKE_S",
    "SendOutcome",
    "configure_dealer",
    "configure_router",
    "drain",
    "bind_retrying",
    "connection_dropped",
    "drain_authenticated",
    "for_address",
    "handshake_refused",
    "monitor_events",
    "send_to",
    "try_send",
)

DEFAULT_HWM: Final = 10_000
"""Messages queued per peer and direction. Frames are ~20-200 bytes; credit keeps the
DISPATCHes queued for a node below its slots, so only a stuck peer ever fills this."""

HANDSHAKE_S: Final = 10.0
"""A connection must finish the ZMTP handshake within this (libzmq's default: 30 s)."""
CONNECTION_IDLE_S: Final = 60.0
"""A connection silent for this long, ZMTP heartbeats included, is closed."""

SendOutcome: TypeAlias = Literal["sent", "unreachable", "busy"]

Socket: TypeAlias = "zmq.Socket[Any]"


def configure_router(
    sock: Socket,
    *,
    max_msg_size: int = MAX_FRAME_BYTES,
    hwm: int = DEFAULT_HWM,
    handover: bool = True,
    handshake_s: float = HANDSHAKE_S,
    idle_s: float = CONNECTION_IDLE_S,
) -> None:
    """Set the coordinator ROUTER's options (call before ``bind``)."""
    if sock.type != zmq.ROUTER:
        raise ValueError("configure_router needs a zmq.ROUTER socket")
    handshake_ms, half_idle_ms = _millis("handshake_s", handshake_s), _millis("idle_s", idle_s / 2)
    sock.setsockopt(zmq.ROUTER_MANDATORY, 1)
    sock.setsockopt(zmq.ROUTER_HANDOVER, 1 if handover else 0)
    sock.setsockopt(zmq.HANDSHAKE_IVL, handshake_ms)
    sock.setsockopt(zmq.HEARTBEAT_IVL, half_idle_ms)
    sock.setsockopt(zmq.HEARTBEAT_TIMEOUT, half_idle_ms)
    _common(sock, max_msg_size, hwm)


def _millis(name: str, seconds: float) -> int:
    """``seconds`` as the positive int milliseconds libzmq takes (0 would mean "never")."""
    if not 0 < seconds < 2**31 / 1000:
        raise ValueError(f"{name} must be above 0 and below 2**31 ms, got {seconds!r}")
    return max(1, round(seconds * 1000))


def configure_dealer(
    sock: Socket,
    *,
    routing_id: bytes | None = None,
    max_msg_size: int = MAX_FRAME_BYTES,
    hwm: int = DEFAULT_HWM,
) -> None:
    """Set a node's or client's DEALER options (call before ``connect``).

    ``routing_id`` (1 to 255 bytes, not starting with a zero byte, which libzmq keeps
    for its own ids) names the peer on the ROUTER side; without it libzmq picks one per
    connection.
    """
    if sock.type != zmq.DEALER:
        raise ValueError("configure_dealer needs a zmq.DEALER socket")
    if routing_id is not None:
        if not 0 < len(routing_id) <= 255 or routing_id[0] == 0:
            raise ValueError(
                f"routing_id must be 1 to 255 bytes, not starting with 0: {routing_id!r}"
            )
        sock.setsockopt(zmq.ROUTING_ID, routing_id)
    sock.setsockopt(zmq.IMMEDIATE, 1)
    _common(sock, max_msg_size, hwm)


def _common(sock: Socket, max_msg_size: int, hwm: int) -> None:
    if max_msg_size < 1 or hwm < 1:
        raise ValueError(f"max_msg_size and hwm must be >= 1, got {max_msg_size}, {hwm}")
    sock.setsockopt(zmq.MAXMSGSIZE, max_msg_size)
    sock.setsockopt(zmq.SNDHWM, hwm)
    sock.setsockopt(zmq.RCVHWM, hwm)
    sock.setsockopt(zmq.LINGER, 0)


def send_to(router: Socket, peer: bytes, payload: bytes) -> SendOutcome:
    """Send ``payload`` to ``peer`` through a ROUTER set up by ``configure_router``.

    ``"unreachable"``: libzmq knows no connection for ``peer`` (never connected, or
    gone), so a DISPATCH must be requeued. ``"busy"``: the peer's pipe is at its HWM.
    A peer that vanished without libzmq noticing yet still reads as ``"sent"``; the
    lease and the heartbeats cover that case.
    """
    try:
        router.send_multipart([peer, payload], flags=zmq.NOBLOCK)
    except zmq.Again:
        return "busy"
    except zmq.ZMQError as exc:
        if exc.errno == zmq.EHOSTUNREACH:
            return "unreachable"
        raise
    return "sent"


def try_send(sock: Socket, payload: bytes) -> bool:
    """Send one payload on a DEALER without blocking; False when no connection can
    take it now (IMMEDIATE: not connected, or at the HWM), so the caller keeps it."""
    try:
        sock.send(payload, flags=zmq.NOBLOCK)
    except zmq.Again:
        return False
    return True


def drain(sock: Socket, limit: int = 1_000) -> list[list[bytes]]:
    """Receive up to ``limit`` ready messages with NOBLOCK; ``[]`` when none is ready.

    Call it after a poll (``zmq.Poller`` or the socket's FD) said the socket is
    readable, never wrap a blocking receive in a timeout or a cancel scope: pyzmq can
    lose a message received by a cancelled call (pyzmq issue 1925). The FD is edge
    triggered, so when ``limit`` messages came back, drain again before waiting.
    """
    messages: list[list[bytes]] = []
    for _ in range(limit):
        try:
            messages.append(sock.recv_multipart(flags=zmq.NOBLOCK))
        except zmq.Again:
            break
    return messages


def drain_authenticated(sock: Socket, limit: int = 1_000) -> tuple[list[list[bytes]], list[str]]:
    """``drain`` for a CURVE server: the messages, and for each the ``User-Id`` its ZAP
    handler gave the sender's connection (the sender's public key as Z85 text)."""
    messages: list[list[bytes]] = []
    users: list[str] = []
    for _ in range(limit):
        try:
            frames = sock.recv_multipart(flags=zmq.NOBLOCK, copy=False)
        except zmq.Again:
            break
        try:
            user = frames[-1].get("User-Id")
        except zmq.ZMQError:  # no metadata: not an authenticated connection
            user = ""
        messages.append([frame.bytes for frame in frames])
        users.append(user if isinstance(user, str) else "")
    return messages, users


def monitor_events(events: list[list[bytes]]) -> list[int]:
    """The event codes (``zmq.EVENT_*``) of a socket monitor's batch, in order."""
    codes: list[int] = []
    for parts in events:
        try:
            codes.append(int(parse_monitor_message(parts)["event"]))
        except Exception:  # not a monitor message: nothing to learn from it
            continue
    return codes


def handshake_refused(events: list[list[bytes]]) -> bool | None:
    """What a socket monitor's batch of events says of the last handshake: True when the
    server's ZAP handler refused this peer's key, False when one succeeded, None when
    the batch holds neither."""
    refused = None
    for event in monitor_events(events):
        if event in (zmq.EVENT_HANDSHAKE_FAILED_AUTH, zmq.EVENT_HANDSHAKE_SUCCEEDED):
            refused = event == zmq.EVENT_HANDSHAKE_FAILED_AUTH
    return refused


def connection_dropped(events: list[list[bytes]]) -> bool:
    """Whether a socket monitor's batch reports a dropped connection
    (``EVENT_DISCONNECTED``). A DEALER reconnects by itself, so the socket goes on, but
    whatever was in flight on the old connection, either way, is lost."""
    return zmq.EVENT_DISCONNECTED in monitor_events(events)


async def bind_retrying(
    sock: Socket, address: str, tries: int, sleep: Callable[[float], Awaitable[Any]]
) -> None:
    """Bind ``address``, retrying EADDRINUSE up to ``tries`` times: a crashed
    predecessor's socket is closed by libzmq's I/O thread a moment later."""
    for attempt in range(tries):
        try:
            sock.bind(address)
            return
        except zmq.ZMQError as exc:
            if exc.errno != zmq.EADDRINUSE or attempt == tries - 1:
                raise OSError(f"cannot bind {address}: {exc}") from None
            await sleep(0.05)


def for_address(sock: Socket, address: str) -> None:
    """Set ``IPV6`` on ``sock`` when ``address`` is an IPv6 one (``tcp://[...]:PORT``);
    call before ``bind``/``connect``."""
    if address.startswith("tcp://["):
        sock.setsockopt(zmq.IPV6, 1)
