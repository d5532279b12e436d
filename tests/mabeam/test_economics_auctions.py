"""The auction actors on the virtual clock: under generated bidder behaviour (truthful,
passing, garbage, silent, crashing, slow) every English and Dutch outcome equals a
reference simulation of the rules, sealed and VCG outcomes equal the mechanisms applied
to the valid bids alone, and truthful bidders get the economics the rules promise."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest
from coordination_helpers import Act, Scripted, run_virtual
from hypothesis import event, given, settings
from hypothesis import strategies as st

from foundation import Actor, ActorRef, Caller, NoReply, StartError, current_runtime
from mabeam.agents import Agent, start_agent
from mabeam.economics import (
    AUCTION_EVENT,
    MAX_AMOUNT,
    AuctionError,
    AuctionOutcome,
    Bidder,
    PriceOffer,
    Sale,
    SealedBid,
    dutch_auction,
    english_auction,
    first_price,
    sealed_bid_auction,
    vcg,
    vcg_auction,
    vickrey,
)

ROUND = 1.0  # English round timeout, Dutch tick, sealed timeout
DELAYS = (0.0, 0.25, 0.5)


# -- clock bidders with a plan --------------------------------------------------------------


@dataclass(frozen=True)
class Plan:
    """A clock bidder: truthful from ``value`` except in the rounds where it crashes,
    stays silent or answers garbage; every answer comes ``delay`` seconds late."""

    value: int
    crash_at: int | None = None
    silent_at: frozenset[int] = field(default_factory=frozenset)
    garbage_at: frozenset[int] = field(default_factory=frozenset)
    delay: float = 0.0


class Planned(Actor):
    """Plays a ``Plan`` on every ``PriceOffer``; remembers each offer and when it came."""

    async def init(self, plan: Plan) -> None:
        self.plan = plan
        self.offers: list[tuple[int, int, float, float]] = []

    async def handle_call(self, request: Any, caller: Caller) -> Any:
        if request == "offers":
            return list(self.offers)
        assert isinstance(request, PriceOffer)
        now = self.runtime.clock.now()
        self.offers.append((request.round, request.price, now, request.deadline))
        plan = self.plan
        if request.round == plan.crash_at:
            raise RuntimeError("planned crash")
        if request.round in plan.silent_at:
            return NoReply
        answer: Any = "maybe" if request.round in plan.garbage_at else request.price <= plan.value
        if plan.delay:
            self.send_after(plan.delay, (caller, answer))
            return NoReply
        return answer

    async def handle_info(self, msg: Any) -> None:
        caller, answer = msg
        caller.reply(answer)


rounds_set = st.frozensets(st.integers(1, 6), max_size=2)
plan = st.builds(
    Plan,
    value=st.integers(0, 12),
    crash_at=st.one_of(st.none(), st.none(), st.integers(1, 6)),
    silent_at=st.one_of(st.just(frozenset[int]()), rounds_set),
    garbage_at=st.one_of(st.just(frozenset[int]()), rounds_set),
    delay=st.sampled_from((*DELAYS, 1.5)),
)


def answer_of(p: Plan, r: int, price: int) -> tuple[str, float]:
    """What a planned bidder does with the offer of round ``r`` and when it is known."""
    if p.crash_at == r:
        return "crashed", 0.0
    if r in p.silent_at or p.delay >= ROUND:
        return "timeout", ROUND
    if r in p.garbage_at:
        return "garbage", p.delay
    return ("bid" if price <= p.value else "declined"), p.delay


@dataclass
class Expected:
    reason: str
    winner: int | None
    price: int | None
    rounds: int
    ended: float
    whys: dict[int, tuple[str, int]]  # bidder -> (why, round) where it is certain
    asked: dict[int, list[int]]  # bidder -> the rounds it was offered a price
    maybe: frozenset[int] = frozenset()  # bidders the last offer may not have reached


async def run_planned(plans: Sequence[Plan], auction: Any) -> tuple[AuctionOutcome, list[Any]]:
    rt = current_runtime()
    refs = [await rt.spawn(Planned, p) for p in plans]
    outcome = await auction(refs)
    offers = [await r.call("offers") if r.is_alive else None for r in refs]
    return outcome, offers


def check(outcome: AuctionOutcome, offers: list[Any], want: Expected) -> None:
    refs = [r.bidder for r in outcome.bidders]
    got = (outcome.reason, outcome.price, outcome.rounds, outcome.ended_at)
    assert got == (want.reason, want.price, want.rounds, want.ended), outcome
    assert outcome.winner == (None if want.winner is None else refs[want.winner])
    if want.winner is not None:
        assert outcome.awards == (Sale(refs[want.winner], 1, want.price, want.price),)
    else:
        assert outcome.awards == () and outcome.revenue == 0
    for i, (why, number) in want.whys.items():
        record = outcome.bidders[i]
        assert (record.why, record.round) == (why, number), (i, record)
    for i, seen in enumerate(offers):
        if seen is not None:
            numbers = [number for number, *_ in seen]
            ok = [want.asked[i]] + ([want.asked[i][:-1]] if i in want.maybe else [])
            assert numbers in ok, (i, numbers, want.asked[i])


# -- English ----------------------------------------------------------------------------------


def english_reference(
    plans: Sequence[Plan], reserve: int, increment: int, max_rounds: int | None
) -> Expected:
    """The English rules of ``_auction_english``, played over the plans."""
    active = list(range(len(plans)))
    dead: set[int] = set()
    whys: dict[int, tuple[str, int]] = {}
    asked_in: dict[int, list[int]] = {i: [] for i in active}
    price, r, t = reserve, 0, 0.0
    while True:
        r += 1
        asked = [i for i in active if i not in dead]
        known = {i: answer_of(plans[i], r, price) for i in asked}
        for i, (why, _) in known.items():
            asked_in[i].append(r)
            whys[i] = (why, r)
            if why == "crashed":
                dead.add(i)
        t += max(at for _, at in known.values())
        stayers = [i for i in asked if known[i][0] == "bid"]
        if len(stayers) == 1:
            return Expected("sold", stayers[0], price, r, t, whys, asked_in)
        if not stayers:
            alive = [i for i in asked if i not in dead]
            if r > 1 and alive:
                return Expected("sold", alive[0], price - increment, r, t, whys, asked_in)
            return Expected("no_bids" if alive else "no_bidders", None, None, r, t, whys, asked_in)
        if max_rounds is not None and r >= max_rounds:
            return Expected("max_rounds", stayers[0], price, r, t, whys, asked_in)
        active = stayers
        price += increment


@settings(max_examples=150, deadline=None)
@given(
    plans=st.lists(plan, min_size=1, max_size=5),
    reserve=st.integers(0, 6),
    increment=st.integers(1, 3),
    max_rounds=st.one_of(st.none(), st.integers(1, 6)),
)
def test_every_english_outcome_equals_the_reference(
    plans: list[Plan], reserve: int, increment: int, max_rounds: int | None
) -> None:
    want = english_reference(plans, reserve, increment, max_rounds)
    event(f"english: {want.reason}")

    async def main() -> tuple[AuctionOutcome, list[Any]]:
        return await run_planned(plans, lambda refs: english_auction(
            refs, "lot", reserve=reserve, increment=increment, round_timeout=ROUND,
            max_rounds=max_rounds))  # fmt: skip

    outcome, offers = run_virtual(main)
    check(outcome, offers, want)
    for seen in offers:  # round r offers reserve + (r - 1) * increment, due in ROUND
        for number, price, at, deadline in seen or ():
            assert price == reserve + (number - 1) * increment and deadline == at + ROUND


@settings(max_examples=100, deadline=None)
@given(
    values=st.lists(st.integers(0, 40), min_size=1, max_size=6),
    reserve=st.integers(0, 10),
    increment=st.integers(1, 5),
)
def test_english_with_truthful_bidders_sells_to_the_highest_value_near_the_second(
    values: list[int], reserve: int, increment: int
) -> None:
    async def main() -> tuple[AuctionOutcome, list[ActorRef]]:
        rt = current_runtime()
        refs = [await rt.spawn(Bidder, v) for v in values]
        outcome = await english_auction(refs, "lot", reserve=reserve, increment=increment,
                                        round_timeout=ROUND)  # fmt: skip
        return outcome, refs

    outcome, refs = run_virtual(main)
    top = max(values)
    if top < reserve:
        assert outcome.reason == "no_bids" and outcome.winner is None
        return
    assert outcome.winner is not None and outcome.price is not None
    won = values[refs.index(outcome.winner)]
    second = max([v for i, v in enumerate(values) if i != values.index(top)], default=-1)
    assert outcome.reason == "sold" and reserve <= outcome.price <= won
    if second < reserve:
        assert (won, outcome.price) == (top, reserve)
    else:
        assert abs(outcome.price - second) <= increment  # within one increment
        assert won > top - increment
        if top - second >= increment:  # a clear top: it wins, one step above the second
            assert won == top and second < outcome.price <= second + increment
    assert outcome.ended_at == 0.0  # every bidder answered at once


def test_a_bidder_that_skips_a_round_is_out_for_good() -> None:
    plans = [Plan(100, silent_at=frozenset({2})), Plan(5), Plan(3)]

    async def main() -> tuple[AuctionOutcome, list[Any]]:
        return await run_planned(plans, lambda refs: english_auction(
            refs, "lot", reserve=0, increment=1, round_timeout=ROUND))  # fmt: skip

    outcome, offers = run_virtual(main)
    # The 100-bidder would have won; silent in round 2, it is never asked again.
    assert [number for number, *_ in offers[0]] == [1, 2]
    assert outcome.winner == outcome.bidders[1].bidder and outcome.price == 4
    assert outcome.ended_at == ROUND  # round 2 waited for it
    assert (outcome.bidders[0].why, outcome.bidders[0].round) == ("timeout", 2)
    assert outcome.bidders[0].amount == 0  # the last price it stayed in at


def test_a_crash_is_dropping_out_and_voids_the_crashed_bidders_stay() -> None:
    async def main() -> tuple[AuctionOutcome, AuctionOutcome]:
        plans_a = [Plan(100, crash_at=3), Plan(5), Plan(2)]
        first, _ = await run_planned(plans_a, lambda refs: english_auction(
            refs, "lot", reserve=0, increment=1, round_timeout=ROUND))  # fmt: skip
        # Both stay in at 10; then the first-listed crashes and the other passes: the
        # lot goes to the one still alive at 10, not to the crashed first-listed bidder.
        plans_b = [Plan(100, crash_at=2), Plan(10)]
        second, _ = await run_planned(plans_b, lambda refs: english_auction(
            refs, "lot", reserve=10, increment=5, round_timeout=ROUND))  # fmt: skip
        return first, second

    first, second = run_virtual(main)
    assert first.winner == first.bidders[1].bidder and first.price == 3
    assert first.bidders[0].why == "crashed" and first.bidders[0].round == 3
    assert isinstance(first.bidders[0].detail, RuntimeError)
    assert second.winner == second.bidders[1].bidder and second.price == 10
    assert second.reason == "sold" and second.rounds == 2


def test_max_rounds_sells_to_the_first_listed_bidder_still_in() -> None:
    async def main() -> AuctionOutcome:
        rt = current_runtime()
        refs = [await rt.spawn(Bidder, v) for v in (50, 100, 100)]
        return await english_auction(refs, "lot", reserve=10, increment=5, round_timeout=ROUND,
                                     max_rounds=3)  # fmt: skip

    outcome = run_virtual(main)
    assert (outcome.reason, outcome.rounds, outcome.price) == ("max_rounds", 3, 20)
    assert outcome.winner == outcome.bidders[0].bidder  # all three still in at 20
    assert outcome.sold and [r.why for r in outcome.bidders] == ["bid", "bid", "bid"]


class AnswerThenCrash(Actor):
    """Answers ``answer`` at once, then crashes ``after`` seconds later."""

    async def init(self, answer: Any, after: float) -> None:
        self.answer = answer
        self.after = after

    async def handle_call(self, request: Any, caller: Caller) -> Any:
        self.send_after(self.after, "crash")
        return self.answer

    async def handle_info(self, msg: Any) -> None:
        raise RuntimeError("crashed after answering")


def test_a_stay_or_a_take_given_before_a_crash_is_void() -> None:
    async def main() -> tuple[AuctionOutcome, AuctionOutcome]:
        rt = current_runtime()
        english = await english_auction(
            [await rt.spawn(AnswerThenCrash, True, 0.25),
             await rt.spawn(Scripted, {"*": Act("silent")})],
            "lot", reserve=5, increment=1, round_timeout=ROUND,
        )  # fmt: skip
        dutch = await dutch_auction(
            [await rt.spawn(Scripted, {"*": Act("answer", False, 0.5)}),
             await rt.spawn(AnswerThenCrash, True, 0.25),
             await rt.spawn(Bidder, 100)],
            "lot", start=10, reserve=0, decrement=1, tick_s=ROUND,
        )  # fmt: skip
        return english, dutch

    english, dutch = run_virtual(main)
    # The only yes in round 1 came from a bidder that then crashed: nobody is in.
    assert (english.reason, english.winner, english.ended_at) == ("no_bids", None, ROUND)
    assert [r.why for r in english.bidders] == ["crashed", "timeout"]
    # The crashed taker came first but its take is void: the next taker buys, once the
    # first-listed bidder has passed.
    assert dutch.winner == dutch.bidders[2].bidder and dutch.price == 10
    assert dutch.ended_at - dutch.started_at == 0.5
    assert [r.why for r in dutch.bidders] == ["declined", "crashed", "bid"]


# -- Dutch ------------------------------------------------------------------------------------


def dutch_reference(plans: Sequence[Plan], start: int, reserve: int, decrement: int) -> Expected:
    """The Dutch rules of ``_auction_dutch``, played over the plans."""
    n = len(plans)
    dead: set[int] = set()
    whys: dict[int, tuple[str, int]] = {}
    asked_in: dict[int, list[int]] = {i: [] for i in range(n)}
    s = 0
    while True:
        s += 1
        t0 = (s - 1) * ROUND
        price = start - (s - 1) * decrement
        asked = [i for i in range(n) if i not in dead]
        known = {i: answer_of(plans[i], s, price) for i in asked}
        for i, (why, _) in known.items():
            asked_in[i].append(s)
            if why == "crashed":
                dead.add(i)
                whys[i] = (why, s)
        if len(dead) == n:
            return Expected("no_bidders", None, None, s, t0, whys, asked_in)
        decided = 0.0
        for i in asked:
            why, at = known[i]
            decided = max(decided, at)
            if why == "bid":
                for j in asked:  # later answers may or may not be in when it is sold
                    if j <= i or known[j][1] > decided:
                        whys[j] = (known[j][0] if j <= i else "pending", s)
                    else:
                        whys.pop(j, None)
                later = frozenset(j for j in asked if j > i)  # their askers may be dropped first
                return Expected("sold", i, price, s, t0 + decided, whys, asked_in, later)
        whys.update({i: (why, s) for i, (why, _) in known.items()})
        if price - decrement < reserve:
            ended = t0 + max(at for _, at in known.values())
            return Expected("below_reserve", None, None, s, ended, whys, asked_in)


@settings(max_examples=150, deadline=None)
@given(
    plans=st.lists(plan, min_size=1, max_size=5),
    start=st.integers(8, 16),
    reserve=st.integers(0, 8),
    decrement=st.integers(1, 4),
)
def test_every_dutch_outcome_equals_the_reference(
    plans: list[Plan], start: int, reserve: int, decrement: int
) -> None:
    want = dutch_reference(plans, start, reserve, decrement)
    event(f"dutch: {want.reason}")

    async def main() -> tuple[AuctionOutcome, list[Any]]:
        return await run_planned(plans, lambda refs: dutch_auction(
            refs, "lot", start=start, reserve=reserve, decrement=decrement,
            tick_s=ROUND))  # fmt: skip

    outcome, offers = run_virtual(main)
    check(outcome, offers, want)
    if outcome.winner is not None:  # a crashed bidder never wins
        crash = plans[[r.bidder for r in outcome.bidders].index(outcome.winner)].crash_at
        assert crash is None or crash > outcome.rounds
    for seen in offers:  # step s: start - (s - 1) * decrement, offered at (s - 1) * tick
        for number, price, at, deadline in seen or ():
            assert price == start - (number - 1) * decrement >= reserve
            assert at == (number - 1) * ROUND and deadline == at + ROUND


class Watching(Bidder):
    """A truthful bidder that notes each Dutch offer and the clock time it came."""

    async def init(self, value: int) -> None:
        await super().init(value)
        self.seen: list[tuple[int, float]] = []

    async def accept(self, offer: PriceOffer) -> bool:
        self.seen.append((offer.price, self.runtime.clock.now()))
        return await super().accept(offer)

    async def handle_call(self, request: Any, caller: Caller) -> Any:
        if request == "seen":
            return self.seen
        return await super().handle_call(request, caller)


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_the_dutch_price_falls_one_decrement_per_tick_until_the_first_taker(backend: str) -> None:
    tick = 0.5

    async def main() -> tuple[AuctionOutcome, AuctionOutcome, list[Any]]:
        rt = current_runtime()
        refs = [await rt.spawn(Watching, v) for v in (3, 7, 7, 5)]
        sold = await dutch_auction(refs, "lot", start=20, reserve=1, decrement=2, tick_s=tick)
        seen = [await r.call("seen") for r in refs]
        low = [await rt.spawn(Bidder, v) for v in (3, 2)]
        unsold = await dutch_auction(low, "lot", start=10, reserve=4, decrement=3, tick_s=tick)
        return sold, unsold, seen

    sold, unsold, seen = run_virtual(main, backend)
    steps = sold.rounds - 1  # ticks before the sale
    assert (sold.price, sold.ended_at - sold.started_at) == (20 - steps * 2, steps * tick)
    assert (sold.price, steps) == (6, 7)  # the first price at or below 7
    assert sold.winner == sold.bidders[1].bidder  # two takers at 6: the first listed
    assert seen[0] == [(20 - 2 * k, k * tick) for k in range(8)]
    assert (unsold.reason, unsold.rounds, unsold.ended_at - unsold.started_at) == (
        "below_reserve", 3, 2 * tick,  # 10, 7, 4: nobody; 1 would be below the reserve
    )  # fmt: skip
    assert [r.why for r in unsold.bidders] == ["declined", "declined"]


# -- sealed bids and VCG ------------------------------------------------------------------------


def answered(values: st.SearchStrategy[tuple[Any, tuple[str, int, int]]]) -> Any:
    """Acts answering in time with ``value``, paired with what the answer stands for."""
    return st.builds(lambda v, d: (Act("answer", v[0], d), v[1]), values, st.sampled_from(DELAYS))


def amounts(lo: int = 0, hi: int = 20) -> st.SearchStrategy[int]:
    return st.integers(lo, hi)


BAD = [1.5, -3, "7", True, (1, -1), (1, 2.0), MAX_AMOUNT + 1, (1, 2, 3), [], (0, 5), ("2", 5)]
garbage = st.sampled_from(BAD).map(lambda v: (v, ("garbage", 0, 0)))
failing = st.one_of(
    st.builds(lambda d: (Act("crash", None, d), ("crashed", 0, 0)), st.sampled_from(DELAYS)),
    st.builds(lambda d: (Act("garbage", None, d), ("garbage", 0, 0)), st.sampled_from(DELAYS)),
    st.just((Act("silent"), ("timeout", 0, 0))),
    st.just((Act("answer", 5, 1.5), ("timeout", 0, 0))),  # too late
    st.just((Act("dead"), ("crashed", 0, 0))),
)
single = st.one_of(
    answered(amounts().map(lambda a: (a, ("bid", 1, a)))),
    answered(amounts().map(lambda a: ((1, a), ("bid", 1, a)))),
    answered(st.just((None, ("declined", 0, 0)))),
    answered(garbage),
    answered(st.just(((2, 5), ("garbage", 0, 0)))),  # a bundle in a single-unit auction
    failing,
)
bundle = st.one_of(
    answered(amounts().map(lambda a: (a, ("bid", 1, a)))),
    answered(st.tuples(st.integers(1, 4), amounts(0, 30)).map(lambda b: (b, ("bid", *b)))),
    answered(st.tuples(st.integers(1, 4), amounts(0, 30)).map(lambda b: (list(b), ("bid", *b)))),
    answered(st.just((None, ("declined", 0, 0)))),
    answered(garbage),
    failing,
)


async def run_scripted(acts: Sequence[Act], auction: Any) -> tuple[AuctionOutcome, list[Any]]:
    rt = current_runtime()
    events: list[Any] = []
    rt.telemetry.attach(AUCTION_EVENT, lambda *e: events.append(e))
    refs = [await rt.spawn(Scripted, {"BidRequest": a}) for a in acts]
    for ref, a in zip(refs, acts, strict=True):
        if a.kind == "dead":
            await ref.stop()
    outcome = await auction(refs)
    return outcome, events


def check_sealed(
    outcome: AuctionOutcome, acts: Sequence[Act], meaning: Sequence[tuple[str, int, int]],
    expected: list[Any], events: list[Any], capacity: int = 1,
) -> None:  # fmt: skip
    refs = [r.bidder for r in outcome.bidders]
    wait = [a.kind == "silent" or a.delay >= ROUND for a in acts]
    assert outcome.ended_at == (ROUND if any(wait) else max(a.delay for a in acts))
    assert outcome.rounds == 1
    for record, act, (why, q, amount) in zip(outcome.bidders, acts, meaning, strict=True):
        assert record.why == why, (record, act)
        assert (record.quantity, record.amount) == ((q, amount) if why == "bid" else (None, None))
        assert record.detail is not None if why in ("crashed", "garbage") else True
    sales = tuple(Sale(refs[int(a.bidder)], a.quantity, a.price, a.value) for a in expected)
    assert outcome.awards == sales and outcome.revenue == sum(s.price for s in sales)
    bids = [m for m in meaning if m[0] == "bid"]
    fits = [q for _, q, _ in bids if q <= capacity]
    unsold = "below_reserve" if fits else "over_capacity" if bids else "no_bids"
    reason = "sold" if sales else unsold
    assert outcome.reason == reason
    [(_, measurements, meta)] = events
    assert (meta["kind"], meta["reason"], meta["bidders"]) == (
        outcome.kind,
        outcome.reason,
        len(acts),
    )
    assert measurements["bids"] == len(bids) and measurements["revenue"] == outcome.revenue


@settings(max_examples=120, deadline=None)
@given(
    spec=st.lists(single, min_size=1, max_size=6),
    rule=st.sampled_from(["first_price", "vickrey"]),
    reserve=st.one_of(st.just(0), amounts(1, 15)),
)
def test_sealed_bids_ignore_garbage_silence_and_crashes(
    spec: list[tuple[Act, tuple[str, int, int]]], rule: str, reserve: int
) -> None:
    acts = [a for a, _ in spec]
    meaning = [m for _, m in spec]
    bids = [SealedBid(str(i), amount, q, i)
            for i, (why, q, amount) in enumerate(meaning) if why == "bid"]  # fmt: skip
    award = (first_price if rule == "first_price" else vickrey)(bids, reserve=reserve)

    async def main() -> tuple[AuctionOutcome, list[Any]]:
        return await run_scripted(acts, lambda refs: sealed_bid_auction(
            refs, "lot", rule=rule, reserve=reserve, timeout=ROUND))  # type: ignore[arg-type]  # fmt: skip

    outcome, events = run_virtual(main)
    check_sealed(outcome, acts, meaning, [] if award is None else [award], events)
    assert outcome.kind == rule
    assert (outcome.winner, outcome.price) == (
        (None, None) if award is None else (outcome.awards[0].bidder, award.price)
    )


@settings(max_examples=120, deadline=None)
@given(
    spec=st.lists(bundle, min_size=1, max_size=6),
    capacity=st.integers(1, 5),
    reserve=st.one_of(st.just(0), st.integers(1, 4)),
)
def test_vcg_bids_ignore_garbage_silence_and_crashes(
    spec: list[tuple[Act, tuple[str, int, int]]], capacity: int, reserve: int
) -> None:
    acts = [a for a, _ in spec]
    meaning = [m for _, m in spec]
    bids = [SealedBid(str(i), amount, q, i)
            for i, (why, q, amount) in enumerate(meaning) if why == "bid"]  # fmt: skip
    clearing = vcg(bids, capacity=capacity, reserve_per_unit=reserve)

    async def main() -> tuple[AuctionOutcome, list[Any]]:
        return await run_scripted(acts, lambda refs: vcg_auction(
            refs, "node", capacity=capacity, reserve_per_unit=reserve, timeout=ROUND))  # fmt: skip

    outcome, events = run_virtual(main)
    check_sealed(outcome, acts, meaning, list(clearing.awards), events, capacity)
    assert outcome.kind == "vcg" and outcome.winner is None and outcome.price is None


def test_a_bid_made_before_a_crash_is_void() -> None:
    async def main() -> AuctionOutcome:
        rt = current_runtime()
        refs = [
            await rt.spawn(AnswerThenCrash, 90, 0.5),
            await rt.spawn(Bidder, 40),
            await rt.spawn(Bidder, 30),
            await rt.spawn(Scripted, {"*": Act("silent")}),  # keeps the round open
        ]
        return await sealed_bid_auction(refs, "lot", rule="vickrey", reserve=0, timeout=ROUND)

    outcome = run_virtual(main)
    # Without the void the crashed bidder would win; with it, 40 wins and pays 30.
    assert outcome.winner == outcome.bidders[1].bidder and outcome.price == 30
    crashed = outcome.bidders[0]
    assert (crashed.why, crashed.at, crashed.amount) == ("crashed", 0.5, None)
    assert outcome.bidders[3].why == "timeout" and outcome.ended_at == ROUND


class Buyer(Agent, Bidder):
    async def start_agent(self, value: int, quantity: int = 1) -> None:
        self.value = value
        self.quantity = quantity


def test_agents_bid_through_the_bidder_mixin() -> None:
    async def main() -> tuple[AuctionOutcome, AuctionOutcome]:
        buyers = [await start_agent(Buyer, f"buyer{i}", v, q)
                  for i, (v, q) in enumerate([(30, 2), (20, 1), (12, 1)])]  # fmt: skip
        single = await sealed_bid_auction(buyers, "gpu", rule="first_price", reserve=0,
                                          timeout=ROUND)  # fmt: skip
        bundles = await vcg_auction(buyers, "node", capacity=2, reserve_per_unit=1,
                                    timeout=ROUND)  # fmt: skip
        return single, bundles

    single, bundles = run_virtual(main)
    assert single.price == 30 and single.winner == single.bidders[0].bidder
    # 20 + 12 (32) beats 30 for two units; each pays what it displaces.
    assert [(s.quantity, s.price, s.value) for s in bundles.awards] == [(1, 18, 20), (1, 10, 12)]


# -- bad arguments ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("which", "kwargs", "message"),
    [
        ("english", {"bidders": []}, "bidders must not be empty"),
        ("english", {"bidders": "abc"}, "bidders must be a sequence of ActorRefs"),
        ("english", {"increment": 0}, "increment must be an int of micro-credits >= 1"),
        ("english", {"reserve": -1}, "reserve must be an int of micro-credits"),
        ("english", {"round_timeout": 0}, "round_timeout must be a finite number"),
        ("english", {"max_rounds": 0}, "max_rounds must be None or an int >= 1"),
        ("dutch", {"start": 5, "reserve": 6}, "must not be below the reserve"),
        ("dutch", {"decrement": 1.5}, "decrement must be an int"),
        ("dutch", {"tick_s": float("nan")}, "tick_s must be a finite number"),
        ("sealed", {"rule": "second_price"}, "rule must be 'first_price' or 'vickrey'"),
        ("sealed", {"timeout": -1}, "timeout must be a finite number"),
        ("vcg", {"capacity": 0}, "capacity must be an int >= 1"),
        ("vcg", {"reserve_per_unit": 0.5}, "reserve_per_unit must be an int"),
    ],
)
def test_bad_arguments_are_refused(which: str, kwargs: dict[str, Any], message: str) -> None:
    async def main() -> None:
        ref = await current_runtime().spawn(Bidder, 1)
        base: dict[str, dict[str, Any]] = {
            "english": {"reserve": 0, "increment": 1, "round_timeout": 1.0},
            "dutch": {"start": 9, "reserve": 0, "decrement": 1, "tick_s": 1.0},
            "sealed": {"rule": "vickrey", "reserve": 0, "timeout": 1.0},
            "vcg": {"capacity": 2, "reserve_per_unit": 0, "timeout": 1.0},
        }
        entry: Any = {"english": english_auction, "dutch": dutch_auction,
                      "sealed": sealed_bid_auction, "vcg": vcg_auction}[which]  # fmt: skip
        args = {"bidders": [ref], "lot": "lot", **base[which], **kwargs}
        with pytest.raises(AuctionError, match=message):
            await entry(**args)

    run_virtual(main)


def test_a_bidder_listed_twice_or_a_bad_valuation_is_refused() -> None:
    async def main() -> None:
        ref = await current_runtime().spawn(Bidder, 1)
        with pytest.raises(AuctionError, match="bidders must be distinct"):
            await vcg_auction([ref, ref], "n", capacity=1, reserve_per_unit=0, timeout=1.0)
        with pytest.raises(StartError) as info:
            await current_runtime().spawn(Bidder, 1.5)
        assert isinstance(info.value.__cause__, AuctionError)
        assert "value must be an int of micro-credits" in str(info.value.__cause__)

    run_virtual(main)
