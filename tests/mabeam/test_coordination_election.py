"""Leader election: random joins, leaves and crashes against a model; never two leaders
in one epoch, epochs strictly increase, the leader is always a live member; fencing."""

from __future__ import annotations

from typing import Any

import pytest
from coordination_helpers import run_virtual
from hypothesis import given, settings
from hypothesis import strategies as st

from foundation import Actor, ActorRef, current_runtime
from mabeam.coordination import (
    ELECTION_EVENT,
    CoordinationError,
    ElectionMember,
    Fence,
    LeaderChanged,
    Leadership,
    StaleEpoch,
    elect_leader,
)

POOL = 5


class Member(ElectionMember):
    """Records every ``LeaderChanged`` it receives, in order."""

    async def init(self, log: list[tuple[ActorRef, Any]]) -> None:
        self.log = log

    async def leader_changed(self, news: LeaderChanged) -> None:
        self.log.append((self.ref, news))

    async def handle_call(self, request: Any, caller: Any) -> Any:
        return self.leadership  # set by the mixin


op = st.one_of(
    st.tuples(st.just("join"), st.integers(0, POOL - 1), st.integers(0, 2)),
    st.tuples(st.just("leave"), st.integers(0, POOL - 1), st.just(0)),
    st.tuples(st.just("crash"), st.integers(0, POOL - 1), st.just(0)),
)


@settings(max_examples=60, deadline=None)
@given(ops=st.lists(op, min_size=1, max_size=12))
def test_random_joins_leaves_and_crashes_keep_one_leader_per_epoch(
    ops: list[tuple[str, int, int]],
) -> None:
    async def main() -> None:
        rt = current_runtime()
        log: list[tuple[ActorRef, Any]] = []  # notifications, and "join" marks
        refs = [await rt.spawn(Member, log) for _ in range(POOL)]
        election = await elect_leader("g")
        # the model: members (priority, join order), the leader, the epoch, who is alive
        members: dict[int, tuple[int, int]] = {}
        alive = set(range(POOL))
        leader: int | None = None
        epoch = joined = 0

        def best() -> int | None:
            return min(members, key=lambda i: (-members[i][0], members[i][1]), default=None)

        for kind, i, priority in ops:
            if kind == "join":
                if i not in alive:
                    with pytest.raises(CoordinationError, match="is not alive"):
                        await election.join(refs[i], priority=priority)
                    continue
                if i not in members:
                    log.append((refs[i], "join"))
                await election.join(refs[i], priority=priority)
                if i not in members:
                    joined += 1
                    members[i] = (priority, joined)
                    if leader is None:
                        leader, epoch = i, epoch + 1
                continue
            if kind == "leave":
                assert await election.leave(refs[i]) == (i in members)
            elif i in alive:
                refs[i].kill()
                alive.discard(i)
                await rt.wait_idle()
            if i in members:
                del members[i]
                if i == leader:
                    leader, epoch = best(), epoch + 1
            current = await election.leader()
            assert current == Leadership("g", epoch, None if leader is None else refs[leader])
            if leader is not None:  # a live member, and after a re-election the best one
                assert refs[leader].is_alive and leader in members
                assert await election.check(epoch) and not await election.check(epoch - 1)
        await rt.wait_idle()
        final = await election.leader()
        assert final.epoch == epoch
        assert await election.members() == tuple(
            refs[i] for i in sorted(members, key=lambda i: members[i][1])
        )
        leaders: dict[int, ActorRef | None] = {}
        last: dict[ActorRef, int] = {}
        for member, news in log:
            if news == "join":  # one that left and joins again hears the current epoch again
                last[member] = last.get(member, 0) - 1
                continue
            assert leaders.setdefault(news.epoch, news.leader) == news.leader  # one per epoch
            assert news.epoch > last.get(member, 0)  # strictly increasing while a member
            last[member] = news.epoch
        for i in members:  # every live member knows the current leader
            seen = await refs[i].call("leadership")
            assert seen["g"] == LeaderChanged("g", final.epoch, final.leader)

    run_virtual(main)


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_the_leader_is_replaced_when_it_dies_and_stale_epochs_are_fenced(backend: str) -> None:
    async def main() -> None:
        rt = current_runtime()
        events: list[Any] = []
        rt.telemetry.attach(ELECTION_EVENT, lambda *e: events.append(e))
        log: list[tuple[ActorRef, LeaderChanged]] = []
        a, b, c = [await rt.spawn(Member, log) for _ in range(3)]
        election = await elect_leader("trainers", [a, b])
        assert await election.join(c, priority=5) == Leadership("trainers", 1, a)  # stable
        fence = Fence()
        fence.admit(1)  # the first leader writes
        a.kill()
        await rt.wait_idle()
        assert await election.leader() == Leadership("trainers", 2, c)  # highest priority
        fence.admit(2)  # the new leader writes
        with pytest.raises(StaleEpoch, match="epoch 1 is stale: epoch 2 has been seen"):
            fence.admit(1)  # the deposed one, late
        assert not await election.check(1) and await election.check(2)
        assert (await elect_leader("trainers")).ref == election.ref  # one per group
        assert [m["why"] for _, _, m in events] == ["joined", "leader_exited"]
        await election.leave(c)
        await election.leave(b)
        assert await election.leader() == Leadership("trainers", 4, None)
        # members handle their news in any order among themselves: compare sorted
        assert sorted((n.epoch, r.pid, n.leader) for r, n in log) == [
            (1, a.pid, a), (1, b.pid, a), (1, c.pid, a), (2, b.pid, c), (2, c.pid, c),
            (3, b.pid, b),
        ]  # fmt: skip

    run_virtual(main, backend)


def test_bad_requests_are_refused_without_harming_the_election() -> None:
    async def main() -> None:
        rt = current_runtime()
        election = await elect_leader(("pool", 1))
        with pytest.raises(CoordinationError, match="finite number"):
            await election.join(await rt.spawn(Actor), priority=float("nan"))
        with pytest.raises(CoordinationError, match="must be an ActorRef"):
            await election.join("someone")  # type: ignore[arg-type]
        with pytest.raises(CoordinationError, match="must be an ActorRef"):
            await election.leave(["x"])  # type: ignore[arg-type]
        assert isinstance(await election.ref.call(("bogus",)), CoordinationError)
        with pytest.raises(CoordinationError, match="an epoch is an int"):
            await election.check("1")  # type: ignore[arg-type]
        with pytest.raises(CoordinationError, match="hashable"):
            await elect_leader(["not", "hashable"])  # type: ignore[arg-type]
        with pytest.raises(CoordinationError, match="an epoch is an int"):
            Fence().admit(1.5)  # type: ignore[arg-type]
        assert election.ref.is_alive and (await election.leader()).epoch == 0

    run_virtual(main)
