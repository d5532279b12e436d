"""The node agent: runs the coordinator's tasks on this machine's GPUs and CPUs.

``mabeam node start --coordinator tcp://HOST:PORT`` runs ``node_app(config).run()``;
tests, benchmarks and local mode embed it in their own runtime::

    async with start_node(NodeConfig(coordinator=endpoint, node_id="n1", slots=2)) as node:
        await node.connected.wait()        # the coordinator answered the HELLO
        ...
        node.statistics()                  # tasks run/ok/failed, outbox, reconnects

The node's tree (an ``Application`` named ``mabeam.node:<node_id>``), in start order:

- ``runners``: a ``DynamicSupervisor`` of one temporary ``TaskRunner`` per attempt in
  ``isolation="process"`` (a fresh worker process in its own process group);
- ``pool``: a ``DynamicSupervisor`` of temporary ``PoolWorker``s for
  ``isolation="pool"`` (one long-lived worker process per slot, reused);
- ``watchdog``: the ``TaskWatchdog``, which samples the memory and outputs of tasks that
  run under a limit and stops those over it (``_node_watchdog``);
- ``connection``: the ``NodeConnection`` actor: the socket, HELLO/READY, heartbeats,
  reconnects, self-fencing, the outbox (SQLite, in ``work_dir``) and the table of
  what runs where.

The strategy is ``one_for_all``, on purpose: the four share one piece of state (which
attempt runs in which runner or worker, holding which slot and GPUs, watched how), kept
by the connection. If any of them is lost, the others' view of it is wrong, so all
restart from what is durable, the outbox: the new connection HELLOs with its un-ACKed
results only, and the coordinator requeues the attempts that were running. Runners and
pool workers are temporary (an attempt is never rerun by the node; retries are the
coordinator's decision), so only a bug in the node's own code restarts the tree, and
more than 3 such restarts in 5 s stop the agent (exit 1).

Stopping (``stop()``, SIGTERM, leaving ``start_node``) drains first: no new work, the
running tasks finish within ``drain_timeout_s`` or are handed back, BYE, then the tree
stops.
"""

from __future__ import annotations

import logging
import math
import os
import re
import socket
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import anyio
import psutil  # type: ignore[import-untyped]

from foundation import FoundationError, Runtime, current_runtime
from supervision import Application, DynamicSupervisor, child_spec

from . import gpus as gpu_discovery
from ._frames import default_owner
from ._limits import ACCOUNT_NAME, MAX_CREDIT, MAX_VALUE
from ._node_conn import NodeConnection
from ._node_drain import DRAIN
from ._node_setup import NodeCounters, NodeSetup, NodeStatistics, TaskSettings
from ._node_watchdog import TaskWatchdog
from ._security import CurveClient, check_insecure
from ._task_limits import DEFAULT_LIMIT_CHECK_S
from .keys import KeyPair
from .protocol import (
    HEARTBEAT_INTERVAL_S,
    HEARTBEAT_LIVENESS,
    Gpu,
    Hello,
    Inventory,
    ProtocolError,
    encode,
)

__all__ = (
    "NodeApplication",
    "NodeConfig",
    "NodeHandle",
    "NodeStatistics",
    "check_endpoint",
    "node_app",
    "start_node",
)

log = logging.getLogger("mabeam.node")

DEFAULT_COORDINATOR: Final = "tcp://127.0.0.1:5555"
_ENDPOINT = re.compile(
    r"tcp://(?P<host>\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?)"
    r":(?P<port>[0-9]{1,5})|ipc://\S+"
)
_MIB: Final = 1024 * 1024
_MAX_MB: Final = 1 << 40  # MiB: an exbibyte, far beyond any machine


def check_endpoint(address: object) -> str:
    """``address`` if it is a coordinator address a node can connect to, else ValueError."""
    match = _ENDPOINT.fullmatch(address) if isinstance(address, str) else None
    port = match.group("port") if match is not None else None
    if match is None or (port is not None and not 0 < int(port) < 65536):
        raise ValueError(
            f"malformed coordinator address {address!r}: expected tcp://HOST:PORT "
            "(port 1-65535) or ipc://PATH"
        )
    return str(address)


def _positive(name: str, value: object, *, zero: bool = False) -> None:
    ok = (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and math.isfinite(value)
        and (value >= 0 if zero else value > 0)
    )
    if not ok:
        bound = ">= 0" if zero else "> 0"
        raise ValueError(f"{name} must be a finite number of seconds {bound}, got {value!r}")


def _count(name: str, value: object, low: int, high: int) -> None:
    if type(value) is not int or not low <= value <= high:
        raise ValueError(f"{name} must be an int in [{low}, {high}], got {value!r}")


def _mebibytes(name: str, value: object) -> None:
    if value is not None and (type(value) is not int or not 1 <= value <= _MAX_MB):
        raise ValueError(
            f"{name} must be a whole number of MiB >= 1, or None for no limit, got {value!r}"
        )


@dataclass(frozen=True)
class NodeConfig:
    """What a node agent runs with; every field is checked here (ValueError).

    Attributes:
        coordinator: the coordinator's address, ``tcp://HOST:PORT``.
        node_id: this node's id (also its DEALER routing id); by default its key's name,
            or the host name when ``insecure``. A keyed node's id must be its key's name.
        slots: tasks run at once; default: the GPUs selected if any, else the CPU count.
        prefetch: assignments the node takes beyond its free slots, held in arrival
            order until a slot frees (default 0). For short tasks it hides the round
            trip to the coordinator between one task and the next; a waiting task is
            not running elsewhere, so keep it 0 for long ones.
        gpus: ``all``, ``none``, or a list of indices / UUIDs (``--gpus``).
        allow: fnmatch patterns of the entrypoints this node runs (default: all).
        work_dir: per-attempt directories, logs, outputs and the outbox.
        heartbeat_s / liveness: HEARTBEAT after ``heartbeat_s`` of sending nothing; the
            coordinator is lost after ``liveness`` intervals of silence.
        lease_s: cut off from the coordinator this long, the node stops its tasks
            (self-fencing); default ``heartbeat_s * liveness``.
        drain_timeout_s: how long running tasks may finish when the node stops.
        max_tasks_per_worker: a pool worker is replaced after this many tasks.
        python / pythonpath: the interpreter for workers, and import directories put on
            their PYTHONPATH after the agent's working directory.
        stop_grace_s: SIGTERM to SIGKILL, when a task is stopped.
        task_memory_mb: the most memory (MiB, RSS of its processes) a task may use; a
            job's ``resources.memory_mb`` applies when it is lower. None: no cap (a job
            that names its memory is still held to it). Over it, the task is killed and
            fails with ``memory_limit`` (not retried).
        task_disk_mb: the most an attempt may write to its output directory (MiB); over
            it, it is killed (or, found at its end, not published) and fails with
            ``disk_limit`` (not retried). None: no limit.
        limit_check_s: how often a task under a limit is sampled.
        reconnect_min_s / reconnect_max_s: the reconnect back-off (doubling, +-20 %).
        inventory_gpus: for tests: these GPUs instead of NVML discovery.
        owner / price: for the market (the coordinator's ``auction`` policy): the ledger
            account this node's GPU time is paid to (default ``node:<node_id>``) and its
            reserve price in credits per GPU-hour (default 0).
        key: the node's CurveZMQ key pair (a ``KeyPair`` or its ``.key_secret`` file).
        coordinator_key: the coordinator's public key (a ``KeyPair``, Z85 bytes or its
            ``.key`` file), pinned: the node talks to no other server.
        insecure: plain TCP without keys, only to a loopback coordinator address.
    """

    coordinator: str = DEFAULT_COORDINATOR
    node_id: str = ""
    slots: int | None = None
    prefetch: int = 0
    gpus: str = "all"
    allow: tuple[str, ...] = ("*",)
    work_dir: Path = Path("mabeam-work")
    heartbeat_s: float = HEARTBEAT_INTERVAL_S
    liveness: int = HEARTBEAT_LIVENESS
    lease_s: float | None = None
    drain_timeout_s: float = 30.0
    max_tasks_per_worker: int = 100
    python: str = sys.executable
    pythonpath: tuple[str, ...] = ()
    stop_grace_s: float = 5.0
    task_memory_mb: int | None = None
    task_disk_mb: int | None = None
    limit_check_s: float = DEFAULT_LIMIT_CHECK_S
    reconnect_min_s: float = 0.1
    reconnect_max_s: float = 5.0
    inventory_gpus: tuple[gpu_discovery.Gpu, ...] | None = None
    owner: str = ""
    price: float = 0.0
    key: KeyPair | str | Path | None = None
    coordinator_key: KeyPair | bytes | str | Path | None = None
    insecure: bool = False

    def __post_init__(self) -> None:
        check_endpoint(self.coordinator)
        self._check_security()
        for name in ("allow", "pythonpath", "inventory_gpus"):
            value = getattr(self, name)
            if isinstance(value, list):
                object.__setattr__(self, name, tuple(value))
        object.__setattr__(self, "work_dir", Path(self.work_dir))
        if self.slots is not None:
            _count("slots", self.slots, 1, MAX_CREDIT)
        _count("prefetch", self.prefetch, 0, MAX_CREDIT - (self.slots or 1))
        gpu_discovery.parse_gpus_option(self.gpus)
        if not all(isinstance(p, str) for p in self.allow):
            raise ValueError(f"allow must be a list of pattern strings, got {self.allow!r}")
        if not all(isinstance(p, str) for p in self.pythonpath):
            raise ValueError(f"pythonpath must be a list of directories, got {self.pythonpath!r}")
        _positive("heartbeat_s", self.heartbeat_s)
        _count("liveness", self.liveness, 1, 1000)
        if self.lease_s is not None:
            _positive("lease_s", self.lease_s)
        _positive("drain_timeout_s", self.drain_timeout_s, zero=True)
        _positive("stop_grace_s", self.stop_grace_s, zero=True)
        for name in ("task_memory_mb", "task_disk_mb"):
            _mebibytes(name, getattr(self, name))
        _positive("limit_check_s", self.limit_check_s)
        _positive("reconnect_min_s", self.reconnect_min_s)
        _positive("reconnect_max_s", self.reconnect_max_s)
        _count("max_tasks_per_worker", self.max_tasks_per_worker, 1, 1 << 31)
        if self.inventory_gpus is not None and not all(
            isinstance(g, gpu_discovery.Gpu) for g in self.inventory_gpus
        ):
            raise ValueError("inventory_gpus must be a list of mabeam.cluster.gpus.Gpu")
        if isinstance(self.price, bool) or not isinstance(self.price, (int, float)):
            raise ValueError(f"price must be a number of credits per GPU-hour, got {self.price!r}")
        if not 0.0 <= self.price <= MAX_VALUE:
            raise ValueError(f"price must be between 0 and {MAX_VALUE:g}, got {self.price!r}")
        if not isinstance(self.owner, str) or (
            self.owner and not re.fullmatch(ACCOUNT_NAME, self.owner)
        ):
            raise ValueError(
                f"owner must be an account name: up to 64 chars of A-Z a-z 0-9 . _ : / @ + = -"
                f" starting alphanumeric, got {self.owner!r}"
            )
        try:
            encode(Hello(self.node_id, Inventory(self.node_id)))
            if not self.node_id:
                raise ProtocolError("bad_value", "empty")
        except ProtocolError:
            raise ValueError(
                f"node_id must be 1 to 128 chars of A-Z a-z 0-9 . _ : / @ + = - starting "
                f"alphanumeric, got {self.node_id!r}"
            ) from None

    def _check_security(self) -> None:
        """Keys or ``insecure`` (loopback only); the node id defaults to the key's name."""
        if type(self.insecure) is not bool:
            raise ValueError(f"insecure must be True or False, got {self.insecure!r}")
        if self.insecure:
            if self.key is not None or self.coordinator_key is not None:
                raise ValueError("insecure=True (plain TCP) takes no keys")
            check_insecure(self.coordinator, "coordinator")
            if not self.node_id:
                object.__setattr__(self, "node_id", socket.gethostname())
            return
        curve = CurveClient.resolve(self.key, self.coordinator_key, "node")
        object.__setattr__(self, "key", curve.key)
        object.__setattr__(self, "coordinator_key", curve.server)
        if not self.node_id:
            object.__setattr__(self, "node_id", curve.key.name)
        elif self.node_id != curve.key.name:
            raise ValueError(
                f"node_id {self.node_id!r} differs from its key's name {curve.key.name!r}:"
                " the coordinator lets a node key in only under its own name (leave"
                " node_id out, or generate a key named after the node)"
            )


ConnectListener = Callable[[bool], Any]


class NodeApplication(Application):
    """The node's tree (see the module docstring); ``stop`` drains before it stops."""

    def __init__(self, setup: NodeSetup) -> None:
        self.setup = setup
        self._connection_name = ("mabeam.node", setup.node_id, "connection")
        grace = setup.task.grace_s
        super().__init__(
            f"mabeam.node:{setup.node_id}",
            children=[
                DynamicSupervisor.child_spec(id="runners", name=setup.runners_name),
                DynamicSupervisor.child_spec(id="pool", name=setup.pool_name),
                child_spec(TaskWatchdog, setup, id="watchdog", name=setup.watchdog_name),
                child_spec(
                    NodeConnection,
                    setup,
                    id="connection",
                    name=self._connection_name,
                    shutdown=grace + 5.0,
                ),
            ],
            strategy="one_for_all",
        )

    def on_connected(self, listener: ConnectListener) -> None:
        """Call ``listener(again)`` whenever the coordinator first answers a connection."""
        self.setup.listeners.append(listener)

    def statistics(self) -> NodeStatistics:
        """The node's counters now."""
        return self.setup.counters.snapshot()

    async def stop(self) -> None:
        """Drain (no new work; running tasks finish or are handed back; BYE), then stop."""
        connection = current_runtime().whereis(self._connection_name) if self.is_running else None
        if connection is not None:
            setup = self.setup
            budget = setup.drain_timeout_s + setup.task.grace_s + 2 * setup.heartbeat_s + 5.0
            try:
                await connection.call(DRAIN, timeout=budget)
            except FoundationError as exc:
                log.warning("node %s: the drain did not finish (%r); stopping", setup.node_id, exc)
        await super().stop()


def _inventory_gpu(gpu: gpu_discovery.Gpu) -> Gpu:
    model = "".join(c for c in gpu.name if c.isprintable())[:256]
    return Gpu(uuid=gpu.uuid, model=model, memory_mb=max(0, gpu.memory_total_mb))


def _resolve(config: NodeConfig) -> NodeSetup:
    """GPU discovery, slots, paths and the task environment: the node's settings."""
    selection = gpu_discovery.parse_gpus_option(config.gpus)
    if config.inventory_gpus is not None:
        discovered = list(config.inventory_gpus)
    elif selection.mode == "none":
        discovered = []
    else:
        discovered = gpu_discovery.discover_gpus()
    chosen = gpu_discovery.select_gpus(discovered, selection)
    cpus = os.cpu_count() or 1
    slots = config.slots if config.slots is not None else (len(chosen) or cpus)
    node_id = config.node_id
    inventory = Inventory(
        node_id,
        gpus=tuple(_inventory_gpu(g) for g in chosen),
        cpus=cpus,
        ram_mb=int(psutil.virtual_memory().total) // _MIB,
        slots=slots,
        owner=config.owner or default_owner(node_id),
        price=float(config.price),
    )
    try:
        encode(Hello(node_id, inventory))
    except ProtocolError as exc:
        raise ValueError(f"this node's inventory cannot be sent: {exc.message}") from None
    cwd = Path.cwd()
    work_dir = (cwd / config.work_dir).absolute()
    paths = [str(cwd), *config.pythonpath]
    if os.environ.get("PYTHONPATH"):
        paths.append(os.environ["PYTHONPATH"])
    heartbeat = float(config.heartbeat_s)
    peer_timeout = heartbeat * config.liveness
    return NodeSetup(
        node_id=node_id,
        endpoint=config.coordinator,
        inventory=inventory,
        gpus=tuple(g.uuid for g in chosen),
        slots=slots,
        prefetch=min(config.prefetch, MAX_CREDIT - slots),
        allow=tuple(config.allow),
        work_dir=work_dir,
        heartbeat_s=heartbeat,
        peer_timeout_s=peer_timeout,
        lease_s=float(config.lease_s) if config.lease_s is not None else peer_timeout,
        drain_timeout_s=float(config.drain_timeout_s),
        reconnect_min_s=float(config.reconnect_min_s),
        reconnect_max_s=max(float(config.reconnect_max_s), float(config.reconnect_min_s)),
        task=TaskSettings(
            python=config.python,
            env={"PYTHONPATH": os.pathsep.join(paths)},
            grace_s=float(config.stop_grace_s),
            max_tasks_per_worker=config.max_tasks_per_worker,
            log_dir=work_dir / "logs",
            memory_mb=config.task_memory_mb,
            disk_mb=config.task_disk_mb,
            limit_check_s=float(config.limit_check_s),
        ),
        runners_name=("mabeam.node", node_id, "runners"),
        pool_name=("mabeam.node", node_id, "pool"),
        watchdog_name=("mabeam.node", node_id, "watchdog"),
        counters=NodeCounters(node_id),
        curve=None
        if config.insecure
        else CurveClient.resolve(config.key, config.coordinator_key, "node"),
    )


def node_app(config: NodeConfig) -> NodeApplication:
    """The node agent as an ``Application`` (``.run()`` for a process of its own).

    Discovers the GPUs (or takes ``config.inventory_gpus``) now: raises
    ``GpuOptionError`` (a ValueError) when ``--gpus`` names a GPU this machine lacks.
    """
    return NodeApplication(_resolve(config))


@dataclass(frozen=True, eq=False)
class NodeHandle:
    """A node agent running in this runtime (``start_node``)."""

    app: NodeApplication
    connected: anyio.Event
    """Set once the coordinator first answered the node's HELLO."""

    @property
    def node_id(self) -> str:
        """The node's id."""
        return self.app.setup.node_id

    @property
    def work_dir(self) -> Path:
        """The node's absolute work directory (attempt directories, outbox)."""
        return self.app.setup.work_dir

    def statistics(self) -> NodeStatistics:
        """Tasks run/ok/failed, outbox size, reconnects, ... now."""
        return self.app.statistics()


@asynccontextmanager
async def start_node(config: NodeConfig) -> AsyncIterator[NodeHandle]:
    """Run a node agent in the current foundation runtime (one is started for the block
    if none runs) and yield its handle; on exit it drains, says BYE and stops."""
    try:
        current_runtime()
    except RuntimeError:
        async with Runtime(), _running(config) as handle:
            yield handle
    else:
        async with _running(config) as handle:
            yield handle


@asynccontextmanager
async def _running(config: NodeConfig) -> AsyncIterator[NodeHandle]:
    app = node_app(config)
    connected = anyio.Event()
    app.on_connected(lambda again: connected.set())
    async with app.running():
        yield NodeHandle(app, connected)
