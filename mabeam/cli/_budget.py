"""``mabeam budget set TEAM AMOUNT`` and ``mabeam budget show [TEAM]``: the market's money.

``set`` makes a team's available credits AMOUNT (a deposit or withdrawal of the
difference, recorded in the coordinator's append-only ledger log; money held for
running jobs is untouched). ``show`` prints the accounts, the node listings and the
newest log lines. Under the ``auction`` policy the teams' budgets bound their bids.
"""

from __future__ import annotations

import argparse
from typing import Any

from rich.console import Console

import foundation

from ._market_view import accounts_table, listings_table, log_table
from ._options import add_client_options, client_security

__all__ = ("add_parser", "run")


def _amount(text: str) -> str:
    from mabeam.economics import LedgerError, parse_amount

    try:
        parse_amount(text, "amount")
    except LedgerError as exc:
        raise argparse.ArgumentTypeError(str(exc).removeprefix("amount: ")) from None
    return text


def _lines(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if not 0 <= value <= 1000:
        raise argparse.ArgumentTypeError(f"expected a number of lines 0..1000, got {text!r}")
    return value


def add_parser(commands: Any) -> None:
    """Add ``budget set|show`` to the top-level subparsers."""
    parser = commands.add_parser(
        "budget",
        help="set or show the teams' budgets (the market's ledger)",
        description="Set a team's budget, or show the ledger, on a coordinator.",
    )
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    set_ = actions.add_parser(
        "set", help="make a team's available credits AMOUNT", description=__doc__
    )
    set_.add_argument("team", metavar="TEAM", help="the team's account name")
    set_.add_argument("amount", metavar="AMOUNT", type=_amount, help="credits, e.g. 100 or 12.5")
    add_client_options(set_)
    show = actions.add_parser("show", help="show accounts, listings and the ledger log")
    show.add_argument("team", metavar="TEAM", nargs="?", default="", help="only this account")
    show.add_argument("--log", type=_lines, default=20, metavar="N",
                      help="newest ledger-log lines to show (default 20, 0: none)")  # fmt: skip
    add_client_options(show)


def run(args: argparse.Namespace) -> int:
    """Run ``budget set`` or ``budget show``; 0, or 1 on a refused request."""
    return foundation.run(_budget, args, Console())


async def _budget(args: argparse.Namespace, console: Console) -> int:
    from mabeam.cluster.client import connect
    from mabeam.economics import format_amount

    async with connect(args.coordinator, timeout=args.timeout, **client_security(args)) as client:
        if args.action == "set":
            account = await client.set_budget(args.team, args.amount)
            console.print(
                f"budget of [bold]{account.name}[/]: {format_amount(account.available)} credits"
                f" available, {format_amount(account.held)} held for running jobs"
            )
            return 0
        reply = await client.market(args.team, log=args.log)
    console.print(accounts_table(reply))
    if not args.team:
        console.print(listings_table(reply))
    if reply.log:
        console.print(log_table(reply))
    return 0
