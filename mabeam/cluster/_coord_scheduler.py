"""The scheduler: the in-memory ready queue, each node's capacity, and dispatch.

One actor decides every assignment, so credit and free resources are never
double-booked. It keeps:

- the ready queue, in its ``SchedulingPolicy``: loaded from the store at start
  (``JobStore.ready``), then fed by committed batches (``Submitted``, ``Requeued``,
  promoted followers) and by back-off timers (``Retried`` jobs come back at their
  ``not_before``, on a ``send_after`` timer, never by polling);
- per node (from the session's ``NodeUp``): credit (0 at HELLO, READY adds) and free
  resources (inventory minus the jobs leased to it), in a ``NodeCapacity``.

When a node has credit and the queue has work it can fit, the policy picks the jobs;
the scheduler takes their credit and resources at once and asks the store for the
leases (one request per round). Only the committed ``Leased`` outcome sends the DISPATCH
(fencing: the node's frames carry the lease token). A ``CancelRequested`` outcome sends
the node a CANCEL; it comes after any DISPATCH of that lease, because the store answers
a request before it publishes the batch.

Node sessions are monitored. A session lost with a reason (silence, BYE, bad frames)
has its leases requeued at once (``RequeueNode``). A session stopped plainly (the tree
restarting) leaves its leases to the node's next HELLO; like the leases found in the
store at start, they are requeued if the node is not back within ``lease_s +
heartbeat_s``. On HELLO the node's leases are reconciled: a lease the node does not list
is released (requeued), a job it lists under a lease that is not current gets a CANCEL.
"""

from __future__ import annotations

import logging
from typing import Any, Final

from foundation import Actor, ActorRef, Down, TimerRef

from . import protocol as p
from ._coord_config import CoordinatorConfig
from ._coord_market import AuctionPolicy, market_view
from ._coord_messages import (
    Credit,
    LeaseTag,
    NodeUp,
    ReconcileTag,
    RefreshTag,
    RequeueTag,
    SchedNode,
)
from ._coord_policy import NodeCapacity, ReadyJob, make_policy
from ._coord_queue import JobBook, ready_job
from ._coord_reads import read_jobs, read_load, read_reconcile, read_requeued
from ._coord_shared import Outlet, Shared
from ._coord_status import dispatch_frame
from ._coord_store import Committed, StoreReply, StoreRequest, Subscribe, read_failed
from ._limits import MAX_CREDIT
from .store import (
    Cancelled,
    CancelRequested,
    Completed,
    Fail,
    Failed,
    Lease,
    Leased,
    NodeRequeued,
    NotLeasable,
    Release,
    Requeued,
    RequeueNode,
    Retried,
    Submit,
    Submitted,
)

__all__ = ("Scheduler",)

log = logging.getLogger("mabeam.coordinator")

_LOAD: Final = "load"
_WAKE: Final = "wake"
_ORPHANS: Final = "orphans"
_RESUME: Final = "resume"
_STORE_ERROR_PAUSE_S: Final = 0.5


class Scheduler(Actor):
    """Matches ready jobs to nodes (see the module docstring)."""

    async def init(self, config: CoordinatorConfig, shared: Shared) -> None:
        rt = self.runtime
        names = shared.names
        self._config = config
        self._counters = shared.counters
        store = rt.whereis(names.store)
        if store is None:
            raise RuntimeError("the coordinator's store is not running")
        self._store: ActorRef = store
        self._outlet: Outlet = await rt.call(names.router, "outlet")
        policy = make_policy(config.policy)
        self._book = JobBook(policy, self._arm_wake)
        self._market = policy if isinstance(policy, AuctionPolicy) else None
        self._wake_timer: TimerRef | None = None
        self._nodes: dict[str, SchedNode] = {}
        self._by_pid: dict[Any, str] = {}
        self._leased: dict[str, str] = {}  # job -> node whose capacity it holds
        self._orphans: dict[str, float] = {}  # node -> requeue its leases after (runtime)
        self._orphan_timer = False
        self._loaded = False
        self._paused = False
        self._rr = 0
        store.cast(Subscribe(self.ref))
        store.cast(StoreRequest([], self.ref, _LOAD, read=read_load))

    # -- messages -----------------------------------------------------------------------

    async def handle_cast(self, msg: Any) -> None:
        kind = type(msg)
        if kind is Credit:
            node = self._nodes.get(msg.node_id)
            if node is not None and node.epoch == msg.epoch:
                node.cap.credit = min(node.cap.credit + msg.credit, MAX_CREDIT)
        elif kind is NodeUp:
            self._node_up(msg)
        else:
            raise ValueError(f"unknown scheduler message {msg!r}")
        self._assign()

    async def handle_info(self, msg: Any) -> None:
        kind = type(msg)
        if kind is Committed:
            self._committed(msg)
        elif kind is StoreReply:
            self._reply(msg)
        elif kind is Down:
            self._down(msg)
        elif msg == _WAKE:
            self._wake_timer = None
            self._book.wake()
        elif msg == _ORPHANS:
            self._requeue_orphans()
        elif msg == _RESUME:
            self._paused = False
        self._assign()

    async def handle_call(self, request: Any, caller: Any) -> Any:
        if request == "nodes":
            return [
                (n.node_id, n.session, n.inventory, n.cap.credit, len(n.jobs))
                for n in self._nodes.values()
            ]
        if request == "market":
            nodes = [(n.node_id, n.inventory) for n in self._nodes.values()]
            return market_view(self._book.policy.name, nodes, self._market)
        if request == "statistics":
            return {
                "ready": len(self._book.policy),
                "deferred": self._book.deferred,
                "leased": len(self._leased),
                "nodes": len(self._nodes),
                "policy": self._book.policy.name,
            }
        raise ValueError(f"unknown scheduler request {request!r}")

    def _arm_wake(self, delay: float) -> None:
        """One back-off timer at a time: an earlier deadline replaces the armed one."""
        if self._wake_timer is not None:
            self._wake_timer.cancel()
        self._wake_timer = self.send_after(max(delay, 0.0), _WAKE)

    # -- node capacity ------------------------------------------------------------------

    def _charge(self, node: SchedNode, job: ReadyJob) -> None:
        node.jobs.add(job.job_id)
        self._leased[job.job_id] = node.node_id

    def _uncharge(self, job_id: str, *, credit: bool = False) -> None:
        """Give the job's resources (and with ``credit``, its credit) back to its node."""
        node_id = self._leased.pop(job_id, None)
        node = self._nodes.get(node_id) if node_id is not None else None
        job = self._book.jobs.get(job_id)
        if node is not None and job_id in node.jobs:
            node.jobs.discard(job_id)
            if job is not None:
                node.cap.give_back(job, credit=credit)

    def _forget(self, job_id: str) -> None:
        """The job is over: free its node's resources and drop it."""
        self._uncharge(job_id)
        self._book.forget(job_id)

    # -- dispatch -----------------------------------------------------------------------

    def _assign(self) -> None:
        policy = self._book.policy
        if not self._loaded or self._paused or not len(policy):
            return
        caps = [n.cap for n in self._nodes.values() if n.active and n.cap.credit > 0]
        if not caps:
            return
        self._rr = (self._rr + 1) % len(caps)
        picks = policy.assign(caps[self._rr :] + caps[: self._rr])
        if not picks:
            return
        chosen: list[tuple[ReadyJob, str, int]] = []
        for job, cap in picks:
            node = self._nodes[cap.node_id]
            self._charge(node, job)
            chosen.append((job, node.node_id, node.epoch))
        ops = [Lease(job.job_id, node_id, policy.terms(job.job_id)) for job, node_id, _ in chosen]
        self._store.cast(StoreRequest(ops, self.ref, LeaseTag(chosen)))

    def _leases(self, tag: LeaseTag, reply: StoreReply) -> None:
        if reply.error is not None:
            for job, _, _ in tag.picks:
                self._uncharge(job.job_id, credit=True)
                self._book.queue(job)
            self._pause()
            return
        releases: list[Any] = []
        refresh: list[str] = []
        sends: dict[str, tuple[SchedNode, list[tuple[str, Leased, bytes]]]] = {}
        for (job, node_id, epoch), out in zip(tag.picks, reply.outcomes, strict=True):
            node = self._nodes.get(node_id)
            current = node is not None and node.epoch == epoch
            if type(out) is Leased:
                if node is None or not current:
                    why = f"node {node_id} said HELLO again or was lost before the dispatch"
                    self._uncharge(job.job_id)
                    releases.append(Release(job.job_id, out.token, why))
                    continue
                payload = self._dispatch_payload(out)
                if payload is not None:
                    sends.setdefault(node_id, (node, []))[1].append((job.job_id, out, payload))
                continue
            self._uncharge(job.job_id, credit=current)
            if type(out) is NotLeasable and out.state == "queued":
                refresh.append(job.job_id)  # backing off, or following: ask the store
            else:
                self._book.forget(job.job_id)
        for node, items in sends.values():
            releases += self._dispatch(node, items)
        if releases:
            self._store.cast(StoreRequest(releases))
        if refresh:
            self._refresh(refresh)

    def _dispatch_payload(self, leased: Leased) -> bytes | None:
        """The DISPATCH of a lease, encoded; None when it can never be sent (the job
        fails)."""
        try:
            return p.encode(dispatch_frame(leased))
        except p.ProtocolError as exc:  # e.g. params too large for one frame: never sendable
            error = f"cannot be dispatched: {exc.message}"
            self._store.cast(StoreRequest([Fail(leased.job_id, leased.token, error, True)]))
            return None

    def _dispatch(self, node: SchedNode, items: list[tuple[str, Leased, bytes]]) -> list[Any]:
        """Send a node its DISPATCHes in one message (or as few as fit); the releases
        of those that did not go out."""
        payloads = [payload for _, _, payload in items]
        sent, outcome = self._outlet.send_many(node.peer, payloads, self.runtime.clock.now())
        self._counters.dispatched += sent
        if sent == len(items):
            return []
        log.warning("DISPATCH of %d jobs to node %s: %s", len(items) - sent, node.node_id,
                    outcome)  # fmt: skip
        node.cap.credit = 0  # gone or stuck: wait for its next READY (or its loss)
        why = f"node {node.node_id} unreachable"
        releases: list[Any] = []
        for job_id, leased, _ in items[sent:]:
            self._uncharge(job_id)
            releases.append(Release(job_id, leased.token, why))
        return releases

    def _pause(self) -> None:
        if not self._paused:
            self._paused = True
            self.send_after(_STORE_ERROR_PAUSE_S, _RESUME)

    # -- store results ------------------------------------------------------------------

    def _reply(self, reply: StoreReply) -> None:
        tag = reply.tag
        if type(tag) is LeaseTag:
            self._leases(tag, reply)
        elif tag == _LOAD:
            self._loaded_from(reply)
        elif type(tag) is ReconcileTag:
            self._reconciled(tag, reply)
        elif type(tag) is RequeueTag:
            self._requeued(reply)
        elif type(tag) is RefreshTag:
            self._refreshed(reply)

    def _loaded_from(self, reply: StoreReply) -> None:
        if reply.error is not None or read_failed(reply.read) is not None:
            raise RuntimeError(f"could not load the ready jobs: {reply.error or reply.read}")
        records, leased_nodes, balances = reply.read
        if self._market is not None:
            self._market.balances.update(balances)
        for rec in records:
            if not self._book.knows(rec.job_id):
                self._book.place(rec, leased=False)
        for node_id in leased_nodes:
            if node_id not in self._nodes:
                self._orphan(node_id)
        self._loaded = True
        log.info("scheduler loaded %d ready jobs; %d nodes hold leases",
                 len(records), len(leased_nodes))  # fmt: skip

    def _committed(self, batch: Committed) -> None:
        if self._market is not None:
            self._market.observe(batch, self._leased)
        for op, out in zip(batch.ops, batch.outcomes, strict=True):
            kind = type(out)
            if kind is Submitted:
                self._submitted(op, out)  # type: ignore[arg-type]
            elif kind is Completed or kind is Failed:
                self._forget(out.job_id)  # type: ignore[union-attr]
                for follower in out.followers:  # type: ignore[union-attr]
                    self._book.forget(follower)
            elif kind is Retried or kind is Requeued:
                self._uncharge(out.job_id)  # type: ignore[union-attr]
                job = self._book.jobs.get(out.job_id)  # type: ignore[union-attr]
                if job is None:
                    self._refresh([out.job_id])  # type: ignore[union-attr]
                else:
                    not_before = out.not_before if kind is Retried else 0.0  # type: ignore[union-attr]
                    self._book.queue(job, not_before)
            elif kind is Cancelled:
                self._forget(out.job_id)  # type: ignore[union-attr]
                self._leader_cancelled(out.job_id, out.promoted)  # type: ignore[union-attr]
            elif kind is CancelRequested:
                cancel = p.Cancel(out.job_id, out.token)  # type: ignore[union-attr]
                node = self._nodes.get(out.node)  # type: ignore[union-attr]
                peer = node.peer if node is not None else out.node.encode()  # type: ignore[union-attr]
                self._outlet.send(peer, cancel)

    def _submitted(self, op: Submit, out: Submitted) -> None:
        if out.duplicate:
            return
        cached, joined = set(out.cached), set(out.joined)
        for job_id, spec in zip(out.job_ids, op.specs, strict=True):
            if job_id in cached or self._book.knows(job_id):
                continue
            if job_id in joined:
                self._book.follow(ready_job(job_id, spec))
            else:
                self._book.queue(ready_job(job_id, spec))

    def _leader_cancelled(self, leader: str, promoted: str | None) -> None:
        unknown = self._book.leader_cancelled(leader, promoted)
        if unknown:
            self._refresh(unknown)

    # -- nodes --------------------------------------------------------------------------

    def _node_up(self, up: NodeUp) -> None:
        old = self._nodes.get(up.node_id)
        if old is not None:
            for job_id in old.jobs:
                self._leased.pop(job_id, None)
            if old.session.pid != up.session.pid:
                self._by_pid.pop(old.session.pid, None)
        self._orphans.pop(up.node_id, None)
        inv = up.inventory
        if self._market is not None:
            self._market.list_node(up.node_id, inv.owner, inv.price)
        cap = NodeCapacity(
            up.node_id, gpus=len(inv.gpus), cpus=float(inv.cpus), memory_mb=inv.ram_mb
        )
        node = SchedNode(up.node_id, up.peer or up.node_id.encode(), up.session, up.epoch, cap, inv)
        self._nodes[up.node_id] = node
        if up.session.pid not in self._by_pid:
            self._by_pid[up.session.pid] = up.node_id
            self.monitor(up.session)
        tag = ReconcileTag(up.node_id, up.epoch, up.running)
        self._store.cast(
            StoreRequest([], self.ref, tag, read=read_reconcile(tag.node_id, tag.running))
        )

    def _reconciled(self, tag: ReconcileTag, reply: StoreReply) -> None:
        node = self._nodes.get(tag.node_id)
        if node is None or node.epoch != tag.epoch:
            return  # a later HELLO (or the node's loss) superseded this one
        found = reply.read if reply.error is None and read_failed(reply.read) is None else None
        if found is None:
            log.error("could not reconcile node %s: %s", tag.node_id, reply.error or reply.read)
            self._pause()
            found = ([], set())
        records, finished = found
        listed = {rj.job_id: rj.lease for rj in tag.running}
        current: dict[str, str] = {}
        releases: list[Any] = []
        for rec in records:
            job = ready_job(rec.job_id, rec.spec, rec.seq)
            self._book.forget(rec.job_id)
            self._book.jobs[rec.job_id] = job
            if listed.get(rec.job_id) == rec.token:
                current[rec.job_id] = listed[rec.job_id]
                self._charge(node, job)
                node.cap.take(job)
                node.cap.credit += 1  # running before this HELLO: not from this credit
            else:
                releases.append(Release(rec.job_id, rec.token or "", "node restarted without it"))
        cancelled = 0
        for rj in tag.running:
            if current.get(rj.job_id) != rj.lease and rj.job_id not in finished:
                self._outlet.send(node.peer, p.Cancel(rj.job_id, rj.lease))
                cancelled += 1
        if releases:
            self._store.cast(StoreRequest(releases))
        node.active = True
        log.info("node %s reconciled: %d leases kept, %d released, %d cancelled", tag.node_id,
                 len(current), len(releases), cancelled)  # fmt: skip

    def _down(self, down: Down) -> None:
        node_id = self._by_pid.pop(down.pid, None)
        node = self._nodes.get(node_id) if node_id is not None else None
        if node is None or node.session.pid != down.pid:
            return
        del self._nodes[node.node_id]
        for job_id in node.jobs:
            self._leased.pop(job_id, None)
        reason = down.reason
        if reason in ("shutdown", "normal", "noproc"):
            self._orphan(node.node_id)  # the tree is restarting: the node may come back
        elif isinstance(reason, tuple) and len(reason) == 2 and reason[0] == "shutdown":
            self._requeue(node.node_id, str(reason[1]))
        else:
            self._requeue(node.node_id, f"node {node.node_id} session crashed: {reason!r}")

    def _requeue(self, node_id: str, why: str) -> None:
        self._counters.requeued_nodes += 1
        op = RequeueNode(node_id, why)
        self._store.cast(StoreRequest([op], self.ref, RequeueTag(node_id), read=read_requeued))

    def _requeued(self, reply: StoreReply) -> None:
        if reply.error is not None or not reply.outcomes:
            return
        out = reply.outcomes[0]
        if not isinstance(out, NodeRequeued):
            return
        for job_id in (*out.failed, *out.cancelled):
            self._forget(job_id)
        for job_id in out.cancelled:
            self._leader_cancelled(job_id, None)
        records = reply.read if read_failed(reply.read) is None else []
        for rec in records or ():
            self._book.place(rec, leased=rec.job_id in self._leased)
        log.info("requeued node %s: %d requeued, %d failed, %d cancelled", out.node,
                 len(out.requeued), len(out.failed), len(out.cancelled))  # fmt: skip

    def _orphan(self, node_id: str) -> None:
        deadline = (
            self.runtime.clock.now() + self._config.lease_timeout_s + self._config.heartbeat_s
        )
        self._orphans[node_id] = deadline
        if not self._orphan_timer:
            self._orphan_timer = True
            self.send_after(max(deadline - self.runtime.clock.now(), 0.0), _ORPHANS)

    def _requeue_orphans(self) -> None:
        self._orphan_timer = False
        now = self.runtime.clock.now()
        for node_id, deadline in list(self._orphans.items()):
            if deadline <= now:
                del self._orphans[node_id]
                if node_id not in self._nodes:
                    wait = self._config.lease_timeout_s
                    self._requeue(node_id, f"node {node_id} did not come back within {wait:g} s")
        if self._orphans:
            self._orphan_timer = True
            self.send_after(max(min(self._orphans.values()) - now, 0.0), _ORPHANS)

    # -- reading jobs back --------------------------------------------------------------

    def _refresh(self, job_ids: list[str]) -> None:
        ids = tuple(job_ids)
        self._store.cast(StoreRequest([], self.ref, RefreshTag(ids), read=read_jobs(ids)))

    def _refreshed(self, reply: StoreReply) -> None:
        if reply.error is not None or read_failed(reply.read) is not None:
            return
        for rec in reply.read:
            self._book.place(rec, leased=rec.job_id in self._leased)
