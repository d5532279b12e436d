"""The store reads the scheduler runs on the store's thread (``StoreRequest.read``).

Each runs after its request's batch, so it sees that batch committed: the ready jobs at
start, a node's leases when it says HELLO, the jobs a node loss requeued.
"""

from __future__ import annotations

import contextlib
import math
from typing import Any

from ._coord_store import ReadFn
from ._frames import TERMINAL_STATES, RunningJob
from .store import JobRecord, JobStore, NodeRequeued, Outcome, StoreError, UnknownJobError

__all__ = ("read_jobs", "read_load", "read_reconcile", "read_requeued")


def read_load(store: JobStore, outcomes: list[Outcome]) -> Any:
    """Every queued job (backing off or not), the nodes holding leases and the teams'
    available money: the scheduler's start."""
    teams = {a.name: a.available for a in store.ledger().accounts() if a.kind == "team"}
    return store.ready(now=math.inf, limit=1 << 40), store.leased_nodes(), teams


def read_jobs(job_ids: tuple[str, ...]) -> ReadFn:
    """The records of ``job_ids`` that exist (to put them where their state says)."""

    def read(store: JobStore, outcomes: list[Outcome]) -> list[JobRecord]:
        records = []
        for job_id in job_ids:
            with contextlib.suppress(UnknownJobError):
                records.append(store.job(job_id))
        return records

    return read


def read_reconcile(node_id: str, running: tuple[RunningJob, ...]) -> ReadFn:
    """The node's leases, and the listed jobs that already ended under the listed lease
    (a RESULT committed just before this HELLO was reconciled: nothing to cancel)."""

    def read(store: JobStore, outcomes: list[Outcome]) -> Any:
        leases = store.leases(node_id)
        held = {rec.job_id for rec in leases}
        finished: set[str] = set()
        for rj in running:
            if rj.job_id in held:
                continue
            with contextlib.suppress(StoreError):
                rec = store.job(rj.job_id)
                if rec.token == rj.lease and rec.state in TERMINAL_STATES:
                    finished.add(rj.job_id)
        return leases, finished

    return read


def read_requeued(store: JobStore, outcomes: list[Outcome]) -> list[JobRecord]:
    """After ``RequeueNode``: the records of the jobs it requeued (their back-off)."""
    out = outcomes[0] if outcomes else None
    if not isinstance(out, NodeRequeued):
        return []
    return [store.job(job_id) for job_id in out.requeued]
