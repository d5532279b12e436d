"""The node's work table: which attempts run where, and what they hold.

``Work`` belongs to the connection actor (it is plain state, used from that actor's
handlers only). It turns a DISPATCH into a held attempt: GPUs taken from the free ones
by UUID, then, while fewer than ``slots`` run, started at once: a ``TaskRunner`` under
the runner supervisor (a fresh process per task) or the attempt handed to an idle
``PoolWorker`` (one is started when none is idle), the runner or worker monitored so
that one that dies without reporting still ends its attempt. With ``prefetch`` the node
holds up to that many more attempts than it runs: they wait here in arrival order and
start as slots free (``fill``), so a short task's slot never idles for a round trip to
the coordinator. It stops attempts (a cancel, a hand-back, fencing; one still waiting
ends at once without running) and takes their ``TaskEnded`` back, returning GPUs, the
slot and an idle pool worker.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from foundation import Actor, ActorRef, Down, FoundationError, MonitorRef
from supervision import DynamicSupervisor, SupervisionError, child_spec

from ._limits import MAX_RUNNING
from ._node_outbox import OutboxEntry
from ._node_pool import PoolWorker, RunAttempt, StopAttempt
from ._node_runner import StopSwitch, TaskRunner
from ._node_setup import NodeSetup
from ._node_tasks import Attempt, Key, TaskEnded, attempt_dir
from .protocol import Dispatch, ErrorKind, RunningJob
from .task import TaskJob, TaskOutcome

__all__ = ("Running", "Work")

log = logging.getLogger("mabeam.node")

_UNSTARTED = {"handed_back": "handed back", "shutdown": "the node stopped"}
"""How a stop reason reads in the error of an attempt that never started."""

_SHUTDOWN_MARGIN_S = 1.0
"""A runner or pool worker gets its stop grace plus this long to exit at shutdown."""


@dataclass(slots=True)
class Running:
    """An attempt the node holds: waiting or started, maybe stopping, not yet ended."""

    attempt: Attempt
    number: int  # the DISPATCH's attempt number
    pool: bool
    started: float  # when the node took it (a RESULT's duration counts from here)
    launched: bool = False  # False while it waits for a slot
    worker: ActorRef | None = None  # its TaskRunner or PoolWorker
    monitor: MonitorRef | None = None  # a runner's monitor
    switch: StopSwitch | None = None
    stopping: str | None = None  # why it is being stopped


class Work:
    """Running attempts, free GPUs and the pool; see the module docstring."""

    def __init__(self, actor: Actor, setup: NodeSetup, accept: Callable[[Key], None]) -> None:
        self._actor = actor
        self._setup = setup
        self._accept = accept  # sends ACCEPT for a pool attempt handed to its worker
        self._waiting: deque[Key] = deque()
        self.active = 0  # attempts launched and not ended
        self._free_gpus = list(setup.gpus)
        self._gpu_order = {uuid: i for i, uuid in enumerate(setup.gpus)}
        self.running: dict[Key, Running] = {}
        self._runners: dict[MonitorRef, Key] = {}
        self._pool_monitors: dict[MonitorRef, ActorRef] = {}
        self._idle: list[ActorRef] = []
        self._busy: dict[ActorRef, Key] = {}
        self._pool_started = 0

    # -- questions -----------------------------------------------------------------------

    def free_slots(self) -> int:
        """Assignments the node can still take: ``slots + prefetch`` minus those held."""
        setup = self._setup
        return max(0, setup.slots + setup.prefetch - len(self.running))

    def waiting(self) -> int:
        """Attempts held but not started (waiting for a slot)."""
        return len(self.running) - self.active

    def held(self, results: Iterable[OutboxEntry]) -> tuple[RunningJob, ...]:
        """What HELLO lists: the running attempts, then those with un-ACKed ``results``
        (at most ``MAX_RUNNING``: the leases of any others will be requeued)."""
        held = [RunningJob(key[0], r.number, key[1]) for key, r in self.running.items()]
        held.extend(
            RunningJob(e.job_id, e.attempt, e.lease) for e in results if e.key not in self.running
        )
        if len(held) > MAX_RUNNING:
            log.warning(
                "node %s holds %d attempts; HELLO lists the first %d (the leases of the "
                "others will be requeued)",
                self._setup.node_id,
                len(held),
                MAX_RUNNING,
            )
            del held[MAX_RUNNING:]
        return tuple(held)

    # -- starting ------------------------------------------------------------------------

    async def start(self, dispatch: Dispatch, now: float) -> tuple[ErrorKind, str] | None:
        """Take the attempt: start it, or queue it when every slot runs one (prefetch);
        None when it is held, else (error_kind, why) for its RESULT."""
        key = (dispatch.job_id, dispatch.lease)
        wanted = dispatch.resources.gpus
        if wanted > len(self._free_gpus):
            return (
                "handed_back",
                f"job needs {wanted} GPUs and this node has {len(self._free_gpus)} free "
                f"of {len(self._setup.gpus)}",
            )
        directory = attempt_dir(self._setup.work_dir, dispatch.job_id, dispatch.attempt)
        try:
            job = TaskJob(
                dispatch.entrypoint,
                dict(dispatch.params),
                dispatch.job_id,
                dispatch.attempt,
                output_dir=directory / "output",
            )
        except (TypeError, ValueError) as exc:
            return ("exception", f"the node cannot run this dispatch: {exc}")
        gpus = tuple(self._free_gpus[:wanted])
        del self._free_gpus[:wanted]
        attempt = Attempt(job, dispatch.lease, gpus, dispatch.timeout_s, directory)
        # A pool worker's environment is fixed, so a GPU job always gets its own process.
        pool = dispatch.isolation == "pool" and not gpus
        entry = self.running[key] = Running(attempt, dispatch.attempt, pool, now)
        if self.active >= self._setup.slots:
            self._waiting.append(key)
            self._count()
            return None
        why = await self._launch(entry)
        if why is not None:
            self._release(self.running.pop(key))
            return ("crashed", why)
        return None

    def _count(self) -> None:
        counters = self._setup.counters
        counters.running, counters.queued = self.active, self.waiting()

    async def fill(self) -> None:
        """Start waiting attempts while a slot is free (after an attempt ended)."""
        while self._waiting and self.active < self._setup.slots:
            entry = self.running.get(self._waiting.popleft())
            if entry is None or entry.launched:
                continue  # stopped while it waited
            why = await self._launch(entry)
            if why is not None:  # reported like any end: a RESULT, the slot back
                outcome = TaskOutcome.failure("crashed", why)
                self._actor.ref.cast(TaskEnded(entry.attempt.key, outcome))

    async def _launch(self, entry: Running) -> str | None:
        """Run a held attempt in a slot; why not when it cannot start."""
        key = entry.attempt.key
        entry.launched = True
        self.active += 1
        self._count()
        try:
            if entry.pool:
                worker = await self._pool_worker()
                entry.worker = worker
                self._busy[worker] = key
                worker.cast(RunAttempt(entry.attempt))
                self._accept(key)
            else:
                await self._start_runner(entry)
        except (FoundationError, SupervisionError) as exc:
            return f"the node could not start the task: {exc!r}"
        return None

    async def _start_runner(self, entry: Running) -> None:
        setup = self._setup
        switch = entry.switch = StopSwitch()
        spec = child_spec(
            TaskRunner,
            self._actor.ref,
            entry.attempt,
            switch,
            setup.task,
            restart="temporary",
            shutdown=setup.task.grace_s + _SHUTDOWN_MARGIN_S,
        )
        ref = await DynamicSupervisor.start_child(setup.runners_name, spec)
        assert ref is not None
        entry.worker = ref
        entry.monitor = self._actor.monitor(ref)
        self._runners[entry.monitor] = entry.attempt.key

    async def _pool_worker(self) -> ActorRef:
        """An idle pool worker, or a new one."""
        while self._idle:
            ref = self._idle.pop()
            if ref.is_alive:
                return ref
        setup = self._setup
        self._pool_started += 1
        spec = child_spec(
            PoolWorker,
            self._actor.ref,
            setup.task,
            self._pool_started,
            restart="temporary",
            shutdown=setup.task.grace_s + _SHUTDOWN_MARGIN_S,
        )
        new = await DynamicSupervisor.start_child(setup.pool_name, spec)
        assert new is not None
        self._pool_monitors[self._actor.monitor(new)] = new
        return new

    # -- stopping and ending -------------------------------------------------------------

    def stop(self, key: Key, reason: str) -> bool:
        """Ask the attempt to stop (its TaskEnded follows); False if it is not held."""
        entry = self.running.get(key)
        if entry is None:
            return False
        if entry.stopping is None:
            entry.stopping = reason
            if not entry.launched:  # it never ran: it ends now
                why = _UNSTARTED.get(reason, reason)
                outcome = TaskOutcome.failure("cancelled", f"{why} before it started")
                self._actor.ref.cast(TaskEnded(key, outcome))
        if entry.switch is not None:
            entry.switch.request(reason)
        elif entry.worker is not None:
            entry.worker.cast(StopAttempt(key, reason))
        return True

    def forget(self, key: Key) -> None:
        """Stop the attempt and drop it now: no result will be reported (fencing)."""
        self.stop(key, "fenced")
        entry = self.running.pop(key, None)
        if entry is not None:
            self._release(entry)

    def ended(self, msg: TaskEnded) -> Running | None:
        """Take an attempt's end: its entry (None if it was forgotten), resources back."""
        entry = self.running.pop(msg.key, None)
        if entry is None:
            return None
        self._release(entry)
        if entry.pool and msg.reusable and entry.worker is not None:
            self._idle.append(entry.worker)
        return entry

    def _release(self, entry: Running) -> None:
        if entry.launched:
            self.active -= 1
        self._count()
        if entry.attempt.gpus:
            self._free_gpus.extend(entry.attempt.gpus)
            self._free_gpus.sort(key=self._gpu_order.__getitem__)
        if entry.monitor is not None:
            self._runners.pop(entry.monitor, None)
            self._actor.demonitor(entry.monitor, flush=True)
        if entry.pool and entry.worker is not None:
            self._busy.pop(entry.worker, None)

    def down(self, msg: Down) -> tuple[Key, Any] | None:
        """A runner or pool worker exited: the attempt it left without a result, and why."""
        key = self._runners.pop(msg.ref, None)
        if key is None:
            worker: ActorRef | None = self._pool_monitors.pop(msg.ref, None)
            if worker is None:
                return None
            if worker in self._idle:
                self._idle.remove(worker)
            key = self._busy.pop(worker, None)
            if key is None:
                return None
        return (key, msg.reason) if key in self.running else None

    def pool_size(self) -> int:
        """Pool workers alive (idle or busy)."""
        return len(self._pool_monitors)
