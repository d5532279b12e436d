"""Market measurements, each beside the hand-written code it replaces.

- ``clearing_rates``: the pure mechanisms on 1,000 sealed bids, clearings per second:
  ``vickrey`` vs ``heapq.nlargest(2)`` over the same bids (winner and price, the same
  tie rule); ``vcg`` on unit bids for 8 units vs a sort-based multi-unit Vickrey (the
  top 8 win, each pays the 9th bid: what VCG reduces to there); ``vcg`` on bundles of
  1, 2 and 4 units vs a greedy fill by value per unit paying as bid (what a scheduler
  without a mechanism does: neither optimal nor truthful).
- ``assign_latency``: one GPU frees on one node with Q GPU jobs of T teams queued;
  ``AuctionPolicy.assign`` (and ``terms`` for the pick's price) vs ``FifoPolicy.assign``
  on the same queue, one pick each in turn, microseconds per pick (mean and p99).

Every figure is checked once against its peer before it is timed: a peer that answers
differently (another winner, another price) is an error, not a row.
"""

from __future__ import annotations

import heapq
import random
import statistics
from collections.abc import Callable, Sequence
from operator import attrgetter
from time import perf_counter, perf_counter_ns
from typing import Any

from ._common import settle

try:
    from mabeam.cluster._coord_market import AuctionPolicy
    from mabeam.cluster._coord_policy import FifoPolicy, NodeCapacity, ReadyJob
    from mabeam.economics import MICRO, SealedBid, vcg, vickrey
except Exception as exc:  # ImportError, or an error raised while the packages import
    raise ImportError(f"cannot import mabeam: {exc!r}") from exc

_AMOUNT = attrgetter("amount")
CAPACITY = 8
"""Units for sale in the VCG rows (a node's GPUs)."""


# -- bids ------------------------------------------------------------------------------------


def unit_bids(n: int, seed: int) -> list[SealedBid]:
    """``n`` single-unit bids in priority order (``order`` = position), distinct bidders."""
    rng = random.Random(seed)
    return [SealedBid(f"b{i}", rng.randrange(1, 100 * MICRO), 1, i) for i in range(n)]


def bundle_bids(n: int, seed: int) -> list[SealedBid]:
    """``n`` bids for bundles of 1 (half), 2 or 4 units, amounts proportional to the
    bundle with a random value per unit."""
    rng = random.Random(seed)
    bids = []
    for i in range(n):
        q = rng.choices((1, 2, 4), weights=(5, 3, 2))[0]
        bids.append(SealedBid(f"b{i}", q * rng.randrange(1, 100 * MICRO), q, i))
    return bids


# -- the peers ---------------------------------------------------------------------------------


def nlargest_vickrey(bids: Sequence[SealedBid]) -> tuple[str, int] | None:
    """Winner and price of a second-price auction by ``heapq.nlargest(2)``: a stable
    selection, so a tie goes to the bid listed first (the bids come in priority order)."""
    top = heapq.nlargest(2, bids, key=_AMOUNT)
    if not top:
        return None
    return top[0].bidder, top[1].amount if len(top) > 1 else 0


def sorted_multi_unit(bids: Sequence[SealedBid], capacity: int) -> dict[str, int]:
    """Unit bids for ``capacity`` units: the top ``capacity`` win and each pays the next
    highest bid (the uniform-price multi-unit Vickrey auction). Winner -> price."""
    top = heapq.nlargest(capacity + 1, bids, key=_AMOUNT)
    price = top[capacity].amount if len(top) > capacity else 0
    return {b.bidder: price for b in top[:capacity]}


def greedy_fill(bids: Sequence[SealedBid], capacity: int) -> dict[str, int]:
    """Bundles taken by value per unit, highest first, while they fit; each pays its bid.
    Winner -> price."""
    won: dict[str, int] = {}
    left = capacity
    for bid in sorted(bids, key=lambda b: b.amount / b.quantity, reverse=True):
        if bid.quantity <= left:
            won[bid.bidder] = bid.amount
            left -= bid.quantity
            if not left:
                break
    return won


def _rate(fn: Callable[[], Any], seconds: float) -> float:
    """Calls of ``fn`` per second, over at least ``seconds`` (after one warm call)."""
    fn()
    settle()
    calls = 0
    began = perf_counter()
    elapsed = 0.0
    while elapsed < seconds:
        for _ in range(20):
            fn()
        calls += 20
        elapsed = perf_counter() - began
    return calls / elapsed


def clearing_rates(n: int, seconds: float, reps: int, seed: int = 7) -> dict[str, float]:
    """Clearings per second of ``n`` bids: each mechanism and its peer, best of ``reps``
    (interleaved), plus ``welfare_vs_greedy`` (VCG's welfare over the greedy fill's on the
    bundle bids)."""
    units, bundles = unit_bids(n, seed), bundle_bids(n, seed + 1)
    award = vickrey(units)
    assert award is not None and nlargest_vickrey(units) == (award.bidder, award.price)
    unit_clearing = vcg(units, capacity=CAPACITY)
    mine = {a.bidder: a.price for a in unit_clearing.awards}
    assert mine == sorted_multi_unit(units, CAPACITY), "vcg on unit bids is not multi-unit Vickrey"
    bundle_clearing = vcg(bundles, capacity=CAPACITY)
    greedy = greedy_fill(bundles, CAPACITY)
    values = {b.bidder: b.amount for b in bundles}
    greedy_welfare = sum(values[name] for name in greedy)
    assert bundle_clearing.welfare >= greedy_welfare, "vcg allocated less than a greedy fill"
    runners: dict[str, Callable[[], Any]] = {
        "vickrey": lambda: vickrey(units),
        "nlargest": lambda: nlargest_vickrey(units),
        "vcg_unit": lambda: vcg(units, capacity=CAPACITY),
        "multi_unit": lambda: sorted_multi_unit(units, CAPACITY),
        "vcg_bundle": lambda: vcg(bundles, capacity=CAPACITY),
        "greedy": lambda: greedy_fill(bundles, CAPACITY),
    }
    best: dict[str, float] = {}
    for _ in range(reps):
        for name, fn in runners.items():
            best[name] = max(best.get(name, 0.0), _rate(fn, seconds))
    best["welfare_vs_greedy"] = bundle_clearing.welfare / greedy_welfare
    return best


# -- slot freed -> allocation ------------------------------------------------------------------

_BUDGET = 10**9 * MICRO  # far above what the picks hold: no team runs dry while timed


def _job(rng: random.Random, seq: int, teams: int) -> ReadyJob:
    return ReadyJob(
        f"j{seq}",
        seq,
        gpus=1,
        team=f"team-{seq % teams}",
        value=float(rng.randrange(1, 20)),
        timeout_s=3600.0,
    )


def _freed() -> NodeCapacity:
    return NodeCapacity("n0", credit=1, gpus=1, cpus=64.0, memory_mb=1 << 20)


def assign_latency(queued: int, teams: int, picks: int, seed: int = 11) -> dict[str, float]:
    """Microseconds from one freed GPU to its pick: ``auction_mean``/``auction_p99``
    (``AuctionPolicy.assign`` + ``terms``) and ``fifo_mean``/``fifo_p99``, on the same
    ``queued`` single-GPU jobs of ``teams`` teams; after each pick a new job is queued in
    both, so the queues keep their length. The two policies pick in turn."""
    rng = random.Random(seed)
    auction, fifo = AuctionPolicy(), FifoPolicy()
    auction.list_node("n0", "owner", 1.0)
    names = [f"team-{t}" for t in range(teams)]
    for seq in range(queued):
        job = _job(rng, seq, teams)
        auction.add(job)
        fifo.add(job)
    took: dict[str, list[int]] = {"auction": [], "fifo": []}
    seq = queued
    settle()
    for _ in range(picks):
        for name in names:
            auction.set_balance(name, _BUDGET)
        node = _freed()
        t0 = perf_counter_ns()
        picked = auction.assign([node])
        terms = auction.terms(picked[0][0].job_id) if picked else None
        took["auction"].append(perf_counter_ns() - t0)
        assert len(picked) == 1 and terms is not None and node.gpus == 0, picked

        node = _freed()
        t0 = perf_counter_ns()
        first = fifo.assign([node])
        took["fifo"].append(perf_counter_ns() - t0)
        assert len(first) == 1 and node.gpus == 0, first

        job = _job(rng, seq, teams)  # one more job in line: the queue keeps its length
        auction.add(job)
        fifo.add(job)
        seq += 1
    out: dict[str, float] = {}
    for name, samples in took.items():
        out[f"{name}_mean"] = statistics.fmean(samples) / 1e3
        out[f"{name}_p99"] = statistics.quantiles(samples, n=100)[98] / 1e3
    return out
