"""What the coordinator's actors share: their names, counters, and the way out.

Every actor of one coordinator runs on the one event-loop thread of its runtime, so
they share plain objects rather than pay a message per frame: ``Counters`` (statistics
that outlive an actor's restart) and the ``Outlet``, which encodes a frame and sends it
through the ROUTER socket the router actor owns. The router makes a new ``Outlet`` when
it (re)starts; the actors started after it in the tree (rest_for_one) ask it for the
current one in their ``init``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import zmq

from . import protocol
from ._allowlist import AllowList
from ._health import PeerHealth
from ._sockets import SendOutcome
from ._wire import Wire

__all__ = ("Counters", "Names", "Outlet", "Shared")


@dataclass(frozen=True, slots=True)
class Names:
    """Registered names of one coordinator's actors (prefixed by its ``name``)."""

    app: str

    @property
    def store(self) -> str:
        return f"{self.app}.store"

    @property
    def auth(self) -> str:
        return f"{self.app}.auth"

    @property
    def router(self) -> str:
        return f"{self.app}.router"

    @property
    def scheduler(self) -> str:
        return f"{self.app}.scheduler"

    @property
    def clients(self) -> str:
        return f"{self.app}.clients"

    @property
    def sessions(self) -> str:
        return f"{self.app}.sessions"


@dataclass(slots=True)
class Counters:
    """Running totals of one coordinator (plain ints: one thread updates them)."""

    frames_in: int = 0
    frames_out: int = 0
    send_failures: int = 0
    quarantined_drops: int = 0
    unexpected_frames: int = 0
    internal_errors: int = 0
    dispatched: int = 0
    results_ok: int = 0
    results_failed: int = 0
    results_stale: int = 0
    results_refused: int = 0
    store_batches: int = 0
    store_ops: int = 0
    store_errors: int = 0
    sessions_started: int = 0
    sessions_lost: int = 0
    requeued_nodes: int = 0
    handshakes_ok: int = 0
    handshakes_refused: int = 0
    auth_refused: int = 0
    busy_refusals: int = 0
    progress_dropped: int = 0


@dataclass(slots=True)
class Shared:
    """State of one coordinator that outlives its actors' restarts."""

    names: Names
    health: PeerHealth
    counters: Counters = field(default_factory=Counters)
    endpoint: str | None = None
    """The address the ROUTER is bound to (a restarted router binds it again)."""
    wire: Wire | None = None
    """The router's socket, closed by the next router if its owner was killed."""
    announced: bool = False
    zmq_context: zmq.Context[Any] | None = None
    """This coordinator's own ZeroMQ context (its ZAP handler is per context)."""
    allow: AllowList | None = None
    """Who may connect (None: plain TCP, ``insecure``)."""
    zap_wire: Wire | None = None
    """The ZAP handler's socket, closed by the next handler if its owner was killed."""

    def close_context(self) -> None:
        """Close what is left of the coordinator's sockets and destroy its context."""
        for wire in (self.wire, self.zap_wire):
            if wire is not None:
                wire.close()
        self.wire = self.zap_wire = None
        context, self.zmq_context = self.zmq_context, None
        if context is not None and not context.closed:
            context.destroy(linger=0)


class Outlet:
    """Encodes frames and sends them to a peer through the coordinator's ROUTER."""

    __slots__ = ("_counters", "_wire", "last_sent")

    def __init__(self, wire: Wire, counters: Counters) -> None:
        self._wire = wire
        self._counters = counters
        self.last_sent: dict[bytes, float] = {}
        """Peer -> runtime time of the last frame sent to it (heartbeats need it)."""

    @property
    def closed(self) -> bool:
        return self._wire.closed

    def send(self, peer: bytes, frame: Any, now: float | None = None) -> SendOutcome:
        """Send ``frame`` to ``peer``: ``"sent"``, ``"unreachable"`` or ``"busy"``.

        A closed socket (the coordinator is stopping) reads as ``"unreachable"``.
        ``protocol.ProtocolError`` from ``encode`` propagates: the frame was wrong.
        """
        return self.send_payload(peer, protocol.encode(frame), now)

    def send_many(
        self, peer: bytes, payloads: list[bytes], now: float | None = None
    ) -> tuple[int, SendOutcome]:
        """Send encoded frames to ``peer`` in as few messages as fit (BATCH frames, in
        order): how many went out (a prefix: it stops at the first message not sent)
        and the last outcome."""
        sent = 0
        outcome: SendOutcome = "sent"
        for group in protocol.batches(payloads):
            outcome = self.send_payload(peer, protocol.pack_batch(group), now)
            if outcome != "sent":
                break
            sent += len(group)
        return sent, outcome

    def send_payload(self, peer: bytes, payload: bytes, now: float | None = None) -> SendOutcome:
        """Send bytes already encoded (one DISPATCH payload per job, say)."""
        if self._wire.closed:
            return "unreachable"
        outcome = self._wire.send_to(peer, payload)
        if outcome == "sent":
            self._counters.frames_out += 1
            if now is not None:
                self.last_sent[peer] = now
        else:
            self._counters.send_failures += 1
        return outcome
