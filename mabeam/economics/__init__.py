"""mabeam.economics: a durable ledger, real auctions and a GPU marketplace.

Money is ``int`` micro-credits (``parse_amount`` / ``format_amount``). See
docs/economics.md.
"""

from __future__ import annotations

from foundation._public import fixup_module_metadata

from ._errors import AuctionError, BadAmount, LedgerError, Overdraft, UnknownAccount, UnknownHold
from ._ledger_schema import LEDGER_SCHEMA
from ._money import MAX_AMOUNT, MICRO, check_micro, format_amount, parse_amount
from .ledger import Account, Hold, Ledger, LogEntry
from .reputation import Reputation

__all__ = (
    "LEDGER_SCHEMA",
    "MAX_AMOUNT",
    "MICRO",
    "Account",
    "AuctionError",
    "BadAmount",
    "Hold",
    "Ledger",
    "LedgerError",
    "LogEntry",
    "Overdraft",
    "Reputation",
    "UnknownAccount",
    "UnknownHold",
    "check_micro",
    "format_amount",
    "parse_amount",
)

fixup_module_metadata(__name__, globals())
