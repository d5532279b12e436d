"""The coordinator: one ROUTER endpoint, a durable job store, a scheduler, node sessions.

``mabeam coordinator start`` runs ``coordinator_app(config).run()``; tests, benchmarks
and the local mode embed it in their runtime::

    async with start_coordinator(CoordinatorConfig(bind="tcp://127.0.0.1:0", state=path)) as coord:
        coord.endpoint               # "tcp://127.0.0.1:PORT", the real port
        await coord.statistics()     # frames, rejects, results, jobs by state, nodes

The application's tree, in start order (``rest_for_one``):

1. ``store``: the job-store actor (``_coord_store``): group commit in a worker thread.
2. ``auth``: the coordinator's ZeroMQ context and its ZAP handler (``_coord_zap``),
   which lets in only the keys of the allow-lists (none for ``insecure``).
3. ``router``: the ROUTER socket and its reader (``_coord_router``): decode, count and
   refuse bad frames, route the rest.
4. ``scheduler``: ready queue, node capacity, leases and DISPATCH (``_coord_scheduler``).
5. ``clients``: SUBMIT, WATCH, STATUS, CANCEL (``_coord_clients``).
6. ``sessions``: a ``DynamicSupervisor`` of ``NodeSession`` actors, one per connected
   node, registered as ``("node", node_id)`` with the node's inventory as metadata.

Why ``rest_for_one``: each part depends on the ones started before it. Everything in
memory (the ready queue, credit, watches) is a cache of the store; a store crash must
rebuild all of it, so everything after the store restarts with it. A new router binds a
new socket, so the parts holding the old one (scheduler, clients, sessions) restart too;
a restarted scheduler has lost the node capacities the sessions told it about, so the
sessions restart as well, and nodes re-HELLO (their next frame gets ERROR
``hello_first``). A session crash alone touches nothing else (temporary children of the
``DynamicSupervisor``). Leases survive all of this in the store: a node that says HELLO
again keeps the jobs it lists, and the leases of nodes that do not come back within
``lease_s + heartbeat_s`` are requeued.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from foundation import Actor, Runtime, current_runtime
from foundation._public import fixup_module_metadata
from supervision import Application, DynamicSupervisor, child_spec

from ._allowlist import AllowList
from ._coord_clients import ClientHub
from ._coord_config import DEFAULT_BIND, CoordinatorConfig
from ._coord_router import RouterActor
from ._coord_scheduler import Scheduler
from ._coord_shared import Counters, Names, Shared
from ._coord_store import StoreActor
from ._coord_zap import AuthActor
from ._health import PeerHealth, RejectStatistics

__all__ = (
    "DEFAULT_BIND",
    "CoordinatorApp",
    "CoordinatorConfig",
    "CoordinatorHandle",
    "CoordinatorStatistics",
    "coordinator_app",
    "start_coordinator",
)

log = logging.getLogger("mabeam.coordinator")

ROUTER_MAILBOX: Final = 8
"""Batches of received messages (up to 1,000 each) waiting for the router at most: its
reader waits beyond that, so a flood stays in libzmq's bounded queues, not in memory."""


@dataclass(frozen=True, slots=True)
class CoordinatorStatistics:
    """A snapshot of a running coordinator (``await handle.statistics()``).

    ``rejects`` are the bad frames by protocol error code (``PeerHealth``);
    ``results_stale`` counts RESULTs refused because their lease was not current
    (ACKed all the same), ``results_refused`` those the store refused outright
    (unknown job); ``handshakes_ok`` / ``handshakes_refused`` count CURVE handshakes
    the ZAP handler let in or turned away, ``auth_refused`` the frames refused for their
    sender's key (revoked, or not allowed that frame or node id); ``jobs`` counts
    jobs by store state; ``nodes`` lists the node ids with a session.
    """

    endpoint: str
    frames_in: int
    frames_out: int
    rejects: RejectStatistics
    quarantined_drops: int
    unexpected_frames: int
    internal_errors: int
    dispatched: int
    results_ok: int
    results_failed: int
    results_stale: int
    results_refused: int
    store_batches: int
    store_ops: int
    store_errors: int
    sessions_started: int
    sessions_lost: int
    requeued_nodes: int
    handshakes_ok: int
    handshakes_refused: int
    auth_refused: int
    jobs: Mapping[str, int]
    nodes: tuple[str, ...]
    ready: int
    deferred: int
    leased: int


class _Announce(Actor):
    """The tree's last child: reports the bound address once everything runs."""

    async def init(self, shared: Shared, on_ready: Callable[[str], None] | None) -> None:
        if not shared.announced and on_ready is not None and shared.endpoint is not None:
            shared.announced = True
            on_ready(shared.endpoint)


class CoordinatorApp(Application):
    """The coordinator's ``Application`` (``coordinator_app`` builds one)."""

    def __init__(
        self, config: CoordinatorConfig, on_ready: Callable[[str], None] | None = None
    ) -> None:
        self.config = config
        self.shared = Shared(
            Names(config.name),
            PeerHealth(
                max_consecutive_bad=config.max_bad_frames,
                quarantine_s=config.quarantine_s,
                max_peers=config.max_tracked_peers,
            ),
        )
        if not config.insecure:
            self.shared.allow = AllowList(
                config.allow_nodes, config.allow_clients, config.allow_keys
            )
        self._on_ready = on_ready
        super().__init__(config.name, strategy="rest_for_one", max_restarts=5, max_seconds=10.0)

    async def stop(self) -> None:
        """Stop the tree, then destroy the coordinator's ZeroMQ context (whatever ended
        the tree: a killed actor may have left a socket open)."""
        try:
            await super().stop()
        finally:
            self.shared.close_context()

    async def serve(self) -> int:
        try:
            return await super().serve()
        finally:
            self.shared.close_context()

    def children(self) -> list[Any]:
        config, shared, names = self.config, self.shared, self.shared.names
        state = Path(config.state)
        return [
            child_spec(
                StoreActor,
                str(state),
                synchronous=config.synchronous,
                backoff_base_s=config.retry_backoff_s,
                backoff_cap_s=config.retry_backoff_cap_s,
                max_batch_ops=config.max_batch_ops,
                counters=shared.counters,
                retention_s=config.retention_s,
                id="store",
                name=names.store,
            ),
            child_spec(AuthActor, config, shared, id="auth", name=names.auth),
            child_spec(
                RouterActor,
                config,
                shared,
                id="router",
                name=names.router,
                mailbox_size=ROUTER_MAILBOX,
                overflow="block",
            ),
            child_spec(Scheduler, config, shared, id="scheduler", name=names.scheduler),
            child_spec(ClientHub, config, shared, id="clients", name=names.clients),
            DynamicSupervisor.child_spec(id="sessions", name=names.sessions),
            child_spec(_Announce, shared, self._on_ready, id="ready"),
        ]


def coordinator_app(
    config: CoordinatorConfig, *, on_ready: Callable[[str], None] | None = None
) -> CoordinatorApp:
    """The coordinator as an ``Application``; ``on_ready(endpoint)`` is called once,
    when the whole tree runs (the CLI prints its listening line there)."""
    if not isinstance(config, CoordinatorConfig):
        raise TypeError(f"coordinator_app takes a CoordinatorConfig, got: {config!r}")
    return CoordinatorApp(config, on_ready)


class CoordinatorHandle:
    """A running coordinator, as ``start_coordinator`` yields it."""

    def __init__(self, app: CoordinatorApp) -> None:
        self.app = app
        self.config = app.config
        self._shared = app.shared

    @property
    def endpoint(self) -> str:
        """The address the ROUTER is bound to, with the real port."""
        endpoint = self._shared.endpoint
        if endpoint is None:  # only before the router's init: a handle comes after it
            raise RuntimeError("the coordinator is not bound yet")
        return endpoint

    @property
    def counters(self) -> Counters:
        """The live counters (no copy: read them, do not change them)."""
        return self._shared.counters

    @property
    def names(self) -> Names:
        """The registered names of the coordinator's actors."""
        return self._shared.names

    async def statistics(self) -> CoordinatorStatistics:
        """Counters, rejects, jobs by state (read from the store) and connected nodes."""
        rt = current_runtime()
        names = self._shared.names
        counts: Mapping[str, int] = {}
        sched: dict[str, Any] = {}
        nodes: tuple[str, ...] = ()
        try:
            counts = await _store_counts(rt, names.store)
            sched = await rt.call(names.scheduler, "statistics", timeout=5.0)
            rows = await rt.call(names.scheduler, "nodes", timeout=5.0)
            nodes = tuple(sorted(row[0] for row in rows))
        except Exception as exc:  # restarting: report what the counters say
            log.warning("coordinator statistics incomplete: %s", exc)
        c = self._shared.counters
        return CoordinatorStatistics(
            endpoint=self._shared.endpoint or "",
            frames_in=c.frames_in,
            frames_out=c.frames_out,
            rejects=self._shared.health.statistics(),
            quarantined_drops=c.quarantined_drops,
            unexpected_frames=c.unexpected_frames,
            internal_errors=c.internal_errors,
            dispatched=c.dispatched,
            results_ok=c.results_ok,
            results_failed=c.results_failed,
            results_stale=c.results_stale,
            results_refused=c.results_refused,
            store_batches=c.store_batches,
            store_ops=c.store_ops,
            store_errors=c.store_errors,
            sessions_started=c.sessions_started,
            sessions_lost=c.sessions_lost,
            requeued_nodes=c.requeued_nodes,
            handshakes_ok=c.handshakes_ok,
            handshakes_refused=c.handshakes_refused,
            auth_refused=c.auth_refused,
            jobs=dict(counts),
            nodes=nodes,
            ready=int(sched.get("ready", 0)),
            deferred=int(sched.get("deferred", 0)),
            leased=int(sched.get("leased", 0)),
        )


async def _store_counts(rt: Runtime, store_name: str) -> Mapping[str, int]:
    counts: Mapping[str, int] = await rt.call(store_name, "counts", timeout=5.0)
    return counts


@asynccontextmanager
async def start_coordinator(
    config: CoordinatorConfig, *, on_ready: Callable[[str], None] | None = None
) -> AsyncIterator[CoordinatorHandle]:
    """Run a coordinator in the current foundation runtime (one is started for the
    block if none runs) and yield its handle; it stops gracefully on exit."""
    try:
        current_runtime()
    except RuntimeError:
        own = True
    else:
        own = False
    if own:
        async with Runtime(), _running(config, on_ready) as handle:
            yield handle
    else:
        async with _running(config, on_ready) as handle:
            yield handle


@asynccontextmanager
async def _running(
    config: CoordinatorConfig, on_ready: Callable[[str], None] | None
) -> AsyncIterator[CoordinatorHandle]:
    app = coordinator_app(config, on_ready=on_ready)
    async with app.running():
        yield CoordinatorHandle(app)


fixup_module_metadata(__name__, globals())
