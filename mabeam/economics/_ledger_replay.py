"""Replaying the audit log from zero, and checking the tables against it (``verify``).

The log alone determines every account and hold; the ``accounts`` and ``holds`` tables
are a cache of it kept by the same transactions. ``check`` rebuilds them from the log
and names the first place where a table, a sum or a balance disagrees.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass, field

from ._errors import LedgerError
from ._ledger_types import ACCOUNT_SQL, HOLD_SQL, LOG_SQL, LogEntry, account_of, entry_of, hold_of
from ._money import format_amount

__all__ = ("Replay", "check", "replay")


@dataclass(slots=True)
class _Acc:
    kind: str
    available: int = 0
    held: int = 0
    spent: int = 0
    earned: int = 0


@dataclass(slots=True)
class _Hold:
    account: str
    payee: str
    amount: int
    job: str
    state: str = "open"
    charged: int | None = None


@dataclass(slots=True)
class Replay:
    """Accounts, holds and money issued, as the log says they are."""

    accounts: dict[str, _Acc] = field(default_factory=dict)
    holds: dict[int, _Hold] = field(default_factory=dict)
    issued: int = 0

    def apply(self, e: LogEntry) -> None:
        """Apply one entry; ``LedgerError`` naming it if it cannot have happened."""
        if e.op == "open":
            if e.account in self.accounts:
                raise _bad(e, "opens an account that is already open")
            self.accounts[e.account] = _Acc(e.note)
            return
        acc = self._acc(e, e.account)
        if e.op == "deposit":
            acc.available += e.amount
            self.issued += e.amount
        elif e.op == "withdraw":
            self._take(e, acc, e.amount)
            self.issued -= e.amount
        elif e.op == "transfer":
            dst = self._acc(e, e.counterparty)
            self._take(e, acc, e.amount)
            dst.available += e.amount
        elif e.op == "hold":
            self._acc(e, e.counterparty)
            if e.hold_id is None or e.hold_id in self.holds:
                raise _bad(e, "has no new hold id")
            self._take(e, acc, e.amount)
            acc.held += e.amount
            self.holds[e.hold_id] = _Hold(e.account, str(e.counterparty), e.amount, e.job)
        elif e.op in ("settle", "release"):
            self._close(e, acc)
        else:
            raise _bad(e, f"has an unknown op {e.op!r}")

    def _close(self, e: LogEntry, acc: _Acc) -> None:
        hold = self.holds.get(e.hold_id) if e.hold_id is not None else None
        if hold is None or hold.state != "open" or hold.account != e.account:
            raise _bad(e, f"closes hold {e.hold_id}, which is not an open hold of the account")
        acc.held -= hold.amount
        if e.op == "release":
            if e.amount != hold.amount:
                raise _bad(e, f"returns {e.amount} of a hold of {hold.amount}")
            acc.available += hold.amount
            hold.state, hold.charged = "released", 0
            return
        if e.amount > hold.amount or e.counterparty != hold.payee:
            raise _bad(e, f"pays {e.amount} to {e.counterparty!r} from hold {e.hold_id}")
        payee = self._acc(e, hold.payee)
        acc.available += hold.amount - e.amount
        acc.spent += e.amount
        payee.available += e.amount
        payee.earned += e.amount
        hold.state, hold.charged = "settled", e.amount

    def _acc(self, e: LogEntry, name: str | None) -> _Acc:
        acc = self.accounts.get(name) if name is not None else None
        if acc is None:
            raise _bad(e, f"names account {name!r}, which was never opened")
        return acc

    @staticmethod
    def _take(e: LogEntry, acc: _Acc, amount: int) -> None:
        if acc.available < amount:
            raise _bad(e, f"takes {amount} from {e.account!r}, which has {acc.available}")
        acc.available -= amount


def _bad(e: LogEntry, what: str) -> LedgerError:
    return LedgerError(f"ledger log entry {e.seq} ({e.op}) {what}")


def replay(entries: Iterable[LogEntry]) -> Replay:
    state = Replay()
    for e in entries:
        state.apply(e)
    return state


def check(conn: sqlite3.Connection) -> None:
    """Every invariant of the ledger in ``conn`` (read in one snapshot by the caller);
    ``LedgerError`` naming the first that is broken."""
    accounts = [account_of(r) for r in conn.execute(ACCOUNT_SQL + " ORDER BY name")]
    for a in accounts:
        for what in ("available", "held", "spent", "earned"):
            if getattr(a, what) < 0:
                raise LedgerError(f"account {a.name!r} has a negative {what}")
    open_held: dict[str, int] = {}
    for h in map(hold_of, conn.execute(HOLD_SQL + " WHERE state = 'open'")):
        open_held[h.account] = open_held.get(h.account, 0) + h.amount
    for a in accounts:
        in_holds = open_held.pop(a.name, 0)
        if a.held != in_holds:
            raise LedgerError(
                f"account {a.name!r} has {format_amount(a.held)} held but its open holds"
                f" add up to {format_amount(in_holds)}"
            )
    if open_held:
        raise LedgerError(f"open holds of unknown accounts: {sorted(open_held)}")
    state = replay(map(entry_of, conn.execute(LOG_SQL + " ORDER BY seq")))
    total = sum(a.total for a in accounts)
    if total != state.issued:
        raise LedgerError(
            f"money is not conserved: the accounts hold {format_amount(total)} in all,"
            f" the log issued {format_amount(state.issued)}"
        )
    if sorted(state.accounts) != [a.name for a in accounts]:
        raise LedgerError("the accounts table and the log name different accounts")
    for a in accounts:
        want = state.accounts[a.name]
        got = _Acc(a.kind, a.available, a.held, a.spent, a.earned)
        if got != want:
            raise LedgerError(f"account {a.name!r} is {got} but replaying the log gives {want}")
    for h in map(hold_of, conn.execute(HOLD_SQL)):
        want_hold = state.holds.get(h.hold_id)
        got_hold = _Hold(h.account, h.payee, h.amount, h.job, h.state, h.charged)
        if want_hold != got_hold:
            raise LedgerError(f"hold {h.hold_id} is {got_hold} but the log gives {want_hold}")
    if len(state.holds) != conn.execute("SELECT count(*) FROM holds").fetchone()[0]:
        raise LedgerError("the log has holds that the holds table lacks")
