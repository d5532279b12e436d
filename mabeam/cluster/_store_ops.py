"""The job state machine, one op at a time inside the batch's transaction (private).

``run`` dispatches an op to its handler. Every check that can refuse an op (raising a
``StoreError``) comes before the op's first write, so a refused op changes nothing while
the rest of its batch still commits. Rows are addressed by ``seq`` (the job id is
``j-<store id>-<seq>``); state changes are tallied in ``Tx.moves`` and written to the
``state_counts`` table once per batch.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final, NamedTuple

import msgpack

from foundation import CodecError

from ._store_batch import (
    Accept,
    Accepted,
    Cancel,
    Cancelled,
    CancelRequested,
    Complete,
    Completed,
    Fail,
    Failed,
    Lease,
    Leased,
    NodeRequeued,
    NotCancelled,
    NotLeasable,
    Outcome,
    Progress,
    Prune,
    Rejected,
    Release,
    Requeued,
    RequeueNode,
    Retried,
    SetBudget,
    Stale,
    Submit,
    Submitted,
    check_name,
    check_submit,
)
from ._store_followers import settle_followers
from ._store_market import budget, check_terms, end_hold, place_hold
from ._store_prune import prune
from ._store_types import (
    CODEC,
    TERMINAL_STATES,
    IdempotencyConflictError,
    InvalidOpError,
    InvalidSpecError,
    QuotaExceededError,
    StoreError,
    UnknownJobError,
    content_hash,
    error_text,
    job_id_of,
    seq_of,
    specs_digest,
    stored_spec,
)

_pack: Final[Callable[[Any], bytes]] = msgpack.Packer(use_bin_type=True).pack

_COLUMNS: Final = (
    "seq, state, attempt, failures, max_retries, node, token, cancel_requested, follows,"
    " not_before, spec, content_hash, leased_at, hold, rate"
)
_ROW_SQL: Final = f"SELECT {_COLUMNS} FROM jobs WHERE seq = ?"
_INSERT_SQL: Final = (
    "INSERT INTO jobs (submitter, spec, content_hash, priority, max_retries, state, attempt,"
    " not_before, follows, result, created, updated)"
    " VALUES (?, ?, ?, ?, ?, ?, 1, ?, ?, ?, ?, ?)"
)
# A succeeded job with the same content hash, else the oldest live leader.
_CACHE_SQL: Final = (
    "SELECT seq, state, result FROM jobs WHERE content_hash = ? AND (state = 'succeeded'"
    " OR (state IN ('queued', 'leased', 'running') AND follows IS NULL))"
    " ORDER BY state = 'succeeded' DESC, seq LIMIT 1"
)
_UNFINISHED_SQL: Final = (  # an owner's jobs under its quota (index jobs_unfinished_owner)
    "SELECT count(*) FROM jobs WHERE submitter = ? AND state IN ('queued', 'leased', 'running')"
)
_REQUEUE_SQL: Final = (
    "UPDATE jobs SET state = 'queued', attempt = attempt + 1, failures = ?, node = NULL,"
    " token = NULL, leased_at = NULL, hold = NULL, rate = NULL, cancel_requested = 0,"
    " not_before = ?, error = ?, updated = ? WHERE seq = ?"
)


class _Row(NamedTuple):
    seq: int
    state: str
    attempt: int
    failures: int
    max_retries: int
    node: str | None
    token: str | None
    cancel_requested: int
    follows: int | None
    not_before: float
    spec: bytes
    content_hash: str
    leased_at: float | None
    hold: int | None
    rate: int | None


@dataclass(slots=True)
class Tx:
    """One batch in flight: connection, clock value, and what it appends at the end."""

    conn: Any
    now: float
    store_id: str
    backoff: Callable[[int], float]
    token: Callable[[], str]
    events: list[tuple[int, str, int, bytes, float]] = field(default_factory=list)
    moves: dict[str, int] = field(default_factory=dict)
    balances: dict[str, int] = field(default_factory=dict)  # account -> available, if touched
    ledger: Any = None  # the ledger on this connection, made on first use

    def jid(self, seq: int) -> str:
        return job_id_of(self.store_id, seq)

    def event(self, seq: int, kind: str, attempt: int, **detail: Any) -> None:
        # Details are built here from str and number values: plain msgpack suffices.
        self.events.append((seq, kind, attempt, _pack(detail), self.now))

    def move(self, old: str | None, new: str | None, n: int = 1) -> None:
        """Count ``n`` jobs going from state ``old`` to ``new`` (None: inserted, deleted)."""
        if old is not None:
            self.moves[old] = self.moves.get(old, 0) - n
        if new is not None:
            self.moves[new] = self.moves.get(new, 0) + n

    def row(self, job_id: object, token: object = "") -> _Row:
        """The job's row: ``InvalidOpError`` for a non-str id or token, ``UnknownJobError``
        when there is no such job."""
        if type(token) is not str:
            raise InvalidOpError(f"token must be a str, got: {token!r}")
        found = self.conn.execute(_ROW_SQL, (seq_of(self.store_id, job_id),)).fetchone()
        if found is None:
            raise UnknownJobError(f"unknown job id: {job_id!r}")
        return _Row(*found)

    def flush(self) -> None:
        """Append the batch's events and state counts, just before the commit."""
        if self.events:
            self.conn.executemany(
                "INSERT INTO events (job, kind, attempt, detail, time) VALUES (?, ?, ?, ?, ?)",
                self.events,
            )
        deltas = [(n, state) for state, n in self.moves.items() if n]
        if deltas:
            self.conn.executemany("UPDATE state_counts SET n = n + ? WHERE state = ?", deltas)


def run(tx: Tx, op: object) -> Outcome:
    """Apply one op; a ``StoreError`` (raised before any write) becomes ``Rejected``."""
    handler = _HANDLERS.get(type(op))
    if handler is None:
        return Rejected(InvalidOpError(f"not a job store op: {op!r}"))
    try:
        return handler(tx, op)
    except StoreError as exc:
        return Rejected(exc)


# -- op handlers ----------------------------------------------------------------------


def _submit(tx: Tx, op: Submit) -> Submitted:
    specs = check_submit(op)
    try:
        blobs = [CODEC.encode(spec.to_dict()) for spec in specs]
    except CodecError as exc:
        raise InvalidSpecError(f"spec is not storable: {exc}") from None
    conn, key = tx.conn, op.idempotency_key
    digest = ""
    if key is not None:
        digest = specs_digest(specs)
        seen = conn.execute(
            "SELECT digest, jobs FROM submissions WHERE submitter = ? AND key = ?",
            (op.submitter, key),
        ).fetchone()
        if seen is not None:
            if seen[0] != digest:
                raise IdempotencyConflictError(
                    f"idempotency key {key!r} of {op.submitter!r} was used for other specs"
                )
            return Submitted(tuple(map(tx.jid, CODEC.decode(seen[1]))), duplicate=True)
    owner = op.owner or op.submitter
    if op.max_unfinished is not None:
        held = conn.execute(_UNFINISHED_SQL, (owner,)).fetchone()[0]
        if held + len(specs) > op.max_unfinished:
            raise QuotaExceededError(
                f"submitter {owner!r} has {held} unfinished jobs; {len(specs)} more would"
                f" pass its quota of {op.max_unfinished} (max_queued_per_submitter): wait"
                " for some to finish, or cancel some"
            )
    seqs: list[int] = []
    cached: list[str] = []
    joined: list[str] = []
    for spec, blob in zip(specs, blobs, strict=True):
        digest_of = content_hash(spec)
        state, follows, result, source = "queued", None, None, None
        if spec.cache:
            hit = conn.execute(_CACHE_SQL, (digest_of,)).fetchone()
            if hit is not None and hit[1] == "succeeded":
                state, source, result = "succeeded", hit[0], hit[2]
            elif hit is not None:
                follows = hit[0]
        seq = conn.execute(
            _INSERT_SQL,
            (owner, blob, digest_of, spec.priority, spec.max_retries, state, tx.now,
             follows, result, tx.now, tx.now),
        ).lastrowid  # fmt: skip
        tx.move(None, state)
        tx.event(seq, "submitted", 1, submitter=owner)
        if source is not None:
            tx.event(seq, "succeeded", 1, cached_from=tx.jid(source))
            cached.append(tx.jid(seq))
        elif follows is not None:
            tx.event(seq, "joined", 1, follows=tx.jid(follows))
            joined.append(tx.jid(seq))
        seqs.append(seq)
    if key is not None:
        conn.execute(
            "INSERT INTO submissions (submitter, key, digest, jobs, created)"
            " VALUES (?, ?, ?, ?, ?)",
            (op.submitter, key, digest, CODEC.encode(seqs), tx.now),
        )
    ids = tuple(map(tx.jid, seqs))
    return Submitted(ids, duplicate=False, cached=tuple(cached), joined=tuple(joined))


def _lease(tx: Tx, op: Lease) -> Leased | NotLeasable:
    check_name("node", op.node)
    terms = None if op.terms is None else check_terms(op.terms)
    row = tx.row(op.job_id)
    if row.state != "queued":
        return NotLeasable(op.job_id, row.state, f"job is {row.state}")
    if row.follows is not None:
        return NotLeasable(op.job_id, row.state, f"job follows {tx.jid(row.follows)}")
    if row.not_before > tx.now:
        return NotLeasable(op.job_id, row.state, f"job backs off until {row.not_before}")
    hold = None if terms is None else place_hold(tx, op.job_id, terms)
    if type(hold) is NotLeasable:
        return hold
    token = tx.token()
    tx.conn.execute(
        "UPDATE jobs SET state = 'leased', node = ?, token = ?, leased_at = ?, hold = ?,"
        " rate = ?, updated = ? WHERE seq = ?",
        (op.node, token, tx.now, hold, None if terms is None else terms.rate, tx.now, row.seq),
    )
    tx.move("queued", "leased")
    tx.event(row.seq, "leased", row.attempt, node=op.node)
    spec = stored_spec(row.spec, row.content_hash)
    return Leased(op.job_id, op.node, row.attempt, token, spec)


def _accept(tx: Tx, op: Accept) -> Accepted | Stale:
    row = tx.row(op.job_id, op.token)
    if not _holds(row, op.token):
        return _stale(op.job_id, row)
    if row.state == "leased":  # a repeated ACCEPT changes nothing
        tx.conn.execute(
            "UPDATE jobs SET state = 'running', updated = ? WHERE seq = ?", (tx.now, row.seq)
        )
        tx.move("leased", "running")
        tx.event(row.seq, "running", row.attempt, node=row.node)
    return Accepted(op.job_id)


def _progress(tx: Tx, op: Progress) -> Accepted | Stale:
    row = tx.row(op.job_id, op.token)
    if not _holds(row, op.token):
        return _stale(op.job_id, row)
    data = _encode_value("progress data", op.data)
    tx.conn.execute(
        "UPDATE jobs SET progress = ?, updated = ? WHERE seq = ?", (data, tx.now, row.seq)
    )
    return Accepted(op.job_id)


def _complete(tx: Tx, op: Complete) -> Completed | Stale:
    row = tx.row(op.job_id, op.token)
    if not _holds(row, op.token):
        return _stale(op.job_id, row)
    result = _encode_value("result", op.result)
    tx.conn.execute(
        "UPDATE jobs SET state = 'succeeded', result = ?, error = NULL, updated = ? WHERE seq = ?",
        (result, tx.now, row.seq),
    )
    end_hold(tx, row.hold, row.rate, tx.now - (row.leased_at or tx.now))
    tx.move(row.state, "succeeded")
    tx.event(row.seq, "succeeded", row.attempt, node=row.node)
    return Completed(op.job_id, settle_followers(tx, row.seq, "succeeded", result=result))


def _fail(tx: Tx, op: Fail) -> Retried | Failed | Cancelled | Stale:
    row = tx.row(op.job_id, op.token)
    if not _holds(row, op.token):
        return _stale(op.job_id, row)
    if type(op.permanent) is not bool:
        raise InvalidOpError(f"Fail.permanent must be a bool, got: {op.permanent!r}")
    return _attempt_failed(tx, row, error_text(op.error), permanent=op.permanent)


def _release(tx: Tx, op: Release) -> Requeued | Cancelled | Stale:
    row = tx.row(op.job_id, op.token)
    if not _holds(row, op.token):
        return _stale(op.job_id, row)
    reason = error_text(op.reason)
    if row.cancel_requested:
        return _cancel_now(tx, row, f"cancelled; the node gave it back ({reason})")
    _requeue_unstarted(tx, row, reason)
    return Requeued(op.job_id, row.attempt + 1)


def _cancel(tx: Tx, op: Cancel) -> Cancelled | CancelRequested | NotCancelled:
    row = tx.row(op.job_id)
    if row.state in TERMINAL_STATES:
        return NotCancelled(op.job_id, row.state)
    if row.state == "queued":
        return _cancel_now(tx, row, "cancelled before it ran")
    assert row.node is not None and row.token is not None
    if not row.cancel_requested:
        tx.conn.execute(
            "UPDATE jobs SET cancel_requested = 1, updated = ? WHERE seq = ?", (tx.now, row.seq)
        )
        tx.event(row.seq, "cancel_requested", row.attempt, node=row.node)
    return CancelRequested(op.job_id, row.node, row.token)


def _requeue_node(tx: Tx, op: RequeueNode) -> NodeRequeued:
    check_name("node", op.node)
    reason = error_text(op.reason)
    found = tx.conn.execute(
        f"SELECT {_COLUMNS} FROM jobs WHERE node = ? AND state IN ('leased', 'running')"
        " ORDER BY seq",
        (op.node,),
    ).fetchall()
    requeued: list[str] = []
    failed: list[str] = []
    cancelled: list[str] = []
    for row in map(_Row._make, found):
        if row.cancel_requested:
            _cancel_now(tx, row, f"cancelled; its node was lost ({reason})")
            cancelled.append(tx.jid(row.seq))
        elif row.state == "leased":  # never started: not a failure of the job
            _requeue_unstarted(tx, row, reason)
            requeued.append(tx.jid(row.seq))
        else:
            outcome = _attempt_failed(tx, row, f"{reason}: node {op.node}")
            (failed if isinstance(outcome, Failed) else requeued).append(tx.jid(row.seq))
    return NodeRequeued(op.node, tuple(requeued), tuple(failed), tuple(cancelled))


# -- shared transitions ---------------------------------------------------------------


def _requeue_unstarted(tx: Tx, row: _Row, reason: str) -> None:
    end_hold(tx, row.hold, None, None)
    tx.conn.execute(_REQUEUE_SQL, (row.failures, tx.now, None, tx.now, row.seq))
    tx.move(row.state, "queued")
    tx.event(row.seq, "requeued", row.attempt + 1, node=row.node, reason=reason)


def _attempt_failed(
    tx: Tx, row: _Row, error: str, *, permanent: bool = False
) -> Retried | Failed | Cancelled:
    if row.cancel_requested:
        return _cancel_now(tx, row, error)
    job_id = tx.jid(row.seq)
    failures = row.failures + 1
    end_hold(tx, row.hold, None, None)
    if permanent or failures > row.max_retries:
        tx.conn.execute(
            "UPDATE jobs SET state = 'failed', failures = ?, error = ?, updated = ? WHERE seq = ?",
            (failures, error, tx.now, row.seq),
        )
        tx.move(row.state, "failed")
        tx.event(row.seq, "failed", row.attempt, node=row.node, error=error)
        return Failed(job_id, error, settle_followers(tx, row.seq, "failed", error=error))
    not_before = tx.now + tx.backoff(failures)
    tx.conn.execute(_REQUEUE_SQL, (failures, not_before, error, tx.now, row.seq))
    tx.move(row.state, "queued")
    tx.event(row.seq, "retry", row.attempt + 1, node=row.node, error=error,
             not_before=not_before)  # fmt: skip
    return Retried(job_id, row.attempt + 1, not_before)


def _cancel_now(tx: Tx, row: _Row, why: str) -> Cancelled:
    """Cancel the job now; ``why`` is its error text (how the cancel took effect)."""
    end_hold(tx, row.hold, None, None)
    tx.conn.execute(
        "UPDATE jobs SET state = 'cancelled', error = ?, updated = ? WHERE seq = ?",
        (why, tx.now, row.seq),
    )
    tx.move(row.state, "cancelled")
    tx.event(row.seq, "cancelled", row.attempt)
    promoted = settle_followers(tx, row.seq, "cancelled")
    return Cancelled(tx.jid(row.seq), promoted[0] if promoted else None)


# -- checks ---------------------------------------------------------------------------


def _holds(row: _Row, token: str) -> bool:
    return row.state in ("leased", "running") and token == row.token


def _stale(job_id: str, row: _Row) -> Stale:
    if row.state in TERMINAL_STATES:
        reason = f"job already {row.state}"
    elif row.state == "queued" and row.attempt == 1:
        reason = "job is queued: it holds no lease"
    elif row.state == "queued":
        reason = "lease is over: the job was requeued"
    else:
        reason = f"token does not match the current lease (attempt {row.attempt})"
    return Stale(job_id, row.state, reason)


def _encode_value(what: str, value: Any) -> bytes:
    try:
        return CODEC.encode(value)
    except CodecError as exc:
        raise InvalidOpError(f"{what} is not storable: {exc}") from None


_HANDLERS: Final[dict[type, Callable[[Tx, Any], Outcome]]] = {
    Submit: _submit,
    Lease: _lease,
    Accept: _accept,
    Progress: _progress,
    Complete: _complete,
    Fail: _fail,
    Release: _release,
    Cancel: _cancel,
    RequeueNode: _requeue_node,
    Prune: prune,
    SetBudget: budget,
}
