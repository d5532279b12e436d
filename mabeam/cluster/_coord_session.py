"""A node session: the coordinator's side of one connected node agent.

The router starts one per node (under the sessions ``DynamicSupervisor``, temporary)
on the node's first HELLO and routes the node's frames to it in batches. The session:

- registers itself as ``("node", node_id)`` in the runtime registry, its inventory as
  metadata (``registry.select({"gpus": 2})`` finds the nodes with two GPUs); the entry
  is written on HELLO only, never per frame;
- tells the scheduler about each HELLO (``NodeUp``: the scheduler reconciles the
  node's leases and starts its credit at 0) and each READY (``Credit``);
- turns ACCEPT, PROGRESS (the latest per job of a batch) and RESULT into store ops, one
  ``StoreRequest`` per batch, and ACKs each RESULT once its op is committed: a current
  lease's result is recorded, a stale one (an older lease) is refused, counted, and
  ACKed all the same so the node's outbox lets go;
- keeps the heartbeats: sends HEARTBEAT when nothing went to the node for an interval,
  and ends itself when the node was silent for ``heartbeat_s * liveness``.

It exits with ``("shutdown", why)`` when the node is lost (silence, BYE, too many bad
frames); the scheduler, which monitors it, then requeues the node's leases. A plain
``"shutdown"`` (the coordinator stopping) sends the node a BYE and requeues nothing:
the node comes back with HELLO and keeps its running jobs.
"""

from __future__ import annotations

import logging
from typing import Any, Final

from foundation import Actor, Exit

from . import protocol as p
from ._coord_config import CoordinatorConfig
from ._coord_messages import Credit, Disconnect, NodeFrames, NodeUp
from ._coord_shared import Outlet, Shared
from ._coord_store import StoreReply, StoreRequest
from .store import (
    Accept,
    Complete,
    Completed,
    Fail,
    Op,
    Progress,
    Rejected,
    Release,
    Stale,
)

__all__ = ("NodeSession", "inventory_meta", "result_op")

log = logging.getLogger("mabeam.coordinator")

_TICK: Final = "tick"


def inventory_meta(inventory: p.Inventory) -> dict[str, Any]:
    """The registry metadata of a node: what ``select`` can match on."""
    return {
        "node_id": inventory.node_id,
        "gpus": len(inventory.gpus),
        "gpu_models": tuple(sorted({gpu.model for gpu in inventory.gpus})),
        "cpus": inventory.cpus,
        "ram_mb": inventory.ram_mb,
        "slots": inventory.slots,
    }


def result_op(node_id: str, result: p.Result) -> Op:
    """The store op that records a RESULT, by its ``error_kind``:

    ok -> Complete; exception, timeout, crashed -> Fail (retried with back-off up to
    ``max_retries``); refused, not_found -> Fail(permanent) (no retry can fix them);
    memory_limit, disk_limit -> Fail(permanent) (a task over its limit would most likely
    go over it again: a retry would only burn another slot's time);
    cancelled -> Release (the store turns a requested cancel into ``cancelled``);
    handed_back -> Release (requeued, not a failure).
    """
    if result.ok:
        return Complete(result.job_id, result.lease, result.value)
    kind = result.error_kind
    error = result.error or f"attempt ended: {kind}"
    if kind in ("refused", "not_found", "memory_limit", "disk_limit"):
        return Fail(result.job_id, result.lease, error, permanent=True)
    if kind == "cancelled":
        return Release(result.job_id, result.lease, f"cancelled on node {node_id}: {error}")
    if kind == "handed_back":
        return Release(result.job_id, result.lease, f"handed back by node {node_id}: {error}")
    return Fail(result.job_id, result.lease, error)


MAX_STORE_BACKLOG: Final = 8
"""Store requests of one session in flight past which its PROGRESS reports are dropped."""


class NodeSession(Actor):
    """One connected node (see the module docstring)."""

    trap_exits = True  # a supervisor's "shutdown" runs terminate: the node gets a BYE

    async def init(
        self, node_id: str, config: CoordinatorConfig, shared: Shared, outlet: Outlet
    ) -> None:
        rt = self.runtime
        self.node_id = node_id
        self.peer = node_id.encode()
        self._outlet = outlet
        self._counters = shared.counters
        self._interval = config.heartbeat_s
        self._timeout = config.peer_timeout_s
        self._store = rt.whereis(shared.names.store)
        self._scheduler = rt.whereis(shared.names.scheduler)
        if self._store is None or self._scheduler is None:
            raise RuntimeError("the coordinator's store and scheduler must be running")
        self._clock = rt.clock
        now = self._clock.now()
        self.started = self.last_heard = self._beat = now
        self.epoch = 0
        self.inventory: p.Inventory | None = None
        self._bye: str | None = None
        self._inflight = 0  # store requests not answered yet
        self._registered = False
        self._counters.sessions_started += 1
        self.send_after(self._interval, _TICK)

    # -- frames -------------------------------------------------------------------------

    async def handle_cast(self, msg: Any) -> None:
        kind = type(msg)
        if kind is NodeFrames:
            if msg.peer and msg.peer != self.peer:  # the node's new connection
                last = self._outlet.last_sent.pop(self.peer, None)
                self.peer = msg.peer
                if last is not None:
                    self._outlet.last_sent[msg.peer] = last
            self._frames(msg.frames)
        elif kind is Disconnect:
            self._bye = msg.reason  # the router already said BYE
            self.stop(("shutdown", f"node {self.node_id} disconnected: {msg.reason}"))
        else:
            raise ValueError(f"unknown session message {msg!r}")

    def _frames(self, frames: list[p.Frame]) -> None:
        self.last_heard = self._clock.now()
        ops: list[Op] = []
        acks: list[tuple[str, str] | None] = []
        progress: dict[str, p.Progress] = {}
        credit = 0
        for frame in frames:
            try:
                if isinstance(frame, p.Result):
                    self._progress_ops(progress, ops, acks, frame.job_id)
                    ops.append(result_op(self.node_id, frame))
                    acks.append((frame.job_id, frame.lease))
                elif isinstance(frame, p.Accept):
                    ops.append(Accept(frame.job_id, frame.lease))
                    acks.append(None)
                elif isinstance(frame, p.Progress):
                    progress[frame.job_id] = frame  # the latest report per job wins
                elif isinstance(frame, p.Ready):
                    credit += frame.credit
                elif isinstance(frame, p.Hello):
                    credit = 0  # HELLO resets the node's credit
                    self._bye = None  # back after a BYE: the session goes on
                    self._hello(frame)
                elif isinstance(frame, p.Bye):
                    self._bye = frame.reason or "no reason given"
                elif isinstance(frame, p.Error):
                    log.warning("node %s sent %s", self.node_id, frame)
            except Exception as exc:  # one frame's failure must not end the session
                self._counters.internal_errors += 1
                log.error("internal error handling %s from node %s", frame.TYPE, self.node_id,
                          exc_info=exc)  # fmt: skip
                message = p.clip(f"internal error handling {frame.TYPE}: {exc!r}")
                self._send(p.Error("internal", message))
        if self._inflight >= MAX_STORE_BACKLOG and progress:
            # The store is behind: progress reports wait for nobody (the next one says
            # more), so they are what a flood of them costs, not memory.
            self._counters.progress_dropped += len(progress)
            progress.clear()
        self._progress_ops(progress, ops, acks, None)
        if credit:
            self._scheduler.cast(Credit(self.node_id, self.epoch, credit))  # type: ignore[union-attr]
        if ops:
            self._inflight += 1
            self._store.cast(StoreRequest(ops, self.ref, acks))  # type: ignore[union-attr]
        self._maybe_leave()

    def _maybe_leave(self) -> None:
        """After a BYE, end once the RESULTs sent before it are ACKed (or refused)."""
        if self._bye is not None and self._inflight == 0:
            self.stop(("shutdown", f"node {self.node_id} said BYE: {self._bye}"))

    @staticmethod
    def _progress_ops(
        progress: dict[str, p.Progress],
        ops: list[Op],
        acks: list[tuple[str, str] | None],
        job_id: str | None,
    ) -> None:
        """Move coalesced PROGRESS into ``ops``: one job's (before its RESULT), or all."""
        frames = list(progress.values()) if job_id is None else [progress.pop(job_id, None)]
        if job_id is None:
            progress.clear()
        for frame in frames:
            if frame is not None:
                data = {"step": frame.step, "metrics": frame.metrics}
                ops.append(Progress(frame.job_id, frame.lease, data))
                acks.append(None)

    def _hello(self, hello: p.Hello) -> None:
        self.epoch += 1
        self.inventory = hello.inventory
        registry = self.runtime.registry
        meta = inventory_meta(hello.inventory)
        if self._registered:
            registry.update_meta(("node", self.node_id), self.ref, meta)
        else:
            registry.register(("node", self.node_id), self.ref, meta)
            self._registered = True
        log.info("node %s said HELLO (%d running, %d slots)", self.node_id,
                 len(hello.running), hello.inventory.slots)  # fmt: skip
        up = NodeUp(self.node_id, self.ref, self.epoch, hello.inventory, hello.running, self.peer)
        self._scheduler.cast(up)  # type: ignore[union-attr]

    # -- store replies: ACK what is durable ----------------------------------------------

    async def handle_info(self, msg: Any) -> None:
        kind = type(msg)
        if kind is StoreReply:
            self._acks(msg)
        elif msg == _TICK:
            self._tick()
        elif kind is Exit:
            self.stop(msg.reason)  # our supervisor (or a linked actor) is going down

    def _acks(self, reply: StoreReply) -> None:
        self._inflight -= 1
        counters = self._counters
        if reply.error is not None:
            self._maybe_leave()
            return  # nothing is durable: the node's outbox sends the RESULTs again
        now = self._clock.now()
        acks: list[bytes] = []
        for action, outcome in zip(reply.tag, reply.outcomes, strict=True):
            if action is None:
                continue
            kind = type(outcome)
            if kind is Completed:
                counters.results_ok += 1
            elif kind is Stale:
                counters.results_stale += 1
                log.info("stale RESULT from node %s refused: %s", self.node_id, outcome)
            elif kind is Rejected:
                counters.results_refused += 1
                log.warning("RESULT from node %s refused: %s", self.node_id, outcome)
            else:
                counters.results_failed += 1
            job_id, lease = action
            acks.append(p.encode(p.Ack(job_id, lease)))
        if acks:  # one message: the node's outbox resends what an unsent ACK leaves
            self._outlet.send_many(self.peer, acks, now)
        self._maybe_leave()

    # -- heartbeats ---------------------------------------------------------------------

    def _tick(self) -> None:
        now = self._clock.now()
        silent = now - self.last_heard
        if silent >= self._timeout:
            self.stop(
                ("shutdown", f"node {self.node_id} silent for {silent:.2f} s"
                 f" (timeout {self._timeout:g} s)")
            )  # fmt: skip
            return
        last_sent = max(self._outlet.last_sent.get(self.peer, self.started), self._beat)
        if now - last_sent >= self._interval * 0.999:
            self._send(p.Heartbeat(), now)
            self._beat = last_sent = now  # sent or not (unreachable): next one in an interval
        due = min(self.last_heard + self._timeout, last_sent + self._interval)
        self.send_after(max(due - now, 0.001), _TICK)

    def _send(self, frame: p.Frame, now: float | None = None) -> None:
        if now is None:
            now = self._clock.now()
        self._outlet.send(self.peer, frame, now)

    async def handle_call(self, request: Any, caller: Any) -> Any:
        if request == "info":
            return {
                "node_id": self.node_id,
                "inventory": self.inventory,
                "epoch": self.epoch,
                "last_seen_s": max(self._clock.now() - self.last_heard, 0.0),
            }
        raise ValueError(f"unknown session request {request!r}")

    async def terminate(self, reason: Any) -> None:
        lost = isinstance(reason, tuple) and len(reason) == 2 and reason[0] == "shutdown"
        if lost:
            self._counters.sessions_lost += 1
            level = logging.INFO if self._bye is not None else logging.WARNING
            log.log(level, "session ended: %s", reason[1])
        if reason == "shutdown":
            self._send(p.Bye("coordinator stopping"))
        elif lost and self._bye is None:
            self._send(p.Bye(f"session ended: {reason[1]}"))
        self._outlet.last_sent.pop(self.peer, None)
