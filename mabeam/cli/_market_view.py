"""The market as rich tables: ledger accounts, node listings, the audit log.

Shared by ``mabeam budget show`` and ``mabeam status --ledger``; amounts are shown in
credits (``format_amount``), times as the local clock.
"""

from __future__ import annotations

import time
from typing import Any

from rich.table import Table

__all__ = ("accounts_table", "listings_table", "log_table")


def _credits(micro: int) -> str:
    from mabeam.economics import format_amount

    return format_amount(micro)


def accounts_table(reply: Any) -> Table:
    """One row per account: kind, available, held in escrow, spent, earned."""
    table = Table(title=f"ledger (policy: {reply.policy})")
    table.add_column("account", no_wrap=True)
    table.add_column("kind")
    for column in ("available", "held", "spent", "earned"):
        table.add_column(column, justify="right")
    for acc in sorted(reply.accounts, key=lambda a: (a.kind, a.name)):
        table.add_row(acc.name, acc.kind, _credits(acc.available), _credits(acc.held),
                      _credits(acc.spent), _credits(acc.earned))  # fmt: skip
    if not reply.accounts:
        table.caption = "no accounts: mabeam budget set TEAM AMOUNT opens one"
    return table


def listings_table(reply: Any) -> Table:
    """One row per connected node: its payee, GPUs, reserve price and reputation."""
    table = Table(title="market listings")
    table.add_column("node", no_wrap=True)
    table.add_column("owner (paid)", no_wrap=True)
    table.add_column("GPUs", justify="right")
    table.add_column("reserve / GPU-h", justify="right")
    table.add_column("reputation", justify="right")
    for item in sorted(reply.listings, key=lambda n: n.node_id):
        table.add_row(item.node_id, item.owner, str(item.gpus), _credits(item.price),
                      f"{item.reputation:.2f}")  # fmt: skip
    if not reply.listings:
        table.caption = "no node connected"
    return table


def log_table(reply: Any) -> Table:
    """The newest audit-log lines, oldest first."""
    table = Table(title="ledger log (newest)")
    table.add_column("#", justify="right")
    table.add_column("time", no_wrap=True)
    table.add_column("op")
    table.add_column("account", no_wrap=True)
    table.add_column("to / from", no_wrap=True)
    table.add_column("amount", justify="right")
    table.add_column("job", no_wrap=True, overflow="ellipsis")
    for line in reply.log:
        stamp = time.strftime("%H:%M:%S", time.localtime(line.time))
        table.add_row(str(line.seq), stamp, line.op, line.account, line.counterparty or "-",
                      _credits(line.amount), line.job or "-")  # fmt: skip
    return table
