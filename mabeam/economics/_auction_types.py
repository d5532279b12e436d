"""What the auction actors send, record and return, and how they read bidders' answers.

A bidder answers a ``BidRequest`` (sealed and VCG auctions) with an amount, a
``(quantity, amount)`` bundle, or None to decline, and a ``PriceOffer`` (English and
Dutch clocks) with True (in / take it) or False / None (out / pass). Amounts are ``int``
micro-credits; anything else (a float, a negative or too large amount, a string) is
*garbage*: recorded with the answer itself and treated as no bid.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Final, Literal, TypeAlias

from foundation import ActorRef

from ._errors import AuctionError
from ._money import MAX_AMOUNT

__all__ = (
    "AUCTION_EVENT",
    "AuctionKind",
    "AuctionOutcome",
    "BidRequest",
    "BidderRecord",
    "PriceOffer",
    "Reason",
    "Sale",
    "Why",
)

AUCTION_EVENT: Final = ("mabeam", "economics", "auction")
AuctionKind: TypeAlias = Literal["english", "dutch", "first_price", "vickrey", "vcg"]
Why: TypeAlias = Literal["bid", "declined", "garbage", "timeout", "crashed", "pending"]
Reason: TypeAlias = Literal[
    "sold", "max_rounds", "no_bids", "below_reserve", "over_capacity", "no_bidders"
]


@dataclass(frozen=True, slots=True)
class BidRequest:
    """The call of a sealed-bid or VCG auction: answer with an amount (micro-credits for
    one unit), ``(quantity, amount)`` for a bundle (``kind="vcg"``: bids for up to
    ``capacity`` units can win), or None to decline, before ``deadline`` (runtime clock).
    ``reserve`` is the lowest price (per unit for VCG) that can win."""

    auction: ActorRef
    kind: AuctionKind
    lot: Any
    reserve: int
    capacity: int
    deadline: float


@dataclass(frozen=True, slots=True)
class PriceOffer:
    """The call of a clock auction in round (English) or step (Dutch) ``round``, from 1:
    True to stay in at ``price`` (English) or take the lot at ``price`` (Dutch); False or
    None for no. Answer before ``deadline`` (runtime clock)."""

    auction: ActorRef
    kind: AuctionKind
    lot: Any
    price: int
    round: int
    deadline: float


@dataclass(frozen=True, slots=True)
class BidderRecord:
    """One bidder's part, as of the round (or step) ``round`` where it last took part.

    ``why``: ``bid`` (a valid bid; in a clock auction: it said yes), ``declined``,
    ``garbage`` (``detail`` holds the answer), ``timeout``, ``crashed`` (``detail`` holds
    the exit reason; a bid it made is void) or ``pending`` (the auction was decided
    before it answered). ``amount``/``quantity``: its valid bid; in a clock auction the
    last price it said yes to (None if none). ``at``: when it was known (runtime clock).
    """

    bidder: ActorRef
    why: Why
    amount: int | None
    quantity: int | None
    round: int
    at: float | None
    detail: Any = None


@dataclass(frozen=True, slots=True)
class Sale:
    """One winner: ``quantity`` units for ``price``; ``value`` is what it bid (in a clock
    auction, the price it accepted)."""

    bidder: ActorRef
    quantity: int
    price: int
    value: int


@dataclass(frozen=True, slots=True)
class AuctionOutcome:
    """How one auction ended.

    ``reason``: ``sold``; ``max_rounds`` (an English auction stopped by its round cap:
    sold to the first-listed bidder still in); ``no_bids`` (no valid bid, nobody in at
    the reserve); ``below_reserve`` (valid bids, none at the reserve; a Dutch clock that
    reached the reserve untaken); ``over_capacity`` (VCG: every valid bid asked for more
    than the capacity); ``no_bidders`` (every bidder that could still win crashed).
    ``winner``/``price`` name the one winner of a single-lot auction (None for VCG and
    when unsold); ``awards`` lists every sale (one for a single lot). ``rounds``:
    English rounds or Dutch steps run (1 for sealed bids).
    """

    kind: AuctionKind
    lot: Any
    reason: Reason
    winner: ActorRef | None
    price: int | None
    awards: tuple[Sale, ...]
    revenue: int
    bidders: tuple[BidderRecord, ...]
    rounds: int
    started_at: float
    ended_at: float

    @property
    def sold(self) -> bool:
        return bool(self.awards)

    def record_of(self, bidder: ActorRef) -> BidderRecord:
        """The record of ``bidder`` (``KeyError`` if it was not in the auction)."""
        for record in self.bidders:
            if record.bidder == bidder:
                return record
        raise KeyError(bidder)


# -- reading answers --------------------------------------------------------------------------


def _amount(value: Any) -> int | None:
    return value if type(value) is int and 0 <= value <= MAX_AMOUNT else None


def parse_bid(answer: Any, bundles: bool) -> tuple[Why, int, int]:
    """``(why, quantity, amount)`` for an answer to a ``BidRequest``; only a VCG auction
    (``bundles``) takes a quantity other than 1."""
    if answer is None:
        return "declined", 0, 0
    amount = _amount(answer)
    if amount is not None:
        return "bid", 1, amount
    if isinstance(answer, tuple | list) and len(answer) == 2:
        quantity, amount = answer[0], _amount(answer[1])
        ok = type(quantity) is int and (quantity >= 1 if bundles else quantity == 1)
        if ok and amount is not None:
            return "bid", quantity, amount
    return "garbage", 0, 0


def parse_yes(answer: Any) -> Why:
    """``bid`` for True, ``declined`` for False / None, else ``garbage``."""
    if answer is True:
        return "bid"
    if answer is False or answer is None:
        return "declined"
    return "garbage"


# -- argument checks --------------------------------------------------------------------------


def check_bidders(bidders: Any) -> tuple[ActorRef, ...]:
    """A non-empty tuple of distinct ``ActorRef``s."""
    if isinstance(bidders, ActorRef | str | bytes) or not isinstance(bidders, Iterable):
        raise AuctionError(f"bidders must be a sequence of ActorRefs, got: {bidders!r}")
    found = tuple(bidders)
    if not found:
        raise AuctionError("bidders must not be empty")
    seen: set[ActorRef] = set()
    for ref in found:
        if not isinstance(ref, ActorRef):
            raise AuctionError(f"bidders must be ActorRefs, got: {ref!r}")
        if ref in seen:
            raise AuctionError(f"bidders must be distinct; {ref!r} appears twice")
        seen.add(ref)
    return found


def check_seconds(value: Any, what: str) -> float:
    """A finite number of seconds > 0."""
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or not value > 0
    ):
        raise AuctionError(f"{what} must be a finite number of seconds > 0, got: {value!r}")
    return float(value)


def check_step(value: Any, what: str) -> int:
    """A price step: an int of micro-credits in ``1..MAX_AMOUNT``."""
    if type(value) is not int or not 1 <= value <= MAX_AMOUNT:
        raise AuctionError(f"{what} must be an int of micro-credits >= 1, got: {value!r}")
    return value
