"""The English auction as an actor: an ascending price clock with an activity rule.

Round 1 offers the reserve; each round asks every bidder still in, at once, "stay in at
``price``?" (a ``PriceOffer``) and closes when all have answered or ``round_timeout``
passed. Saying no, answering garbage, staying silent past the round or crashing puts a
bidder out for good: it is never asked again (the activity rule), so nobody can wait
and jump in late. Then:

- exactly one bidder stayed in: it wins at this round's price;
- nobody stayed in: the first-listed bidder of those asked this round (all of whom
  stayed in at the previous price) wins at the previous price; a crashed one's bid is
  void. In round 1 nobody accepted the reserve: no sale (``no_bids``);
- two or more stayed in: the price rises by ``increment`` and the next round starts,
  unless this was round ``max_rounds`` (or the next price would pass ``MAX_AMOUNT``):
  then the first-listed bidder still in wins at this round's price (``max_rounds``).

With truthful bidders (in while the price is at most their value) the highest value
wins and pays within one increment above the second-highest value, or the reserve.
"""

from __future__ import annotations

from typing import Any

from foundation import ActorRef

from ._auction_base import AuctionActor
from ._auction_types import PriceOffer, Reason, Why, parse_yes
from ._money import MAX_AMOUNT


class EnglishAuction(AuctionActor):
    """Runs one English auction (see the module docstring)."""

    async def init(
        self,
        refs: tuple[ActorRef, ...],
        lot: Any,
        reserve: int,
        increment: int,
        round_timeout: float,
        max_rounds: int | None,
    ) -> None:
        self.setup("english", refs, lot)
        self.price = reserve
        self.increment = increment
        self.round_timeout = round_timeout
        self.max_rounds = max_rounds
        self.active = list(range(len(refs)))  # in listing order
        self.asked: list[int] = []
        self.answers: dict[int, Why] = {}
        self.accepted: dict[int, int] = {}  # index -> the last price it stayed in at

    async def begin(self) -> None:
        await self._start_round()

    async def _start_round(self) -> None:
        self.round += 1
        self.asked = [i for i in self.active if i not in self.dead]
        self.answers = {}
        if not self.asked:
            await self._close()
            return
        deadline = self.runtime.clock.now() + self.round_timeout
        offer = PriceOffer(self.ref, "english", self.lot, self.price, self.round, deadline)
        self.send_after(self.round_timeout, ("close", self.round))
        await self.ask_all(self.asked, offer, self.round_timeout)

    async def answered(self, i: int, answer: Any) -> None:
        why = parse_yes(answer)
        if why == "bid":
            self.accepted[i] = self.price
        await self._answer(i, why, answer if why == "garbage" else None)

    async def silent(self, i: int) -> None:
        await self._answer(i, "timeout", None)

    async def crashed(self, i: int, reason: Any) -> None:
        if i in self.asked:  # still in the auction: out, and a yes it gave is void
            self.answers.pop(i, None)
            await self._answer(i, "crashed", reason)

    async def _answer(self, i: int, why: Why, detail: Any) -> None:
        if i not in self.asked or i in self.answers:
            return
        self.answers[i] = why
        self.record(i, why, self.accepted.get(i), 1, detail)
        if len(self.answers) == len(self.asked):
            await self._close()

    async def timer(self, msg: Any) -> None:
        if msg == ("close", self.round):
            await self._close()

    async def _close(self) -> None:
        self.drop_askers()
        for i in self.asked:
            if i not in self.answers:
                self.answers[i] = "timeout"
                self.record(i, "timeout", self.accepted.get(i), 1)
        stayers = [i for i in self.asked if self.answers[i] == "bid"]
        if len(stayers) == 1:
            self._sell(stayers[0], self.price, "sold")
        elif not stayers:
            # Everyone asked this round had stayed in at the previous price.
            alive = [i for i in self.asked if i not in self.dead]
            if self.round > 1 and alive:
                self._sell(alive[0], self.price - self.increment, "sold")
            else:
                self.finish("no_bids" if alive else "no_bidders", [])
        elif (self.max_rounds is not None and self.round >= self.max_rounds) or (
            self.price + self.increment > MAX_AMOUNT
        ):
            self._sell(stayers[0], self.price, "max_rounds")
        else:
            self.active = stayers
            self.price += self.increment
            await self._start_round()

    def _sell(self, i: int, price: int, reason: Reason) -> None:
        self.finish(reason, [(i, 1, price, price)])
