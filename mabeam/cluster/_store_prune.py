"""Retention: finished jobs older than a cutoff leave the store (private to ``store``).

A long-running coordinator would otherwise keep every job it ever ran: the file, the
event log and the idempotency records would grow without end. ``Prune(before, limit)``
deletes up to ``limit`` finished jobs (succeeded, failed, cancelled) last changed
before ``before``, oldest first, with their event-log rows, and the idempotency
records (``submissions``) made before ``before``. The coordinator runs one every few
seconds (``CoordinatorConfig.retention_s``). Consequences, documented in docs/store.md:
a pruned job is unknown to STATUS and WATCH, no longer answers the result cache, and an
idempotency key is remembered for ``retention_s`` after its SUBMIT. SQLite reuses the
freed pages, so under a steady load the file stops growing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from ._store_batch import Prune, Pruned
from ._store_types import InvalidOpError

if TYPE_CHECKING:
    from ._store_tx import Tx

__all__ = ("prune",)

_FINISHED_SQL: Final = (  # uses the partial index jobs_finished (schema v2)
    "SELECT seq, state FROM jobs WHERE state IN ('succeeded', 'failed', 'cancelled')"
    " AND updated < ? ORDER BY updated LIMIT ?"
)
_CHUNK: Final = 500  # SQLite's bound on host parameters is 32,766; stay far below it


def prune(tx: Tx, op: Prune) -> Pruned:
    """The ``Prune`` op's handler (see the module docstring)."""
    before, limit = op.before, op.limit
    if isinstance(before, bool) or not isinstance(before, int | float):
        raise InvalidOpError(f"before must be a time in seconds, got: {before!r}")
    if type(limit) is not int or limit < 1:
        raise InvalidOpError(f"limit must be an int >= 1, got: {limit!r}")
    conn = tx.conn
    rows = conn.execute(_FINISHED_SQL, (float(before), limit)).fetchall()
    for start in range(0, len(rows), _CHUNK):
        seqs = [row[0] for row in rows[start : start + _CHUNK]]
        marks = ",".join("?" * len(seqs))
        conn.execute(f"DELETE FROM events WHERE job IN ({marks})", seqs)
        conn.execute(f"DELETE FROM jobs WHERE seq IN ({marks})", seqs)
    for _, state in rows:
        tx.move(state, None)
    dropped = conn.execute("DELETE FROM submissions WHERE created < ?", (float(before),))
    return Pruned(tuple(tx.jid(row[0]) for row in rows), dropped.rowcount)
