"""The sealed-bid auction actor beside the hand-written auction it replaces.

On the asyncio backend, one runtime with N live ``Bidder`` actors (truthful, each with
its own value): per round, ``sealed_bid_auction(rule="vickrey")`` over all N (an
auction actor, an asker and a monitor per bidder, the per-bidder records, the
``vickrey`` clearing) vs the same N ``BidRequest`` calls made directly with
``ActorRef.call``, gathered concurrently and cleared with ``vickrey()``: what a program
without the auction actor would write. Both must find the same winner and price.
"""

from __future__ import annotations

import asyncio
import random
import statistics
from time import perf_counter

from ._common import settle

try:
    from foundation import Runtime, current_runtime
    from mabeam.economics import (
        MICRO,
        Bidder,
        BidRequest,
        SealedBid,
        sealed_bid_auction,
        vickrey,
    )
except Exception as exc:  # ImportError, or an error raised while the packages import
    raise ImportError(f"cannot import foundation/mabeam: {exc!r}") from exc

TIMEOUT_S = 60.0  # never reached: every bidder answers at once


def sealed_round(n: int, rounds: int, seed: int = 5) -> dict[str, float]:
    """Median seconds per sealed-bid Vickrey auction among ``n`` bidders (``auction_s``)
    and per direct gather + ``vickrey()`` (``direct_s``), over ``rounds`` rounds each."""

    async def main() -> dict[str, float]:
        rng = random.Random(seed)
        async with Runtime(watchdog=None) as rt:
            values = [rng.randrange(1, 100 * MICRO) for _ in range(n)]
            bidders = [await rt.spawn(Bidder, value) for value in values]
            clock = current_runtime().clock
            ours: list[float] = []
            ref: list[float] = []
            for r in range(rounds):
                lot = f"slot-{r}"
                t0 = perf_counter()
                outcome = await sealed_bid_auction(
                    bidders, lot, rule="vickrey", reserve=0, timeout=TIMEOUT_S
                )
                ours.append(perf_counter() - t0)
                assert outcome.reason == "sold" and outcome.winner is not None

                t0 = perf_counter()
                request = BidRequest(bidders[0], "vickrey", lot, 0, 1, clock.now() + TIMEOUT_S)
                answers = await asyncio.gather(*(b.call(request) for b in bidders))
                award = vickrey(SealedBid(str(i), amount, 1, i) for i, amount in enumerate(answers))
                ref.append(perf_counter() - t0)
                assert award is not None
                assert bidders[int(award.bidder)] == outcome.winner
                assert award.price == outcome.price
        return {"auction_s": statistics.median(ours), "direct_s": statistics.median(ref)}

    settle()
    return asyncio.run(main())
