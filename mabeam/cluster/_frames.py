"""The frames of the cluster wire protocol as frozen dataclasses (schemas: protocol.py).

Each frame class has a ``TYPE``, the ``"t"`` it carries on the wire. The nested records
(inventory, resources, job specs, status rows) travel as maps inside frames. Nothing
here validates: ``protocol.encode`` and ``protocol.decode`` check every field.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, ClassVar, Final, Literal, TypeAlias, get_args

Isolation: TypeAlias = Literal["process", "pool"]
ErrorKind: TypeAlias = Literal[
    "exception",
    "timeout",
    "cancelled",
    "crashed",
    "refused",
    "not_found",
    "handed_back",
    "memory_limit",
    "disk_limit",
]
ERROR_KINDS: Final[tuple[ErrorKind, ...]] = get_args(ErrorKind)
"""Why an attempt failed (RESULT.error_kind): the task raised, ran past its timeout, was
cancelled, its worker died, its entrypoint is not on the node's allow-list or cannot be
imported, the node handed the job back unfinished (draining), or the task went over its
memory limit or the node's limit on task outputs."""

TERMINAL_STATES: Final = frozenset({"succeeded", "failed", "cancelled"})
"""Job states after which nothing changes; the others are queued, dispatched, running."""


# -- nested records -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Gpu:
    """One GPU of a node: NVML's UUID (what CUDA_VISIBLE_DEVICES takes), model, memory."""

    uuid: str
    model: str
    memory_mb: int


@dataclass(frozen=True, slots=True)
class Inventory:
    """What a node offers: its GPUs, CPU cores, RAM and task slots; for the market, the
    ledger account its GPU time is paid to and its reserve price (credits per GPU-hour)."""

    node_id: str
    gpus: tuple[Gpu, ...] = ()
    cpus: int = 1
    ram_mb: int = 0
    slots: int = 1
    owner: str = ""
    price: float = 0.0

    @property
    def payee(self) -> str:
        """The account paid for this node's GPU time: ``owner``, or ``node:<node_id>``."""
        return self.owner or default_owner(self.node_id)


def default_owner(node_id: str) -> str:
    """The ledger account of a node that names no owner."""
    return f"node:{node_id}"[:64]


@dataclass(frozen=True, slots=True)
class Resources:
    """What one job needs from a node."""

    gpus: int = 0
    cpus: int = 1
    memory_mb: int = 0

    @classmethod
    def of(cls, gpus: int, cpus: float, memory_mb: int) -> Resources:
        """The wire form of a request: whole CPUs, a fraction rounded up (a node
        reserves whole cores)."""
        return cls(gpus, math.ceil(cpus), memory_mb)


@dataclass(frozen=True, slots=True)
class RunningJob:
    """A job a node still holds, reported in HELLO after a reconnect."""

    job_id: str
    attempt: int
    lease: str


@dataclass(frozen=True, slots=True)
class JobSpec:
    """One job of a SUBMIT: what to run, with which params and resources."""

    entrypoint: str
    params: dict[str, Any] = field(default_factory=dict)
    resources: Resources = Resources()
    timeout_s: float | None = None
    max_retries: int = 3
    priority: int = 0
    isolation: Isolation = "process"
    code_version: str = ""
    team: str = ""
    value: float | None = None


@dataclass(frozen=True, slots=True)
class NodeInfo:
    """A connected node in a STATUS_REPLY."""

    inventory: Inventory
    credit: int
    running: int
    last_seen_s: float


@dataclass(frozen=True, slots=True)
class JobInfo:
    """A job in a STATUS_REPLY; ``value`` is its result once it succeeded."""

    job_id: str
    state: str
    attempt: int
    entrypoint: str
    node_id: str | None = None
    sweep_id: str | None = None
    value: Any = None
    error: str | None = None
    duration_s: float | None = None


# -- node <-> coordinator -------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Hello:
    """Node -> coordinator, first frame of every connection: who it is, what it holds."""

    TYPE: ClassVar[str] = "HELLO"
    node_id: str
    inventory: Inventory
    running: tuple[RunningJob, ...] = ()


@dataclass(frozen=True, slots=True)
class Ready:
    """Node -> coordinator: ``credit`` more assignments may be sent (added to the rest)."""

    TYPE: ClassVar[str] = "READY"
    credit: int


@dataclass(frozen=True, slots=True)
class Heartbeat:
    """Either way: "still here" when nothing else was sent for an interval."""

    TYPE: ClassVar[str] = "HEARTBEAT"


@dataclass(frozen=True, slots=True)
class Dispatch:
    """Coordinator -> node: run attempt ``attempt`` of a job under lease ``lease``.
    ``code_version`` is the job spec's: a pool worker that imported the entrypoint's
    module for another version does not run it."""

    TYPE: ClassVar[str] = "DISPATCH"
    job_id: str
    attempt: int
    lease: str
    entrypoint: str
    params: dict[str, Any] = field(default_factory=dict)
    resources: Resources = Resources()
    timeout_s: float | None = None
    isolation: Isolation = "process"
    code_version: str = ""


@dataclass(frozen=True, slots=True)
class Accept:
    """Node -> coordinator: the dispatched job has started."""

    TYPE: ClassVar[str] = "ACCEPT"
    job_id: str
    lease: str


@dataclass(frozen=True, slots=True)
class Progress:
    """Node -> coordinator: a task reported ``step`` and its metrics."""

    TYPE: ClassVar[str] = "PROGRESS"
    job_id: str
    lease: str
    step: int
    metrics: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Result:
    """Node -> coordinator: how an attempt ended; resent from the outbox until ACKed.

    ``ok`` carries ``value``; a failure carries ``error`` (text, e.g. a traceback) and
    ``error_kind`` (one of ``ERROR_KINDS``).
    """

    TYPE: ClassVar[str] = "RESULT"
    job_id: str
    lease: str
    attempt: int
    ok: bool
    value: Any = None
    error: str | None = None
    error_kind: ErrorKind | None = None
    duration_s: float = 0.0


@dataclass(frozen=True, slots=True)
class Ack:
    """Coordinator -> node: the RESULT for this lease is durable (or stale); drop it."""

    TYPE: ClassVar[str] = "ACK"
    job_id: str
    lease: str


@dataclass(frozen=True, slots=True)
class Cancel:
    """Coordinator -> node: stop the task running under this lease."""

    TYPE: ClassVar[str] = "CANCEL"
    job_id: str
    lease: str


@dataclass(frozen=True, slots=True)
class Bye:
    """Either way: the sender is leaving (drained node, stopping coordinator, bad peer)."""

    TYPE: ClassVar[str] = "BYE"
    reason: str = ""


# -- client <-> coordinator -----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Submit:
    """Client -> coordinator: queue these jobs; a repeated ``idempotency_key`` returns
    the jobs of the first SUBMIT instead of new ones."""

    TYPE: ClassVar[str] = "SUBMIT"
    request_id: str
    idempotency_key: str
    specs: tuple[JobSpec, ...]
    sweep_id: str | None = None


@dataclass(frozen=True, slots=True)
class Watch:
    """Client -> coordinator: stream EVENTs for these jobs and/or this sweep."""

    TYPE: ClassVar[str] = "WATCH"
    request_id: str
    job_ids: tuple[str, ...] = ()
    sweep_id: str | None = None


@dataclass(frozen=True, slots=True)
class Status:
    """Client -> coordinator: nodes, queue and jobs (these ones, or the running ones)."""

    TYPE: ClassVar[str] = "STATUS"
    request_id: str
    job_ids: tuple[str, ...] = ()
    sweep_id: str | None = None


@dataclass(frozen=True, slots=True)
class CancelJob:
    """Client -> coordinator: cancel a job (wire type CANCEL, told apart by ``request_id``)."""

    TYPE: ClassVar[str] = "CANCEL"
    request_id: str
    job_id: str


@dataclass(frozen=True, slots=True)
class Market:
    """Client -> coordinator: the market: ledger accounts (``team``: that one only),
    node listings and the newest ``log`` audit-log lines. With ``budget``
    (micro-credits), first make ``team``'s available money that amount."""

    TYPE: ClassVar[str] = "MARKET"
    request_id: str
    team: str = ""
    budget: int | None = None
    log: int = 20


@dataclass(frozen=True, slots=True)
class Submitted:
    """Coordinator -> client: the jobs are durable; their ids in the order of the specs."""

    TYPE: ClassVar[str] = "SUBMITTED"
    request_id: str
    job_ids: tuple[str, ...]
    sweep_id: str | None = None
    duplicate: bool = False


@dataclass(frozen=True, slots=True)
class StatusReply:
    """Coordinator -> client: the answer to STATUS; ``counts`` maps job state -> jobs."""

    TYPE: ClassVar[str] = "STATUS_REPLY"
    request_id: str
    nodes: tuple[NodeInfo, ...] = ()
    jobs: tuple[JobInfo, ...] = ()
    counts: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Event:
    """Coordinator -> client, for a WATCH: a job changed state or reported progress."""

    TYPE: ClassVar[str] = "EVENT"
    request_id: str
    job_id: str
    state: str
    attempt: int = 0
    node_id: str | None = None
    step: int | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    value: Any = None
    error: str | None = None


@dataclass(frozen=True, slots=True)
class Cancelled:
    """Coordinator -> client: the job's state after a CANCEL (terminal ones stay as is)."""

    TYPE: ClassVar[str] = "CANCELLED"
    request_id: str
    job_id: str
    state: str


@dataclass(frozen=True, slots=True)
class Error:
    """Any direction: a request or frame was refused; ``code`` is a short stable name."""

    TYPE: ClassVar[str] = "ERROR"
    code: str
    message: str
    in_reply_to: str | None = None


@dataclass(frozen=True, slots=True)
class AccountInfo:
    """A ledger account in a MARKET_REPLY (micro-credits)."""

    name: str
    kind: str
    available: int
    held: int
    spent: int
    earned: int


@dataclass(frozen=True, slots=True)
class ListingInfo:
    """A node's offer in a MARKET_REPLY: payee, reserve (micro-credits per GPU-hour),
    GPUs and reputation (its decayed success rate, 0..1)."""

    node_id: str
    owner: str
    price: int
    gpus: int
    reputation: float


@dataclass(frozen=True, slots=True)
class LedgerLine:
    """One audit-log entry in a MARKET_REPLY."""

    seq: int
    time: float
    op: str
    account: str
    counterparty: str
    amount: int
    job: str


@dataclass(frozen=True, slots=True)
class MarketReply:
    """Coordinator -> client: the answer to MARKET; ``policy`` is the scheduler's."""

    TYPE: ClassVar[str] = "MARKET_REPLY"
    request_id: str
    policy: str
    accounts: tuple[AccountInfo, ...] = ()
    listings: tuple[ListingInfo, ...] = ()
    log: tuple[LedgerLine, ...] = ()


Frame: TypeAlias = (
    Hello
    | Ready
    | Heartbeat
    | Dispatch
    | Accept
    | Progress
    | Result
    | Ack
    | Cancel
    | Bye
    | Submit
    | Watch
    | Status
    | CancelJob
    | Market
    | Submitted
    | StatusReply
    | Event
    | Cancelled
    | MarketReply
    | Error
)

FROM_NODE: Final = frozenset({Hello, Ready, Heartbeat, Accept, Progress, Result, Bye, Error})
TO_NODE: Final = frozenset({Dispatch, Ack, Cancel, Heartbeat, Bye, Error})
FROM_CLIENT: Final = frozenset({Submit, Watch, Status, CancelJob, Market, Heartbeat, Bye})
TO_CLIENT: Final = frozenset(
    {Submitted, StatusReply, MarketReply, Event, Cancelled, Error, Heartbeat, Bye}
)
