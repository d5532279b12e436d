"""The ledger's SQLite schema: accounts, escrow holds and the append-only audit log.

``LEDGER_SCHEMA`` is run by whoever owns the file: the job store in one of its schema
migrations (the ledger then shares the store's transactions), or ``Ledger.open`` for a
standalone ledger file. Amounts are ``int`` micro-credits; every balance is kept under
``MAX_AMOUNT`` (10^18), so SQLite's int64 never overflows.
"""

from __future__ import annotations

import sqlite3
from typing import Final

from ._errors import LedgerError

__all__ = (
    "LEDGER_APPLICATION_ID",
    "LEDGER_SCHEMA",
    "LEDGER_TABLES",
    "LEDGER_VERSION",
    "create_schema",
    "missing_tables",
)

# "mabl": a standalone mabeam ledger file (PRAGMA application_id is a signed 32-bit int).
LEDGER_APPLICATION_ID: Final = 0x6D61626C
LEDGER_VERSION: Final = 1
LEDGER_TABLES: Final = ("accounts", "holds", "ledger_log")

LEDGER_SCHEMA: Final[tuple[str, ...]] = (
    # available: free to spend or hold; held: in open holds (escrow); spent: total paid
    # out by settles; earned: total received by settles (transfers move available only).
    # spent and earned only grow: int64 leaves room for 9 times the largest total supply.
    """
    CREATE TABLE accounts (
        name TEXT PRIMARY KEY,
        kind TEXT NOT NULL CHECK (kind IN ('team', 'owner')),
        available INTEGER NOT NULL CHECK (available >= 0),
        held INTEGER NOT NULL CHECK (held >= 0),
        spent INTEGER NOT NULL DEFAULT 0 CHECK (spent >= 0),
        earned INTEGER NOT NULL DEFAULT 0 CHECK (earned >= 0),
        created REAL NOT NULL
    ) WITHOUT ROWID
    """,
    # A hold moves `amount` from the account's available to its held until a settle
    # (pays `charged` <= amount to the payee, the rest back) or a release (all back).
    # AUTOINCREMENT: a hold id is never reused, so a late settle cannot hit a new hold.
    """
    CREATE TABLE holds (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        account TEXT NOT NULL,
        payee TEXT NOT NULL,
        amount INTEGER NOT NULL CHECK (amount >= 0),
        job TEXT NOT NULL DEFAULT '',
        state TEXT NOT NULL CHECK (state IN ('open', 'settled', 'released')),
        charged INTEGER CHECK (charged IS NULL OR (charged >= 0 AND charged <= amount)),
        created REAL NOT NULL,
        closed REAL,
        note TEXT NOT NULL DEFAULT ''
    )
    """,
    # Open holds only (a job's hold at its completion, an account's for verify): these
    # partial indexes stay as small as the running work.
    "CREATE INDEX holds_open_job ON holds(job) WHERE state = 'open'",
    "CREATE INDEX holds_open_account ON holds(account) WHERE state = 'open'",
    # One row per change, in order: op is 'open' (note = the kind), 'deposit',
    # 'withdraw', 'transfer' (account -> counterparty), 'hold' (counterparty = payee),
    # 'settle' (amount = paid to counterparty) or 'release' (amount = returned).
    # Replaying it from zero reproduces every account (``Ledger.verify``).
    """
    CREATE TABLE ledger_log (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        time REAL NOT NULL,
        op TEXT NOT NULL CHECK (op IN
            ('open', 'deposit', 'withdraw', 'transfer', 'hold', 'settle', 'release')),
        account TEXT NOT NULL,
        counterparty TEXT,
        amount INTEGER NOT NULL CHECK (amount >= 0),
        hold INTEGER,
        job TEXT NOT NULL DEFAULT '',
        note TEXT NOT NULL DEFAULT ''
    )
    """,
    "CREATE INDEX ledger_log_account ON ledger_log(account, seq)",
    """CREATE INDEX ledger_log_counterparty ON ledger_log(counterparty, seq)
       WHERE counterparty IS NOT NULL""",
    # The audit log is append-only: an UPDATE or DELETE aborts its statement.
    """
    CREATE TRIGGER ledger_log_no_update BEFORE UPDATE ON ledger_log
    BEGIN SELECT RAISE(ABORT, 'the ledger log is append-only'); END
    """,
    """
    CREATE TRIGGER ledger_log_no_delete BEFORE DELETE ON ledger_log
    BEGIN SELECT RAISE(ABORT, 'the ledger log is append-only'); END
    """,
)


def missing_tables(conn: sqlite3.Connection) -> list[str]:
    """The ledger tables ``conn``'s database lacks."""
    rows = conn.execute(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name IN (?, ?, ?)",
        LEDGER_TABLES,
    )
    present = {r[0] for r in rows}
    return [t for t in LEDGER_TABLES if t not in present]


def create_schema(conn: sqlite3.Connection) -> None:
    """Create the ledger tables in a new file (or one already marked as a ledger file);
    a file that has them all is used as it is (a job store's, for one). ``LedgerError``
    for a file with part of them or with other tables."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        missing = missing_tables(conn)
        if missing and len(missing) < len(LEDGER_TABLES):
            raise LedgerError(f"the file has only part of the ledger schema (lacks {missing})")
        if missing:
            app_id = conn.execute("PRAGMA application_id").fetchone()[0]
            tables = conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
            if app_id not in (0, LEDGER_APPLICATION_ID) or tables:
                raise LedgerError("the file is a SQLite database of another application")
            for statement in LEDGER_SCHEMA:
                conn.execute(statement)
            conn.execute(f"PRAGMA application_id = {LEDGER_APPLICATION_ID}")
            conn.execute(f"PRAGMA user_version = {LEDGER_VERSION}")
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
