"""Messages between the coordinator's actors (router, sessions, scheduler, clients).

Frames arrive in batches (one cast per receiver per socket wake-up, not one per frame);
everything else is a small record named after what happened.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from foundation import ActorRef

from ._coord_policy import NodeCapacity, ReadyJob
from .protocol import Frame, Inventory, RunningJob

__all__ = (
    "ClientFrames",
    "Credit",
    "Disconnect",
    "LeaseTag",
    "NodeFrames",
    "NodeUp",
    "PeerGone",
    "ReconcileTag",
    "RefreshTag",
    "RequeueTag",
    "SchedNode",
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


# -- the scheduler's own records and store-request tags --------------------------------


@dataclass(slots=True)
class SchedNode:
    """The scheduler's record of a connected node: its session, capacity and leases."""

    node_id: str
    peer: bytes
    session: ActorRef
    epoch: int
    cap: NodeCapacity
    inventory: Inventory
    jobs: set[str] = field(default_factory=set)
    active: bool = False  # reconciled: may get work


@dataclass(frozen=True, slots=True)
class LeaseTag:
    """Scheduler -> store tag: the picks a batch of ``Lease`` ops is for."""

    picks: list[tuple[ReadyJob, str, int]]  # job, node id, node epoch


@dataclass(frozen=True, slots=True)
class ReconcileTag:
    """Scheduler -> store tag: a node's HELLO, to reconcile its leases."""

    node_id: str
    epoch: int
    running: tuple[RunningJob, ...]


@dataclass(frozen=True, slots=True)
class RequeueTag:
    """Scheduler -> store tag: a lost node's leases requeued."""

    node_id: str


@dataclass(frozen=True, slots=True)
class RefreshTag:
    """Scheduler -> store tag: jobs to read back."""

    job_ids: tuple[str, ...]
