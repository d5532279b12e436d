"""What a STATUS reply holds, the store reads behind STATUS and WATCH, and the store's
form of a SUBMIT's job specs.

The reads run on the store's thread (as a ``StoreRequest.read``), so a reply shows one
consistent state: the listed jobs (or a sweep's), else the most recent jobs with the
unfinished ones first, and the counts by state. Node rows come from the scheduler
(inventory, credit, jobs held) and each session (how long ago the node was heard).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any, Final

from foundation import Runtime

from . import protocol as p
from ._limits import MAX_TIMEOUT_S
from .store import JobRecord, JobSpec, JobStore, Leased, Outcome, Resources, UnknownJobError

__all__ = ("SUBMITTER", "dispatch_frame", "job_info", "node_infos", "records", "status_payload",
           "status_read", "store_spec", "sweep_jobs")  # fmt: skip

log = logging.getLogger("mabeam.coordinator")

SUBMITTER: Final = "client"
"""The scope of every SUBMIT's idempotency key (sweep ids are global); the jobs' owner,
for quotas, is the client key's name."""
_UNFINISHED: Final = ("running", "leased", "queued")


def sweep_jobs(store: JobStore, sweep_id: str) -> list[str]:
    """The job ids the store's idempotency keys give a sweep: the key ``sweep_id``, and
    ``sweep_id#START`` for each chunk of a sweep sent in several SUBMITs."""
    ids = list(store.submission(SUBMITTER, sweep_id) or ())
    start = 0
    while (chunk := store.submission(SUBMITTER, f"{sweep_id}#{start}")) is not None and chunk:
        ids.extend(chunk)
        start += len(chunk)
    return ids


def records(store: JobStore, job_ids: list[str]) -> tuple[list[JobRecord], list[str]]:
    """The records of ``job_ids`` that exist, and the ids that do not."""
    found, unknown = [], []
    for job_id in job_ids:
        try:
            found.append(store.job(job_id))
        except UnknownJobError:
            unknown.append(job_id)
    return found, unknown


def status_read(
    listed: list[str], sweep_id: str | None, in_memory: list[str], limit: int
) -> Callable[[JobStore, list[Outcome]], Any]:
    """The store read of a STATUS: ``(sweep members, (records, unknown ids), counts)``."""

    def read(store: JobStore, outcomes: list[Outcome]) -> Any:
        members: list[str] = []
        if sweep_id is not None:
            members = list(dict.fromkeys([*in_memory, *sweep_jobs(store, sweep_id)]))
        if listed or sweep_id is not None:
            found = records(store, list(dict.fromkeys([*listed, *members])))
        else:
            recent: list[JobRecord] = []
            for state in _UNFINISHED:
                recent += store.jobs(state=state, limit=limit - len(recent))
                if len(recent) >= limit:
                    break
            if len(recent) < limit:
                done = [r for r in store.jobs(limit=limit) if r.state in p.TERMINAL_STATES]
                recent += done[: limit - len(recent)]
            found = (recent, [])
        return members, found, store.counts()

    return read


def _duration(rec: JobRecord) -> float | None:
    """Seconds from the last lease to the end (the store keeps no run time of its own)."""
    if rec.state in p.TERMINAL_STATES and rec.leased_at is not None:
        return min(max(rec.updated - rec.leased_at, 0.0), MAX_TIMEOUT_S)
    return None


def job_info(rec: JobRecord, sweep_id: str | None) -> p.JobInfo:
    """A STATUS_REPLY job row."""
    error = None if rec.state == "succeeded" else rec.error
    return p.JobInfo(
        job_id=rec.job_id,
        state=rec.state,
        attempt=rec.attempt,
        entrypoint=rec.spec.entrypoint,
        node_id=rec.node,
        sweep_id=sweep_id,
        value=rec.result if rec.state == "succeeded" else None,
        error=p.clip(error) if error else None,
        duration_s=_duration(rec),
    )


async def node_infos(rt: Runtime, scheduler: str) -> list[p.NodeInfo]:
    """The STATUS_REPLY node rows (none when the scheduler does not answer)."""
    try:
        rows = await rt.call(scheduler, "nodes", timeout=5.0)
    except Exception as exc:
        log.warning("STATUS without nodes: the scheduler did not answer: %s", exc)
        return []
    out = []
    for _node_id, session, inventory, credit, running in rows:
        seen = 0.0
        try:
            info: Mapping[str, Any] = await session.call("info", timeout=1.0)
            seen = float(info["last_seen_s"])
        except Exception:  # the session just ended: report it as last seen now
            pass
        out.append(p.NodeInfo(inventory, max(credit, 0), running, min(seen, 1e9)))
    return out


def status_payload(status: p.StatusReply) -> bytes:
    """STATUS_REPLY encoded; over the frame limit, without values, then fewer jobs."""
    jobs = status.jobs
    stripped = False
    while True:
        try:
            return p.encode(p.StatusReply(status.request_id, status.nodes, jobs, status.counts))
        except p.ProtocolError as exc:
            if exc.code != "too_large" or (stripped and not jobs):
                raise
            if not stripped:
                jobs = tuple(_without_value(job) for job in jobs)
                stripped = True
            else:
                jobs = jobs[: len(jobs) // 2]


def _without_value(job: p.JobInfo) -> p.JobInfo:
    return p.JobInfo(job.job_id, job.state, job.attempt, job.entrypoint, job.node_id,
                     job.sweep_id, None, job.error, job.duration_s)  # fmt: skip


def store_spec(spec: p.JobSpec) -> JobSpec:
    """The store's (validated) spec for a wire spec; ``InvalidSpecError`` names the key."""
    res = spec.resources
    return JobSpec(  # the wire spec has exactly these fields: no key to check
        entrypoint=spec.entrypoint,
        params=spec.params,
        resources=Resources(gpus=res.gpus, cpus=res.cpus, memory_mb=res.memory_mb),
        timeout_s=spec.timeout_s,
        max_retries=spec.max_retries,
        priority=spec.priority,
        code_version=spec.code_version,
        isolation=spec.isolation,
        team=spec.team,
        value=spec.value,
    )


def dispatch_frame(leased: Leased) -> p.Dispatch:
    """The DISPATCH of a lease the store granted."""
    spec = leased.spec
    res = spec.resources
    return p.Dispatch(
        job_id=leased.job_id,
        attempt=leased.attempt,
        lease=leased.token,
        entrypoint=spec.entrypoint,
        params=spec.params,
        resources=p.Resources.of(res.gpus, res.cpus, res.memory_mb),
        timeout_s=spec.timeout_s,
        isolation=spec.isolation,
        code_version=spec.code_version,
    )
