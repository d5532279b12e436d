"""mabeam.economics: a durable ledger, real auctions and a GPU marketplace.

Money is ``int`` micro-credits (``parse_amount`` / ``format_amount``). The sealed-bid
mechanisms (``first_price``, ``vickrey``, ``vcg``) are pure functions. See docs/economics.md.
"""

from __future__ import annotations

from foundation._public import fixup_module_metadata

from ._errors import AuctionError, BadAmount, LedgerError, Overdraft, UnknownAccount, UnknownHold
from ._ledger_schema import LEDGER_SCHEMA
from ._mechanisms import Award, Clearing, SealedBid, first_price, vcg, vickrey
from ._money import MAX_AMOUNT, MICRO, check_micro, format_amount, parse_amount
from .ledger import Account, Hold, Ledger, LogEntry
from .reputation import Reputation

__all__ = (
    "LEDGER_SCHEMA",
    "MAX_AMOUNT",
    "MICRO",
    "Account",
    "AuctionError",
    "Award",
    "BadAmount",
    "Clearing",
    "Hold",
    "Ledger",
    "LedgerError",
    "LogEntry",
    "Overdraft",
    "Reputation",
    "SealedBid",
    "UnknownAccount",
    "UnknownHold",
    "check_micro",
    "first_price",
    "format_amount",
    "parse_amount",
    "vcg",
    "vickrey",
)

fixup_module_metadata(__name__, globals())
