"""The job store's SQLite schema, its pragmas and its migrations (private to ``store``).

A store file carries ``application_id`` = ``APPLICATION_ID`` and ``user_version`` = the
schema version it was written with. ``open_connection`` refuses a file of another
application or of a newer schema, and upgrades an older one in one transaction.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Final, Literal

from ..economics import LEDGER_SCHEMA

# "mabj": a mabeam job store (PRAGMA application_id is a signed 32-bit int).
APPLICATION_ID: Final = 0x6D61626A
SCHEMA_VERSION: Final = 4

Synchronous = Literal["FULL", "NORMAL"]

# Every state is listed once; the CHECK keeps a bug from writing anything else. Jobs are
# addressed by seq (AUTOINCREMENT: never reused), their id is "j-<store_id>-<seq>".
_V1: Final = (
    "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID",
    "INSERT INTO meta VALUES ('store_id', lower(hex(randomblob(4))))",
    """
    CREATE TABLE jobs (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        submitter TEXT NOT NULL,
        spec BLOB NOT NULL,
        content_hash TEXT NOT NULL,
        priority INTEGER NOT NULL,
        max_retries INTEGER NOT NULL,
        state TEXT NOT NULL CHECK (state IN
            ('queued', 'leased', 'running', 'succeeded', 'failed', 'cancelled')),
        attempt INTEGER NOT NULL CHECK (attempt >= 1),
        failures INTEGER NOT NULL DEFAULT 0,
        node TEXT,
        token TEXT,
        leased_at REAL,
        not_before REAL NOT NULL,
        cancel_requested INTEGER NOT NULL DEFAULT 0,
        follows INTEGER,
        result BLOB,
        error TEXT,
        progress BLOB,
        created REAL NOT NULL,
        updated REAL NOT NULL
    )
    """,
    # Dispatch order: FIFO by submission, or priority (highest first) then FIFO. Only
    # queued leaders are in these partial indexes, so they stay as small as the queue.
    "CREATE INDEX jobs_ready_fifo ON jobs(seq) WHERE state = 'queued' AND follows IS NULL",
    """CREATE INDEX jobs_ready_priority ON jobs(priority DESC, seq)
       WHERE state = 'queued' AND follows IS NULL""",
    # Live leases only: a node's leases, and (scanned whole) the unaccepted ones.
    "CREATE INDEX jobs_lease_node ON jobs(node) WHERE state IN ('leased', 'running')",
    # The result cache and followers: written once at insert, never moved by a state change.
    "CREATE INDEX jobs_hash ON jobs(content_hash)",
    "CREATE INDEX jobs_follows ON jobs(follows) WHERE follows IS NOT NULL",
    # Jobs per state, kept by each batch (an index on state would be rewritten at every
    # transition of every job).
    "CREATE TABLE state_counts (state TEXT PRIMARY KEY, n INTEGER NOT NULL) WITHOUT ROWID",
    """INSERT INTO state_counts VALUES ('queued', 0), ('leased', 0), ('running', 0),
       ('succeeded', 0), ('failed', 0), ('cancelled', 0)""",
    """
    CREATE TABLE submissions (
        submitter TEXT NOT NULL,
        key TEXT NOT NULL,
        digest TEXT NOT NULL,
        jobs BLOB NOT NULL,
        created REAL NOT NULL,
        PRIMARY KEY (submitter, key)
    ) WITHOUT ROWID
    """,
    """
    CREATE TABLE events (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        job INTEGER NOT NULL,
        kind TEXT NOT NULL,
        attempt INTEGER NOT NULL,
        detail BLOB NOT NULL,
        time REAL NOT NULL
    )
    """,
    "CREATE INDEX events_job ON events(job, seq)",
)

# v2: each submitter's unfinished jobs, counted by a SUBMIT under a quota (only the
# unfinished are in this partial index, so it stays as small as the queue); finished
# jobs by age, for retention (``_store_prune``); idempotency records by age.
_V2: Final = (
    """CREATE INDEX jobs_unfinished_owner ON jobs(submitter)
       WHERE state IN ('queued', 'leased', 'running')""",
    """CREATE INDEX jobs_finished ON jobs(updated)
       WHERE state IN ('succeeded', 'failed', 'cancelled')""",
    "CREATE INDEX submissions_created ON submissions(created)",
)

# v3: the market's ledger (accounts, escrow holds, the append-only audit log) in the
# same file, so a lease and its hold commit together; a leased job's hold and the hourly
# rate of its bundle, to settle the hold when the lease ends.
_V3: Final = (
    *LEDGER_SCHEMA,
    "ALTER TABLE jobs ADD COLUMN hold INTEGER",
    "ALTER TABLE jobs ADD COLUMN rate INTEGER",
)

# v4: fewer index entries per transition. A job's end time ``ended`` (NULL while it is
# queued, leased or running) keys the unfinished-job index, which a state index had to
# move at every transition; the two ready-queue indexes go (the coordinator holds its
# queue in memory and reads it once, at start, through the unfinished-job index).
_V4: Final = (
    "ALTER TABLE jobs ADD COLUMN ended REAL",
    "UPDATE jobs SET ended = updated WHERE state IN ('succeeded', 'failed', 'cancelled')",
    "DROP INDEX jobs_ready_fifo",
    "DROP INDEX jobs_ready_priority",
    "DROP INDEX jobs_unfinished_owner",
    "CREATE INDEX jobs_unfinished_owner ON jobs(submitter) WHERE ended IS NULL",
)

# MIGRATIONS[v] takes a file from schema v - 1 to schema v.
MIGRATIONS: Final[dict[int, tuple[str, ...]]] = {1: _V1, 2: _V2, 3: _V3, 4: _V4}


class SchemaError(Exception):
    """The file is not a job store this version can open (``store`` re-raises it)."""


def open_connection(
    path: Path, *, synchronous: Synchronous, busy_timeout_s: float
) -> tuple[sqlite3.Connection, str]:
    """Open ``path`` in WAL mode with the given durability, migrated to ``SCHEMA_VERSION``;
    return the connection and the store's id (the middle part of its job ids).

    The connection is in autocommit mode (``isolation_level=None``): the store issues
    ``BEGIN IMMEDIATE`` / ``COMMIT`` itself, one transaction per batch.
    """
    conn = sqlite3.connect(
        path,
        timeout=busy_timeout_s,
        isolation_level=None,
        check_same_thread=False,
        cached_statements=256,
    )
    try:
        _configure(conn, synchronous, busy_timeout_s)
        _migrate(conn)
        store_id = conn.execute("SELECT value FROM meta WHERE key = 'store_id'").fetchone()[0]
    except sqlite3.DatabaseError as exc:
        conn.close()
        raise SchemaError(f"{path} is not a usable job store: {exc}") from exc
    except BaseException:
        conn.close()
        raise
    return conn, str(store_id)


def _configure(conn: sqlite3.Connection, synchronous: Synchronous, busy_timeout_s: float) -> None:
    conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_s * 1000)}")
    mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
    if str(mode).lower() != "wal":
        raise SchemaError(f"the file system refused WAL mode (journal_mode is {mode!r})")
    conn.execute(f"PRAGMA synchronous = {synchronous}")
    # Keep the WAL short-lived: checkpoint every ~4 MiB of pages (the default 1000 pages).
    conn.execute("PRAGMA wal_autocheckpoint = 1000")
    conn.execute("PRAGMA foreign_keys = OFF")


def _migrate(conn: sqlite3.Connection) -> None:
    conn.execute("BEGIN IMMEDIATE")
    try:
        app_id = conn.execute("PRAGMA application_id").fetchone()[0]
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if app_id not in (0, APPLICATION_ID):
            raise SchemaError(
                f"the file belongs to another application (application_id {app_id:#x})"
            )
        if version > SCHEMA_VERSION:
            raise SchemaError(
                f"the file has job-store schema v{version}; this mabeam knows up to "
                f"v{SCHEMA_VERSION} (upgrade mabeam)"
            )
        if app_id == 0:
            tables = conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
            if tables:
                raise SchemaError("the file is a SQLite database of another application")
        for target in range(version + 1, SCHEMA_VERSION + 1):
            for statement in MIGRATIONS[target]:
                conn.execute(statement)
        conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
