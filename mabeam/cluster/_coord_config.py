"""``CoordinatorConfig``: every knob of a coordinator, checked when it is built.

``mabeam.cluster.coordinator`` re-exports it; the CLI builds one from its options.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Literal

from ._coord_policy import POLICIES
from ._health import MAX_CONSECUTIVE_BAD_FRAMES, MAX_TRACKED_PEERS, QUARANTINE_S
from ._limits import HEARTBEAT_INTERVAL_S, HEARTBEAT_LIVENESS
from ._security import check_insecure
from ._sockets import CONNECTION_IDLE_S, HANDSHAKE_S
from .keys import KeyPair

__all__ = ("DEFAULT_BIND", "CoordinatorConfig")

DEFAULT_BIND: Final = "tcp://127.0.0.1:5555"
_MAX_SOCKET_S: Final = 86_400.0  # libzmq takes these in int milliseconds
_ENDPOINT: Final = re.compile(
    r"tcp://(\[[0-9A-Fa-f:.]+\]|[^\s:/\[\]]+):(?P<port>\d{1,5}|\*)\Z|ipc://\S+\Z"
)


def _positive(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{name} must be a number of seconds, got: {value!r}")
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be a finite number > 0, got: {value!r}")
    return float(value)


def _count(name: str, value: object, minimum: int = 1) -> int:
    if type(value) is not int or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got: {value!r}")
    return value


@dataclass(frozen=True, slots=True)
class CoordinatorConfig:
    """How a coordinator listens, stores and schedules.

    Attributes:
        bind: the ROUTER's address, ``tcp://HOST:PORT``; port ``0`` or ``*`` picks a
            free one (the handle's ``endpoint`` says which).
        state: the SQLite job-store file (created on first use, with its directory).
        policy: the scheduling policy, a name from ``POLICIES`` (``fifo``,
            ``priority``, ``auction``: see docs/economics.md).
        heartbeat_s: the heartbeat interval; a node silent for ``heartbeat_s *
            liveness`` seconds is lost and its leases requeued.
        liveness: heartbeat intervals of silence that make a node (or client) lost.
        lease_s: after a restart, leases of nodes that have not said HELLO within
            ``lease_s + heartbeat_s`` are requeued (None: ``heartbeat_s * liveness``).
        synchronous: the store's fsync mode, ``"FULL"`` (survives power loss) or
            ``"NORMAL"`` (survives a process kill; for tests).
        retry_backoff_s / retry_backoff_cap_s: a failed attempt waits
            ``min(cap, base * 2 ** (failures - 1))`` before its retry.
        max_batch_ops: ops in one store transaction at most (group commit).
        max_bad_frames / quarantine_s: a peer sending this many bad frames in a row is
            disconnected and its frames dropped for ``quarantine_s``.
        max_tracked_peers: peers whose bad frames are tracked at most (``PeerHealth``).
        handshake_s: a connection must finish the ZeroMQ handshake within this long.
        connection_idle_s: a connection from which nothing arrives for this long (not
            even the answer to a ZeroMQ heartbeat: a peer that vanished) is closed.
        max_watches_per_client: open WATCHes one client may hold (more are refused with
            ERROR ``too_many_watches``); a client's watches end when it is silent for
            ``heartbeat_s * liveness``.
        status_jobs: jobs in a STATUS reply that names none.
        max_queued_per_submitter: a SUBMIT that would give its submitter (its client
            key's name; all plain-TCP clients are one) more queued, leased and running
            jobs than this is refused with ERROR ``quota_exceeded``.
        retention_s: finished jobs (with their events) are deleted this long after they
            ended, and an idempotency key is forgotten this long after its SUBMIT
            (default 7 days; None keeps everything, and the store grows forever).
        max_client_requests: client requests (SUBMIT, WATCH, STATUS, CANCEL) waiting for
            the job store at once; past it a request gets ERROR ``busy`` and the client
            sends it again after a back-off (memory stays bounded under a flood).
        name: the application's name; its actors are registered as ``NAME.store``,
            ``NAME.router``, ... (two coordinators in one runtime need two names).
        key: the coordinator's CurveZMQ key pair (``keys.load_key`` of its
            ``.key_secret`` file); nodes and clients pin its public half.
        allow_nodes / allow_clients: directories of the public ``.key`` files of the
            node agents and of the submitters let in (re-read when they change).
        allow_keys: more allowed keys, in memory (``KeyPair`` with role node/client).
        insecure: plain TCP, no keys: only on a loopback ``bind`` (127.0.0.1, ::1,
            localhost, ipc://). Without it the coordinator needs ``key`` and at least
            one allowed key source.
    """

    bind: str = DEFAULT_BIND
    state: str | Path = "mabeam-coordinator.db"
    policy: str = "fifo"
    heartbeat_s: float = HEARTBEAT_INTERVAL_S
    liveness: int = HEARTBEAT_LIVENESS
    lease_s: float | None = None
    synchronous: Literal["FULL", "NORMAL"] = "FULL"
    retry_backoff_s: float = 1.0
    retry_backoff_cap_s: float = 60.0
    max_batch_ops: int = 5_000
    max_bad_frames: int = MAX_CONSECUTIVE_BAD_FRAMES
    quarantine_s: float = QUARANTINE_S
    max_tracked_peers: int = MAX_TRACKED_PEERS
    handshake_s: float = HANDSHAKE_S
    connection_idle_s: float = CONNECTION_IDLE_S
    max_watches_per_client: int = 10_000
    status_jobs: int = 200
    max_queued_per_submitter: int = 100_000
    max_client_requests: int = 1_000
    retention_s: float | None = 7 * 24 * 3600.0
    name: str = "coordinator"
    key: KeyPair | None = None
    allow_nodes: str | Path | None = None
    allow_clients: str | Path | None = None
    allow_keys: tuple[KeyPair, ...] = ()
    insecure: bool = False

    def __post_init__(self) -> None:
        found = _ENDPOINT.match(self.bind) if isinstance(self.bind, str) else None
        port = found.group("port") if found is not None else None
        if found is None or (port is not None and port != "*" and int(port) > 65535):
            raise ValueError(
                "bind must be an address like tcp://127.0.0.1:5555 (port 0 or * picks a"
                f" free one), got: {self.bind!r}"
            )
        if not isinstance(self.state, (str, Path)) or not str(self.state):
            raise ValueError(f"state must be a file path, got: {self.state!r}")
        if self.policy not in POLICIES:
            raise ValueError(
                f"policy must be one of {', '.join(sorted(POLICIES))}, got: {self.policy!r}"
            )
        object.__setattr__(self, "heartbeat_s", _positive("heartbeat_s", self.heartbeat_s))
        _count("liveness", self.liveness)
        if self.lease_s is not None:
            object.__setattr__(self, "lease_s", _positive("lease_s", self.lease_s))
        if self.synchronous not in ("FULL", "NORMAL"):
            raise ValueError(f"synchronous must be 'FULL' or 'NORMAL', got: {self.synchronous!r}")
        base = _positive("retry_backoff_s", self.retry_backoff_s)
        cap = _positive("retry_backoff_cap_s", self.retry_backoff_cap_s)
        if cap < base:
            raise ValueError(f"retry_backoff_cap_s ({cap}) must be >= retry_backoff_s ({base})")
        _count("max_batch_ops", self.max_batch_ops)
        _count("max_bad_frames", self.max_bad_frames)
        if not isinstance(self.quarantine_s, (int, float)) or not self.quarantine_s >= 0:
            raise ValueError(f"quarantine_s must be >= 0, got: {self.quarantine_s!r}")
        _count("max_tracked_peers", self.max_tracked_peers)
        for name in ("handshake_s", "connection_idle_s"):
            seconds = _positive(name, getattr(self, name))
            if not 0.001 <= seconds <= _MAX_SOCKET_S:
                raise ValueError(
                    f"{name} must be from 0.001 to {_MAX_SOCKET_S:g} seconds, got: {seconds!r}"
                )
            object.__setattr__(self, name, seconds)
        _count("max_watches_per_client", self.max_watches_per_client)
        _count("status_jobs", self.status_jobs)
        _count("max_queued_per_submitter", self.max_queued_per_submitter)
        _count("max_client_requests", self.max_client_requests)
        if self.retention_s is not None:
            object.__setattr__(self, "retention_s", _positive("retention_s", self.retention_s))
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"name must be a non-empty str, got: {self.name!r}")
        self._check_security()

    def _check_security(self) -> None:
        if type(self.insecure) is not bool:
            raise ValueError(f"insecure must be True or False, got: {self.insecure!r}")
        object.__setattr__(self, "allow_keys", tuple(self.allow_keys))
        for path_field in ("allow_nodes", "allow_clients"):
            value = getattr(self, path_field)
            if value is not None and (not isinstance(value, (str, Path)) or not str(value)):
                raise ValueError(f"{path_field} must be a directory path, got: {value!r}")
        for path_field in ("allow_nodes", "allow_clients"):
            value = getattr(self, path_field)
            if value is not None and not Path(value).is_dir():
                raise ValueError(
                    f"{path_field} {str(value)!r} is not a directory (create it and put the"
                    " public .key files in it)"
                )
        if self.insecure:
            if self.key is not None or self.allow_nodes or self.allow_clients or self.allow_keys:
                raise ValueError("insecure=True (plain TCP) takes no keys or allow-lists")
            check_insecure(self.bind, "bind")
            return
        if self.key is None:
            raise ValueError(
                "a coordinator needs its CurveZMQ key pair (key=load_key(FILE.key_secret); "
                "mabeam keys generate --role coordinator) and allow-lists of node and client"
                " keys, or insecure=True for plain TCP on a loopback address"
            )
        if not isinstance(self.key, KeyPair) or self.key.role != "coordinator":
            raise ValueError(f"key must be a coordinator KeyPair, got: {self.key!r}")
        self.key.require_secret("the coordinator")
        if not all(
            isinstance(k, KeyPair) and k.role in ("node", "client") for k in self.allow_keys
        ):
            raise ValueError(
                f"allow_keys must hold node or client KeyPairs, got: {self.allow_keys!r}"
            )
        if self.allow_nodes is None and self.allow_clients is None and not self.allow_keys:
            raise ValueError(
                "no node or client could connect: give allow_nodes and/or allow_clients"
                " (directories of .key files) or allow_keys"
            )

    @property
    def peer_timeout_s(self) -> float:
        """Silence after which a node or a watching client is lost."""
        return self.heartbeat_s * self.liveness

    @property
    def lease_timeout_s(self) -> float:
        """How long a lease outlives its node's silence (see ``lease_s``)."""
        return self.lease_s if self.lease_s is not None else self.peer_timeout_s
