"""The node's work table: which attempts run where, and what they hold.

``Work`` belongs to the connection actor (it is plain state, used from that actor's
handlers only). It turns a DISPATCH into a running attempt: GPUs taken from the free
ones by UUID, a ``TaskRunner`` started under the runner supervisor (a fresh process
per task) or the attempt handed to an idle ``PoolWorker`` (one is started when none is
idle), the runner or worker monitored so that one that dies without reporting still
ends its attempt. It stops attempts (a cancel, a hand-back, fencing) and takes their
``TaskEnded`` back, returning GPUs, the slot and an idle pool worker.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
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
from .task import TaskJob

__all__ = ("Running", "Work")

log = logging.getLogger("mabeam.node")

_SHUTDOWN_MARGIN_S = 1.0
"""A runner or pool worker gets its stop grace plus this long to exit at shutdown."""


@dataclass(slots=True)
class Running:
    """An attempt the node holds: started, maybe stopping, not yet ended."""

    attempt: Attempt
    number: int  # the DISPATCH's attempt number
    pool: bool
    started: float
    worker: ActorRef | None = None  # its TaskRunner or PoolWorker
    monitor: MonitorRef | None = None  # a runner's monitor
    switch: StopSwitch | None = None
    stopping: str | None = None  # why it is being stopped


class Work:
    """Running attempts, free GPUs and the pool; see the module docstring."""

    def __init__(self, actor: Actor, setup: NodeSetup) -> None:
        self._actor = actor
        self._setup = setup
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
        """Slots not held by a running attempt."""
        return max(0, self._setup.slots - len(self.running))

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
        """Start the attempt; None when it runs, else (error_kind, why) for its RESULT."""
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
        try:
            if pool:
                worker = await self._pool_worker()
                entry.worker = worker
                self._busy[worker] = key
                worker.cast(RunAttempt(attempt))
            else:
                await self._start_runner(entry)
        except (FoundationError, SupervisionError) as exc:
            self._release(self.running.pop(key))
            return ("crashed", f"the node could not start the task: {exc!r}")
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
        """Ask the attempt to stop (its TaskEnded follows); False if it is not running."""
        entry = self.running.get(key)
        if entry is None:
            return False
        if entry.stopping is None:
            entry.stopping = reason
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
