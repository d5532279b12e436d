"""Scheduling policies: which ready job goes to which node with free credit next.

The scheduler keeps every ready job in its policy (``add`` / ``remove``) and, whenever
nodes have credit, asks it for assignments: ``assign(nodes)`` returns ``(job, node)``
pairs, taking each job's resources and one credit from its node as it goes, so a node
never gets more jobs than its credit or more than its free GPUs, CPUs and memory.

A policy is anything with the ``SchedulingPolicy`` shape; ``POLICIES`` maps the names
that ``CoordinatorConfig.policy`` and ``--policy`` accept to factories. A new policy
(``auction``, in ``_coord_market``, is one) is a class with that shape and one entry in
``POLICIES``.

``fifo`` and ``priority`` share one structure: a heap per resource shape (GPUs, CPUs,
memory), ordered by the policy's key. Jobs of one shape are interchangeable for a node,
so the best job a node can take is the best head among the shapes that fit it: the cost
of an assignment is the number of distinct shapes, not the queue length, and a job no
node can fit never blocks the ones behind it.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, Protocol

if TYPE_CHECKING:
    from .store import LeaseTerms

__all__ = (
    "POLICIES",
    "FifoPolicy",
    "NodeCapacity",
    "PriorityPolicy",
    "ReadyJob",
    "SchedulingPolicy",
    "make_policy",
)

Shape = tuple[int, float, int]
"""What a job takes from a node: (GPUs, CPUs, memory in MiB)."""


@dataclass(frozen=True, slots=True)
class ReadyJob:
    """A queued job as the scheduler sees it: identity, order and what it needs."""

    job_id: str
    seq: int
    priority: int = 0
    gpus: int = 0
    cpus: float = 1.0
    memory_mb: int = 0
    team: str = ""
    value: float | None = None  # credits per GPU-hour (the auction policy's bid input)
    timeout_s: float | None = None

    @property
    def shape(self) -> Shape:
        return (self.gpus, self.cpus, self.memory_mb)


class NodeCapacity:
    """What a node can still take: assignments (credit) and free resources."""

    __slots__ = ("cpus", "credit", "gpus", "memory_mb", "node_id")

    def __init__(
        self, node_id: str, *, credit: int = 0, gpus: int = 0, cpus: float = 0.0, memory_mb: int = 0
    ) -> None:
        self.node_id = node_id
        self.credit = credit
        self.gpus = gpus
        self.cpus = cpus
        self.memory_mb = memory_mb

    def fits(self, shape: Shape) -> bool:
        """Whether one more job of ``shape`` fits now (credit and every resource)."""
        gpus, cpus, memory_mb = shape
        return (
            self.credit > 0
            and gpus <= self.gpus
            and cpus <= self.cpus + 1e-9
            and memory_mb <= self.memory_mb
        )

    def take(self, job: ReadyJob) -> None:
        """Reserve one credit and the job's resources."""
        self.credit -= 1
        self.gpus -= job.gpus
        self.cpus -= job.cpus
        self.memory_mb -= job.memory_mb

    def give_back(self, job: ReadyJob, *, credit: bool) -> None:
        """Undo ``take`` (``credit``: the assignment never reached the node either)."""
        if credit:
            self.credit += 1
        self.gpus += job.gpus
        self.cpus += job.cpus
        self.memory_mb += job.memory_mb

    def __repr__(self) -> str:
        return (
            f"NodeCapacity({self.node_id!r}, credit={self.credit}, gpus={self.gpus},"
            f" cpus={self.cpus:g}, memory_mb={self.memory_mb})"
        )


class SchedulingPolicy(Protocol):
    """The ready queue and the matching of jobs to nodes, as the scheduler uses it."""

    name: str

    def add(self, job: ReadyJob) -> None:
        """Queue ``job`` (again: the newer entry replaces an older one of that id)."""

    def remove(self, job_id: str) -> ReadyJob | None:
        """Take ``job_id`` out of the queue (cancelled, leased elsewhere); None if absent."""

    def __contains__(self, job_id: object) -> bool: ...

    def __len__(self) -> int: ...

    def assign(self, nodes: Sequence[NodeCapacity]) -> list[tuple[ReadyJob, NodeCapacity]]:
        """Pop jobs for ``nodes`` and ``take`` them from their node; never more than a
        node's credit, never a job that does not fit its free resources."""
        ...

    def terms(self, job_id: str) -> LeaseTerms | None:
        """What the lease of a job ``assign`` just returned costs (None: nothing)."""
        ...


class OrderedPolicy:
    """Jobs in the order of ``key``, one heap per resource shape (see the module doc).

    ``assign`` goes round the nodes, one job per node per round, so work spreads over
    the nodes instead of filling the first one.
    """

    name = "ordered"

    def __init__(self, key: Callable[[ReadyJob], Any]) -> None:
        self._key = key
        self._heaps: dict[Shape, list[tuple[Any, int, str]]] = {}
        self._jobs: dict[str, ReadyJob] = {}

    def add(self, job: ReadyJob) -> None:
        self._jobs[job.job_id] = job
        heap = self._heaps.get(job.shape)
        if heap is None:
            heap = self._heaps[job.shape] = []
        heapq.heappush(heap, (self._key(job), job.seq, job.job_id))

    def remove(self, job_id: str) -> ReadyJob | None:
        # The heap entry stays and is skipped when it reaches the top.
        return self._jobs.pop(job_id, None)

    def __contains__(self, job_id: object) -> bool:
        return job_id in self._jobs

    def __len__(self) -> int:
        return len(self._jobs)

    def jobs(self) -> Iterable[ReadyJob]:
        return self._jobs.values()

    def _head(self, shape: Shape) -> tuple[Any, int, str] | None:
        """The live entry on top of ``shape``'s heap, dropping stale ones on the way."""
        heap = self._heaps[shape]
        jobs = self._jobs
        while heap:
            entry = heap[0]
            job = jobs.get(entry[2])
            if job is not None and job.shape == shape and (self._key(job), job.seq) == entry[:2]:
                return entry
            heapq.heappop(heap)
        del self._heaps[shape]
        return None

    def terms(self, job_id: str) -> LeaseTerms | None:
        return None

    def best_for(self, node: NodeCapacity) -> ReadyJob | None:
        """Take out the best job that fits ``node`` now (None: none fits)."""
        best: tuple[Any, int, str] | None = None
        best_shape: Shape | None = None
        for shape in list(self._heaps):
            if not node.fits(shape):
                continue
            entry = self._head(shape)
            if entry is not None and (best is None or entry[:2] < best[:2]):
                best, best_shape = entry, shape
        if best is None or best_shape is None:
            return None
        heapq.heappop(self._heaps[best_shape])
        return self._jobs.pop(best[2])

    def assign(self, nodes: Sequence[NodeCapacity]) -> list[tuple[ReadyJob, NodeCapacity]]:
        out: list[tuple[ReadyJob, NodeCapacity]] = []
        active = [node for node in nodes if node.credit > 0]
        while active and self._jobs:
            still: list[NodeCapacity] = []
            for node in active:
                job = self.best_for(node)
                if job is None:
                    continue
                node.take(job)
                out.append((job, node))
                if node.credit > 0:
                    still.append(node)
            active = still
        return out


class FifoPolicy(OrderedPolicy):
    """First submitted, first dispatched (among the jobs a node can fit)."""

    name = "fifo"

    def __init__(self) -> None:
        super().__init__(lambda job: 0)


class PriorityPolicy(OrderedPolicy):
    """Highest ``priority`` first, then first submitted."""

    name = "priority"

    def __init__(self) -> None:
        super().__init__(lambda job: -job.priority)


def _auction() -> SchedulingPolicy:
    from ._coord_market import AuctionPolicy  # it builds on this module

    return AuctionPolicy()


POLICIES: Final[dict[str, Callable[[], SchedulingPolicy]]] = {
    "fifo": FifoPolicy,
    "priority": PriorityPolicy,
    "auction": _auction,
}
"""Policy name -> factory: what ``--policy`` accepts (add a policy here)."""


def make_policy(name: str) -> SchedulingPolicy:
    """A fresh policy by name; ``ValueError`` naming the choices for an unknown one."""
    factory = POLICIES.get(name)
    if factory is None:
        raise ValueError(f"unknown scheduling policy {name!r}; choose one of {sorted(POLICIES)}")
    return factory()
