"""The skeleton every auction actor shares: run once, ask through askers, watch bidders.

An auction is one short-lived actor, as the coordination protocols are. ``run`` (a call
from the entry point) starts it; it monitors every bidder, so a crash is known at once,
and asks its questions through linked ``Asker`` actors (``mabeam.coordination``), so its
own mailbox stays free for answers, ``Down`` messages and its timers. Each question is
tagged with the round it belongs to: a late answer to an earlier round is dropped.
Subclasses implement ``begin``, ``answered``, ``crashed`` and ``timer``; ``finish``
replies with the ``AuctionOutcome``, emits ``AUCTION_EVENT`` and stops the actor.
"""

from __future__ import annotations

from typing import Any, Final

from foundation import Actor, ActorRef, Caller, Down, MonitorRef, NoReply
from mabeam.coordination._ask import Answer, ask, drop_askers

from ._auction_types import (
    AUCTION_EVENT,
    AuctionKind,
    AuctionOutcome,
    BidderRecord,
    Reason,
    Sale,
    Why,
)
from ._errors import AuctionError

RUN: Final = "run"


class AuctionActor(Actor):
    """Runs one auction and exits once it replied (see the module docstring)."""

    def setup(self, kind: AuctionKind, refs: tuple[ActorRef, ...], lot: Any) -> None:
        """The state every auction keeps; called first by each subclass's ``init``."""
        self.kind = kind
        self.refs = refs
        self.lot = lot
        self.started_at = self.runtime.clock.now()
        self.caller: Caller | None = None
        self.done = False
        self.monitors: dict[MonitorRef, int] = {}
        self.dead: dict[int, Any] = {}  # bidder index -> exit reason
        self.askers: list[ActorRef] = []
        self.round = 0
        self.records: list[BidderRecord] = [
            BidderRecord(ref, "pending", None, None, 0, None) for ref in refs
        ]

    # -- hooks ------------------------------------------------------------------------------

    async def begin(self) -> None:
        """Start the auction (ask the first question)."""
        raise NotImplementedError

    async def answered(self, i: int, answer: Any) -> None:
        """Bidder ``i`` answered this round's question with ``answer``."""
        raise NotImplementedError

    async def silent(self, i: int) -> None:
        """Bidder ``i``'s question of this round timed out."""
        raise NotImplementedError

    async def crashed(self, i: int, reason: Any) -> None:
        """Bidder ``i`` exited (known once, from its monitor or its asker); it is in
        ``self.dead`` already."""
        raise NotImplementedError

    async def timer(self, msg: Any) -> None:
        """A message this auction sent itself with ``send_after``."""
        raise NotImplementedError

    # -- helpers for the subclasses -----------------------------------------------------------

    async def ask_all(self, indices: list[int], request: Any, timeout: float) -> None:
        """Ask each bidder in ``indices`` ``request``, tagged with the current round."""
        for i in indices:
            tag = (self.round, i)
            self.askers.append(await ask(self, tag, self.refs[i], request, timeout))

    def drop_askers(self) -> None:
        drop_askers(self, self.askers)

    def record(self, i: int, why: Why, amount: int | None = None, quantity: int | None = None,
               detail: Any = None) -> None:  # fmt: skip
        """Bidder ``i``'s record as of the current round, known now."""
        now = self.runtime.clock.now()
        self.records[i] = BidderRecord(self.refs[i], why, amount, quantity, self.round, now, detail)

    def finish(self, reason: Reason, awards: list[tuple[int, int, int, int]]) -> None:
        """Reply with the outcome; ``awards`` are ``(bidder index, quantity, price, value)``."""
        caller = self.caller
        if caller is None or self.done:
            return
        self.done = True
        now = self.runtime.clock.now()
        sales = tuple(Sale(self.refs[i], q, price, value) for i, q, price, value in awards)
        single = self.kind != "vcg" and len(sales) == 1
        outcome = AuctionOutcome(
            kind=self.kind,
            lot=self.lot,
            reason=reason,
            winner=sales[0].bidder if single else None,
            price=sales[0].price if single else None,
            awards=sales,
            revenue=sum(s.price for s in sales),
            bidders=tuple(self.records),
            rounds=self.round,
            started_at=self.started_at,
            ended_at=now,
        )
        telemetry = self.runtime.telemetry
        if telemetry.active:
            telemetry.emit(
                AUCTION_EVENT,
                {"duration": now - self.started_at, "rounds": self.round,
                 "revenue": outcome.revenue, "awards": len(sales),
                 "bids": sum(1 for r in self.records if r.why == "bid")},
                {"kind": self.kind, "reason": reason, "bidders": len(self.refs)},
            )  # fmt: skip
        caller.reply(outcome)
        self.drop_askers()
        self.stop()

    # -- messages -----------------------------------------------------------------------------

    async def handle_call(self, request: Any, caller: Caller) -> Any:
        if request != RUN or self.caller is not None:
            return AuctionError(f"an auction runs once; unexpected request {request!r}")
        self.caller = caller
        for i, ref in enumerate(self.refs):
            self.monitors[self.monitor(ref)] = i
        await self.begin()
        return NoReply

    async def handle_info(self, msg: Any) -> None:
        if self.caller is None or self.done:
            return
        if isinstance(msg, Answer):
            number, i = msg.tag
            if msg.kind == "crashed":
                await self._died(i, msg.value)
            elif number != self.round or i in self.dead:
                return  # a late answer to an earlier round, or from a bidder since dead
            elif msg.kind == "reply":
                await self.answered(i, msg.value)
            else:
                await self.silent(i)
        elif isinstance(msg, Down):
            i = self.monitors.pop(msg.ref, None)
            if i is not None:
                await self._died(i, msg.reason)
        else:
            await self.timer(msg)

    async def _died(self, i: int, reason: Any) -> None:
        if i not in self.dead:  # known from its asker's call or its monitor, whichever first
            self.dead[i] = reason
            await self.crashed(i, reason)
