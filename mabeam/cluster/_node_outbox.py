"""The node's outbox: every RESULT frame on disk until the coordinator ACKs it, and
the order its results go out in with the ACCEPTs of the same wake-up (``in_order``).

A result is written here before it is sent, resent after a reconnect (and now and then
while un-ACKed), listed in HELLO so the coordinator keeps its lease, and dropped when
the ACK for its lease arrives. The file is a small SQLite database in WAL mode with
``synchronous=NORMAL``: a commit is one write to the log with no fsync, and a committed
row survives a SIGKILL of the agent (not a power cut, which the coordinator's lease
covers: it requeues the job). Writes come in batches (the new results of one wake-up
of the connection actor share a transaction), and a copy of the rows in memory answers
every read. An ACK drops its result from memory at once and from the file with the
next batch of results (or at ``REMOVALS_PER_WRITE`` of them, or on ``close``): a removal
that a crash loses only makes the restarted node resend a result the coordinator
already holds, which it answers as stale, so an ACK alone never costs a transaction.

The file is input like any other: a row that does not hold a valid RESULT is dropped
with a warning, and a file SQLite cannot read is moved aside (``outbox.sqlite3.bad-N``)
and a fresh one started, so a damaged outbox never keeps a node from starting.
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from .protocol import Accept, ProtocolError, Result, decode, encode

__all__ = ("OUTBOX_NAME", "REMOVALS_PER_WRITE", "Outbox", "OutboxEntry", "in_order")

log = logging.getLogger("mabeam.node")

OUTBOX_NAME: Final = "outbox.sqlite3"
REMOVALS_PER_WRITE: Final = 512
"""ACKed results dropped from the file without a new result to carry them."""

Key = tuple[str, str]
"""(job_id, lease): what a RESULT, its ACK and a CANCEL name."""

_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS results (
    job_id  TEXT    NOT NULL,
    lease   TEXT    NOT NULL,
    attempt INTEGER NOT NULL,
    payload BLOB    NOT NULL,
    UNIQUE (job_id, lease)
)
"""


@dataclass(frozen=True, slots=True)
class OutboxEntry:
    """One un-ACKed result: its key, attempt and the encoded RESULT frame."""

    job_id: str
    lease: str
    attempt: int
    payload: bytes

    @property
    def key(self) -> Key:
        """(job_id, lease)."""
        return (self.job_id, self.lease)


class Outbox:
    """Un-ACKed RESULT frames in ``<dir>/outbox.sqlite3``; see the module docstring.

    Used from one thread (the connection actor's); ``close`` when done.
    """

    def __init__(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.path = directory / OUTBOX_NAME
        self._entries: dict[Key, OutboxEntry] = {}
        self._removed: dict[Key, None] = {}  # ACKed, still in the file
        try:
            self._db = self._open()
        except sqlite3.DatabaseError as exc:
            aside = self._move_aside()
            log.error("outbox %s is unreadable (%s); moved to %s, starting empty", self.path,
                      exc, aside)  # fmt: skip
            self._db = self._open()

    def _open(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            db.execute(_SCHEMA)
            rows = db.execute(
                "SELECT rowid, job_id, lease, attempt, payload FROM results ORDER BY rowid"
            ).fetchall()
        except BaseException:
            db.close()
            raise
        bad: list[int] = []
        for rowid, job_id, lease, attempt, payload in rows:
            entry = _checked(job_id, lease, attempt, payload)
            if entry is None:
                bad.append(rowid)
            else:
                self._entries[entry.key] = entry
        if bad:
            log.warning("outbox %s: dropped %d unreadable rows", self.path, len(bad))
            db.executemany("DELETE FROM results WHERE rowid = ?", [(r,) for r in bad])
        return db

    def _move_aside(self) -> Path:
        n = 1
        while (aside := self.path.with_name(f"{self.path.name}.bad-{n}")).exists():
            n += 1
        self.path.rename(aside)
        for suffix in ("-wal", "-shm"):
            with contextlib.suppress(FileNotFoundError):
                self.path.with_name(self.path.name + suffix).unlink()
        return aside

    # -- reads (from memory) -------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: object) -> bool:
        return key in self._entries

    def __iter__(self) -> Iterator[OutboxEntry]:
        """The entries, oldest first."""
        return iter(list(self._entries.values()))

    def get(self, key: Key) -> OutboxEntry | None:
        """The entry for (job_id, lease), if un-ACKed."""
        return self._entries.get(key)

    # -- writes (one transaction per call) -----------------------------------------------

    def write(self, put: Iterable[OutboxEntry] = (), remove: Iterable[Key] = ()) -> int:
        """Store the ``put`` results (replacing one held for the same key) in one
        transaction, durable when this returns, and drop the ``remove`` keys (ACKed): at
        once from memory, from the file with a later write (module doc). Returns how
        many were dropped."""
        batch = list(put)
        gone = [key for key in dict.fromkeys(remove) if key in self._entries]
        for key in gone:
            del self._entries[key]
            self._removed[key] = None
        for entry in batch:
            self._removed.pop(entry.key, None)  # written again: the new row stays
        if batch or len(self._removed) >= REMOVALS_PER_WRITE:
            self._write(batch)
        for entry in batch:
            self._entries[entry.key] = entry
        return len(gone)

    def _write(self, batch: list[OutboxEntry]) -> None:
        removed = list(self._removed)
        with self._transaction() as db:
            if removed:
                db.executemany("DELETE FROM results WHERE job_id = ? AND lease = ?", removed)
            if batch:
                db.executemany(
                    "INSERT OR REPLACE INTO results (job_id, lease, attempt, payload) "
                    "VALUES (?, ?, ?, ?)",
                    [(e.job_id, e.lease, e.attempt, e.payload) for e in batch],
                )
        self._removed.clear()

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            yield db
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")

    def close(self) -> None:
        """Write the pending removals and close the file (idempotent); the un-ACKed
        rows stay for the next start."""
        try:
            with contextlib.suppress(sqlite3.Error):
                if self._removed:
                    self._write([])
        finally:
            with contextlib.suppress(sqlite3.Error):
                self._db.close()


def _checked(job_id: object, lease: object, attempt: object, payload: object) -> OutboxEntry | None:
    """The entry a row holds, or None when the row is not a RESULT for its key."""
    if not isinstance(payload, bytes) or type(attempt) is not int:
        return None
    try:
        frame = decode(payload)
    except ProtocolError:
        return None
    if not isinstance(frame, Result) or (frame.job_id, frame.lease) != (job_id, lease):
        return None
    return OutboxEntry(frame.job_id, frame.lease, frame.attempt, payload)


def in_order(
    accepts: dict[Key, int], results: list[OutboxEntry], first: int = 0
) -> tuple[list[bytes], list[OutboxEntry | None]]:
    """The ACCEPTs and the RESULTs of one wake-up as payloads in the order they happened,
    and per payload the result it carries (None for an ACCEPT). Each ACCEPT comes with
    the count of results queued before it; ``first`` is that count for ``results[0]``
    (an ACCEPT after results that went out another way goes first)."""
    payloads: list[bytes] = []
    sources: list[OutboxEntry | None] = []
    done = 0
    for key, queued in accepts.items():
        before = max(queued - first, 0)
        for entry in results[done:before]:
            payloads.append(entry.payload)
            sources.append(entry)
        done = max(done, before)
        payloads.append(encode(Accept(*key)))
        sources.append(None)
    for entry in results[done:]:
        payloads.append(entry.payload)
        sources.append(entry)
    return payloads, sources
