"""The job store's side of the market: escrow holds that follow a job's lease (private).

A lease won at auction carries ``LeaseTerms``; ``place_hold`` puts the team's hold in
the lease's own transaction (the ledger works on the store's connection, each of its
operations in a savepoint), so a DISPATCH never goes out for a job whose team could not
pay. The job row keeps the hold's id and the bundle's hourly rate; when the lease ends
the hold is settled (completed: the hours from lease to result at that rate, at most
the hold) or released (failed, cancelled, requeued). Every account touched is noted in
``Tx.balances`` so the scheduler's view of the teams' money follows each batch.
"""

from __future__ import annotations

import logging
from typing import Any

from ..economics import Ledger, LedgerError, check_micro
from ._store_batch import BudgetSet, LeaseTerms, NotLeasable, SetBudget, check_name
from ._store_types import InvalidOpError

__all__ = ("budget", "check_terms", "end_hold", "ledger_of", "place_hold")

log = logging.getLogger("mabeam.store")


def ledger_of(tx: Any) -> Ledger:
    """The batch's ledger: on the store's connection, at the batch's time."""
    if tx.ledger is None:
        now = tx.now
        tx.ledger = Ledger(tx.conn, clock=lambda: now)
    ledger: Ledger = tx.ledger
    return ledger


def check_terms(terms: object) -> LeaseTerms:
    """``terms`` if they are well-formed ``LeaseTerms``, else ``InvalidOpError``."""
    if type(terms) is not LeaseTerms:
        raise InvalidOpError(f"Lease.terms must be LeaseTerms or None, got: {terms!r}")
    check_name("terms.team", terms.team)
    check_name("terms.payee", terms.payee)
    try:
        check_micro(terms.rate, "terms.rate")
        check_micro(terms.hold, "terms.hold")
    except LedgerError as exc:
        raise InvalidOpError(str(exc)) from None
    return terms


def place_hold(tx: Any, job_id: str, terms: LeaseTerms) -> int | NotLeasable:
    """Hold ``terms.hold`` of the team's money for ``job_id``, payable to the payee: the
    hold's id, or ``NotLeasable`` (the job stays queued) when the team cannot pay."""
    ledger = ledger_of(tx)
    try:
        try:
            ledger.account(terms.payee)
        except LedgerError:
            ledger.ensure_account(terms.payee, "owner")
        hold = ledger.hold(terms.team, terms.hold, payee=terms.payee, job=job_id)
    except LedgerError as exc:
        _note(tx, ledger, terms.team)
        return NotLeasable(job_id, "queued", f"team {terms.team!r} cannot pay: {exc}")
    _note(tx, ledger, terms.team)
    return hold.hold_id


def end_hold(tx: Any, hold_id: int | None, rate: int | None, held_s: float | None) -> None:
    """Close a lease's hold: settle it for ``held_s`` seconds at ``rate`` per hour (a
    completed job), or release it whole (``held_s`` None: failed, cancelled, requeued)."""
    if hold_id is None:
        return
    ledger = ledger_of(tx)
    try:
        if held_s is None:
            hold = ledger.release(hold_id)
        else:
            charge = int((rate or 0) * max(0.0, held_s) / 3600.0)
            hold = ledger.settle(hold_id, charge)
    except LedgerError as exc:  # closed already: the ledger is right, the row was behind
        log.error("hold %s of a lease could not be closed: %s", hold_id, exc)
        return
    _note(tx, ledger, hold.account)


def budget(tx: Any, op: SetBudget) -> BudgetSet:
    """``SetBudget``: the ledger's errors (bad amount, an owner's account) refuse it."""
    check_name("team", op.team)
    if type(op.note) is not str:
        raise InvalidOpError(f"SetBudget.note must be a str, got: {op.note!r}")
    ledger = ledger_of(tx)
    try:
        account = ledger.set_budget(op.team, op.amount, note=op.note)
    except LedgerError as exc:
        raise InvalidOpError(str(exc)) from None
    tx.balances[account.name] = account.available
    return BudgetSet(account.name, account.available, account.held)


def _note(tx: Any, ledger: Ledger, team: str) -> None:
    try:
        tx.balances[team] = ledger.account(team).available
    except LedgerError:
        tx.balances[team] = 0
