"""Agent and coordination measurements, each beside the plain-actor work it wraps.

On the asyncio backend (the reference backend), one runtime per measurement:

- a vote among N agents (rule ``unanimous``, so it waits for every ballot, as the
  reference does) vs the same N ``VoteRequest`` calls made directly with
  ``ActorRef.call`` and gathered concurrently: the protocol's overhead per round (one
  asker actor, one monitor and one message per participant, and the tally);
- a contract net with N contractors (every one bids at once, the best one performs) vs
  the N calls for proposals gathered directly, the best bid picked, and one award call;
- agent spawn rate: ``start_agent`` (registry entry with metadata, status telemetry,
  ``start_agent`` hook) vs a plain ``Runtime.spawn`` of an actor.
"""

from __future__ import annotations

import asyncio
import statistics
from collections.abc import Callable, Coroutine
from time import perf_counter
from typing import Any

from ._common import settle

try:
    from foundation import Actor, Caller, Runtime
    from mabeam.agents import Agent, start_agent
    from mabeam.coordination import (
        Award,
        Bid,
        CallForProposals,
        Contractor,
        Voter,
        VoteRequest,
        contract_net,
        vote,
    )
except Exception as exc:  # ImportError, or an error raised while the packages import
    raise ImportError(f"cannot import foundation/mabeam: {exc!r}") from exc


class Judge(Voter, Agent):
    async def ballot(self, proposal: Any) -> Any:
        return "yes"


class Worker(Contractor, Agent):
    async def start_agent(self, price: float) -> None:
        self.price = price

    async def bid(self, cfp: CallForProposals) -> Bid | float | None:
        return Bid(self.price)

    async def perform(self, award: Award) -> Any:
        return award.task


class Plain(Actor):
    async def handle_call(self, request: Any, caller: Caller) -> Any:
        return request


def _run(coro: Callable[[], Coroutine[Any, Any, Any]]) -> Any:
    settle()
    return asyncio.run(coro())


def vote_round(n: int, rounds: int) -> dict[str, float]:
    """Median seconds per vote among ``n`` agents, and per gather of ``n`` direct calls."""

    async def main() -> dict[str, float]:
        async with Runtime(watchdog=None):
            judges = [await start_agent(Judge, f"judge-{i}") for i in range(n)]
            ours: list[float] = []
            ref: list[float] = []
            for r in range(rounds):
                t0 = perf_counter()
                outcome = await vote(judges, r, "unanimous", timeout=60.0)
                ours.append(perf_counter() - t0)
                assert outcome.accepted and outcome.cast == n

                t0 = perf_counter()
                request = VoteRequest(r, 0.0, judges[0])
                ballots = await asyncio.gather(*(j.call(request) for j in judges))
                ref.append(perf_counter() - t0)
                assert all(b == "yes" for b in ballots)
        return {"vote_s": statistics.median(ours), "gather_s": statistics.median(ref)}

    return _run(main)  # type: ignore[no-any-return]


def contract_round(n: int, rounds: int) -> dict[str, float]:
    """Median seconds per contract net with ``n`` contractors, and per direct
    announce-gather-award with plain calls."""

    async def main() -> dict[str, float]:
        async with Runtime(watchdog=None):
            workers = [await start_agent(Worker, f"w-{i}", float(i % 97)) for i in range(n)]
            ours: list[float] = []
            ref: list[float] = []
            for r in range(rounds):
                t0 = perf_counter()
                outcome = await contract_net(None, workers, r, 60.0)
                ours.append(perf_counter() - t0)
                assert outcome.status == "completed" and outcome.result == r

                t0 = perf_counter()
                cfp = CallForProposals(r, None, 1, 0.0)
                bids = await asyncio.gather(*(w.call(cfp) for w in workers))
                best = min(range(n), key=lambda i: (bids[i].value, i))
                result = await workers[best].call(Award(r, bids[best], 1, None))
                ref.append(perf_counter() - t0)
                assert result == r
        return {"contract_s": statistics.median(ours), "direct_s": statistics.median(ref)}

    return _run(main)  # type: ignore[no-any-return]


def agent_spawn(n: int) -> dict[str, float]:
    """Agents started per second with ``start_agent``, and plain actors spawned."""

    async def main() -> dict[str, float]:
        async with Runtime(watchdog=None) as rt:
            t0 = perf_counter()
            for i in range(n):
                await start_agent(Agent, f"a-{i}")
            agents = n / (perf_counter() - t0)
            t0 = perf_counter()
            for _ in range(n):
                await rt.spawn(Plain)
            plain = n / (perf_counter() - t0)
        return {"start_agent_per_s": agents, "spawn_per_s": plain}

    return _run(main)  # type: ignore[no-any-return]
