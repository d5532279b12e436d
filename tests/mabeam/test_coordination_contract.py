"""contract_net: under generated contractor behaviour (bids, declines, garbage, silence,
crashes; winners that finish, crash or hang) every round and the final outcome equal a
reference simulation of the protocol written in plain Python."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pytest
from coordination_helpers import Act, Scripted, run_virtual
from hypothesis import given, settings
from hypothesis import strategies as st

from foundation import ActorRef, current_runtime
from mabeam.agents import Agent, start_agent
from mabeam.coordination import (
    CONTRACT_EVENT,
    Award,
    Bid,
    CallForProposals,
    Contractor,
    ContractOutcome,
    CoordinationError,
    contract_net,
)

WINDOW = 1.0  # seconds of bidding per round
PERFORM = 2.0  # seconds the winner has
IN_TIME = (0.0, 0.25, 0.5, 0.75)

bid_act = st.one_of(
    st.builds(Act, st.just("answer"), st.integers(1, 4), st.sampled_from(IN_TIME)),
    st.builds(Act, st.just("answer"), st.builds(Bid, st.integers(1, 4), st.just("data")),
              st.sampled_from(IN_TIME)),
    st.builds(Act, st.just("answer"), st.none(), st.sampled_from(IN_TIME)),  # declines
    st.builds(Act, st.just("answer"), st.just(float("nan")), st.sampled_from(IN_TIME)),
    st.builds(Act, st.just("answer"), st.integers(1, 4), st.just(1.5)),  # too late
    st.builds(Act, st.just("garbage"), st.none(), st.sampled_from(IN_TIME)),
    st.builds(Act, st.just("crash"), st.none(), st.sampled_from(IN_TIME)),
    st.builds(Act, st.just("silent")),
)  # fmt: skip
perform_act = st.one_of(
    st.builds(Act, st.just("answer"), st.just("done"), st.sampled_from((0.0, 0.5, 1.0))),
    st.builds(Act, st.just("crash"), st.none(), st.sampled_from((0.0, 0.5, 1.0))),
    st.builds(Act, st.just("silent")),
)


# -- the reference simulation -------------------------------------------------------------


@dataclass
class RefRound:
    started: float
    bids: list[tuple[int, str]]  # (contractor, why) in contractor order
    award: int | None
    end: str
    ended: float


def bid_value(a: Act) -> float | None:
    v = a.value.value if isinstance(a.value, Bid) else a.value
    return v if isinstance(v, int) else None  # NaN and None are not bids


def reference(
    bids: Sequence[Act], performs: Sequence[Act], max_rounds: int, prefer: str
) -> tuple[str, int | None, list[RefRound], float]:
    """Status, winner, rounds and end time, by the rules in contract_net's docstring."""
    n = len(bids)
    dead: set[int] = set()
    excluded: set[int] = set()
    rounds: list[RefRound] = []
    start = 0.0
    while True:
        invited = [i for i in range(n) if i not in dead and i not in excluded]
        if not invited:
            return "failed", None, rounds, start
        known: dict[int, tuple[str, float]] = {}
        for i in invited:
            a = bids[i]
            if a.kind == "silent" or a.delay >= WINDOW:
                continue  # silent, or answers after the round closed
            if a.kind == "crash":
                known[i] = ("crashed", a.delay)
                dead.add(i)
            elif a.kind == "garbage" or (a.value is not None and bid_value(a) is None):
                known[i] = ("garbage", a.delay)
            else:
                known[i] = ("declined" if a.value is None else "bid", a.delay)
        everyone = len(known) == len(invited)
        closed = start + (max(d for _, d in known.values()) if everyone else WINDOW)
        record = [(i, known[i][0] if i in known else "timeout") for i in invited]
        valid = [i for i, why in record if why == "bid"]
        if not valid:
            rounds.append(RefRound(start, record, None, "no_bids", closed))
            return "no_bids", None, rounds, closed
        sign = 1 if prefer == "lowest" else -1
        winner = min(valid, key=lambda i: (sign * bid_value(bids[i]), i))  # type: ignore[operator]
        p = performs[winner]
        if p.kind == "answer":
            rounds.append(RefRound(start, record, winner, "completed", closed + p.delay))
            return "completed", winner, rounds, closed + p.delay
        excluded.add(winner)
        if p.kind == "crash":
            dead.add(winner)
            end, how = closed + p.delay, "winner_crashed"
        else:
            end, how = closed + PERFORM, "winner_timeout"
        rounds.append(RefRound(start, record, winner, how, end))
        start = end
        if len(rounds) >= max_rounds:
            return "failed", None, rounds, end


# -- the property -------------------------------------------------------------------------


@settings(max_examples=120, deadline=None)
@given(
    acts=st.lists(st.tuples(bid_act, perform_act), min_size=1, max_size=5),
    max_rounds=st.integers(1, 3),
    prefer=st.sampled_from(["lowest", "highest"]),
    with_manager=st.booleans(),
)
def test_every_contract_net_outcome_equals_the_reference(
    acts: list[tuple[Act, Act]], max_rounds: int, prefer: str, with_manager: bool
) -> None:
    bids = [b for b, _ in acts]
    performs = [p for _, p in acts]
    status, winner, rounds, ended = reference(bids, performs, max_rounds, prefer)

    async def main() -> tuple[ContractOutcome, list[ActorRef], list[Any], list[list[Any]]]:
        rt = current_runtime()
        events: list[Any] = []
        rt.telemetry.attach(CONTRACT_EVENT, lambda *e: events.append(e))
        refs = [await rt.spawn(Scripted, {"CallForProposals": b, "Award": p}) for b, p in acts]
        manager = await rt.spawn(Scripted, {}) if with_manager else None
        outcome = await contract_net(
            manager, refs, {"task": 1}, WINDOW, perform_timeout=PERFORM,
            max_rounds=max_rounds, prefer=prefer,  # type: ignore[arg-type]
        )  # fmt: skip
        calls = [await r.call("calls") for r in refs if r.is_alive]
        return outcome, refs, events, calls

    outcome, refs, events, calls = run_virtual(main)
    assert (outcome.status, outcome.ended_at) == (status, ended), outcome
    assert outcome.winner == (None if winner is None else refs[winner])
    assert outcome.result == ("done" if status == "completed" else None)
    assert len(outcome.rounds) == len(rounds)
    for number, (got, want) in enumerate(zip(outcome.rounds, rounds, strict=True), 1):
        assert got.number == number
        assert (got.started_at, got.ended_at, got.end) == (want.started, want.ended, want.end)
        assert got.award == (None if want.award is None else refs[want.award])
        assert [(refs.index(b.contractor), b.why) for b in got.bids] == want.bids
        for b in got.bids:  # every bid is known by the round's deadline
            assert got.started_at <= b.at <= got.started_at + WINDOW
            assert (b.bid is not None) == (b.why == "bid")
        if got.award is not None:
            assert got.winning_bid is not None
            assert got.winning_bid.value == bid_value(bids[refs.index(got.award)])
    [(_, measurements, meta)] = events
    assert meta["status"] == status and measurements["rounds"] == len(rounds)
    for received in calls:  # every call a contractor got names its round and the task
        assert all(c.task == {"task": 1} for c in received)
        assert [c.round for c in received if isinstance(c, CallForProposals)] == sorted(
            {c.round for c in received if isinstance(c, CallForProposals)}
        )


# -- examples -------------------------------------------------------------------------------


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_a_crashed_winner_is_replaced_in_a_second_round(backend: str) -> None:
    async def main() -> tuple[ContractOutcome, list[ActorRef]]:
        rt = current_runtime()
        cheap = await rt.spawn(Scripted, {"CallForProposals": Act("answer", 1),
                                          "Award": Act("crash", delay=0.5)})  # fmt: skip
        dear = await rt.spawn(Scripted, {"CallForProposals": Act("answer", Bid(5, "gpu")),
                                         "Award": Act("answer", "trained")})  # fmt: skip
        outcome = await contract_net(None, [cheap, dear], "train", 1.0)
        return outcome, [cheap, dear]

    outcome, (cheap, dear) = run_virtual(main, backend)
    assert outcome.status == "completed" and outcome.result == "trained"
    assert outcome.winner == dear and outcome.ended_at == 0.5
    first, second = outcome.rounds
    assert (first.award, first.end, first.ended_at) == (cheap, "winner_crashed", 0.5)
    assert isinstance(first.detail, RuntimeError)
    assert [b.contractor for b in second.bids] == [dear]
    assert second.winning_bid == Bid(5, "gpu")


def test_no_valid_bid_is_no_bids_and_a_dead_manager_fails_the_contract() -> None:
    async def main() -> tuple[ContractOutcome, ContractOutcome]:
        rt = current_runtime()
        junk = [await rt.spawn(Scripted, {"*": a})
                for a in (Act("garbage"), Act("answer", None), Act("silent"))]  # fmt: skip
        nobody = await contract_net(None, junk, "t", 1.0)
        manager = await rt.spawn(Scripted, {})
        slow = await rt.spawn(Scripted, {"*": Act("answer", 1, 0.5)})
        rt.send_after(0.25, manager, "die")  # its handle_info cannot unpack it: it crashes
        orphan = await contract_net(manager, [slow], "t", 1.0)
        return nobody, orphan

    nobody, orphan = run_virtual(main)
    assert nobody.status == "no_bids" and nobody.ended_at == 1.0
    assert [b.why for b in nobody.rounds[0].bids] == ["garbage", "declined", "timeout"]
    assert orphan.status == "failed" and "manager exited" in orphan.reason
    assert orphan.ended_at == 1.25 and orphan.rounds[0].end == "manager_down"


class Trainer(Contractor, Agent):
    async def start_agent(self, price: float) -> None:
        self.price = price

    async def bid(self, cfp: CallForProposals) -> Bid | float | None:
        return Bid(self.price, {"name": self.name})

    async def perform(self, award: Award) -> Any:
        return f"{self.name} trained {award.task}"


def test_agents_take_part_through_the_contractor_mixin() -> None:
    async def main() -> ContractOutcome:
        trainers = [await start_agent(Trainer, f"t{i}", p) for i, p in enumerate((3, 1, 2))]
        return await contract_net(None, trainers, "resnet", 1.0, prefer="highest")

    outcome = run_virtual(main)
    assert outcome.result == "t0 trained resnet"
    assert outcome.rounds[0].winning_bid == Bid(3, {"name": "t0"})


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"contractors": []}, "contractors must not be empty"),
        ({"manager": "boss"}, "manager must be an ActorRef or None"),
        ({"deadline": -1}, "deadline must be a finite number of seconds > 0"),
        ({"perform_timeout": 0}, "perform_timeout must be"),
        ({"max_rounds": 0}, "max_rounds must be an int >= 1"),
        ({"prefer": "cheapest"}, "prefer must be 'lowest' or 'highest'"),
    ],
)
def test_bad_arguments_are_refused(kwargs: dict[str, Any], message: str) -> None:
    async def main() -> None:
        ref = await current_runtime().spawn(Scripted, {})
        args: dict[str, Any] = {"manager": None, "contractors": [ref], "task": "t",
                                "deadline": 1.0}  # fmt: skip
        args.update(kwargs)
        with pytest.raises(CoordinationError) as info:
            await contract_net(**args)
        assert message in str(info.value)

    run_virtual(main)
