"""The job state machine, one op at a time inside the batch's transaction (private).

``run`` dispatches an op to its handler. Every check that can refuse an op (raising a
``StoreError``) comes before the op's first write, so a refused op changes nothing while
the rest of its batch still commits. Rows are addressed by ``seq`` (the job id is
``j-<store id>-<seq>``); state changes are tallied in ``Tx.moves`` and written to the
``state_counts`` table once per batch.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final

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
from ._store_tx import (
    ACCEPT_SQL,
    CACHE_SQL,
    COLUMNS,
    COMPLETE_SQL,
    INSERT_SQL,
    LEASE_SQL,
    REQUEUE_SQL,
    UNFINISHED_SQL,
    Row,
    Tx,
    encode_value,
)
from ._store_types import (
    CODEC,
    TERMINAL_STATES,
    IdempotencyConflictError,
    InvalidOpError,
    InvalidSpecError,
    QuotaExceededError,
    StoreError,
    content_hash,
    error_text,
    seq_of,
    specs_digest,
    stored_spec,
)


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
        # walk=False: each spec walked its params when it was made (JobSpec.__post_init__)
        blobs = [CODEC.encode(spec.to_dict(), walk=False) for spec in specs]
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
        held = conn.execute(UNFINISHED_SQL, (owner,)).fetchone()[0]
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
            hit = conn.execute(CACHE_SQL, (digest_of,)).fetchone()
            if hit is not None and hit[1] == "succeeded":
                state, source, result = "succeeded", hit[0], hit[2]
            elif hit is not None:
                follows = hit[0]
        seq = conn.execute(
            INSERT_SQL,
            (owner, blob, digest_of, spec.priority, spec.max_retries, state, tx.now,
             follows, result, tx.now, tx.now, tx.now if state == "succeeded" else None),
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
    if op.terms is None:  # the common case in one statement; the rest explains a refusal
        token = tx.token()
        found = tx.conn.execute(
            LEASE_SQL, (op.node, token, tx.now, tx.now, seq_of(tx.store_id, op.job_id), tx.now)
        ).fetchone()
        if found is not None:
            seq, attempt, blob, digest = found
            tx.move("queued", "leased")
            tx.event(seq, "leased", attempt, node=op.node)
            return Leased(op.job_id, op.node, attempt, token, stored_spec(blob, digest))
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
    if type(op.token) is str:  # checked and written in one statement
        found = tx.conn.execute(
            ACCEPT_SQL, (tx.now, seq_of(tx.store_id, op.job_id), op.token)
        ).fetchone()
        if found is not None:
            tx.move("leased", "running")
            tx.event(found[0], "running", found[1], node=found[2])
            return Accepted(op.job_id)
    row = tx.row(op.job_id, op.token)  # why not: a bad token or id, a stale lease, or ...
    if not _holds(row, op.token):
        return _stale(op.job_id, row)
    return Accepted(op.job_id)  # ... already running: a repeated ACCEPT changes nothing


def _progress(tx: Tx, op: Progress) -> Accepted | Stale:
    row = tx.row(op.job_id, op.token)
    if not _holds(row, op.token):
        return _stale(op.job_id, row)
    data = encode_value("progress data", op.data)
    tx.conn.execute(
        "UPDATE jobs SET progress = ?, updated = ? WHERE seq = ?", (data, tx.now, row.seq)
    )
    return Accepted(op.job_id)


def _complete(tx: Tx, op: Complete) -> Completed | Stale:
    """The success of the attempt holding the lease, checked and written in one
    statement; the row is read only to say why not. A success of an attempt never
    ACCEPTed implies it ran: ``running`` is recorded too. That case is tried first: a
    node leaves out the ACCEPT of a short task, where the statement's cost counts (a
    long task's miss costs microseconds of its run)."""
    try:
        result = CODEC.encode(op.result)
    except CodecError as exc:
        result, unstorable = None, f"result is not storable: {exc}"
    if result is not None and type(op.token) is str:
        seq = seq_of(tx.store_id, op.job_id)
        for state in ("leased", "running"):
            found = tx.conn.execute(
                COMPLETE_SQL, (result, tx.now, tx.now, seq, op.token, state)
            ).fetchone()
            if found is not None:
                return _succeeded(tx, op.job_id, state, found, result)
    row = tx.row(op.job_id, op.token)
    if not _holds(row, op.token):
        return _stale(op.job_id, row)
    raise InvalidOpError(unstorable)  # the token holds the lease: only the result is at fault


def _succeeded(tx: Tx, job_id: str, was: str, found: Any, result: bytes) -> Completed:
    seq, attempt, node, leased_at, hold, rate, followed = found
    end_hold(tx, hold, rate, tx.now - (leased_at or tx.now))
    tx.move(was, "succeeded")
    if was == "leased":
        tx.event(seq, "running", attempt, node=node)
    tx.event(seq, "succeeded", attempt, node=node)
    followers = settle_followers(tx, seq, "succeeded", result=result) if followed else ()
    return Completed(job_id, followers)


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
        f"SELECT {COLUMNS} FROM jobs WHERE node = ? AND state IN ('leased', 'running')"
        " ORDER BY seq",
        (op.node,),
    ).fetchall()
    requeued: list[str] = []
    failed: list[str] = []
    cancelled: list[str] = []
    for row in map(Row._make, found):
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


def _requeue_unstarted(tx: Tx, row: Row, reason: str) -> None:
    end_hold(tx, row.hold, None, None)
    tx.conn.execute(REQUEUE_SQL, (row.failures, tx.now, None, tx.now, row.seq))
    tx.move(row.state, "queued")
    tx.event(row.seq, "requeued", row.attempt + 1, node=row.node, reason=reason)


def _attempt_failed(
    tx: Tx, row: Row, error: str, *, permanent: bool = False
) -> Retried | Failed | Cancelled:
    if row.cancel_requested:
        return _cancel_now(tx, row, error)
    job_id = tx.jid(row.seq)
    failures = row.failures + 1
    end_hold(tx, row.hold, None, None)
    if permanent or failures > row.max_retries:
        tx.conn.execute(
            "UPDATE jobs SET state = 'failed', failures = ?, error = ?, updated = ?, ended = ?"
            " WHERE seq = ?",
            (failures, error, tx.now, tx.now, row.seq),
        )
        tx.move(row.state, "failed")
        tx.event(row.seq, "failed", row.attempt, node=row.node, error=error)
        return Failed(job_id, error, settle_followers(tx, row.seq, "failed", error=error))
    not_before = tx.now + tx.backoff(failures)
    tx.conn.execute(REQUEUE_SQL, (failures, not_before, error, tx.now, row.seq))
    tx.move(row.state, "queued")
    tx.event(row.seq, "retry", row.attempt + 1, node=row.node, error=error,
             not_before=not_before)  # fmt: skip
    return Retried(job_id, row.attempt + 1, not_before)


def _cancel_now(tx: Tx, row: Row, why: str) -> Cancelled:
    """Cancel the job now; ``why`` is its error text (how the cancel took effect)."""
    end_hold(tx, row.hold, None, None)
    tx.conn.execute(
        "UPDATE jobs SET state = 'cancelled', error = ?, updated = ?, ended = ? WHERE seq = ?",
        (why, tx.now, tx.now, row.seq),
    )
    tx.move(row.state, "cancelled")
    tx.event(row.seq, "cancelled", row.attempt)
    promoted = settle_followers(tx, row.seq, "cancelled")
    return Cancelled(tx.jid(row.seq), promoted[0] if promoted else None)


# -- checks ---------------------------------------------------------------------------


def _holds(row: Row, token: str) -> bool:
    return row.state in ("leased", "running") and token == row.token


def _stale(job_id: str, row: Row) -> Stale:
    if row.state in TERMINAL_STATES:
        reason = f"job already {row.state}"
    elif row.state == "queued" and row.attempt == 1:
        reason = "job is queued: it holds no lease"
    elif row.state == "queued":
        reason = "lease is over: the job was requeued"
    else:
        reason = f"token does not match the current lease (attempt {row.attempt})"
    return Stale(job_id, row.state, reason)


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
