"""The node's work table: which attempts run where, and what they hold.

``Work`` belongs to the connection actor (it is plain state, used from that actor's
handlers only). It turns a DISPATCH into a held attempt, GPUs taken from the free ones
by UUID, and places held attempts in arrival order (``fill``): while a slot is free, a
``TaskRunner`` under the runner supervisor (a fresh process per task) or an idle
``PoolWorker`` (one is started when none is idle) gets the next one. With ``prefetch``
the node holds more attempts than it has slots; when every slot is busy, the waiting
pool attempts are written ahead into the pipes of busy pool workers (up to ``depth``
each), so a worker goes from one short task to the next without a round trip and
several results come back per wake-up. An attempt counts as running from its
``TaskStarted`` (the node sends ACCEPT then). Runners and pool workers are monitored,
so one that dies without reporting still ends its attempts. Work stops attempts (a
cancel, a hand-back, fencing; one still waiting here ends at once without running, one
queued in a worker's pipe is called off there) and takes their ``TaskEnded`` back,
returning GPUs and the slot; an attempt a failing pool worker never started comes
back to the front of the queue.

An attempt under a memory or outputs limit (``TaskLimits``) is watched by the node's
``TaskWatchdog`` from its ``TaskStarted`` to its end. A ``LimitHit`` marks it and stops
it; its end is then reported as the hit says (``memory_limit`` / ``disk_limit``), unless
it had succeeded first.
"""

from __future__ import annotations

import enum
import logging
import math
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from foundation import Actor, ActorRef, Down, FoundationError, MonitorRef
from supervision import DynamicSupervisor, SupervisionError, child_spec

from ._limits import MAX_RUNNING
from ._node_outbox import OutboxEntry
from ._node_pool import RETIRE, PoolWorker, RunAttempt, StopAttempt
from ._node_runner import StopSwitch, TaskRunner
from ._node_setup import NodeSetup
from ._node_tasks import Attempt, Key, TaskEnded, attempt_dir, unstarted
from ._node_watchdog import LimitHit, Unwatch, Watch
from ._task_limits import LIMIT_KINDS, TaskLimits
from .protocol import Dispatch, ErrorKind, RunningJob
from .task import TaskJob, TaskOutcome

__all__ = ("Running", "Work")

log = logging.getLogger("mabeam.node")

_SHUTDOWN_MARGIN_S = 1.0
"""A runner or pool worker gets its stop grace plus this long to exit at shutdown."""

_MAX_DEPTH = 16
"""At most this many attempts in one pool worker's pipe (the running one included)."""


@dataclass(slots=True)
class Running:
    """An attempt the node holds: waiting or started, maybe stopping, not yet ended."""

    attempt: Attempt
    number: int  # the DISPATCH's attempt number
    pool: bool
    started: float  # when the node took it (a RESULT's duration counts from here)
    order: int  # arrival order on this node
    code: str = ""  # the DISPATCH's code_version
    launched: bool = False  # its runner or pool worker reported TaskStarted
    worker: ActorRef | None = None  # its TaskRunner or PoolWorker, once placed
    monitor: MonitorRef | None = None  # a runner's monitor
    switch: StopSwitch | None = None
    stopping: str | None = None  # why it is being stopped
    limits: TaskLimits | None = None  # None: not watched
    watched: bool = False  # the watchdog has its Watch
    limit: LimitHit | None = None  # it went over a limit: how its end is reported


@dataclass(slots=True)
class _Load:
    """What one pool worker was given: attempts not ended yet, in all, and the code
    version of each entrypoint module it was given (it has that code imported)."""

    inflight: int = 0
    given: int = 0
    code: dict[str, str] = field(default_factory=dict)

    def runs(self, entry: Running) -> bool:
        """Whether this worker may run ``entry``: it never imported the entrypoint's
        module, or imported it for the same code version."""
        seen = self.code.get(_module(entry))
        return seen is None or seen == entry.code


class _Start(enum.Enum):
    """``Work._pool_worker``'s answer when a new pool worker must be started."""

    START = "start"


_START: Final = _Start.START


def _module(entry: Running) -> str:
    return entry.attempt.job.entrypoint.partition(":")[0]


class Work:
    """Held attempts, free GPUs and the pool; see the module docstring."""

    def __init__(self, actor: Actor, setup: NodeSetup) -> None:
        self._actor = actor
        self._setup = setup
        self._depth = min(_MAX_DEPTH, 1 + math.ceil(setup.prefetch / setup.slots))
        self._waiting: deque[Key] = deque()
        self.active = 0  # attempts started (TaskStarted) and not ended
        self._free_gpus = list(setup.gpus)
        self._gpu_order = {uuid: i for i, uuid in enumerate(setup.gpus)}
        self.running: dict[Key, Running] = {}
        self._runners: dict[MonitorRef, Key] = {}
        self._pool_monitors: dict[MonitorRef, ActorRef] = {}
        self._pool: dict[ActorRef, _Load] = {}
        self._busy_workers = 0  # pool workers with an attempt in flight
        self._assigned: dict[Key, ActorRef] = {}  # pool attempt -> its worker
        self._pool_started = 0
        self._arrivals = 0
        self._watchdog = actor.runtime.whereis(setup.watchdog_name)

    # -- questions -----------------------------------------------------------------------

    def free_slots(self) -> int:
        """Assignments the node can still take: ``slots + prefetch`` minus those held."""
        setup = self._setup
        return max(0, setup.slots + setup.prefetch - len(self.running))

    def waiting(self) -> int:
        """Attempts held but not started."""
        return len(self.running) - self.active

    def held(self, results: Iterable[OutboxEntry]) -> tuple[RunningJob, ...]:
        """What HELLO lists: the held attempts, then those with un-ACKed ``results``
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

    def pool_size(self) -> int:
        """Pool workers alive (idle or busy)."""
        return len(self._pool_monitors)

    # -- taking and placing --------------------------------------------------------------

    async def start(self, dispatch: Dispatch, now: float) -> tuple[ErrorKind, str] | None:
        """Take the attempt and place what can be placed; None when it is held, else
        (error_kind, why) for its RESULT."""
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
            # No output_dir: a runner puts the outputs under the directory it is given
            # (Attempt.output_dir), as a pool worker does.
            job = TaskJob(
                dispatch.entrypoint, dict(dispatch.params), dispatch.job_id, dispatch.attempt
            )
        except (TypeError, ValueError) as exc:
            return ("exception", f"the node cannot run this dispatch: {exc}")
        gpus = tuple(self._free_gpus[:wanted])
        del self._free_gpus[:wanted]
        attempt = Attempt(job, dispatch.lease, gpus, dispatch.timeout_s, directory)
        # A pool worker's environment is fixed, so a GPU job always gets its own process.
        pool = dispatch.isolation == "pool" and not gpus
        self._arrivals += 1
        task = self._setup.task
        self.running[key] = Running(
            attempt,
            dispatch.attempt,
            pool,
            now,
            self._arrivals,
            dispatch.code_version,
            limits=TaskLimits.of(dispatch.resources.memory_mb, task.memory_mb, task.disk_mb),
        )
        self._waiting.append(key)
        self._count()
        await self.fill()
        return None

    async def fill(self) -> None:
        """Place waiting attempts, in order, while there is room (module doc)."""
        waiting = self._waiting
        while waiting:
            key = waiting[0]
            entry = self.running.get(key)
            if entry is None or entry.worker is not None or entry.stopping is not None:
                waiting.popleft()  # ended, placed or stopped while it waited
                continue
            try:
                if entry.pool:
                    worker = self._pool_worker(entry)
                    if worker is _START:
                        worker = await self._new_pool_worker()
                    if worker is None:
                        break
                    waiting.popleft()
                    self._give(entry, worker)
                else:
                    if self._busy_slots() >= self._setup.slots:
                        break
                    waiting.popleft()
                    await self._start_runner(entry)
            except (FoundationError, SupervisionError) as exc:
                if waiting and waiting[0] == key:
                    waiting.popleft()
                why = f"the node could not start the task: {exc!r}"
                self._actor.ref.cast(TaskEnded(key, TaskOutcome.failure("crashed", why)))

    def _busy_slots(self) -> int:
        return len(self._runners) + self._busy_workers

    def _pool_worker(self, entry: Running) -> ActorRef | _Start | None:
        """Where ``entry`` goes: an idle worker or a new one (``_START``) while a slot is
        free, else the least loaded busy worker with room in its pipe, else None. Only
        workers that have the entrypoint's code at ``entry``'s version (or not at all)
        qualify; an idle one with other code retires when a new one is started instead.
        Not a coroutine: it runs for every task, and only a start waits."""
        max_tasks = self._setup.task.max_tasks_per_worker
        pool = self._pool
        if self._busy_slots() < self._setup.slots:
            usable = [(ref, load) for ref, load in pool.items() if load.given < max_tasks]
            for ref, load in usable:
                if not load.inflight and ref.is_alive and load.runs(entry):
                    return ref
            for ref, load in usable:
                if not load.inflight and ref.is_alive:  # idle, other code: it makes room
                    load.given = max_tasks
                    ref.cast(RETIRE)
            return _START
        best: ActorRef | None = None
        least = self._depth
        for ref, load in pool.items():  # no list: this runs for every task under load
            busy_with_room = 0 < load.inflight < least and load.given < max_tasks
            if busy_with_room and ref.is_alive and load.runs(entry):
                best, least = ref, load.inflight
        return best

    async def _new_pool_worker(self) -> ActorRef:
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
        self._pool[new] = _Load()
        return new

    def _give(self, entry: Running, worker: ActorRef) -> None:
        load = self._pool[worker]
        if not load.inflight:
            self._busy_workers += 1
        load.inflight += 1
        load.given += 1
        load.code[_module(entry)] = entry.code
        entry.worker = worker
        self._assigned[entry.attempt.key] = worker
        worker.cast(RunAttempt(entry.attempt))

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

    def started(self, key: Key, pid: int) -> bool:
        """Its runner or pool worker (process ``pid``) started the attempt; False if it
        is gone or being stopped (no ACCEPT then)."""
        entry = self.running.get(key)
        if entry is None or entry.stopping is not None or entry.launched:
            return False
        entry.launched = True
        self.active += 1
        self._count()
        if entry.limits is not None and pid > 0 and self._watchdog is not None:
            outputs = Path(entry.attempt.work_dir)
            dedicated = not entry.pool
            self._watchdog.cast(Watch(key, pid, entry.limits, outputs, self._actor.ref, dedicated))
            entry.watched = True
        return True

    def _unwatch(self, entry: Running) -> None:
        if entry.watched and self._watchdog is not None:
            entry.watched = False
            self._watchdog.cast(Unwatch(entry.attempt.key))

    def limit_hit(self, hit: LimitHit) -> None:
        """The watchdog found the attempt over a limit: stop it; its end says why."""
        entry = self.running.get(hit.key)
        if entry is None or not entry.watched or entry.stopping is not None:
            return  # it ended, went back to the queue, or is being stopped already
        entry.watched = False  # the watchdog let it go
        entry.limit = hit
        self.stop(hit.key, hit.kind)

    def outcome(self, entry: Running, outcome: TaskOutcome) -> TaskOutcome:
        """How an ended attempt is reported: as its limit hit says, if it had one and
        did not succeed first. A failure for a limit is counted and logged."""
        hit = entry.limit
        if hit is not None and not outcome.ok:
            outcome = TaskOutcome.failure(
                hit.kind,
                hit.error,
                traceback=outcome.traceback,
                exit_code=outcome.exit_code,
                signal=outcome.signal,
                log_path=outcome.log_path,
            )
        if outcome.kind in LIMIT_KINDS:
            self._setup.counters.over_limit += 1
            job = entry.attempt.job
            log.warning("node %s: %s (%s) attempt %d: %s", self._setup.node_id, job.job_id,
                        job.entrypoint, entry.number, outcome.error)  # fmt: skip
        return outcome

    def _count(self) -> None:
        counters = self._setup.counters
        counters.running, counters.queued = self.active, self.waiting()

    # -- stopping and ending -------------------------------------------------------------

    def stop(self, key: Key, reason: str) -> bool:
        """Ask the attempt to stop (its TaskEnded follows); False if it is not held."""
        entry = self.running.get(key)
        if entry is None:
            return False
        if entry.stopping is None:
            entry.stopping = reason
            if entry.worker is None:  # still waiting here: it ends now
                self._actor.ref.cast(TaskEnded(key, unstarted(reason)))
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
        """Take an attempt's end: its entry (None if it was forgotten, or if its pool
        worker gave it back unstarted: it waits again), resources back."""
        worker = self._assigned.pop(msg.key, None)
        if worker is not None:
            load = self._pool.get(worker)
            if load is not None:
                load.inflight -= 1
                if not load.inflight:
                    self._busy_workers -= 1
                if not msg.reusable:  # the worker is retiring: nothing more for it
                    load.given = self._setup.task.max_tasks_per_worker
        entry = self.running.get(msg.key)
        if entry is None:
            return None
        if msg.unstarted and entry.stopping is None:
            self._requeue(entry)
            return None
        del self.running[msg.key]
        self._release(entry)
        return entry

    def _requeue(self, entry: Running) -> None:
        """Back to the queue, ahead of every attempt that arrived after it (all that wait
        did: the queue is served in order), behind those that came before."""
        self._unwatch(entry)
        if entry.launched:
            entry.launched = False
            self.active -= 1
        entry.worker = None
        index = 0
        for key in self._waiting:
            other = self.running.get(key)
            if other is not None and other.order > entry.order:
                break
            index += 1
        self._waiting.insert(index, entry.attempt.key)
        self._count()

    def _release(self, entry: Running) -> None:
        self._unwatch(entry)
        if entry.launched:
            self.active -= 1
        self._count()
        if entry.attempt.gpus:
            self._free_gpus.extend(entry.attempt.gpus)
            self._free_gpus.sort(key=self._gpu_order.__getitem__)
        if entry.monitor is not None:
            self._runners.pop(entry.monitor, None)
            self._actor.demonitor(entry.monitor, flush=True)

    def down(self, msg: Down) -> list[tuple[Key, Any]]:
        """A runner or pool worker exited: the attempts it left running without a result,
        and why. Those a pool worker was given but never started wait again."""
        key = self._runners.pop(msg.ref, None)
        if key is not None:
            return [(key, msg.reason)] if key in self.running else []
        worker = self._pool_monitors.pop(msg.ref, None)
        if worker is None:
            return []
        load = self._pool.pop(worker, None)
        if load is not None and load.inflight:
            self._busy_workers -= 1
        lost: list[tuple[Key, Any]] = []
        for k in [k for k, ref in self._assigned.items() if ref == worker]:
            del self._assigned[k]
            entry = self.running.get(k)
            if entry is None:
                continue
            if entry.launched or entry.stopping is not None:
                lost.append((k, msg.reason))
            else:
                self._requeue(entry)
        return lost
