"""Model-based test of ``Ledger``: random operations on a real SQLite file, checked
against a plain in-memory model.

A hypothesis state machine opens accounts, deposits, withdraws, sets budgets,
transfers, places holds (allocations), settles them with a random charge, also above
the hold (completions), releases them (failures, cancellations), tries invalid ops
(overdrafts, unknown accounts and holds, self-transfers, bad amounts) and reopens the
file. The model predicts every outcome; after each step: the ledger agrees with it
account by account and hold by hold, money is conserved (the accounts own what was
issued), no balance is negative, a refused op changed nothing (log included) and
``verify`` passes. At the end the file, reopened, holds the same state.
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from mabeam.economics import (
    MAX_AMOUNT,
    Account,
    BadAmount,
    Hold,
    Ledger,
    LedgerError,
    LogEntry,
    Overdraft,
    UnknownAccount,
    UnknownHold,
)

TEAMS = ("t1", "t2", "t3")
OWNERS = ("o1", "o2")
NAMES = (*TEAMS, *OWNERS, "ghost")  # "ghost" is never opened
CREDIT = 1_000_000
# Mostly quarter credits (so holds, overdrafts and caps collide), some odd amounts,
# now and then zero or the largest amount (which fills the ledger's supply cap).
amounts = st.one_of(
    st.integers(-1, 24).map(lambda n: MAX_AMOUNT if n < 0 else n * CREDIT // 4),
    st.integers(1, 3 * CREDIT),
)
# Half the time a name that is likely open (an allocation: a team holds for an owner).
teams = st.one_of(st.sampled_from(TEAMS[:2]), st.sampled_from(NAMES))
owners = st.one_of(st.just("o1"), st.sampled_from(NAMES))
bad_amounts = st.sampled_from([1.5, 2.0, -1, -CREDIT, True, False, MAX_AMOUNT + 1, "3", None])


@dataclass
class MAccount:
    kind: str
    available: int = 0
    held: int = 0
    spent: int = 0
    earned: int = 0


Snapshot = tuple[list[Account], list[Hold], list[LogEntry]]


class LedgerMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.dir = Path(tempfile.mkdtemp(prefix="ledger-model-"))
        self.path = self.dir / "ledger.db"
        self.now = 0.0
        self.ledger = Ledger.open(self.path, clock=self.clock, synchronous="NORMAL")
        self.accounts: dict[str, MAccount] = {}
        self.open_holds: dict[int, tuple[str, str, int]] = {}  # id -> account, payee, amount
        self.hold_ids: list[int] = []
        self.issued = 0

    def clock(self) -> float:
        self.now += 1.0
        return self.now

    def teardown(self) -> None:
        try:
            self.ledger.close()
            with Ledger.open(self.path) as again:  # durable: the same state from the file
                again.verify()
                self.check_against_model(again)
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)

    # -- helpers -----------------------------------------------------------------

    def snapshot(self) -> Snapshot:
        return (self.ledger.accounts(), self.ledger.open_holds(), self.ledger.log(limit=100_000))

    def refused(self, error: type[Exception], op: str, *args: object, **kw: object) -> None:
        """``op`` must raise ``error`` and change nothing."""
        before = self.snapshot()
        fn = getattr(self.ledger, op)
        with pytest.raises(error):
            fn(*args, **kw)
        assert self.snapshot() == before, f"refused {op} changed the ledger"

    def supply(self) -> int:
        return sum(a.available + a.held for a in self.accounts.values())

    def check_against_model(self, ledger: Ledger) -> None:
        got = {
            a.name: MAccount(a.kind, a.available, a.held, a.spent, a.earned)
            for a in ledger.accounts()
        }
        assert got == self.accounts
        holds = {h.hold_id: (h.account, h.payee, h.amount) for h in ledger.open_holds()}
        assert holds == self.open_holds
        assert ledger.issued() == self.issued

    # -- rules -------------------------------------------------------------------

    @initialize(budget=st.integers(0, 40))
    def open_some_accounts(self, budget: int) -> None:
        """Every run starts with two funded teams and an owner (t3 and o2 come later)."""
        for name, kind in (("t1", "team"), ("t2", "team"), ("o1", "owner")):
            self.ledger.ensure_account(name, kind)
            self.accounts[name] = MAccount(kind)
        for name in ("t1", "t2"):
            self.ledger.set_budget(name, budget * CREDIT // 4)
            self.accounts[name].available = budget * CREDIT // 4
            self.issued += budget * CREDIT // 4

    @rule(name=st.sampled_from(TEAMS + OWNERS), kind=st.sampled_from(["team", "owner"]))
    def ensure_account(self, name: str, kind: str) -> None:
        known = self.accounts.get(name)
        if known is not None and known.kind != kind:
            self.refused(LedgerError, "ensure_account", name, kind)
            return
        acc = self.ledger.ensure_account(name, kind)
        self.accounts.setdefault(name, MAccount(kind))
        assert (acc.name, acc.kind, acc.available) == (name, kind, self.accounts[name].available)

    @rule(name=st.one_of(teams, owners), amount=amounts)
    def deposit(self, name: str, amount: int) -> None:
        if amount == 0:
            self.refused(BadAmount, "deposit", name, amount)
        elif name not in self.accounts:
            self.refused(UnknownAccount, "deposit", name, amount)
        elif self.supply() + amount > MAX_AMOUNT:
            self.refused(LedgerError, "deposit", name, amount)
        else:
            acc = self.ledger.deposit(name, amount, note="budget")
            self.accounts[name].available += amount
            self.issued += amount
            assert acc.available == self.accounts[name].available

    @rule(name=st.one_of(teams, owners), amount=amounts)
    def withdraw(self, name: str, amount: int) -> None:
        if amount == 0:
            self.refused(BadAmount, "withdraw", name, amount)
        elif name not in self.accounts:
            self.refused(UnknownAccount, "withdraw", name, amount)
        elif self.accounts[name].available < amount:
            self.refused(Overdraft, "withdraw", name, amount)
        else:
            self.ledger.withdraw(name, amount)
            self.accounts[name].available -= amount
            self.issued -= amount

    @rule(name=st.sampled_from(TEAMS), amount=amounts)
    def set_budget(self, name: str, amount: int) -> None:
        acc = self.accounts.get(name, MAccount("team"))
        if amount > acc.available and self.supply() + amount - acc.available > MAX_AMOUNT:
            self.refused(LedgerError, "set_budget", name, amount)
            return
        got = self.ledger.set_budget(name, amount)
        self.accounts[name] = acc
        self.issued += amount - acc.available
        acc.available = amount
        assert (got.available, got.held) == (amount, acc.held)

    @rule(src=teams, dst=st.one_of(teams, owners), amount=amounts)
    def transfer(self, src: str, dst: str, amount: int) -> None:
        if amount == 0:
            self.refused(BadAmount, "transfer", src, dst, amount)
        elif src == dst:
            self.refused(LedgerError, "transfer", src, dst, amount)
        elif src not in self.accounts or dst not in self.accounts:
            self.refused(UnknownAccount, "transfer", src, dst, amount)
        elif self.accounts[src].available < amount:
            self.refused(Overdraft, "transfer", src, dst, amount)
        else:
            self.ledger.transfer(src, dst, amount)
            self.accounts[src].available -= amount
            self.accounts[dst].available += amount

    @rule(name=teams, payee=owners, amount=amounts)
    def allocate(self, name: str, payee: str, amount: int) -> None:
        if name == payee:
            self.refused(LedgerError, "hold", name, amount, payee=payee)
        elif name not in self.accounts or payee not in self.accounts:
            self.refused(UnknownAccount, "hold", name, amount, payee=payee)
        elif self.accounts[name].available < amount:
            self.refused(Overdraft, "hold", name, amount, payee=payee)
        else:
            hold = self.ledger.hold(name, amount, payee=payee, job=f"j{len(self.hold_ids)}")
            assert hold.state == "open" and hold.hold_id not in self.hold_ids
            self.hold_ids.append(hold.hold_id)
            self.open_holds[hold.hold_id] = (name, payee, amount)
            self.accounts[name].available -= amount
            self.accounts[name].held += amount

    @precondition(lambda self: self.open_holds)
    @rule(pick=st.integers(0, 7), charge=amounts)
    def complete(self, pick: int, charge: int) -> None:
        hold_id = sorted(self.open_holds)[pick % len(self.open_holds)]
        name, payee, amount = self.open_holds.pop(hold_id)
        hold = self.ledger.settle(hold_id, charge, note="done")
        paid = min(charge, amount)
        assert (hold.state, hold.charged) == ("settled", paid)
        acc, to = self.accounts[name], self.accounts[payee]
        acc.held -= amount
        acc.available += amount - paid
        acc.spent += paid
        to.available += paid
        to.earned += paid

    @precondition(lambda self: self.open_holds)
    @rule(pick=st.integers(0, 7))
    def fail_or_cancel(self, pick: int) -> None:
        hold_id = sorted(self.open_holds)[pick % len(self.open_holds)]
        name, _, amount = self.open_holds.pop(hold_id)
        hold = self.ledger.release(hold_id, note="failed")
        assert (hold.state, hold.charged) == ("released", 0)
        self.accounts[name].held -= amount
        self.accounts[name].available += amount

    @rule(pick=st.integers(0, 9), settle=st.booleans())
    def close_a_closed_or_unknown_hold(self, pick: int, settle: bool) -> None:
        closed = [h for h in self.hold_ids if h not in self.open_holds]
        hold_id = closed[pick % len(closed)] if closed and pick < 7 else 1000 + pick
        if settle:
            self.refused(UnknownHold, "settle", hold_id, CREDIT)
        else:
            self.refused(UnknownHold, "release", hold_id)

    @rule(
        op=st.sampled_from(["deposit", "withdraw", "set_budget", "transfer", "hold", "settle"]),
        bad=bad_amounts,
    )
    def bad_amount(self, op: str, bad: object) -> None:
        if op == "transfer":
            self.refused(BadAmount, op, "t1", "t2", bad)
        elif op == "hold":
            self.refused(BadAmount, op, "t1", bad, payee="o1")
        elif op == "settle":
            self.refused(BadAmount, op, min(self.hold_ids, default=1), bad)
        else:
            self.refused(BadAmount, op, "t1", bad)

    @rule()
    def reopen(self) -> None:
        self.ledger.close()
        self.ledger = Ledger.open(self.path, clock=self.clock, synchronous="NORMAL")

    # -- invariants ----------------------------------------------------------------

    @invariant()
    def agrees_with_the_model(self) -> None:
        self.check_against_model(self.ledger)

    @invariant()
    def money_is_conserved_and_never_negative(self) -> None:
        accounts = self.ledger.accounts()
        assert sum(a.total for a in accounts) == self.ledger.issued() == self.supply()
        assert all(min(a.available, a.held, a.spent, a.earned) >= 0 for a in accounts)
        self.ledger.verify()


LedgerMachine.TestCase.settings = settings(
    max_examples=50,
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestLedgerModel = LedgerMachine.TestCase
