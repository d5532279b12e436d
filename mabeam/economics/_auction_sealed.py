"""Sealed-bid auctions as actors: one round of ``BidRequest`` calls, then a mechanism.

Every bidder is asked at once; the round closes when every bidder has answered (or
crashed) or at the timeout, whichever comes first. The valid bids go to
``first_price``, ``vickrey`` or ``vcg`` (``_mechanisms``) with each bidder's position as
its ``order``, so a tie goes to the bidder listed first. A bidder that crashes before
the round closes has its bid voided, even one it already made.
"""

from __future__ import annotations

from typing import Any

from foundation import ActorRef

from ._auction_base import AuctionActor
from ._auction_types import AuctionKind, BidRequest, Reason, parse_bid
from ._mechanisms import Award, SealedBid, first_price, vcg, vickrey

_CLOSE = "close"


class SealedAuction(AuctionActor):
    """A first-price, Vickrey or VCG auction (``kind``) over ``capacity`` units."""

    async def init(
        self,
        refs: tuple[ActorRef, ...],
        lot: Any,
        kind: AuctionKind,
        reserve: int,
        capacity: int,
        timeout: float,
    ) -> None:
        self.setup(kind, refs, lot)
        self.reserve = reserve
        self.capacity = capacity
        self.timeout = timeout
        self.bids: dict[int, tuple[int, int]] = {}  # index -> (quantity, amount)
        self.known = 0

    async def begin(self) -> None:
        self.round = 1
        deadline = self.started_at + self.timeout
        request = BidRequest(self.ref, self.kind, self.lot, self.reserve, self.capacity, deadline)
        self.send_after(self.timeout, _CLOSE)
        await self.ask_all(list(range(len(self.refs))), request, self.timeout)

    async def answered(self, i: int, answer: Any) -> None:
        why, quantity, amount = parse_bid(answer, self.kind == "vcg")
        if why == "bid":
            self.bids[i] = (quantity, amount)
            self.record(i, why, amount, quantity)
        else:
            self.record(i, why, detail=answer if why == "garbage" else None)
        self._known()

    async def silent(self, i: int) -> None:
        self.record(i, "timeout")
        self._known()

    async def crashed(self, i: int, reason: Any) -> None:
        known = self.records[i].why != "pending"
        self.bids.pop(i, None)
        self.record(i, "crashed", detail=reason)
        if not known:
            self._known()

    async def timer(self, msg: Any) -> None:
        if msg == _CLOSE:
            self._close()

    def _known(self) -> None:
        self.known += 1
        if self.known == len(self.refs):
            self._close()

    def _close(self) -> None:
        self.drop_askers()
        for i, record in enumerate(self.records):
            if record.why == "pending":
                self.record(i, "timeout")
        bids = [SealedBid(str(i), amount, q, i) for i, (q, amount) in sorted(self.bids.items())]
        awards: list[Award]
        if self.kind == "vcg":
            awards = list(vcg(bids, capacity=self.capacity, reserve_per_unit=self.reserve).awards)
        else:
            mechanism = first_price if self.kind == "first_price" else vickrey
            award = mechanism(bids, reserve=self.reserve)
            awards = [] if award is None else [award]
        reason: Reason = "sold"
        if not awards:
            fits = [b for b in bids if b.quantity <= self.capacity]
            reason = "no_bids" if not bids else "below_reserve" if fits else "over_capacity"
        self.finish(reason, [(int(a.bidder), a.quantity, a.price, a.value) for a in awards])
