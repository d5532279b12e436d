"""One store batch in flight (``Tx``), the row the state machine reads, and its SQL
(private to ``mabeam.cluster.store``).

A job's row changes in as few index entries as its transition needs (schema v4): the
unfinished-job index keys on ``ended`` (set once, when the job ends), so queued ->
leased -> running moves only the live-lease index entry. The common transitions (lease,
accept, a running attempt's success) check and write in one ``UPDATE ... RETURNING``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final, NamedTuple

import msgpack

from foundation import CodecError

from ._store_types import CODEC, InvalidOpError, UnknownJobError, job_id_of, seq_of

__all__ = (
    "ACCEPT_SQL",
    "CACHE_SQL",
    "COLUMNS",
    "COMPLETE_SQL",
    "INSERT_SQL",
    "LEASE_SQL",
    "REQUEUE_SQL",
    "ROW_SQL",
    "UNFINISHED_SQL",
    "Row",
    "Tx",
    "encode_value",
)

pack_detail: Final[Callable[[Any], bytes]] = msgpack.Packer(use_bin_type=True).pack

COLUMNS: Final = (
    "seq, state, attempt, failures, max_retries, node, token, cancel_requested, follows,"
    " not_before, spec, content_hash, leased_at, hold, rate"
)
ROW_SQL: Final = f"SELECT {COLUMNS} FROM jobs WHERE seq = ?"
INSERT_SQL: Final = (
    "INSERT INTO jobs (submitter, spec, content_hash, priority, max_retries, state, attempt,"
    " not_before, follows, result, created, updated, ended)"
    " VALUES (?, ?, ?, ?, ?, ?, 1, ?, ?, ?, ?, ?, ?)"
)
# A succeeded job with the same content hash, else the oldest live leader.
CACHE_SQL: Final = (
    "SELECT seq, state, result FROM jobs WHERE content_hash = ? AND (state = 'succeeded'"
    " OR (state IN ('queued', 'leased', 'running') AND follows IS NULL))"
    " ORDER BY state = 'succeeded' DESC, seq LIMIT 1"
)
UNFINISHED_SQL: Final = (  # an owner's jobs under its quota (index jobs_unfinished_owner)
    "SELECT count(*) FROM jobs WHERE submitter = ? AND ended IS NULL"
)
# The common transitions, each checked and applied in one statement (RETURNING): no row
# back means the general path (a SELECT of the row) decides what the op gets.
LEASE_SQL: Final = (
    "UPDATE jobs SET state = 'leased', node = ?, token = ?, leased_at = ?, hold = NULL,"
    " rate = NULL, updated = ? WHERE seq = ? AND state = 'queued' AND follows IS NULL"
    " AND not_before <= ? RETURNING seq, attempt, spec, content_hash"
)
ACCEPT_SQL: Final = (
    "UPDATE jobs SET state = 'running', updated = ? WHERE seq = ? AND token = ?"
    " AND state = 'leased' RETURNING seq, attempt, node"
)
# A success from state ``?`` ('running', or 'leased': it implies the ACCEPT).
COMPLETE_SQL: Final = (
    "UPDATE jobs SET state = 'succeeded', result = ?, error = NULL, updated = ?, ended = ?"
    " WHERE seq = ? AND token = ? AND state = ? RETURNING seq, attempt, node,"
    " leased_at, hold, rate, EXISTS (SELECT 1 FROM jobs AS f WHERE f.follows = jobs.seq"
    " AND f.state = 'queued')"
)
REQUEUE_SQL: Final = (
    "UPDATE jobs SET state = 'queued', attempt = attempt + 1, failures = ?, node = NULL,"
    " token = NULL, leased_at = NULL, hold = NULL, rate = NULL, cancel_requested = 0,"
    " not_before = ?, error = ?, updated = ? WHERE seq = ?"
)


class Row(NamedTuple):
    """The columns of a job the state machine decides on (``COLUMNS``)."""

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
        self.events.append((seq, kind, attempt, pack_detail(detail), self.now))

    def move(self, old: str | None, new: str | None, n: int = 1) -> None:
        """Count ``n`` jobs going from state ``old`` to ``new`` (None: inserted, deleted)."""
        if old is not None:
            self.moves[old] = self.moves.get(old, 0) - n
        if new is not None:
            self.moves[new] = self.moves.get(new, 0) + n

    def row(self, job_id: object, token: object = "") -> Row:
        """The job's row: ``InvalidOpError`` for a non-str id or token, ``UnknownJobError``
        when there is no such job."""
        if type(token) is not str:
            raise InvalidOpError(f"token must be a str, got: {token!r}")
        found = self.conn.execute(ROW_SQL, (seq_of(self.store_id, job_id),)).fetchone()
        if found is None:
            raise UnknownJobError(f"unknown job id: {job_id!r}")
        return Row(*found)

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


def encode_value(what: str, value: Any) -> bytes:
    """``value`` (a result, progress data) as stored; ``InvalidOpError`` if it cannot be."""
    try:
        return CODEC.encode(value)
    except CodecError as exc:
        raise InvalidOpError(f"{what} is not storable: {exc}") from None
