"""mabeam.economics: a durable ledger, real auctions and a GPU marketplace.

Money is ``int`` micro-credits (``parse_amount`` / ``format_amount``). See
docs/economics.md.
"""

from __future__ import annotations

from foundation._public import fixup_module_metadata

from ._errors import AuctionError, BadAmount, LedgerError, Overdraft, UnknownAccount, UnknownHold
from ._money import MAX_AMOUNT, MICRO, check_micro, format_amount, parse_amount

__all__ = (
    "MAX_AMOUNT",
    "MICRO",
    "AuctionError",
    "BadAmount",
    "LedgerError",
    "Overdraft",
    "UnknownAccount",
    "UnknownHold",
    "check_micro",
    "format_amount",
    "parse_amount",
)

fixup_module_metadata(__name__, globals())
