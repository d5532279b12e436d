"""Auctions between actors: English, Dutch, sealed-bid (first price, Vickrey) and VCG.

    outcome = await english_auction(bidders, "gpu-slot", reserve=1_000_000,
                                    increment=100_000, round_timeout=1.0)
    outcome = await dutch_auction(bidders, lot, start=5_000_000, reserve=1_000_000,
                                  decrement=250_000, tick_s=0.5)
    outcome = await sealed_bid_auction(bidders, lot, rule="vickrey", reserve=0, timeout=2.0)
    outcome = await vcg_auction(bidders, "node-7", capacity=8, reserve_per_unit=0, timeout=2.0)
    outcome.reason, outcome.winner, outcome.price, outcome.awards, outcome.bidders

Each call starts one short-lived actor that runs the auction on the runtime clock (so a
virtual clock drives it in tests) and returns an ``AuctionOutcome``. Bidders are actors
that answer ``BidRequest`` (sealed, VCG) and ``PriceOffer`` (English, Dutch) calls in
``handle_call``; ``Bidder`` does so truthfully from a private valuation. Every auction
copes with its bidders: a crash voids the bidder's bid (it never wins), garbage and
silence count as no bid, and each bidder's record says which it was. Ties go to the
bidder listed first. Each auction emits one ``AUCTION_EVENT``. Amounts are ``int``
micro-credits; arguments an auction cannot run with raise ``AuctionError`` before it
starts. The rules of each auction are in its module's docstring (``_auction_english``,
``_auction_dutch``, ``_auction_sealed``) and the sealed mechanisms in ``_mechanisms``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

from foundation import Actor, ActorRef, Caller, current_runtime

from ._auction_base import RUN, AuctionActor
from ._auction_dutch import DutchAuction
from ._auction_english import EnglishAuction
from ._auction_sealed import SealedAuction
from ._auction_types import (
    AuctionOutcome,
    BidRequest,
    PriceOffer,
    check_bidders,
    check_seconds,
    check_step,
)
from ._errors import AuctionError
from ._mechanisms import check_money

__all__ = ("Bidder", "dutch_auction", "english_auction", "sealed_bid_auction", "vcg_auction")


async def _run(actor: type[AuctionActor], *args: Any) -> AuctionOutcome:
    auction = await current_runtime().spawn(actor, *args)
    outcome: AuctionOutcome = await auction.call(RUN, timeout=None)
    return outcome


async def english_auction(
    bidders: Sequence[ActorRef],
    lot: Any,
    *,
    reserve: int,
    increment: int,
    round_timeout: float,
    max_rounds: int | None = None,
) -> AuctionOutcome:
    """An ascending clock from ``reserve`` up by ``increment`` a round, each round
    ``round_timeout`` seconds at most, at most ``max_rounds`` rounds (None: until one
    bidder is left).

    Each round asks the bidders still in "stay in at this price?"; no, garbage, silence
    or a crash is out for good. One left: it wins at this price. None left: the
    first-listed of this round's (living) bidders wins at the previous price, or no
    sale in round 1. The round cap sells to the first-listed bidder still in.

    Raises:
        AuctionError: no or duplicate bidders, a bad reserve, increment, timeout or
            ``max_rounds``.
    """
    refs = check_bidders(bidders)
    floor = check_money(reserve, "reserve")
    step = check_step(increment, "increment")
    seconds = check_seconds(round_timeout, "round_timeout")
    if max_rounds is not None and (type(max_rounds) is not int or max_rounds < 1):
        raise AuctionError(f"max_rounds must be None or an int >= 1, got: {max_rounds!r}")
    return await _run(EnglishAuction, refs, lot, floor, step, seconds, max_rounds)


async def dutch_auction(
    bidders: Sequence[ActorRef],
    lot: Any,
    *,
    start: int,
    reserve: int,
    decrement: int,
    tick_s: float,
) -> AuctionOutcome:
    """A descending clock from ``start`` down by ``decrement`` every ``tick_s`` seconds,
    no lower than ``reserve``.

    Step ``s`` (from 1) offers ``start - (s - 1) * decrement`` at ``(s - 1) * tick_s``
    to every living bidder; the first step with a taker sells to its first-listed taker
    at that price. A crashed bidder's take is void; no taker down to the reserve: no
    sale (``below_reserve``).

    Raises:
        AuctionError: no or duplicate bidders, a bad price, a start below the reserve,
            a decrement that is not >= 1, a tick that is not > 0.
    """
    refs = check_bidders(bidders)
    top = check_money(start, "start")
    floor = check_money(reserve, "reserve")
    if top < floor:
        raise AuctionError(f"start ({top}) must not be below the reserve ({floor})")
    step = check_step(decrement, "decrement")
    seconds = check_seconds(tick_s, "tick_s")
    return await _run(DutchAuction, refs, lot, top, floor, step, seconds)


async def sealed_bid_auction(
    bidders: Sequence[ActorRef],
    lot: Any,
    *,
    rule: Literal["first_price", "vickrey"],
    reserve: int,
    timeout: float,
) -> AuctionOutcome:
    """One round of sealed bids for one unit, closed after ``timeout`` seconds (or once
    every bidder answered); ``rule`` prices the winner: its own bid (``first_price``) or
    the second-highest bid (``vickrey``), at least ``reserve``.

    Raises:
        AuctionError: no or duplicate bidders, an unknown rule, a bad reserve or timeout.
    """
    refs = check_bidders(bidders)
    if rule not in ("first_price", "vickrey"):
        raise AuctionError(f"rule must be 'first_price' or 'vickrey', got: {rule!r}")
    floor = check_money(reserve, "reserve")
    seconds = check_seconds(timeout, "timeout")
    return await _run(SealedAuction, refs, lot, rule, floor, 1, seconds)


async def vcg_auction(
    bidders: Sequence[ActorRef],
    lot: Any,
    *,
    capacity: int,
    reserve_per_unit: int,
    timeout: float,
) -> AuctionOutcome:
    """One round of sealed bundle bids (``(quantity, amount)``, all or nothing) for
    ``capacity`` units, cleared by ``vcg``: the winners are in ``awards``.

    Raises:
        AuctionError: no or duplicate bidders, a capacity that is not an int >= 1, a
            bad reserve or timeout.
    """
    refs = check_bidders(bidders)
    if type(capacity) is not int or capacity < 1:
        raise AuctionError(f"capacity must be an int >= 1 (units for sale), got: {capacity!r}")
    floor = check_money(reserve_per_unit, "reserve_per_unit")
    seconds = check_seconds(timeout, "timeout")
    return await _run(SealedAuction, refs, lot, "vcg", floor, capacity, seconds)


class Bidder(Actor):
    """A bidder with a private valuation: ``value`` micro-credits for a bundle of
    ``quantity`` units. It bids truthfully: its value in a sealed auction, ``(quantity,
    value)`` in VCG, stays in an English auction while the price is at most its value
    and takes a Dutch price at or below it.

    Override ``valuation(lot)``, ``bid(request)`` or ``accept(offer)`` for other
    strategies. To make an agent bid, put ``Agent`` first (``class Buyer(Agent,
    Bidder)``) so the agent's ``init`` runs, and set ``value`` in ``start_agent``.
    """

    value: int = 0
    quantity: int = 1

    async def init(self, value: int = 0, quantity: int = 1) -> None:
        self.value = check_money(value, "value")
        if type(quantity) is not int or quantity < 1:
            raise AuctionError(f"quantity must be an int >= 1, got: {quantity!r}")
        self.quantity = quantity

    async def valuation(self, lot: Any) -> tuple[int, int]:
        """``(quantity, value)``: what this bidder wants of ``lot`` and what it is worth."""
        return self.quantity, self.value

    async def bid(self, request: BidRequest) -> Any:
        """The answer to a ``BidRequest``: an amount, ``(quantity, amount)`` or None."""
        quantity, value = await self.valuation(request.lot)
        if request.kind == "vcg":
            return (quantity, value)
        return value

    async def accept(self, offer: PriceOffer) -> bool:
        """The answer to a ``PriceOffer``: stay in / take it while the price is at most
        the value."""
        _, value = await self.valuation(offer.lot)
        return offer.price <= value

    async def handle_call(self, request: Any, caller: Caller) -> Any:
        if isinstance(request, BidRequest):
            return await self.bid(request)
        if isinstance(request, PriceOffer):
            return await self.accept(request)
        return await super().handle_call(request, caller)
