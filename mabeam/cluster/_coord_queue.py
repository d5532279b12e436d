"""The scheduler's job book: every live job it knows, and where each one waits.

A queued job is in one of three places: ready (in the ``SchedulingPolicy``, which
orders it), backing off until its ``not_before`` (a heap, woken by ONE runtime timer
that the scheduler arms through ``arm``), or following a leader with the same content
hash (never ready; the store settles it with its leader, or promotes it when the leader
is cancelled). Leased jobs stay in ``jobs`` so a requeue finds their resources.

Times here are the store's (wall-clock seconds, what ``Retried.not_before`` holds),
since they survive a coordinator restart; only the timer delay uses the runtime clock.
"""

from __future__ import annotations

import heapq
import math
import time
from collections.abc import Callable
from typing import Any

from ._coord_policy import ReadyJob, SchedulingPolicy
from .store import JobRecord

__all__ = ("JobBook", "ready_job")


def ready_job(job_id: str, spec: Any, seq: int | None = None) -> ReadyJob:
    """The scheduler's view of a job from its store spec (``seq`` from the id if absent)."""
    if seq is None:
        seq = int(job_id.rsplit("-", 1)[1])
    res = spec.resources
    return ReadyJob(
        job_id, seq, spec.priority, res.gpus, res.cpus, res.memory_mb,
        spec.team, spec.value, spec.timeout_s,
    )  # fmt: skip


class JobBook:
    """Live jobs: ready (policy), deferred (back-off heap), followers (see module doc)."""

    def __init__(
        self,
        policy: SchedulingPolicy,
        arm: Callable[[float], None],
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.policy = policy
        self.jobs: dict[str, ReadyJob] = {}
        self.followers: dict[str, tuple[ReadyJob, str]] = {}  # job -> (job, leader or "")
        self._deferred: list[tuple[float, str]] = []
        self._deferred_at: dict[str, float] = {}
        self._arm = arm
        self._clock = clock
        self._wake_at = math.inf

    @property
    def deferred(self) -> int:
        return len(self._deferred_at)

    def knows(self, job_id: str) -> bool:
        return job_id in self.jobs or job_id in self.followers

    def queue(self, job: ReadyJob, not_before: float = 0.0) -> None:
        """Make ``job`` ready now, or at ``not_before`` (store time)."""
        self.jobs[job.job_id] = job
        self.followers.pop(job.job_id, None)
        self._deferred_at.pop(job.job_id, None)
        now = self._clock()
        if not_before <= now:
            self.policy.add(job)
            return
        self.policy.remove(job.job_id)
        self._deferred_at[job.job_id] = not_before
        heapq.heappush(self._deferred, (not_before, job.job_id))
        if not_before < self._wake_at:
            self._wake_at = not_before
            self._arm(not_before - now)

    def wake(self) -> None:
        """The timer fired: jobs whose back-off ended become ready; re-arm for the next."""
        now = self._clock()
        heap = self._deferred
        while heap and (heap[0][0] <= now or self._deferred_at.get(heap[0][1]) != heap[0][0]):
            at, job_id = heapq.heappop(heap)
            if self._deferred_at.get(job_id) == at:
                del self._deferred_at[job_id]
                job = self.jobs.get(job_id)
                if job is not None:
                    self.policy.add(job)
        self._wake_at = heap[0][0] if heap else math.inf
        if heap:
            self._arm(self._wake_at - now)

    def follow(self, job: ReadyJob, leader: str = "") -> None:
        """``job`` follows ``leader`` (its id, or "" when not known here)."""
        self.jobs.pop(job.job_id, None)
        self.policy.remove(job.job_id)
        self._deferred_at.pop(job.job_id, None)
        self.followers[job.job_id] = (job, leader)

    def forget(self, job_id: str) -> None:
        """The job is over (or leased by nobody we know): drop it everywhere."""
        self.jobs.pop(job_id, None)
        self.policy.remove(job_id)
        self._deferred_at.pop(job_id, None)
        self.followers.pop(job_id, None)

    def leader_cancelled(self, leader: str, promoted: str | None) -> list[str]:
        """A leader was cancelled: ``promoted`` stands alone now and the other followers
        follow it. Returns the job ids to read again from the store (unknown here)."""
        if promoted is not None:
            entry = self.followers.pop(promoted, None)
            for job_id, (job, lead) in list(self.followers.items()):
                if lead == leader:
                    self.followers[job_id] = (job, promoted)
            if entry is None:
                return [promoted]
            self.queue(entry[0])
            return []
        # Node loss does not say which follower was promoted: read them again.
        return [j for j, (_, lead) in self.followers.items() if lead in ("", leader)]

    def place(self, rec: JobRecord, *, leased: bool) -> None:
        """Put a job read from the store where its state says (``leased``: a node
        holds it as far as the scheduler knows, so it is not queued again)."""
        job = ready_job(rec.job_id, rec.spec, rec.seq)
        if rec.state in ("succeeded", "failed", "cancelled"):
            self.forget(rec.job_id)
        elif rec.state == "queued" and rec.follows is not None:
            self.follow(job, rec.follows)
        elif rec.state == "queued" and not leased:
            self.queue(job, rec.not_before)
        else:
            self.jobs[rec.job_id] = job
