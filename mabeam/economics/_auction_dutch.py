"""The Dutch auction as an actor: a descending price clock on the runtime clock.

Step ``s`` (from 1) starts at ``started_at + (s - 1) * tick_s`` and offers the price
``start - (s - 1) * decrement`` to every live bidder at once (a ``PriceOffer``; the
answer is due before the next tick). The first step with a taker sells to it at that
step's price; several takers in one step: the first listed wins. The sale is decided
as soon as it is certain (the first-listed taker has answered and every bidder listed
before it has passed), else at the tick that closes the step. A step without a taker
lets the price fall at the next tick; when it would fall below ``reserve`` the
auction ends unsold (``below_reserve``). The timers are actor timers, so a virtual
clock drives the whole descent.

A bidder that passes, answers garbage or stays silent in one step is asked again at the
next, lower price; a crashed bidder is out for good and a take it gave is void. When
every bidder has crashed the auction ends at once (``no_bidders``).
"""

from __future__ import annotations

from typing import Any

from foundation import ActorRef

from ._auction_base import AuctionActor
from ._auction_types import PriceOffer, Why, parse_yes


class DutchAuction(AuctionActor):
    """Runs one Dutch auction (see the module docstring)."""

    async def init(
        self,
        refs: tuple[ActorRef, ...],
        lot: Any,
        start: int,
        reserve: int,
        decrement: int,
        tick_s: float,
    ) -> None:
        self.setup("dutch", refs, lot)
        self.start = start
        self.reserve = reserve
        self.decrement = decrement
        self.tick_s = tick_s
        self.price = start
        self.asked: list[int] = []
        self.answers: dict[int, Why] = {}

    async def begin(self) -> None:
        await self._step()

    async def _step(self) -> None:
        self.round += 1
        self.price = self.start - (self.round - 1) * self.decrement
        self.asked = [i for i in range(len(self.refs)) if i not in self.dead]
        self.answers = {}
        if not self.asked:
            self.finish("no_bidders", [])
            return
        # Ticks are counted from the start, so the clock does not drift step by step.
        tick_at = self.started_at + self.round * self.tick_s
        wait = max(tick_at - self.runtime.clock.now(), 0.0)
        offer = PriceOffer(self.ref, "dutch", self.lot, self.price, self.round, tick_at)
        self.send_after(wait, ("tick", self.round))
        await self.ask_all(self.asked, offer, wait if wait > 0 else self.tick_s)

    async def answered(self, i: int, answer: Any) -> None:
        why = parse_yes(answer)
        await self._answer(i, why, answer if why == "garbage" else None)

    async def silent(self, i: int) -> None:
        await self._answer(i, "timeout", None)

    async def crashed(self, i: int, reason: Any) -> None:
        if len(self.dead) == len(self.refs):
            self.record(i, "crashed", detail=reason)
            self.finish("no_bidders", [])
        elif i in self.asked:
            self.answers.pop(i, None)
            await self._answer(i, "crashed", reason)
        else:
            self.record(i, "crashed", detail=reason)

    async def _answer(self, i: int, why: Why, detail: Any) -> None:
        if i not in self.asked or i in self.answers:
            return
        self.answers[i] = why
        self.record(i, why, self.price if why == "bid" else None, 1, detail)
        await self._decide(final=False)

    async def timer(self, msg: Any) -> None:
        if msg == ("tick", self.round):
            self.drop_askers()
            for i in self.asked:
                if i not in self.answers:
                    self.answers[i] = "timeout"
                    self.record(i, "timeout")
            await self._decide(final=True)

    async def _decide(self, *, final: bool) -> None:
        """Sell to the first-listed taker once every bidder listed before it has passed;
        when nobody in the step took the price, end below the reserve or (at the tick)
        go one step down."""
        for i in self.asked:
            why = self.answers.get(i)
            if why is None:
                return  # it may still take the price, and it comes first
            if why == "bid":
                for j in self.asked:
                    if j not in self.answers:
                        self.record(j, "pending")
                self.finish("sold", [(i, 1, self.price, self.price)])
                return
        if self.price - self.decrement < self.reserve:
            self.finish("below_reserve", [])
        elif final:
            await self._step()
