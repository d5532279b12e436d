"""The ledger's contract piece by piece: escrow, atomicity inside a caller's transaction,
the append-only log that replays, ``verify`` catching tampering, the file format, and a
clear error for each kind of bad call. (Random sequences: test_economics_ledger_model.)
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from mabeam.economics import (
    LEDGER_SCHEMA,
    MAX_AMOUNT,
    BadAmount,
    Ledger,
    LedgerError,
    LogEntry,
    Overdraft,
    UnknownAccount,
    UnknownHold,
)

C = 1_000_000  # one credit in micro-credits


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        self.t += 1.0
        return self.t


@pytest.fixture
def ledger(tmp_path: Path) -> Iterator[Ledger]:
    with Ledger.open(tmp_path / "ledger.db", clock=Clock()) as led:
        led.ensure_account("team-a")
        led.ensure_account("team-b")
        led.ensure_account("gpu-owner", "owner")
        led.deposit("team-a", 10 * C, note="budget")
        yield led


def store_like_connection(path: Path) -> sqlite3.Connection:
    """A connection set up as the job store sets up its own: autocommit, WAL, and the
    ledger tables created by a migration beside a table of the store's."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("BEGIN IMMEDIATE")
    conn.execute("CREATE TABLE jobs (seq INTEGER PRIMARY KEY, state TEXT NOT NULL)")
    for statement in LEDGER_SCHEMA:
        conn.execute(statement)
    conn.execute("COMMIT")
    return conn


# -- escrow ------------------------------------------------------------------------


def test_a_hold_settles_the_charge_to_the_payee_and_returns_the_rest(ledger: Ledger) -> None:
    hold = ledger.hold("team-a", 4 * C, payee="gpu-owner", job="j-1", note="slot 0")
    assert (hold.state, hold.amount, hold.job, hold.charged) == ("open", 4 * C, "j-1", None)
    a = ledger.account("team-a")
    assert (a.available, a.held, a.total) == (6 * C, 4 * C, 10 * C)
    assert ledger.open_holds(job="j-1") == [hold]
    assert ledger.open_holds(account="team-a") == [hold]
    assert ledger.open_holds(job="j-2") == []

    done = ledger.settle(hold.hold_id, 1_500_000, note="1.5 GPU-seconds")
    assert (done.state, done.charged, done.closed is not None) == ("settled", 1_500_000, True)
    a, owner = ledger.account("team-a"), ledger.account("gpu-owner")
    assert (a.available, a.held, a.spent) == (8_500_000, 0, 1_500_000)
    assert (owner.available, owner.earned) == (1_500_000, 1_500_000)
    assert ledger.open_holds() == []
    ledger.verify()


def test_a_charge_above_the_hold_pays_the_hold_and_says_so(ledger: Ledger) -> None:
    hold = ledger.hold("team-a", 2 * C, payee="gpu-owner", job="j-1")
    assert ledger.settle(hold.hold_id, 5 * C, note="ran long").charged == 2 * C
    assert ledger.account("team-a").available == 8 * C
    assert ledger.log()[-1].note == "ran long; charge 5 capped at the hold"


def test_a_release_returns_everything_and_a_free_allocation_is_fine(ledger: Ledger) -> None:
    hold = ledger.hold("team-a", 3 * C, payee="gpu-owner", job="j-1")
    assert ledger.release(hold.hold_id, note="node lost").state == "released"
    assert ledger.account("team-a").available == 10 * C
    free = ledger.hold("team-b", 0, payee="gpu-owner", job="j-2")  # team-b has nothing
    assert ledger.settle(free.hold_id, 0).charged == 0
    assert ledger.account("gpu-owner").earned == 0
    ledger.verify()


def test_set_budget_moves_available_only(ledger: Ledger) -> None:
    ledger.hold("team-a", 4 * C, payee="gpu-owner")
    a = ledger.set_budget("team-a", 2 * C)
    assert (a.available, a.held) == (2 * C, 4 * C)
    assert ledger.set_budget("team-a", 7 * C).available == 7 * C
    seq = ledger.log()[-1].seq
    assert ledger.set_budget("team-a", 7 * C).available == 7 * C  # no change, no entry
    assert ledger.log()[-1].seq == seq
    new = ledger.set_budget("team-new", 5 * C)
    assert (new.kind, new.available) == ("team", 5 * C)
    assert [e.op for e in ledger.log(account="team-new")] == ["open", "deposit"]
    assert ledger.issued() == 7 * C + 4 * C + 5 * C
    ledger.verify()


def test_transfers_move_available_between_accounts(ledger: Ledger) -> None:
    ledger.transfer("team-a", "team-b", 3 * C, note="loan")
    assert ledger.account("team-a").available == 7 * C
    b = ledger.account("team-b")
    assert (b.available, b.spent, b.earned) == (3 * C, 0, 0)
    entry = ledger.log(account="team-b")[-1]
    assert (entry.op, entry.account, entry.counterparty, entry.amount) == (
        "transfer",
        "team-a",
        "team-b",
        3 * C,
    )


# -- atomicity ---------------------------------------------------------------------


def test_a_refused_op_inside_the_callers_transaction_changes_nothing(tmp_path: Path) -> None:
    conn = store_like_connection(tmp_path / "store.db")
    ledger = Ledger(conn, clock=Clock())
    ledger.ensure_account("team")
    ledger.ensure_account("owner", "owner")
    ledger.deposit("team", 5 * C)
    before = len(ledger.log())

    conn.execute("BEGIN IMMEDIATE")  # one batch of the store
    conn.execute("INSERT INTO jobs VALUES (1, 'leased')")
    hold = ledger.hold("team", 2 * C, payee="owner", job="j-1")  # good
    with pytest.raises(Overdraft):
        ledger.hold("team", 4 * C, payee="owner", job="j-2")  # 3 left
    with pytest.raises(UnknownAccount):
        ledger.hold("team", C, payee="nobody", job="j-3")
    with pytest.raises(UnknownHold):
        ledger.settle(hold.hold_id + 1, C)
    with pytest.raises(sqlite3.IntegrityError):  # a failing write of the store's own
        conn.execute("INSERT INTO jobs VALUES (1, 'again')")
    ledger.transfer("team", "owner", C)  # good
    conn.execute("COMMIT")

    assert conn.execute("SELECT seq, state FROM jobs").fetchall() == [(1, "leased")]
    team = ledger.account("team")
    assert (team.available, team.held) == (2 * C, 2 * C)
    assert ledger.account("owner").available == C
    assert [h.job for h in ledger.open_holds()] == ["j-1"]
    assert [(e.op, e.amount) for e in ledger.log(after=before)] == [
        ("hold", 2 * C),
        ("transfer", C),
    ]
    ledger.verify()

    conn.execute("BEGIN IMMEDIATE")  # a batch that rolls back takes the ledger's writes too
    ledger.settle(hold.hold_id, C)
    conn.execute("ROLLBACK")
    assert ledger.open_holds() == [hold]
    ledger.verify()
    ledger.close()
    assert conn.execute("SELECT count(*) FROM accounts").fetchone() == (2,)  # still open
    conn.close()


def test_a_refused_op_on_its_own_commits_nothing_and_leaves_no_transaction(
    ledger: Ledger, tmp_path: Path
) -> None:
    with pytest.raises(Overdraft):
        ledger.withdraw("team-a", 11 * C)
    with Ledger.open(tmp_path / "ledger.db") as other:  # another connection sees the same
        assert other.account("team-a").available == 10 * C
        other.deposit("team-b", C)  # ... and can write: no lock was left behind
    assert ledger.account("team-b").available == C


def test_the_connection_must_be_in_autocommit_mode(tmp_path: Path) -> None:
    conn = sqlite3.connect(tmp_path / "x.db")  # isolation_level "" (implicit BEGIN)
    with pytest.raises(ValueError, match="autocommit"):
        Ledger(conn)
    conn.close()
    bare = sqlite3.connect(":memory:", isolation_level=None)
    with pytest.raises(LedgerError, match="run LEDGER_SCHEMA"):
        Ledger(bare)
    bare.close()


# -- the audit log -------------------------------------------------------------------


def test_the_log_is_append_only(ledger: Ledger, tmp_path: Path) -> None:
    conn = sqlite3.connect(tmp_path / "ledger.db", isolation_level=None)
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        conn.execute("UPDATE ledger_log SET amount = 0 WHERE op = 'deposit'")
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        conn.execute("DELETE FROM ledger_log")
    conn.close()
    assert ledger.log(account="team-a")[-1].amount == 10 * C


def replay(entries: list[LogEntry]) -> dict[str, int]:
    """Each account's total (available + held), from the log alone."""
    total: dict[str, int] = {}
    for e in entries:
        total.setdefault(e.account, 0)
        sign = {"deposit": 1, "withdraw": -1, "transfer": -1, "settle": -1}.get(e.op, 0)
        total[e.account] += sign * e.amount
        if e.op in ("transfer", "settle") and e.counterparty is not None:
            total[e.counterparty] += e.amount
    return total


def test_the_log_replays_to_the_balances_and_pages(ledger: Ledger) -> None:
    h1 = ledger.hold("team-a", 3 * C, payee="gpu-owner", job="j-1")
    h2 = ledger.hold("team-a", 2 * C, payee="gpu-owner", job="j-2")
    ledger.settle(h1.hold_id, C)
    ledger.release(h2.hold_id)
    ledger.transfer("gpu-owner", "team-b", C // 2)
    ledger.withdraw("team-a", C)
    entries = ledger.log(limit=1000)
    assert [e.seq for e in entries] == sorted(e.seq for e in entries)
    assert replay(entries) == {a.name: a.total for a in ledger.accounts()}
    assert ledger.issued() == 9 * C == sum(a.total for a in ledger.accounts())
    pages, after = [], 0
    while page := ledger.log(after=after, limit=3):
        pages.append(page)
        after = page[-1].seq
    assert [e for p in pages for e in p] == entries and len(pages[0]) == 3
    owner_ops = [e.op for e in ledger.log(account="gpu-owner")]
    assert owner_ops == ["open", "hold", "hold", "settle", "transfer"]  # either side


def tamper(path: Path, *statements: str) -> None:
    conn = sqlite3.connect(path, isolation_level=None)
    for statement in statements:
        conn.execute(statement)
    conn.close()


@pytest.mark.parametrize(
    ("statements", "message"),
    [
        (["UPDATE accounts SET available = available + 1 WHERE name = 'team-b'"], "conserved"),
        (
            [
                "UPDATE accounts SET available = available - 1 WHERE name = 'team-a'",
                "UPDATE accounts SET available = available + 1 WHERE name = 'team-b'",
            ],
            "account 'team-a' is .* but replaying the log gives",
        ),
        (
            [
                "UPDATE accounts SET held = held + 1, available = available - 1"
                " WHERE name = 'team-a'"
            ],
            "open holds add up to 3",
        ),
        (["UPDATE holds SET job = 'j-forged'"], "hold 1 is .* but the log gives"),
        (
            [
                "DROP TRIGGER ledger_log_no_update",
                "UPDATE ledger_log SET amount = amount + 1 WHERE op = 'deposit'",
            ],
            "conserved",
        ),
        (
            [
                "DROP TRIGGER ledger_log_no_delete",
                "DELETE FROM ledger_log WHERE op = 'open' AND account = 'gpu-owner'",
            ],
            "never opened",
        ),
    ],
)
def test_verify_names_the_first_broken_invariant(
    ledger: Ledger, tmp_path: Path, statements: list[str], message: str
) -> None:
    ledger.hold("team-a", 3 * C, payee="gpu-owner", job="j-1")
    ledger.verify()
    tamper(tmp_path / "ledger.db", *statements)
    with pytest.raises(LedgerError, match=message):
        ledger.verify()


# -- files -----------------------------------------------------------------------------


def test_a_ledger_file_is_durable_and_other_files_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "ledger.db"
    with Ledger.open(path) as led:
        led.set_budget("team", 3 * C)
        hold = led.hold("team", C, payee=led.ensure_account("o", "owner").name)
    with Ledger.open(path) as led:
        assert led.open_holds() == [hold]
        assert led.account("team").available == 2 * C
        led.verify()
    with pytest.raises(LedgerError, match="closed"):
        led.account("team")

    garbage = tmp_path / "garbage.db"
    garbage.write_bytes(b"not a database, just bytes" * 100)
    with pytest.raises(LedgerError, match="not a usable ledger file"):
        Ledger.open(garbage)
    other = tmp_path / "other.db"
    tamper(other, "CREATE TABLE jobs (seq INTEGER PRIMARY KEY)")
    with pytest.raises(LedgerError, match="another application"):
        Ledger.open(other)
    partial = tmp_path / "partial.db"
    tamper(partial, LEDGER_SCHEMA[0])
    with pytest.raises(LedgerError, match="only part of the ledger schema"):
        Ledger.open(partial)
    store = tmp_path / "store.db"
    store_like_connection(store).close()  # a file that has the tables is used as it is
    with Ledger.open(store) as led:
        assert led.accounts() == []


def test_an_in_memory_ledger_works() -> None:
    with Ledger.open(":memory:") as led:
        led.set_budget("t", C)
        led.verify()


# -- errors ----------------------------------------------------------------------------


def test_an_overdraft_names_the_account_and_the_amounts(ledger: Ledger) -> None:
    with pytest.raises(Overdraft) as info:
        ledger.hold("team-a", 12_500_000, payee="gpu-owner")
    assert str(info.value) == "account 'team-a' has 10 available, 12.5 needed"
    assert (info.value.account, info.value.needed, info.value.available) == (
        "team-a",
        12_500_000,
        10 * C,
    )
    with pytest.raises(Overdraft, match=re.escape("'team-b' has 0 available, 0.000001 needed")):
        ledger.transfer("team-b", "team-a", 1)


def test_unknown_accounts_and_bad_names_are_clear(ledger: Ledger) -> None:
    with pytest.raises(UnknownAccount, match="unknown account 'nobody'"):
        ledger.account("nobody")
    with pytest.raises(UnknownAccount, match="'nobody'"):
        ledger.deposit("nobody", C)
    with pytest.raises(LedgerError, match="is a team account, not a owner account"):
        ledger.ensure_account("team-a", "owner")
    with pytest.raises(LedgerError, match="kind must be 'team' or 'owner'"):
        ledger.ensure_account("x", "bank")
    for bad in ("", "tab\there", "x" * 129, "nul\x00"):
        with pytest.raises(LedgerError, match="1 to 128 printable characters"):
            ledger.ensure_account(bad)
    with pytest.raises(LedgerError, match="expected a str name, got: 7"):
        ledger.ensure_account(7)  # type: ignore[arg-type]
    assert ledger.ensure_account("x" * 128).name == "x" * 128
    with pytest.raises(LedgerError, match="two accounts"):
        ledger.transfer("team-a", "team-a", C)
    with pytest.raises(LedgerError, match="cannot hold money for itself"):
        ledger.hold("team-a", C, payee="team-a")


@pytest.mark.parametrize(
    ("amount", "message"),
    [
        (1.5, "expected an int of micro-credits, got: 1.5"),
        (2.0, "expected an int of micro-credits, got: 2.0"),
        (True, "expected an int of micro-credits, got: True"),
        ("5", "expected an int of micro-credits, got: '5'"),
        (-1, "must not be negative, got: -0.000001"),
        (MAX_AMOUNT + 1, "over the largest amount"),
        (0, "must be more than 0"),
    ],
)
def test_bad_amounts_are_refused_with_the_value(
    ledger: Ledger, amount: object, message: str
) -> None:
    with pytest.raises(BadAmount, match=message):
        ledger.deposit("team-a", amount)  # type: ignore[arg-type]
    with pytest.raises(BadAmount, match=message):
        ledger.transfer("team-a", "team-b", amount)  # type: ignore[arg-type]
    if amount != 0:  # zero is a free hold and a zero charge
        with pytest.raises(BadAmount, match=message):
            ledger.hold("team-a", amount, payee="gpu-owner")  # type: ignore[arg-type]
    assert ledger.account("team-a").available == 10 * C


def test_the_ledger_never_holds_more_than_max_amount(ledger: Ledger) -> None:
    ledger.deposit("team-b", MAX_AMOUNT - 10 * C)
    with pytest.raises(LedgerError, match="would put more than"):
        ledger.deposit("team-b", 1)
    with pytest.raises(LedgerError, match="would put more than"):
        ledger.set_budget("team-b", MAX_AMOUNT)
    ledger.withdraw("team-a", C)
    ledger.deposit("team-b", C)  # back at the cap exactly
    assert sum(a.total for a in ledger.accounts()) == MAX_AMOUNT
    ledger.verify()


def test_closed_and_unknown_holds_are_refused(ledger: Ledger) -> None:
    hold = ledger.hold("team-a", C, payee="gpu-owner")
    ledger.settle(hold.hold_id, C)
    with pytest.raises(UnknownHold, match=f"hold {hold.hold_id} is already settled"):
        ledger.settle(hold.hold_id, C)
    with pytest.raises(UnknownHold, match=f"hold {hold.hold_id} is already settled"):
        ledger.release(hold.hold_id)
    other = ledger.hold("team-a", C, payee="gpu-owner")
    ledger.release(other.hold_id)
    with pytest.raises(UnknownHold, match="already released"):
        ledger.release(other.hold_id)
    with pytest.raises(UnknownHold, match="no hold 999"):
        ledger.settle(999, 0)
    with pytest.raises(UnknownHold, match="a hold id is an int, got: '1'"):
        ledger.release("1")  # type: ignore[arg-type]
    assert ledger.account("team-a").available == 9 * C


def test_notes_are_clipped_and_bad_arguments_refused(ledger: Ledger) -> None:
    hold = ledger.hold("team-a", C, payee="gpu-owner", job="j-1")
    ledger.release(hold.hold_id, note="traceback " * 1000)
    note = ledger.log()[-1].note
    assert len(note) == 1024 and note.endswith("...")
    with pytest.raises(LedgerError, match="note: expected a str"):
        ledger.deposit("team-a", C, note=None)  # type: ignore[arg-type]
    with pytest.raises(LedgerError, match="job: expected a str"):
        ledger.hold("team-a", C, payee="gpu-owner", job="j\n")
    with pytest.raises(LedgerError, match=re.escape("limit: expected an int in 1..100000")):
        ledger.log(limit=0)
    with pytest.raises(LedgerError, match="after: expected an int >= 0"):
        ledger.log(after=-1)
