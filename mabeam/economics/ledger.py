"""The durable ledger: accounts, escrow holds and an append-only audit log in SQLite.

Money is ``int`` micro-credits. It enters by ``deposit`` (or ``set_budget``), leaves by
``withdraw``, and otherwise only moves: ``transfer`` between accounts, ``hold`` from an
account's available into escrow for a payee, then ``settle`` (the charge, at most the
hold, to the payee; the rest back) or ``release`` (all back). So at every commit the
accounts own exactly what was issued, no balance is negative, and replaying the log
from zero gives every balance again; ``verify`` checks all three.

Each operation is atomic. On a connection that is inside a transaction (the job store's
``BEGIN IMMEDIATE`` ... ``COMMIT`` per batch) it runs in a SAVEPOINT, so its writes
commit or roll back with the caller's; otherwise it runs in a transaction of its own
(``BEGIN IMMEDIATE``: a deferred one that reads, then writes, could fail with
SQLITE_BUSY if another connection wrote in between). A refused operation (``Overdraft``,
``UnknownAccount``, ``UnknownHold``, ``BadAmount``, ``LedgerError``) changes nothing,
log included, and the caller's transaction goes on.

Zero amounts: a zero ``hold`` and a zero ``settle`` charge are fine (a free allocation).
A zero ``deposit``, ``withdraw`` or ``transfer`` is refused with ``BadAmount``: it moves
nothing and would only add noise to the audit log (``set_budget`` to the current
amount writes nothing). Transfers move ``available`` only; ``spent`` and ``earned``
count what settles paid. See docs/economics.md.
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from types import TracebackType
from typing import Final, Literal

from ._errors import BadAmount, LedgerError, Overdraft, UnknownAccount, UnknownHold
from ._ledger_replay import check
from ._ledger_schema import create_schema, missing_tables
from ._ledger_types import (
    ACCOUNT_SQL,
    HOLD_SQL,
    LOG_SQL,
    Account,
    AccountKind,
    Hold,
    LogEntry,
    account_of,
    check_job,
    check_kind,
    check_name,
    clip_note,
    entry_of,
    hold_of,
)
from ._money import MAX_AMOUNT, check_micro, format_amount

__all__ = ("Account", "Hold", "Ledger", "LogEntry")

MAX_LOG_LIMIT: Final = 100_000


class Ledger:
    """Accounts and escrow holds on one SQLite connection (see the module docstring).

    ``conn`` must be in autocommit mode (``isolation_level=None``) and have the tables of
    ``LEDGER_SCHEMA``; ``Ledger.open`` makes a standalone ledger file. ``clock`` gives
    the time recorded by each operation. Calls are serialized by a lock; the ledger
    never closes a connection it was given.
    """

    def __init__(self, conn: sqlite3.Connection, *, clock: Callable[[], float] = time.time) -> None:
        if conn.isolation_level is not None:
            raise ValueError(
                "the ledger needs a connection in autocommit mode (isolation_level=None),"
                f" got isolation_level={conn.isolation_level!r}"
            )
        missing = missing_tables(conn)
        if missing:
            raise LedgerError(
                f"the database lacks the ledger tables {missing}: run LEDGER_SCHEMA in it"
            )
        self._conn: sqlite3.Connection | None = conn
        self._clock = clock
        self._owned = False
        self._lock = threading.Lock()

    @classmethod
    def open(
        cls,
        path: str | Path,
        *,
        clock: Callable[[], float] = time.time,
        synchronous: Literal["FULL", "NORMAL"] = "FULL",
        busy_timeout_s: float = 5.0,
    ) -> Ledger:
        """A standalone ledger in ``path`` (``":memory:"`` for a throwaway one), in WAL mode,
        with the schema created if the file is new. ``synchronous="FULL"`` makes every
        operation survive a power cut; ``"NORMAL"`` a crash of the process only."""
        if synchronous not in ("FULL", "NORMAL"):
            raise ValueError(f"synchronous must be 'FULL' or 'NORMAL', got: {synchronous!r}")
        conn = sqlite3.connect(
            path, timeout=busy_timeout_s, isolation_level=None, check_same_thread=False
        )
        try:
            conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_s * 1000)}")
            if str(path) != ":memory:":
                mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
                if str(mode).lower() != "wal":
                    raise LedgerError(f"{path}: the file system refused WAL mode ({mode!r})")
            conn.execute(f"PRAGMA synchronous = {synchronous}")
            create_schema(conn)
            ledger = cls(conn, clock=clock)
        except sqlite3.DatabaseError as exc:
            conn.close()
            raise LedgerError(f"{path} is not a usable ledger file: {exc}") from None
        except BaseException:
            conn.close()
            raise
        ledger._owned = True
        return ledger

    def close(self) -> None:
        """Stop using the connection (idempotent); close it if ``open`` made it."""
        with self._lock:
            if self._conn is not None and self._owned:
                self._conn.close()
            self._conn = None

    def __enter__(self) -> Ledger:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # -- accounts and money in and out ---------------------------------------------

    def ensure_account(self, name: str, kind: str = "team") -> Account:
        """The account ``name``, opened empty if missing; ``LedgerError`` if it exists
        with another kind (``"team"`` spends, ``"owner"`` is paid for its GPUs)."""
        name, checked = check_name(name), check_kind(kind)
        with self._write() as (conn, now):
            return _ensure(conn, now, name, checked)

    def deposit(self, account: str, amount: int, *, note: str = "") -> Account:
        """Issue ``amount`` into ``account``'s available (a budget); the account after."""
        account, amount, note = check_name(account), _positive(amount, "deposit"), clip_note(note)
        with self._write() as (conn, now):
            return _deposit(conn, now, _get(conn, account), amount, note)

    def withdraw(self, account: str, amount: int, *, note: str = "") -> Account:
        """Take ``amount`` out of the ledger from ``account``'s available; ``Overdraft``."""
        account, amount, note = check_name(account), _positive(amount, "withdraw"), clip_note(note)
        with self._write() as (conn, now):
            return _withdraw(conn, now, _get(conn, account), amount, note)

    def set_budget(self, team: str, amount: int, *, note: str = "") -> Account:
        """Make ``team``'s available equal ``amount`` by a deposit or a withdrawal of the
        difference (opening a team account if missing); its holds are untouched."""
        team, note = check_name(team), clip_note(note)
        amount = check_micro(amount, "budget")
        with self._write() as (conn, now):
            acc = _find(conn, team) or _ensure(conn, now, team, "team")
            note = note or f"budget {format_amount(amount)}"
            if amount > acc.available:
                return _deposit(conn, now, acc, amount - acc.available, note)
            if amount < acc.available:
                return _withdraw(conn, now, acc, acc.available - amount, note)
            return acc

    def transfer(self, src: str, dst: str, amount: int, *, note: str = "") -> None:
        """Move ``amount`` from ``src``'s available to ``dst``'s; ``Overdraft``."""
        src, dst = check_name(src, "src"), check_name(dst, "dst")
        amount, note = _positive(amount, "transfer"), clip_note(note)
        if src == dst:
            raise LedgerError(f"a transfer needs two accounts, got {src!r} twice")
        with self._write() as (conn, now):
            payer, payee = _get(conn, src), _get(conn, dst)
            _need(payer, amount)
            _put(conn, replace(payer, available=payer.available - amount))
            _put(conn, replace(payee, available=payee.available + amount))
            _log(conn, now, "transfer", src, dst, amount, note=note)

    # -- escrow ----------------------------------------------------------------------

    def hold(self, account: str, amount: int, *, payee: str, job: str = "", note: str = "") -> Hold:
        """Move ``amount`` from ``account``'s available to held, for ``payee`` (an open
        account other than ``account``) and ``job``; ``Overdraft``. Zero is fine."""
        account, payee = check_name(account), check_name(payee, "payee")
        amount, job = check_micro(amount, "hold"), check_job(job)
        note = clip_note(note)
        if account == payee:
            raise LedgerError(f"account {account!r} cannot hold money for itself")
        with self._write() as (conn, now):
            acc = _get(conn, account)
            _get(conn, payee)
            _need(acc, amount)
            _put(conn, replace(acc, available=acc.available - amount, held=acc.held + amount))
            cur = conn.execute(
                "INSERT INTO holds (account, payee, amount, job, state, created, note)"
                " VALUES (?, ?, ?, ?, 'open', ?, ?)",
                (account, payee, amount, job, now, note),
            )
            hold_id = int(cur.lastrowid or 0)
            _log(conn, now, "hold", account, payee, amount, hold_id, job, note)
            return Hold(hold_id, account, payee, amount, job, "open", None, now, None, note)

    def settle(self, hold_id: int, charge: int, *, note: str = "") -> Hold:
        """Close an open hold: pay ``min(charge, amount)`` to its payee, return the rest
        to the account's available. ``UnknownHold`` if it is absent or closed."""
        hold_id, note = _check_hold_id(hold_id), clip_note(note)
        charge = check_micro(charge, "charge")
        with self._write() as (conn, now):
            hold = _open_hold(conn, hold_id)
            paid = min(charge, hold.amount)
            if charge > hold.amount:
                capped = f"charge {format_amount(charge)} capped at the hold"
                note = clip_note(f"{note}; {capped}" if note else capped)
            acc = _get(conn, hold.account)
            _put(
                conn,
                replace(
                    acc,
                    available=acc.available + hold.amount - paid,
                    held=acc.held - hold.amount,
                    spent=acc.spent + paid,
                ),
            )
            payee = _get(conn, hold.payee)
            _put(conn, replace(payee, available=payee.available + paid, earned=payee.earned + paid))
            return _close(conn, now, hold, "settled", paid, note)

    def release(self, hold_id: int, *, note: str = "") -> Hold:
        """Close an open hold, returning all of it to the account's available (a failed,
        cancelled or requeued job). ``UnknownHold`` if it is absent or closed."""
        hold_id, note = _check_hold_id(hold_id), clip_note(note)
        with self._write() as (conn, now):
            hold = _open_hold(conn, hold_id)
            acc = _get(conn, hold.account)
            _put(
                conn,
                replace(acc, available=acc.available + hold.amount, held=acc.held - hold.amount),
            )
            return _close(conn, now, hold, "released", 0, note)

    # -- reading ---------------------------------------------------------------------

    def account(self, name: str) -> Account:
        """One account; ``UnknownAccount`` if there is none of that name."""
        name = check_name(name)
        with self._read() as conn:
            return _get(conn, name)

    def accounts(self) -> list[Account]:
        """Every account, by name."""
        with self._read() as conn:
            return [account_of(r) for r in conn.execute(ACCOUNT_SQL + " ORDER BY name")]

    def open_holds(self, *, job: str | None = None, account: str | None = None) -> list[Hold]:
        """The open holds (of ``job``, of ``account``, or all), oldest first."""
        where, args = ["state = 'open'"], list[str]()
        if job is not None:
            where.append("job = ?")
            args.append(check_job(job))
        if account is not None:
            where.append("account = ?")
            args.append(check_name(account))
        sql = f"{HOLD_SQL} WHERE {' AND '.join(where)} ORDER BY id"
        with self._read() as conn:
            return [hold_of(r) for r in conn.execute(sql, args)]

    def log(
        self, *, account: str | None = None, after: int = 0, limit: int = 100
    ) -> list[LogEntry]:
        """Up to ``limit`` log entries with ``seq > after`` (involving ``account`` on
        either side, or all), in order: page on with ``after`` = the last seq seen."""
        if type(after) is not int or after < 0:
            raise LedgerError(f"after: expected an int >= 0, got: {after!r}")
        if type(limit) is not int or not 1 <= limit <= MAX_LOG_LIMIT:
            raise LedgerError(f"limit: expected an int in 1..{MAX_LOG_LIMIT}, got: {limit!r}")
        sql, args = f"{LOG_SQL} WHERE seq > ?", tuple[object, ...]((after,))
        if account is not None:
            who = check_name(account)
            sql += " AND (account = ? OR counterparty = ?)"
            args = (after, who, who)
        with self._read() as conn:
            rows = conn.execute(sql + " ORDER BY seq LIMIT ?", (*args, limit))
            return [entry_of(r) for r in rows]

    def issued(self) -> int:
        """Money in the ledger as its log says: all deposits less all withdrawals."""
        with self._read() as conn:
            rows = conn.execute(
                "SELECT op, amount FROM ledger_log WHERE op IN ('deposit', 'withdraw')"
            )
            return sum(amount if op == "deposit" else -amount for op, amount in rows)

    def verify(self) -> None:
        """Check every invariant in one snapshot; ``LedgerError`` naming the first broken:
        no negative balance, each account's held is its open holds, the accounts own
        what the log issued, and replaying the log reproduces every account and hold."""
        with self._read() as conn:
            check(conn)

    # -- transactions ----------------------------------------------------------------

    @contextlib.contextmanager
    def _write(self) -> Iterator[tuple[sqlite3.Connection, float]]:
        """One atomic operation: a SAVEPOINT inside the caller's transaction, else a
        transaction of its own; an exception undoes all of it and propagates."""
        with self._lock:
            conn = self._live()
            outer = not conn.in_transaction
            now = float(self._clock())
            conn.execute("BEGIN IMMEDIATE" if outer else "SAVEPOINT ledger_op")
            try:
                yield conn, now
                conn.execute("COMMIT" if outer else "RELEASE ledger_op")
            except BaseException:
                if conn.in_transaction:  # keep the original error if the undo fails too
                    with contextlib.suppress(sqlite3.Error):
                        if outer:
                            conn.execute("ROLLBACK")
                        else:
                            conn.execute("ROLLBACK TO ledger_op")
                            conn.execute("RELEASE ledger_op")
                raise

    @contextlib.contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        """Reads in one snapshot: the caller's transaction, else a short one."""
        with self._lock:
            conn = self._live()
            if conn.in_transaction:
                yield conn
                return
            conn.execute("BEGIN")
            try:
                yield conn
            finally:
                _end_read(conn)

    def _live(self) -> sqlite3.Connection:
        if self._conn is None:
            raise LedgerError("the ledger is closed")
        return self._conn


# -- the operations' steps, run inside ``_write`` --------------------------------------


def _positive(amount: object, what: str) -> int:
    value = check_micro(amount, what)
    if value == 0:
        raise BadAmount(f"{what}: must be more than 0 (a zero {what} moves nothing)")
    return value


def _check_hold_id(hold_id: object) -> int:
    if type(hold_id) is not int:
        raise UnknownHold(f"a hold id is an int, got: {hold_id!r}")
    return hold_id


def _find(conn: sqlite3.Connection, name: str) -> Account | None:
    row = conn.execute(ACCOUNT_SQL + " WHERE name = ?", (name,)).fetchone()
    return None if row is None else account_of(row)


def _get(conn: sqlite3.Connection, name: str) -> Account:
    acc = _find(conn, name)
    if acc is None:
        raise UnknownAccount(name)
    return acc


def _need(acc: Account, amount: int) -> None:
    if acc.available < amount:
        raise Overdraft(acc.name, amount, acc.available)


def _put(conn: sqlite3.Connection, acc: Account) -> None:
    conn.execute(
        "UPDATE accounts SET available = ?, held = ?, spent = ?, earned = ? WHERE name = ?",
        (acc.available, acc.held, acc.spent, acc.earned, acc.name),
    )


def _log(
    conn: sqlite3.Connection,
    now: float,
    op: str,
    account: str,
    counterparty: str | None = None,
    amount: int = 0,
    hold: int | None = None,
    job: str = "",
    note: str = "",
) -> None:
    conn.execute(
        "INSERT INTO ledger_log (time, op, account, counterparty, amount, hold, job, note)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (now, op, account, counterparty, amount, hold, job, note),
    )


def _ensure(conn: sqlite3.Connection, now: float, name: str, kind: AccountKind) -> Account:
    acc = _find(conn, name)
    if acc is not None:
        if acc.kind != kind:
            raise LedgerError(f"account {name!r} is a {acc.kind} account, not a {kind} account")
        return acc
    conn.execute(
        "INSERT INTO accounts (name, kind, available, held, created) VALUES (?, ?, 0, 0, ?)",
        (name, kind, now),
    )
    _log(conn, now, "open", name, note=kind)
    return Account(name, kind, 0, 0, 0, 0)


def _deposit(conn: sqlite3.Connection, now: float, acc: Account, amount: int, note: str) -> Account:
    # Keep the sum of all balances (so each one) under MAX_AMOUNT: inside SQLite's int64.
    supply = int(
        conn.execute("SELECT coalesce(sum(available + held), 0) FROM accounts").fetchone()[0]
    )
    if supply + amount > MAX_AMOUNT:
        raise LedgerError(
            f"a deposit of {format_amount(amount)} to {acc.name!r} would put more than"
            f" {format_amount(MAX_AMOUNT)} in the ledger (it has {format_amount(supply)})"
        )
    after = replace(acc, available=acc.available + amount)
    _put(conn, after)
    _log(conn, now, "deposit", acc.name, amount=amount, note=note)
    return after


def _withdraw(
    conn: sqlite3.Connection, now: float, acc: Account, amount: int, note: str
) -> Account:
    _need(acc, amount)
    after = replace(acc, available=acc.available - amount)
    _put(conn, after)
    _log(conn, now, "withdraw", acc.name, amount=amount, note=note)
    return after


def _open_hold(conn: sqlite3.Connection, hold_id: int) -> Hold:
    row = conn.execute(HOLD_SQL + " WHERE id = ?", (hold_id,)).fetchone()
    if row is None:
        raise UnknownHold(f"no hold {hold_id}")
    hold = hold_of(row)
    if hold.state != "open":
        raise UnknownHold(f"hold {hold_id} is already {hold.state}")
    return hold


def _close(
    conn: sqlite3.Connection,
    now: float,
    hold: Hold,
    state: Literal["settled", "released"],
    charged: int,
    note: str,
) -> Hold:
    conn.execute(
        "UPDATE holds SET state = ?, charged = ?, closed = ? WHERE id = ?",
        (state, charged, now, hold.hold_id),
    )
    op = "settle" if state == "settled" else "release"
    counterparty = hold.payee if state == "settled" else None
    amount = charged if state == "settled" else hold.amount
    _log(conn, now, op, hold.account, counterparty, amount, hold.hold_id, hold.job, note)
    return replace(hold, state=state, charged=charged, closed=now)


def _end_read(conn: sqlite3.Connection) -> None:
    if conn.in_transaction:  # (a failed statement may have ended it already)
        conn.execute("COMMIT")
