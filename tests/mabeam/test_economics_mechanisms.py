"""The sealed-bid mechanisms: Vickrey is truthful, VCG equals a brute force over every
feasible set (allocation, tie rule, payments), first price charges the bid, and bad
arguments are refused."""

from __future__ import annotations

import itertools
import time
from collections.abc import Sequence
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mabeam.economics import (
    MAX_AMOUNT,
    AuctionError,
    Award,
    Clearing,
    SealedBid,
    first_price,
    vcg,
    vickrey,
)

# -- Vickrey ----------------------------------------------------------------------------------


def utility(award: Award | None, bidder: str, value: int) -> int:
    return value - award.price if award is not None and award.bidder == bidder else 0


@settings(max_examples=300, deadline=None)
@given(
    values=st.lists(st.integers(0, 100), min_size=1, max_size=6),
    reserve=st.one_of(st.just(0), st.integers(0, 80)),
    data=st.data(),
)
def test_vickrey_no_bid_but_the_true_value_ever_does_better(
    values: list[int], reserve: int, data: st.DataObject
) -> None:
    k = data.draw(st.integers(0, len(values) - 1), label="bidder")
    v = values[k]
    shift = data.draw(st.integers(1, 60), label="shift")
    alternatives = [max(v - shift, 0), v + shift, 0, data.draw(st.integers(0, 200))]

    def auction(bid_of_k: int) -> Award | None:
        bids = [SealedBid(f"b{i}", bid_of_k if i == k else x, order=i)
                for i, x in enumerate(values)]  # fmt: skip
        return vickrey(bids, reserve=reserve)

    truthful = utility(auction(v), f"b{k}", v)
    assert truthful >= 0
    for alt in alternatives:
        assert utility(auction(alt), f"b{k}", v) <= truthful, (alt, auction(alt))


def test_vickrey_charges_the_second_bid_or_the_reserve() -> None:
    bids = [SealedBid("a", 50, order=2), SealedBid("b", 80, order=1), SealedBid("c", 60)]
    assert vickrey(bids) == Award("b", 1, 60, 80)
    assert vickrey(bids, reserve=70) == Award("b", 1, 70, 80)
    assert vickrey(bids, reserve=80) == Award("b", 1, 80, 80)
    assert vickrey(bids, reserve=81) is None
    assert vickrey([SealedBid("solo", 9)], reserve=4) == Award("solo", 1, 4, 9)
    assert vickrey([]) is None
    # A tie at the top: the first in order wins and pays the tied amount.
    tie = [SealedBid("x", 70, order=3), SealedBid("y", 70, order=1), SealedBid("z", 10)]
    assert vickrey(tie) == Award("y", 1, 70, 70)


# -- first price --------------------------------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(
    bids=st.lists(st.tuples(st.integers(0, 20), st.integers(-3, 3)), min_size=1, max_size=8),
    reserve=st.integers(0, 15),
)
def test_first_price_sells_to_the_highest_bid_at_its_own_price(
    bids: list[tuple[int, int]], reserve: int
) -> None:
    sealed = [SealedBid(f"b{i}", amount, order=order) for i, (amount, order) in enumerate(bids)]
    award = first_price(sealed, reserve=reserve)
    valid = [b for b in sealed if b.amount >= reserve]
    if not valid:
        assert award is None
        return
    best = max(b.amount for b in valid)
    first = min((b for b in valid if b.amount == best), key=lambda b: (b.order, b.bidder))
    assert award == Award(first.bidder, 1, best, best)


def test_first_price_ties_go_to_the_lower_order_then_the_name() -> None:
    bids = [SealedBid("c", 7, order=1), SealedBid("a", 7, order=2), SealedBid("b", 7, order=1)]
    assert first_price(bids) == Award("b", 1, 7, 7)
    assert first_price(bids, reserve=8) is None
    assert first_price([SealedBid("a", 5)], reserve=5) == Award("a", 1, 5, 5)


# -- VCG against brute force -----------------------------------------------------------------


def surplus(b: SealedBid, reserve: int) -> int:
    return b.amount - reserve * b.quantity


def feasible_sets(bids: Sequence[SealedBid], capacity: int, reserve: int) -> list[tuple[int, ...]]:
    """Every set of bids (indices) that fits and where each bid reaches its reserve."""
    ok = [i for i, b in enumerate(bids) if b.amount >= reserve * b.quantity]
    return [
        subset
        for n in range(len(ok) + 1)
        for subset in itertools.combinations(ok, n)
        if sum(bids[i].quantity for i in subset) <= capacity
    ]


def best(bids: Sequence[SealedBid], capacity: int, reserve: int, without: int = -1) -> int:
    return max(
        sum(surplus(bids[i], reserve) for i in s)
        for s in feasible_sets(bids, capacity, reserve)
        if without not in s
    )


def lexicographic_first(bids: Sequence[SealedBid], optimal: list[tuple[int, ...]]) -> set[int]:
    """The documented tie rule: read the bids in priority order, take each one whenever
    an optimal set that agrees on the earlier bids contains it."""
    priority = sorted(range(len(bids)), key=lambda i: (bids[i].order, bids[i].bidder))
    return set(max(optimal, key=lambda s: [i in s for i in priority]))


bundle = st.builds(
    lambda amount, q, order: (amount, q, order),
    st.integers(0, 40), st.integers(1, 4), st.integers(0, 3),
)  # fmt: skip


@settings(max_examples=400, deadline=None)
@given(
    spec=st.lists(bundle, max_size=7),
    capacity=st.integers(1, 6),
    reserve=st.one_of(st.just(0), st.integers(1, 6)),
)
def test_vcg_equals_the_brute_force_optimum_and_externalities(
    spec: list[tuple[int, int, int]], capacity: int, reserve: int
) -> None:
    bids = [SealedBid(f"b{i}", a, q, o) for i, (a, q, o) in enumerate(spec)]
    clearing = vcg(bids, capacity=capacity, reserve_per_unit=reserve)
    index = {b.bidder: i for i, b in enumerate(bids)}
    chosen = {index[a.bidder] for a in clearing.awards}

    optimum = best(bids, capacity, reserve)
    sets = feasible_sets(bids, capacity, reserve)
    assert tuple(sorted(chosen)) in sets  # feasible, every winner at its reserve
    assert sum(surplus(bids[i], reserve) for i in chosen) == optimum
    optimal = [s for s in sets if sum(surplus(bids[i], reserve) for i in s) == optimum]
    assert chosen == lexicographic_first(bids, optimal)

    for award in clearing.awards:
        b = bids[index[award.bidder]]
        others_now = optimum - surplus(b, reserve)
        externality = best(bids, capacity, reserve, without=index[award.bidder]) - others_now
        assert award.price == reserve * b.quantity + externality
        assert (award.quantity, award.value) == (b.quantity, b.amount)
        assert reserve * b.quantity <= award.price <= award.value  # individually rational
    priority = [(bids[index[a.bidder]].order, a.bidder) for a in clearing.awards]
    assert priority == sorted(priority)
    assert clearing.capacity == capacity and clearing.units <= capacity
    assert clearing.revenue == sum(a.price for a in clearing.awards)
    assert clearing.welfare == sum(a.value for a in clearing.awards)


@settings(max_examples=300, deadline=None)
@given(
    amounts=st.lists(st.integers(0, 30), max_size=7),
    orders=st.lists(st.integers(0, 2), min_size=7, max_size=7),
    reserve=st.integers(0, 20),
)
def test_vcg_with_unit_bids_and_one_unit_is_vickrey(
    amounts: list[int], orders: list[int], reserve: int
) -> None:
    bids = [SealedBid(f"b{i}", a, 1, orders[i]) for i, a in enumerate(amounts)]
    award = vickrey(bids, reserve=reserve)
    clearing = vcg(bids, capacity=1, reserve_per_unit=reserve)
    assert clearing.awards == (() if award is None else (award,))


def reference_vcg(bids: Sequence[SealedBid], capacity: int, reserve: int) -> dict[str, int]:
    """Winner -> price by a plain knapsack over every bid (no pruning), one re-solve per
    winner: the slow, obvious way."""

    def solve(items: list[SealedBid]) -> tuple[int, list[SealedBid]]:
        table: list[tuple[int, list[SealedBid]]] = [(0, [])] * (capacity + 1)
        for b in reversed(items):  # later bids first, so earlier ones win ties below
            s = surplus(b, reserve)
            new = list(table)
            for c in range(b.quantity, capacity + 1):
                cand = s + table[c - b.quantity][0]
                if cand >= new[c][0]:  # >=: prefer taking the earlier bid
                    new[c] = (cand, [b, *table[c - b.quantity][1]])
            table = new
        return table[capacity]

    ranked = sorted(
        (b for b in bids if b.quantity <= capacity and surplus(b, reserve) >= 0),
        key=lambda b: (b.order, b.bidder),
    )
    total, winners = solve(ranked)
    prices = {}
    for w in winners:
        without, _ = solve([b for b in ranked if b is not w])
        prices[w.bidder] = reserve * w.quantity + without - (total - surplus(w, reserve))
    return prices


@settings(max_examples=40, deadline=None)
@given(
    spec=st.lists(st.tuples(st.integers(0, 60), st.integers(1, 3)), min_size=10, max_size=40),
    capacity=st.integers(1, 8),
    reserve=st.integers(0, 4),
)
def test_vcg_keeps_only_the_bids_that_matter_without_changing_the_result(
    spec: list[tuple[int, int]], capacity: int, reserve: int
) -> None:
    # Many bids of few quantities: most are pruned before the knapsack runs.
    bids = [SealedBid(f"b{i:02d}", a, q, i % 5) for i, (a, q) in enumerate(spec)]
    clearing = vcg(bids, capacity=capacity, reserve_per_unit=reserve)
    assert {a.bidder: a.price for a in clearing.awards} == reference_vcg(bids, capacity, reserve)


def test_a_thousand_bidders_for_eight_gpus_clear_at_once() -> None:
    bids = [SealedBid(f"n{i:04d}", (i * 7919) % 100_000 * 1000, i % 8 + 1, i)
            for i in range(1000)]  # fmt: skip
    started = time.perf_counter()
    clearing = vcg(bids, capacity=8, reserve_per_unit=1000)
    elapsed = time.perf_counter() - started
    assert {a.bidder: a.price for a in clearing.awards} == reference_vcg(bids, 8, 1000)
    assert clearing.units <= 8 and clearing.awards
    assert elapsed < 0.5, f"vcg over 1,000 bids took {elapsed:.3f} s"


def test_vcg_prices_bundles_by_what_the_winners_displace() -> None:
    bids = [SealedBid("big", 10, 2), SealedBid("p", 6, 1, 1), SealedBid("q", 5, 1, 2)]
    assert vcg(bids, capacity=2) == Clearing(
        (Award("p", 1, 5, 6), Award("q", 1, 4, 5)), capacity=2, revenue=9, welfare=11
    )
    # One more unit: everybody fits and nobody displaces anyone: they pay the reserve.
    assert vcg(bids, capacity=4, reserve_per_unit=1).awards == (
        Award("big", 2, 2, 10), Award("p", 1, 1, 6), Award("q", 1, 1, 5),
    )  # fmt: skip
    # A bundle larger than the capacity simply loses; below its reserve it takes no part.
    assert vcg([SealedBid("huge", 99, 5), SealedBid("low", 3, 2)], capacity=4,
               reserve_per_unit=2).awards == ()  # fmt: skip
    assert vcg([], capacity=3) == Clearing((), 3, 0, 0)


# -- bad arguments ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: vcg([SealedBid("a", 1)], capacity=0), "capacity must be an int >= 1"),
        (lambda: vcg([SealedBid("a", 1)], capacity=True), "capacity must be an int >= 1"),
        (lambda: vcg([SealedBid("a", 1)], capacity=2.0), "capacity must be an int >= 1"),
        (lambda: vcg([], capacity=1, reserve_per_unit=-1), "reserve_per_unit must be an int"),
        (lambda: vickrey([], reserve=0.5), "reserve must be an int of micro-credits"),
        (lambda: first_price([], reserve=MAX_AMOUNT + 1), "reserve must be an int"),
        (lambda: vickrey([SealedBid("a", 1), SealedBid("a", 2)]), "bidder 'a' bids twice"),
        (lambda: vcg([SealedBid("a", 1, 2), SealedBid("a", 2)], capacity=4), "bids twice"),
        (lambda: vickrey([SealedBid("a", 1, 2)]), "vickrey sells one unit"),
        (lambda: first_price([SealedBid("a", 1, 3)]), "first_price sells one unit"),
        (lambda: vickrey([("a", 1)]), "bids must be SealedBid"),
        (lambda: vickrey(SealedBid("a", 1)), "bids must be a collection"),
        (lambda: SealedBid("a", 1, quantity=0), "quantity must be an int >= 1"),
        (lambda: SealedBid("a", -1), "amount must be an int of micro-credits"),
        (lambda: SealedBid("a", 1.5), "amount must be an int of micro-credits"),
        (lambda: SealedBid("a", True), "amount must be an int of micro-credits"),
        (lambda: SealedBid(7, 1), "a bidder is named by a str"),
        (lambda: SealedBid("a", 1, order=None), "order must be an int"),
    ],
)
def test_bad_arguments_are_refused(call: Any, message: str) -> None:
    with pytest.raises(AuctionError, match=message):
        call()


def test_a_bundle_larger_than_the_capacity_is_a_losing_bid_not_an_error() -> None:
    clearing = vcg([SealedBid("a", 100, 9), SealedBid("b", 1, 1)], capacity=8)
    assert [a.bidder for a in clearing.awards] == ["b"]
