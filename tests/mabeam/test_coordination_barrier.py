"""The cross-agent Barrier: random arrivals, crashes and kills against a reference; it
never hangs, and a broken barrier is an error for every waiter, at once."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import pytest
from coordination_helpers import run_virtual
from hypothesis import given, settings
from hypothesis import strategies as st

from foundation import Actor, ActorRef, BrokenBarrier, current_runtime
from mabeam.coordination import (
    BARRIER_EVENT,
    Barrier,
    BarrierBroken,
    BarrierStatistics,
    CoordinationError,
)

TIMEOUT = 1.1  # off the quarter-second grid of the acts: no ties with the deadline
KILL_AFTER = 0.125  # a killed party dies this long after it arrived


@dataclass(frozen=True)
class PartyAct:
    """``join`` early (at 0) or not; then at ``delay``: ``arrive``, ``crash``, or
    ``arrive`` and be killed ``KILL_AFTER`` later while waiting; or ``never`` arrive."""

    join: bool
    action: Literal["arrive", "crash", "killed", "never"]
    delay: float


party_act = st.builds(
    PartyAct,
    st.booleans(),
    st.sampled_from(["arrive", "arrive", "crash", "killed", "never"]),
    st.sampled_from([0.25, 0.5, 0.75, 1.5, 3.0]),
)


class Party(Actor):
    async def init(self, barrier: Barrier, log: list[tuple[Any, ...]], index: int) -> None:
        self.barrier = barrier
        self.log = log
        self.index = index

    async def handle_cast(self, act: PartyAct) -> None:
        if act.join:
            await self.barrier.join()
        if act.action in ("arrive", "killed"):
            self.send_after(act.delay, "arrive")
        elif act.action == "crash":
            self.send_after(act.delay, "crash")

    async def handle_info(self, msg: Any) -> None:
        if msg == "crash":
            raise RuntimeError("party crashed")
        try:
            index = await self.barrier.wait()
        except BarrierBroken as exc:
            self.log.append((self.index, "broken", exc.reason, self.runtime.clock.now()))
        else:
            self.log.append((self.index, "ok", index, self.runtime.clock.now()))


class Killer(Actor):
    async def handle_info(self, ref: ActorRef) -> None:
        ref.kill()


def reference(acts: list[PartyAct]) -> tuple[str, float, set[int]] | None:
    """("tripped", when, {}) or ("broken", when, parties whose exit may have broken it
    (empty: the deadline)); None when no party ever registers."""
    arrives = {i: a.delay for i, a in enumerate(acts) if a.action in ("arrive", "killed")}
    regs = [0.0 if a.join else arrives[i] for i, a in enumerate(acts) if a.join or i in arrives]
    if not regs:
        return None
    deadline = min(regs) + TIMEOUT
    exits = {i: a.delay for i, a in enumerate(acts) if a.action == "crash" and a.join}
    exits.update({i: a.delay + KILL_AFTER for i, a in enumerate(acts) if a.action == "killed"})
    breaks = min([deadline, *exits.values()])
    if len(arrives) == len(acts) and max(arrives.values()) < breaks:
        return "tripped", max(arrives.values()), set()
    return "broken", breaks, {i for i, t in exits.items() if t == breaks}


@settings(max_examples=100, deadline=None)
@given(acts=st.lists(party_act, min_size=1, max_size=5))
def test_random_arrivals_and_crashes_trip_or_break_the_barrier_for_every_waiter(
    acts: list[PartyAct],
) -> None:
    expected = reference(acts)

    async def main() -> tuple[list[tuple[Any, ...]], list[ActorRef], BarrierStatistics]:
        rt = current_runtime()
        log: list[tuple[Any, ...]] = []
        barrier = await Barrier.start(len(acts), TIMEOUT)
        killer = await rt.spawn(Killer)
        parties = [await rt.spawn(Party, barrier, log, i) for i in range(len(acts))]
        for ref, act in zip(parties, acts, strict=True):
            ref.cast(act)
            if act.action == "killed":
                rt.send_after(act.delay + KILL_AFTER, killer, ref)
        await rt.sleep(10.0)  # virtual: far past every act and the deadline
        return log, parties, await barrier.statistics()

    log, parties, stats = run_virtual(main)
    arrivals = {i: a.delay for i, a in enumerate(acts) if a.action in ("arrive", "killed")}
    got = {entry[0]: entry[1:] for entry in log}
    assert len(got) == len(log)  # one answer per wait
    if expected is None:
        assert log == [] and stats.broken is None
        return
    kind, when, culprits = expected
    for i, arrived in arrivals.items():
        answered_at = max(arrived, when)
        if acts[i].action == "killed" and answered_at >= arrived + KILL_AFTER:
            assert i not in got  # killed while it waited
            continue
        status, value, at = got[i]  # every waiter got an answer: nothing hangs
        assert (status, at) == ("ok" if kind == "tripped" else "broken", answered_at)
        if kind == "tripped":
            assert status == "ok"
        elif culprits:
            assert value[0] == "exited" and value[1] in {parties[c].pid for c in culprits}
        else:
            assert value == "timeout"
    assert set(got) <= set(arrivals)
    if kind == "tripped":
        assert sorted(v for _, v, _ in got.values()) == list(range(len(acts)))
        order = sorted(got, key=lambda i: got[i][1])  # by arrival index
        assert [arrivals[i] for i in order] == sorted(arrivals[i] for i in order)
        assert stats == BarrierStatistics(len(acts), 0, 0, 1, None)
    else:
        assert stats.broken is not None and stats.generation == 1


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_a_crashed_party_breaks_the_barrier_for_every_waiter_at_once(backend: str) -> None:
    async def main() -> None:
        rt = current_runtime()
        events: list[Any] = []
        rt.telemetry.attach(BARRIER_EVENT, lambda *e: events.append(e))
        log: list[tuple[Any, ...]] = []
        barrier = await Barrier.start(3, 30.0, name="sync")
        a, b, c = [await rt.spawn(Party, Barrier.lookup("sync"), log, i) for i in range(3)]
        a.cast(PartyAct(False, "arrive", 0.25))
        b.cast(PartyAct(False, "arrive", 0.5))
        c.cast(PartyAct(True, "crash", 1.0))
        await rt.sleep(2.0)
        assert [entry[1] for entry in log] == ["broken", "broken"]
        assert {entry[3] for entry in log} == {1.0}  # the moment c crashed, not at 30 s
        assert log[0][2][:2] == ("exited", c.pid)
        with pytest.raises(BrokenBarrier, match="exited"):  # later waits fail at once
            await barrier.wait()
        await barrier.reset()
        assert (await barrier.statistics()).broken is None
        assert [m["event"] for _, _, m in events] == ["broken", "broken"]  # exit, reset

    run_virtual(main, backend)


def test_the_barrier_trips_for_every_generation_and_refuses_one_party_too_many() -> None:
    async def main() -> None:
        rt = current_runtime()
        log: list[tuple[Any, ...]] = []
        barrier = await Barrier.start(2, 1.0)
        parties = [await rt.spawn(Party, barrier, log, i) for i in range(4)]
        for p, delay in zip(parties, (0.25, 0.5, 2.0, 2.25), strict=True):
            p.cast(PartyAct(False, "arrive", delay))
        await rt.sleep(3.0)
        assert sorted(log) == [(0, "ok", 0, 0.5), (1, "ok", 1, 0.5), (2, "ok", 0, 2.25),
                               (3, "ok", 1, 2.25)]  # fmt: skip
        assert (await barrier.statistics()).generation == 2
        joiners = [await rt.spawn(Party, barrier, log, i) for i in range(3)]
        for p in joiners[:2]:
            p.cast(PartyAct(True, "never", 0.0))
        await rt.wait_idle()
        with pytest.raises(CoordinationError, match="one too many"):
            await barrier.wait()  # from outside any actor: an anonymous third party
        assert (await barrier.statistics()).registered == 2
        await rt.sleep(1.5)  # nobody arrives: the deadline breaks it
        assert (await barrier.statistics()).broken == "timeout"

    run_virtual(main)


def test_bad_arguments_are_refused() -> None:
    async def main() -> None:
        with pytest.raises(CoordinationError, match="parties must be an int >= 1"):
            await Barrier.start(0, 1.0)
        with pytest.raises(CoordinationError, match="timeout must be"):
            await Barrier.start(2, -1)
        with pytest.raises(CoordinationError, match="takes the barrier's ActorRef"):
            Barrier("sync")  # type: ignore[arg-type]
        with pytest.raises(LookupError, match="no barrier"):
            Barrier.lookup("nowhere")
        barrier = await Barrier.start(1, 1.0)
        assert isinstance(await barrier.ref.call("bogus"), CoordinationError)
        assert await barrier.wait() == 0  # one party: trips at once
        await barrier.stop()

    run_virtual(main)
