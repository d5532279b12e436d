"""mabeam.economics: a durable ledger, real auctions and a GPU marketplace.

Money is ``int`` micro-credits (``parse_amount`` / ``format_amount``). The sealed-bid
mechanisms (``first_price``, ``vickrey``, ``vcg``) are pure functions; the auctions
between actors (``english_auction``, ``dutch_auction``, ``sealed_bid_auction``,
``vcg_auction``) run on the runtime clock. See docs/economics.md.
"""

from __future__ import annotations

from foundation._public import fixup_module_metadata

from ._auction_types import (
    AUCTION_EVENT,
    AuctionKind,
    AuctionOutcome,
    BidderRecord,
    BidRequest,
    PriceOffer,
    Sale,
)
from ._errors import AuctionError, BadAmount, LedgerError, Overdraft, UnknownAccount, UnknownHold
from ._ledger_schema import LEDGER_SCHEMA
from ._mechanisms import Award, Clearing, SealedBid, first_price, vcg, vickrey
from ._money import MAX_AMOUNT, MICRO, check_micro, format_amount, parse_amount
from .auctions import Bidder, dutch_auction, english_auction, sealed_bid_auction, vcg_auction
from .ledger import Account, Hold, Ledger, LogEntry
from .reputation import Reputation

__all__ = (
    "AUCTION_EVENT",
    "LEDGER_SCHEMA",
    "MAX_AMOUNT",
    "MICRO",
    "Account",
    "AuctionError",
    "AuctionKind",
    "AuctionOutcome",
    "Award",
    "BadAmount",
    "BidRequest",
    "Bidder",
    "BidderRecord",
    "Clearing",
    "Hold",
    "Ledger",
    "LedgerError",
    "LogEntry",
    "Overdraft",
    "PriceOffer",
    "Reputation",
    "Sale",
    "SealedBid",
    "UnknownAccount",
    "UnknownHold",
    "check_micro",
    "dutch_auction",
    "english_auction",
    "first_price",
    "format_amount",
    "parse_amount",
    "sealed_bid_auction",
    "vcg",
    "vcg_auction",
    "vickrey",
)

fixup_module_metadata(__name__, globals())
