"""The coordinator's answer to MARKET: budgets set, ledger accounts, listings, the log.

A MARKET with a ``budget`` is one ``SetBudget`` store op (durable and in the audit log
before the reply); every MARKET reads the accounts and the newest log lines on the
store's thread after that batch, and the listings from the scheduler. A bad amount is
an ERROR ``bad_budget``, an account that does not exist ``unknown_account``.
"""

from __future__ import annotations

import logging
from typing import Any

from ..economics import LedgerError
from . import protocol as p
from ._coord_store import ReadFn, StoreReply, StoreRequest, read_failed
from ._limits import MAX_STATUS_ITEMS
from .store import BudgetSet, JobStore, Outcome, Rejected, SetBudget

__all__ = ("market_reply", "market_request")

log = logging.getLogger("mabeam.coordinator")


def market_request(reply_to: Any, peer: bytes, frame: p.Market, submitter: str) -> StoreRequest:
    """The store work of a MARKET: the budget op (if any) and the read."""
    ops: list[Any] = []
    if frame.budget is not None:
        ops.append(SetBudget(frame.team, frame.budget, note=f"set by {submitter}"[:200]))
    return StoreRequest(ops, reply_to, ("market", peer, frame), read=_read(frame.team, frame.log))


def _read(team: str, lines: int) -> ReadFn:
    def read(store: JobStore, outcomes: list[Outcome]) -> Any:
        ledger = store.ledger()
        if team:
            try:
                accounts = [ledger.account(team)]
            except LedgerError:
                return None
        else:
            accounts = ledger.accounts()
        return accounts, store.ledger_tail(lines) if lines else []

    return read


async def market_reply(
    hub: Any, peer: bytes, frame: p.Market, reply: StoreReply, scheduler: str
) -> None:
    """Send the MARKET_REPLY (or the ERROR) for a committed MARKET request."""
    failed = reply.error or read_failed(reply.read)
    if failed is not None:
        hub._refuse(peer, frame.request_id, "internal", f"the job store failed: {failed}")
        return
    if reply.outcomes and type(reply.outcomes[0]) is Rejected:
        error = reply.outcomes[0].error
        hub._refuse(peer, frame.request_id, "bad_budget", f"budget for {frame.team!r}: {error}")
        return
    if reply.read is None:
        hub._refuse(peer, frame.request_id, "unknown_account",
                    f"no ledger account {frame.team!r}: set its budget first")  # fmt: skip
        return
    accounts, entries = reply.read
    if reply.outcomes and type(reply.outcomes[0]) is BudgetSet:
        log.info("budget of %s set to %d micro-credits", frame.team, frame.budget)
    try:
        market = await hub.runtime.call(scheduler, "market", timeout=5.0)
    except Exception as exc:  # the scheduler is restarting: answer without listings
        log.warning("MARKET without listings: the scheduler did not answer: %s", exc)
        market = {"policy": "", "listings": []}
    out = p.MarketReply(
        frame.request_id,
        market["policy"] or "fifo",
        tuple(
            p.AccountInfo(a.name, a.kind, a.available, a.held, a.spent, a.earned)
            for a in accounts[:MAX_STATUS_ITEMS]
        ),
        tuple(p.ListingInfo(*row) for row in market["listings"][:MAX_STATUS_ITEMS]),
        tuple(
            p.LedgerLine(e.seq, e.time, e.op, e.account, e.counterparty or "", e.amount, e.job)
            for e in entries
        ),
    )
    hub._send(peer, out)
