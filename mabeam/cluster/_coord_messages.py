"""Messages between the coordinator's actors (router, sessions, scheduler, clients).

Frames arrive in batches (one cast per receiver per socket wake-up, not one per frame);
everything else is a small record named after what happened.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from foundation import ActorRef

from .protocol import Frame, Inventory, RunningJob

__all__ = (
    "ClientFrames",
    "Credit",
    "Disconnect",
    "NodeFrames",
    "NodeUp",
    "PeerGone",
)


@dataclass(frozen=True, slots=True)
class NodeFrames:
    """Router -> session: valid frames from its node, in arrival order, and the routing
    id they came from (a reconnected node has a new one: the session sends there)."""

    frames: list[Frame]
    peer: bytes = b""


@dataclass(frozen=True, slots=True)
class ClientFrames:
    """Router -> client part: valid client frames, each with the peer that sent it;
    ``owners`` names the submitter (its client key's name) of each peer that has one."""

    items: list[tuple[bytes, Frame]]
    owners: dict[bytes, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class PeerGone:
    """Router -> client part: ``peer`` was disconnected; drop its watches."""

    peer: bytes


@dataclass(frozen=True, slots=True)
class Disconnect:
    """Router -> session: end the session (the node sent too many bad frames)."""

    reason: str


@dataclass(frozen=True, slots=True)
class NodeUp:
    """Session -> scheduler: the node said HELLO (``epoch`` counts its HELLOs)."""

    node_id: str
    session: ActorRef
    epoch: int
    inventory: Inventory
    running: tuple[RunningJob, ...]
    peer: bytes = b""
    """The node's routing id (default: its node id)."""


@dataclass(frozen=True, slots=True)
class Credit:
    """Session -> scheduler: the node sent READY{credit} during HELLO number ``epoch``."""

    node_id: str
    epoch: int
    credit: int
