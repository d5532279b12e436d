"""vote: every outcome under generated participant behaviour equals a reference count
made by brute force over the behaviour, decided no later than the deadline."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from fractions import Fraction
from typing import Any

import pytest
from coordination_helpers import Act, Scripted, run_virtual
from hypothesis import given, settings
from hypothesis import strategies as st

from foundation import ActorRef, current_runtime
from mabeam.agents import Agent, start_agent
from mabeam.coordination import (
    VOTE_EVENT,
    CoordinationError,
    VoteOutcome,
    Voter,
    VoteRequest,
    vote,
)

TIMEOUT = 1.0
IN_TIME = (0.0, 0.25, 0.5, 0.75)
LATE = (1.5, 3.0)

act = st.one_of(
    st.builds(Act, st.just("answer"), st.sampled_from(["yes", "no", "abstain", True, False]),
              st.sampled_from(IN_TIME + LATE)),
    st.builds(Act, st.just("crash"), st.none(), st.sampled_from(IN_TIME + LATE)),
    st.builds(Act, st.just("garbage"), st.none(), st.sampled_from(IN_TIME + LATE)),
    st.builds(Act, st.just("silent")),
    st.builds(Act, st.just("dead")),
)  # fmt: skip


# -- the reference: plain counting, and certainty by trying every completion ------------


def ref_final(rule: str, required: int, ballots: Sequence[str], weights: Sequence[int]) -> str:
    """The result once every ballot is known (``missing`` does not count as cast)."""
    if sum(b != "missing" for b in ballots) < required:
        return "no_quorum"
    if rule == "unanimous":
        return "accepted" if all(b == "yes" for b in ballots) else "rejected"
    w = weights if rule == "weighted" else [1] * len(ballots)
    yes = sum(wi for b, wi in zip(ballots, w, strict=True) if b == "yes")
    no = sum(wi for b, wi in zip(ballots, w, strict=True) if b == "no")
    return "accepted" if yes > no else "rejected"


def ref_certain(
    rule: str, required: int, known: Sequence[str | None], weights: Sequence[int]
) -> str | None:
    """The result if every way the unknown (None) ballots could go gives the same one."""
    open_ = [i for i, b in enumerate(known) if b is None]
    results = set()
    for fill in itertools.product(("yes", "no", "abstain", "missing"), repeat=len(open_)):
        ballots = list(known)
        for i, b in zip(open_, fill, strict=True):
            ballots[i] = b
        results.add(ref_final(rule, required, ballots, weights))  # type: ignore[arg-type]
        if len(results) > 1:
            return None
    return results.pop()


def ref_event(a: Act) -> tuple[float, str, str] | None:
    """When (before the deadline) a participant's ballot becomes known, and what it is."""
    if a.kind == "dead":
        return (0.0, "missing", "crashed")
    if a.kind == "silent" or a.delay >= TIMEOUT:
        return None
    if a.kind == "answer":
        ballot = {True: "yes", False: "no"}.get(a.value, a.value)
        return (a.delay, ballot, "answered")
    return (a.delay, "missing", "crashed" if a.kind == "crash" else "garbage")


def reference(
    rule: str, required: int, acts: Sequence[Act], weights: Sequence[int]
) -> tuple[float, str]:
    events = [ref_event(a) for a in acts]
    for t in sorted({e[0] for e in events if e is not None}):
        known = [e[1] if e is not None and e[0] <= t else None for e in events]
        result = ref_certain(rule, required, known, weights)
        if result is not None:
            return t, result
    final = [e[1] if e is not None else "missing" for e in events]
    return TIMEOUT, ref_final(rule, required, final, weights)


def ref_quorum(quorum: int | float, n: int) -> int:
    if isinstance(quorum, int):
        return quorum
    q = Fraction(quorum) * n
    return int(q) if q.denominator == 1 else int(q) + 1


# -- the property -------------------------------------------------------------------------


async def start_participants(acts: Sequence[Act]) -> list[ActorRef]:
    rt = current_runtime()
    refs = []
    for a in acts:
        ref = await rt.spawn(Scripted, {"VoteRequest": a})
        if a.kind == "dead":
            await ref.stop()
        refs.append(ref)
    return refs


@settings(max_examples=120, deadline=None)
@given(
    acts=st.lists(act, min_size=1, max_size=5),
    rule=st.sampled_from(["majority", "weighted", "unanimous"]),
    quorum=st.one_of(st.sampled_from([0.0, 0.25, 0.5, 0.75, 1.0]), st.integers(0, 5)),
    data=st.data(),
)
def test_every_vote_outcome_equals_the_reference_and_comes_by_the_deadline(
    acts: list[Act], rule: str, quorum: int | float, data: st.DataObject
) -> None:
    n = len(acts)
    if isinstance(quorum, int):
        quorum = min(quorum, n)
    weights = data.draw(st.lists(st.integers(0, 3), min_size=n, max_size=n).filter(any))
    required = ref_quorum(quorum, n)
    when, expected = reference(rule, required, acts, weights)

    async def main() -> tuple[VoteOutcome, list[ActorRef], list[Any]]:
        events: list[Any] = []
        current_runtime().telemetry.attach(VOTE_EVENT, lambda *e: events.append(e))
        refs = await start_participants(acts)
        outcome = await vote(
            refs, "proposal", rule,  # type: ignore[arg-type]
            quorum=quorum, timeout=TIMEOUT, weights=weights if rule == "weighted" else None,
        )  # fmt: skip
        return outcome, refs, events

    outcome, refs, events = run_virtual(main)
    assert outcome.result == expected
    assert outcome.started_at == 0.0
    assert outcome.decided_at == when <= TIMEOUT
    assert outcome.early == (when < TIMEOUT)
    assert outcome.quorum == required
    assert [r.participant for r in outcome.ballots] == refs
    for a, record in zip(acts, outcome.ballots, strict=True):
        event = ref_event(a)
        if event is None or event[0] > when or (event[0] == when and record.why == "pending"):
            assert record.why == ("pending" if outcome.early else "timeout")
            assert record.ballot == "abstain"
            continue
        at, ballot, why = event
        assert (record.why, record.at) == (why, at)
        assert record.ballot == (ballot if ballot != "missing" else "abstain")
    assert outcome.yes + outcome.no + outcome.abstain == n
    assert outcome.cast == sum(r.why == "answered" for r in outcome.ballots)
    [(_, measurements, meta)] = events
    assert meta["result"] == expected and measurements["duration"] == when


# -- examples -------------------------------------------------------------------------------


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_a_clear_majority_is_decided_before_slow_participants_answer(backend: str) -> None:
    async def main() -> VoteOutcome:
        acts = [Act("answer", "yes"), Act("answer", "yes"), Act("answer", "yes", 0.5),
                Act("answer", "no", 0.9), Act("silent")]  # fmt: skip
        return await vote(await start_participants(acts), "p", quorum=3, timeout=TIMEOUT)

    outcome = run_virtual(main, backend)
    assert outcome.result == "accepted" and outcome.decided_at == 0.5 and outcome.early
    assert [r.why for r in outcome.ballots] == ["answered"] * 3 + ["pending"] * 2
    assert (outcome.yes, outcome.no, outcome.abstain, outcome.cast) == (3, 0, 2, 3)


def test_a_tie_rejects_and_too_few_ballots_is_no_quorum() -> None:
    async def main() -> tuple[VoteOutcome, VoteOutcome]:
        tie = await vote(
            await start_participants([Act("answer", "yes"), Act("answer", "no")]),
            "p", quorum=1.0, timeout=TIMEOUT,
        )  # fmt: skip
        few = await vote(
            await start_participants([Act("answer", "yes"), Act("crash"), Act("garbage")]),
            "p", quorum=2, timeout=TIMEOUT,
        )  # fmt: skip
        return tie, few

    tie, few = run_virtual(main)
    assert tie.result == "rejected" and tie.decided_at == 0.0
    assert few.result == "no_quorum"
    assert [r.why for r in few.ballots] == ["answered", "crashed", "garbage"]
    assert few.ballots[2].detail == {"not": "a ballot"}
    assert isinstance(few.ballots[1].detail, RuntimeError)


def test_weights_decide_a_weighted_vote() -> None:
    async def main() -> VoteOutcome:
        refs = await start_participants([Act("answer", "yes"), Act("answer", "no"),
                                         Act("answer", "no")])  # fmt: skip
        return await vote(refs, "p", "weighted", quorum=1.0, timeout=TIMEOUT,
                          weights={refs[0]: 5, refs[1]: 2, refs[2]: 2.5})  # fmt: skip

    outcome = run_virtual(main)
    assert outcome.accepted and (outcome.yes_weight, outcome.no_weight) == (5.0, 4.5)


class Judge(Voter, Agent):
    async def ballot(self, proposal: Any) -> Any:
        return "yes" if proposal["lr"] < 1 else "no"


def test_agents_vote_through_the_voter_mixin() -> None:
    async def main() -> tuple[VoteOutcome, VoteOutcome]:
        judges = [await start_agent(Judge, f"judge-{i}") for i in range(3)]
        return await vote(judges, {"lr": 0.1}), await vote(judges, {"lr": 3})

    low, high = run_virtual(main)
    assert low.result == "accepted" and high.result == "rejected"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"participants": []}, "participants must not be empty"),
        ({"participants": "ab"}, "collection of ActorRefs"),
        ({"participants": [1]}, "must be ActorRefs"),
        ({"dup": True}, "appears twice"),
        ({"rule": "plurality"}, "rule must be one of"),
        ({"quorum": 1.5}, "fraction must be in"),
        ({"quorum": 4}, "count must be in [0, 2]"),
        ({"quorum": True}, "quorum must be a count"),
        ({"timeout": 0}, "timeout must be a finite number of seconds > 0"),
        ({"timeout": float("nan")}, "timeout must be"),
        ({"rule": "weighted"}, "needs weights"),
        ({"weights": [1, 2]}, "used by rule='weighted' only"),
        ({"rule": "weighted", "weights": [1]}, "one entry per participant (2)"),
        ({"rule": "weighted", "weights": [1, -1]}, "finite number >= 0"),
        ({"rule": "weighted", "weights": [1, float("inf")]}, "finite number >= 0"),
        ({"rule": "weighted", "weights": [0, 0]}, "all zero"),
        ({"rule": "weighted", "weights": {}}, "exactly the participants as keys"),
    ],
)
def test_bad_arguments_are_refused_before_anything_starts(
    kwargs: dict[str, Any], message: str
) -> None:
    async def main() -> None:
        refs = await start_participants([Act("answer", "yes"), Act("answer", "no")])
        args: dict[str, Any] = {"participants": refs, "rule": "majority", "quorum": 0.5,
                                "timeout": 1.0, "weights": None}  # fmt: skip
        if kwargs.pop("dup", False):
            args["participants"] = [refs[0], refs[0]]
        args.update(kwargs)
        with pytest.raises(CoordinationError) as info:
            await vote(args.pop("participants"), "p", args.pop("rule"), **args)
        assert message in str(info.value)
        assert current_runtime().statistics().spawned == 2  # no vote actor was started

    run_virtual(main)


def test_a_participant_that_calls_the_vote_itself_times_out(
    caplog: pytest.LogCaptureFixture,
) -> None:
    class Chair(Voter):
        async def handle_cast(self, msg: Any) -> None:
            self.outcome = await vote([self.ref, *msg], "p", quorum=0, timeout=TIMEOUT)

        async def handle_call(self, request: Any, caller: Any) -> Any:
            if request == "outcome":
                return self.outcome
            return await super().handle_call(request, caller)

        async def ballot(self, proposal: Any) -> Any:
            return "yes"

    async def main() -> VoteOutcome:
        rt = current_runtime()
        other = await rt.spawn(Chair)
        chair = await rt.spawn(Chair)
        chair.cast([other])
        await rt.sleep(2 * TIMEOUT)
        outcome: VoteOutcome = await chair.call("outcome")
        return outcome

    outcome = run_virtual(main)
    assert [r.why for r in outcome.ballots] == ["timeout", "answered"]
    assert outcome.result == "accepted" and outcome.decided_at == TIMEOUT
    assert isinstance(outcome.ballots[1].at, float)
    assert VoteRequest.__module__ == "mabeam.coordination"
