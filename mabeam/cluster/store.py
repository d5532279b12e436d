"""The coordinator's durable job store: SQLite in WAL mode, one transaction per batch.

``JobStore.apply(ops)`` runs a batch of operations (submit, lease, accept, progress,
complete, fail, release, cancel, requeue_node) in ONE transaction and returns one outcome
per op after the commit: what ``apply`` returned for is durable (``synchronous=FULL``).
Lease tokens fence results (a job completes once); retries back off exponentially on
the clock value passed in; a content hash of (entrypoint, params, code version) serves
finished results from cache and lets duplicates follow a live job. See docs/store.md.
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
import time
from collections.abc import Callable, Collection, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Final

from ..economics import Ledger, LogEntry
from ._store_batch import (
    Accept,
    Accepted,
    BudgetSet,
    Cancel,
    Cancelled,
    CancelRequested,
    Complete,
    Completed,
    Fail,
    Failed,
    Lease,
    Leased,
    LeaseTerms,
    NodeRequeued,
    NotCancelled,
    NotLeasable,
    Op,
    Outcome,
    Progress,
    Prune,
    Pruned,
    Rejected,
    Release,
    Requeued,
    RequeueNode,
    Retried,
    SetBudget,
    Stale,
    Submit,
    Submitted,
)
from ._store_ops import run
from ._store_schema import SchemaError, Synchronous, open_connection
from ._store_tokens import LeaseTokens
from ._store_tx import Tx
from ._store_types import (
    CODEC,
    MAX_ERROR_CHARS,
    RECORD_COLUMNS,
    STATES,
    TERMINAL_STATES,
    Event,
    IdempotencyConflictError,
    InvalidOpError,
    InvalidSpecError,
    JobRecord,
    JobSpec,
    QuotaExceededError,
    Resources,
    StoreClosedError,
    StoreError,
    StoreFormatError,
    UnknownJobError,
    content_hash,
    job_id_of,
    seq_of,
)

__all__ = (
    "MAX_ERROR_CHARS",
    "STATES",
    "TERMINAL_STATES",
    "Accept",
    "Accepted",
    "BudgetSet",
    "Cancel",
    "CancelRequested",
    "Cancelled",
    "Complete",
    "Completed",
    "Event",
    "Fail",
    "Failed",
    "IdempotencyConflictError",
    "QuotaExceededError",
    "InvalidOpError",
    "InvalidSpecError",
    "JobRecord",
    "JobSpec",
    "JobStore",
    "Lease",
    "LeaseTerms",
    "Leased",
    "NodeRequeued",
    "NotCancelled",
    "NotLeasable",
    "Op",
    "Outcome",
    "Progress",
    "Rejected",
    "Release",
    "Prune",
    "Pruned",
    "RequeueNode",
    "Requeued",
    "Resources",
    "Retried",
    "SetBudget",
    "Stale",
    "StoreClosedError",
    "StoreError",
    "StoreFormatError",
    "Submit",
    "Submitted",
    "UnknownJobError",
    "content_hash",
)

_EVENT_SQL: Final = "SELECT seq, job, kind, attempt, detail, time FROM events"


class JobStore:
    """A durable job store in one SQLite file (created on first open, WAL mode).

    ``clock`` gives the time of a batch when ``apply`` gets no ``now`` (times are plain
    float seconds; the logic never reads a clock itself). ``synchronous="FULL"`` (the
    default) fsyncs the WAL at every commit, so a batch survives a power cut as well as
    a SIGKILL; ``"NORMAL"`` survives a SIGKILL only. Retries wait
    ``min(backoff_cap_s, backoff_base_s * 2 ** (failures - 1))`` seconds.

    One connection, serialized by a lock: use it from one owner (an actor, or the worker
    thread it delegates to); calls from two threads queue up rather than interleave.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        clock: Callable[[], float] = time.time,
        synchronous: Synchronous = "FULL",
        busy_timeout_s: float = 5.0,
        backoff_base_s: float = 1.0,
        backoff_cap_s: float = 60.0,
    ) -> None:
        if synchronous not in ("FULL", "NORMAL"):
            raise ValueError(f"synchronous must be 'FULL' or 'NORMAL', got: {synchronous!r}")
        if not backoff_base_s >= 0 or not backoff_cap_s >= backoff_base_s:
            raise ValueError("need 0 <= backoff_base_s <= backoff_cap_s")
        if not busy_timeout_s >= 0:
            raise ValueError(f"busy_timeout_s must be >= 0, got: {busy_timeout_s!r}")
        self._path = Path(path)
        self._clock = clock
        self._backoff = (float(backoff_base_s), float(backoff_cap_s))
        self._lock = threading.Lock()
        self._tokens = LeaseTokens()
        try:
            conn, self._store_id = open_connection(
                self._path, synchronous=synchronous, busy_timeout_s=busy_timeout_s
            )
        except SchemaError as exc:
            raise StoreFormatError(f"{self._path}: {exc}") from None
        self._conn: sqlite3.Connection | None = conn
        self._balances: dict[str, int] = {}
        self._seqs_of: tuple[Collection[str], frozenset[int]] | None = None  # _seqs

    @property
    def path(self) -> Path:
        return self._path

    @property
    def store_id(self) -> str:
        """This file's random id: the middle part of its job ids (``j-<store_id>-<n>``)."""
        return self._store_id

    def close(self) -> None:
        """Close the connection (idempotent); committed batches are already on disk."""
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def __enter__(self) -> JobStore:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def backoff(self, failures: int) -> float:
        """Seconds a job waits before its next attempt after ``failures`` failures."""
        base, cap = self._backoff
        return min(cap, base * 2.0 ** min(max(failures - 1, 0), 62))

    # -- the batch --------------------------------------------------------------------

    def apply(self, ops: Sequence[Op], *, now: float | None = None) -> list[Outcome]:
        """Run ``ops`` in order in ONE transaction; return one outcome per op, committed.

        An op that is wrong (unknown job, bad spec or argument, reused idempotency key)
        gets a ``Rejected`` outcome and changes nothing; the other ops still apply. Any
        other failure (disk full, I/O error) rolls the whole batch back and raises.
        """
        ops = list(ops)
        if not ops:
            return []
        t = float(self._clock() if now is None else now)
        with self._lock:
            conn = self._live()
            tx = Tx(conn, t, self._store_id, self.backoff, self._tokens)
            conn.execute("BEGIN IMMEDIATE")
            try:
                outcomes = [run(tx, op) for op in ops]
                tx.flush()
                conn.execute("COMMIT")
                self._balances.update(tx.balances)
            except BaseException:
                if conn.in_transaction:  # keep the original error if ROLLBACK fails too
                    with contextlib.suppress(sqlite3.Error):
                        conn.execute("ROLLBACK")
                raise
        return outcomes

    def take_balances(self) -> dict[str, int]:
        """The teams' available money (micro-credits) that batches changed since the
        last call: what the auction policy needs to know after each batch."""
        moved, self._balances = self._balances, {}
        return moved

    def ledger_tail(self, limit: int) -> list[LogEntry]:
        """The newest ``limit`` lines of the ledger's audit log, oldest first."""
        last = self._query("SELECT coalesce(max(seq), 0) FROM ledger_log")[0][0]
        return self.ledger().log(after=max(0, last - limit), limit=max(1, limit))

    def ledger(self) -> Ledger:
        """The market's ledger in this file (reads; writes go through ``apply``)."""
        return Ledger(self._live(), clock=self._clock)

    def _live(self) -> sqlite3.Connection:
        if self._conn is None:
            raise StoreClosedError(f"the job store {self._path} is closed")
        return self._conn

    # -- single-op conveniences ------------------------------------------------------

    def _one(self, op: Op, now: float | None) -> Outcome:
        """Apply one op in its own batch; a ``Rejected`` outcome raises its error."""
        outcome = self.apply([op], now=now)[0]
        if isinstance(outcome, Rejected):
            raise outcome.error
        return outcome

    def now(self) -> float:
        """The store's clock: the time a batch applied now would record."""
        return float(self._clock())

    def submit(
        self,
        specs: Sequence[JobSpec],
        submitter: str,
        idempotency_key: str | None = None,
        *,
        now: float | None = None,
    ) -> Submitted:
        out = self._one(Submit(tuple(specs), submitter, idempotency_key), now)
        assert isinstance(out, Submitted), out
        return out

    def lease(self, job_id: str, node: str, *, now: float | None = None) -> Leased | NotLeasable:
        out = self._one(Lease(job_id, node), now)
        assert isinstance(out, (Leased, NotLeasable)), out
        return out

    def accept(self, job_id: str, token: str, *, now: float | None = None) -> Accepted | Stale:
        out = self._one(Accept(job_id, token), now)
        assert isinstance(out, (Accepted, Stale)), out
        return out

    def progress(
        self, job_id: str, token: str, data: Any, *, now: float | None = None
    ) -> Accepted | Stale:
        out = self._one(Progress(job_id, token, data), now)
        assert isinstance(out, (Accepted, Stale)), out
        return out

    def complete(
        self, job_id: str, token: str, result: Any, *, now: float | None = None
    ) -> Completed | Stale:
        out = self._one(Complete(job_id, token, result), now)
        assert isinstance(out, (Completed, Stale)), out
        return out

    def fail(
        self,
        job_id: str,
        token: str,
        error: str,
        *,
        permanent: bool = False,
        now: float | None = None,
    ) -> Retried | Failed | Cancelled | Stale:
        out = self._one(Fail(job_id, token, error, permanent), now)
        assert isinstance(out, (Retried, Failed, Cancelled, Stale)), out
        return out

    def release(
        self, job_id: str, token: str, reason: str = "released", *, now: float | None = None
    ) -> Requeued | Cancelled | Stale:
        out = self._one(Release(job_id, token, reason), now)
        assert isinstance(out, (Requeued, Cancelled, Stale)), out
        return out

    def cancel(
        self, job_id: str, *, now: float | None = None
    ) -> Cancelled | CancelRequested | NotCancelled:
        out = self._one(Cancel(job_id), now)
        assert isinstance(out, (Cancelled, CancelRequested, NotCancelled)), out
        return out

    def requeue_node(
        self, node: str, reason: str = "node lost", *, now: float | None = None
    ) -> NodeRequeued:
        out = self._one(RequeueNode(node, reason), now)
        assert isinstance(out, NodeRequeued), out
        return out

    # -- reads ------------------------------------------------------------------------

    def _query(self, sql: str, args: tuple[Any, ...] = ()) -> list[Any]:
        with self._lock:
            rows: list[Any] = self._live().execute(sql, args).fetchall()
            return rows

    def _records(self, where: str, args: tuple[Any, ...]) -> list[JobRecord]:
        rows = self._query(f"SELECT {RECORD_COLUMNS} FROM jobs {where}", args)
        return [JobRecord.from_row(self._store_id, row) for row in rows]

    def _event(self, row: Any) -> Event:
        seq, job, kind, attempt, detail, at = row
        return Event(seq, job_id_of(self._store_id, job), kind, attempt, CODEC.decode(detail), at)

    def job(self, job_id: str) -> JobRecord:
        """The job's full record; ``UnknownJobError`` if there is no such job."""
        found = self._records("WHERE seq = ?", (seq_of(self._store_id, job_id),))
        if not found:
            raise UnknownJobError(f"unknown job id: {job_id!r}")
        return found[0]

    def ready(
        self, *, now: float | None = None, policy: str = "fifo", limit: int = 100
    ) -> list[JobRecord]:
        """Queued jobs that may be leased at ``now``: ``fifo`` (submission order) or
        ``priority`` (highest first, then submission order); followers are never ready."""
        order = {"fifo": "seq", "priority": "priority DESC, seq"}.get(policy)
        if order is None:
            raise ValueError(f"policy must be 'fifo' or 'priority', got: {policy!r}")
        t = float(self._clock() if now is None else now)
        return self._records(
            "INDEXED BY jobs_unfinished_owner WHERE ended IS NULL AND state = 'queued'"
            f" AND follows IS NULL AND not_before <= ? ORDER BY {order} LIMIT ?",
            (t, limit),
        )

    def next_ready_time(self, *, now: float | None = None) -> float | None:
        """The earliest back-off end after ``now`` among queued jobs (a scheduler timer)."""
        t = float(self._clock() if now is None else now)
        rows = self._query(
            "SELECT min(not_before) FROM jobs INDEXED BY jobs_unfinished_owner"
            " WHERE ended IS NULL AND state = 'queued' AND follows IS NULL AND not_before > ?",
            (t,),
        )
        value: float | None = rows[0][0]
        return value

    def leases(self, node: str) -> list[JobRecord]:
        """The leased and running jobs of ``node``, oldest first."""
        return self._records(
            "WHERE node = ? AND state IN ('leased', 'running') ORDER BY seq", (node,)
        )

    def leased_nodes(self) -> list[str]:
        """Nodes holding leases (after a coordinator restart: whom to expect or requeue)."""
        rows = self._query(
            "SELECT DISTINCT node FROM jobs WHERE state IN ('leased', 'running') ORDER BY node"
        )
        return [row[0] for row in rows]

    def unaccepted_leases(self, *, before: float) -> list[JobRecord]:
        """Jobs leased before ``before`` and never ACCEPTed (candidates for ``Release``)."""
        return self._records(
            "WHERE state IN ('leased', 'running') AND state = 'leased' AND leased_at < ?"
            " ORDER BY leased_at",
            (before,),
        )

    def jobs(self, *, state: str | None = None, limit: int = 100) -> list[JobRecord]:
        """Jobs, newest first; with ``state``, only those (leased and running ones come
        from an index, the others from a newest-first scan)."""
        if state is None:
            return self._records("ORDER BY seq DESC LIMIT ?", (limit,))
        if state not in STATES:
            raise ValueError(f"state must be one of {STATES}, got: {state!r}")
        live = "state IN ('leased', 'running') AND " if state in ("leased", "running") else ""
        return self._records(f"WHERE {live}state = ? ORDER BY seq DESC LIMIT ?", (state, limit))

    def counts(self) -> dict[str, int]:
        """Number of jobs in each state (every state listed, zeros included)."""
        counts = dict.fromkeys(STATES, 0)
        counts.update(self._query("SELECT state, n FROM state_counts"))
        return counts

    def events(
        self,
        *,
        since: int = 0,
        job_id: str | None = None,
        limit: int = 1000,
        jobs: Collection[str] | None = None,
    ) -> list[Event]:
        """Events with ``seq > since`` in order (of one job, or of all jobs; with
        ``jobs``, of those only: ``limit`` then counts the rows read, of any job)."""
        if job_id is None:
            rows = self._query(f"{_EVENT_SQL} WHERE seq > ? ORDER BY seq LIMIT ?", (since, limit))
            if jobs is not None:
                seqs = self._seqs(jobs)
                rows = [row for row in rows if row[1] in seqs]
        else:
            job = seq_of(self._store_id, job_id)
            rows = self._query(
                f"{_EVENT_SQL} WHERE job = ? AND seq > ? ORDER BY seq LIMIT ?", (job, since, limit)
            )
        return [self._event(row) for row in rows]

    def _seqs(self, jobs: Collection[str]) -> frozenset[int]:
        """The rows of ``jobs`` (ids of other stores left out); the last set is kept, as
        a watcher passes the same one batch after batch."""
        if self._seqs_of is None or self._seqs_of[0] is not jobs:
            seqs = set()
            for job_id in jobs:
                with contextlib.suppress(StoreError):  # not an id of this store
                    seqs.add(seq_of(self._store_id, job_id))
            self._seqs_of = (jobs, frozenset(seqs))
        return self._seqs_of[1]

    def last_event_seq(self) -> int:
        """The seq of the newest event (0 when there is none): where a watcher starts."""
        value: int | None = self._query("SELECT max(seq) FROM events")[0][0]
        return value or 0

    def submission(self, submitter: str, key: str) -> tuple[str, ...] | None:
        """The job ids recorded for an idempotency key, or ``None``."""
        rows = self._query(
            "SELECT jobs FROM submissions WHERE submitter = ? AND key = ?", (submitter, key)
        )
        if not rows:
            return None
        return tuple(job_id_of(self._store_id, seq) for seq in CODEC.decode(rows[0][0]))
