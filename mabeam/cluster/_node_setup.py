"""What a running node agent works with: its resolved settings and its counters.

``node.NodeConfig`` is what a user writes; ``node_app`` resolves it once (GPU discovery,
slots, absolute paths, the task environment) into a ``NodeSetup`` that every actor of
the node's tree reads. ``NodeCounters`` is the one mutable record the connection actor
updates and ``NodeHandle.statistics()`` copies into a frozen ``NodeStatistics``; both
live on the event loop's thread, so no lock is needed.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from ._security import CurveClient
from ._task_limits import DEFAULT_LIMIT_CHECK_S
from .protocol import ERROR_CODES, Inventory

__all__ = ("NodeCounters", "NodeSetup", "NodeStatistics", "TaskSettings")

_CODES: Final = (*ERROR_CODES, "unexpected")


@dataclass(frozen=True, slots=True)
class TaskSettings:
    """How the node starts task workers.

    ``env`` is added to the agent's environment (PYTHONPATH with the agent's working
    directory in front); ``grace_s`` is the time between SIGTERM and SIGKILL when a
    task is stopped; ``log_dir`` holds the pool workers' own logs. ``memory_mb`` and
    ``disk_mb`` are the node's caps on a task's memory and outputs (None: none), checked
    every ``limit_check_s`` while a task runs (``_node_watchdog``).
    """

    python: str
    env: dict[str, str]
    grace_s: float
    max_tasks_per_worker: int
    log_dir: Path
    memory_mb: int | None = None
    disk_mb: int | None = None
    limit_check_s: float = DEFAULT_LIMIT_CHECK_S


@dataclass(frozen=True, slots=True)
class NodeStatistics:
    """A snapshot of a node agent's counters (``NodeHandle.statistics()``).

    ``running`` counts the attempts in a slot now, ``queued`` those held waiting for one
    (``prefetch``); ``tasks_run`` counts attempts taken; ``tasks_ok`` / ``tasks_failed`` the results
    reported (``handed_back`` and ``refused`` are failures too, counted apart as well);
    ``fenced`` the attempts stopped without a result after losing the coordinator;
    ``over_limit`` the attempts failed for going over their memory or outputs limit,
    ``limit_checks`` the watchdog's samples of the tasks under a limit;
    ``outbox`` the results on disk waiting for an ACK; ``bad_frames`` the frames from
    the coordinator the node refused, and ``rejects_by_code`` the same by protocol error
    code (``unexpected``: a valid frame that is not for a node), as the coordinator's
    ``rejects.by_code``; ``key_refused``: the coordinator refused this node's key (at
    the last handshake, or since its revocation).
    """

    node_id: str
    connected: bool
    draining: bool
    reconnects: int
    running: int
    queued: int
    tasks_run: int
    tasks_ok: int
    tasks_failed: int
    handed_back: int
    refused: int
    fenced: int
    over_limit: int
    limit_checks: int
    outbox: int
    results_sent: int
    results_resent: int
    acks: int
    bad_frames: int
    progress_dropped: int
    key_refused: bool
    rejects_by_code: Mapping[str, int]


@dataclass(slots=True)
class NodeCounters:
    """The mutable counters behind ``NodeStatistics`` (same fields, see there)."""

    node_id: str
    connected: bool = False
    draining: bool = False
    reconnects: int = 0
    running: int = 0
    queued: int = 0
    tasks_run: int = 0
    tasks_ok: int = 0
    tasks_failed: int = 0
    handed_back: int = 0
    refused: int = 0
    fenced: int = 0
    over_limit: int = 0
    limit_checks: int = 0
    outbox: int = 0
    results_sent: int = 0
    results_resent: int = 0
    acks: int = 0
    bad_frames: int = 0
    progress_dropped: int = 0
    key_refused: bool = False
    rejects_by_code: dict[str, int] = field(default_factory=lambda: dict.fromkeys(_CODES, 0))

    def reject(self, code: str) -> int:
        """Count one refused frame under ``code``; the refused frames so far."""
        self.rejects_by_code[code] = self.rejects_by_code.get(code, 0) + 1
        self.bad_frames += 1
        return self.bad_frames

    def snapshot(self) -> NodeStatistics:
        """A frozen copy."""
        fields = {f.name: getattr(self, f.name) for f in dataclasses.fields(NodeStatistics)}
        fields["rejects_by_code"] = dict(self.rejects_by_code)
        return NodeStatistics(**fields)


ConnectListener = Callable[[bool], Any]
"""Called with ``again`` (False the first time) when the coordinator first answers on a
connection: the CLI prints its "connected" line, ``start_node`` sets its event."""


@dataclass(frozen=True, slots=True)
class NodeSetup:
    """A node agent's settings, resolved from a ``NodeConfig`` by ``node_app``."""

    node_id: str
    endpoint: str
    inventory: Inventory
    gpus: tuple[str, ...]  # UUIDs the node may assign, in NVML order
    slots: int
    prefetch: int  # assignments held beyond the slots, waiting for one
    allow: tuple[str, ...]
    work_dir: Path  # absolute
    heartbeat_s: float
    peer_timeout_s: float
    lease_s: float
    drain_timeout_s: float
    reconnect_min_s: float
    reconnect_max_s: float
    task: TaskSettings
    runners_name: Any  # registered names of the two supervisors in the node's tree
    pool_name: Any
    watchdog_name: Any
    counters: NodeCounters
    curve: CurveClient | None  # None: plain TCP (insecure)
    listeners: list[ConnectListener] = field(default_factory=list)

    @property
    def tick_s(self) -> float:
        """Period of the connection's housekeeping timer (heartbeats, liveness, fencing)."""
        return self.heartbeat_s / 4

    @property
    def hello_retry_s(self) -> float:
        """Retry period of a HELLO that no connection took yet (IMMEDIATE refused it)."""
        return min(0.02, self.tick_s)

    @property
    def resend_s(self) -> float:
        """An un-ACKed result is sent again after this long (a few heartbeat intervals)."""
        return 3 * self.heartbeat_s
