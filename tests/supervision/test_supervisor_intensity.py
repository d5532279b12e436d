"""Restart intensity on the virtual clock: exact times at which a supervisor gives up,
and failed restarts (retried through the mailbox, each attempt a restart).

``max_restarts`` restarts are allowed within a sliding window of ``max_seconds`` on the
runtime clock, counted over all the children of one supervisor. Each test moves time with
``runtime.sleep`` on an autojumping ``VirtualClock`` and asserts exact readings.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import pytest
from sup_helpers import Boom, Flaky, Gated

from foundation import Actor, ActorRef, Caller, Runtime
from foundation.telemetry import capture
from foundation.testing import VirtualClock
from supervision import ChildSpec, Supervisor

pytestmark = pytest.mark.anyio

RESTART = ("supervision", "child", "restart")


class Worker(Actor):
    """A named, trapping child that journals its starts and stops; a cast crashes it."""

    async def init(self, journal: list[Any], tag: str) -> None:
        self.journal = journal
        self.tag = tag
        self.trap_exits = True
        journal.append(("start", tag))

    async def handle_call(self, request: Any, caller: Caller) -> Any:
        return self.tag

    async def handle_cast(self, msg: Any) -> None:
        raise Boom(self.tag)

    async def terminate(self, reason: Any) -> None:
        self.journal.append(("stop", self.tag, "crash" if isinstance(reason, Boom) else reason))


def worker(journal: list[Any], tag: str, **options: Any) -> ChildSpec:
    return ChildSpec(tag, (Worker, (journal, tag), {"name": tag}), **options)


async def crash(runtime: Runtime, name: str) -> None:
    """Crash the child registered as ``name`` and wait until it is dead: its ``Exit`` is
    then queued at its supervisor ahead of any later call."""
    ref = runtime.whereis(name)
    assert ref is not None, f"{name} is not running"
    mon = runtime.monitor(ref)
    ref.cast("crash")
    assert isinstance((await mon.wait(60)).reason, Boom)


async def crash_at(runtime: Runtime, schedule: list[tuple[float, str]]) -> None:
    """Crash the named children at the given virtual times (sorted)."""
    for at, name in schedule:
        await runtime.sleep(at - runtime.clock.now())  # allow-sleep: runtime clock (virtual)
        assert runtime.clock.now() == at
        await crash(runtime, name)
        assert runtime.clock.now() == at


async def test_four_crashes_within_five_seconds_shut_the_supervisor_down_at_the_fourth(
    runtime: Runtime, clock: VirtualClock
) -> None:
    journal: list[Any] = []
    # Elixir's defaults: 3 restarts in 5 s (Erlang's are 1 in 5).
    sup = await Supervisor.start([worker(journal, t) for t in ("a", "w", "b")])
    mon = runtime.monitor(sup)
    async with capture(("supervision", "supervisor", "shutdown")) as cap:
        await crash_at(runtime, [(0, "w"), (1, "w"), (2, "w"), (3, "w")])
        down = await mon.wait(60)
        assert runtime.clock.now() == 3.0
        assert down.reason == "shutdown"
        (event,) = cap.events
    assert event.metadata["reason"] == "reached_max_restart_intensity"
    assert event.metadata["child"] == "w"
    assert journal.count(("start", "w")) == 4
    assert journal[-3:] == [
        ("stop", "w", "crash"),
        ("stop", "b", "shutdown"),
        ("stop", "a", "shutdown"),
    ]


async def test_crashes_spread_beyond_the_window_are_all_restarted(
    runtime: Runtime, clock: VirtualClock
) -> None:
    journal: list[Any] = []
    sup = await Supervisor.start([worker(journal, "w")])
    await crash_at(runtime, [(0, "w"), (1, "w"), (2, "w"), (6, "w")])
    (child,) = await Supervisor.which_children(sup)
    assert (child.status, child.restarts) == ("running", 4)
    stats = await Supervisor.statistics(sup)
    assert (stats.restarts_in_window, stats.restarts_total) == (3, 4)  # t = 1, 2, 6
    assert sup.is_alive


async def test_the_window_is_closed_a_restart_exactly_max_seconds_ago_still_counts(
    runtime: Runtime, clock: VirtualClock
) -> None:
    journal: list[Any] = []
    sup = await Supervisor.start([worker(journal, "w")], max_restarts=3, max_seconds=5)
    mon = runtime.monitor(sup)
    await crash_at(runtime, [(0, "w"), (1, "w"), (2, "w"), (5, "w")])
    assert (await mon.wait(60)).reason == "shutdown"
    assert runtime.clock.now() == 5.0


async def test_max_restarts_zero_gives_up_on_the_first_crash(
    runtime: Runtime, clock: VirtualClock
) -> None:
    journal: list[Any] = []
    sup = await Supervisor.start([worker(journal, "a"), worker(journal, "w")], max_restarts=0)
    mon = runtime.monitor(sup)
    await crash_at(runtime, [(2, "w")])
    assert (await mon.wait(60)).reason == "shutdown"
    assert runtime.clock.now() == 2.0
    assert journal == [
        ("start", "a"),
        ("start", "w"),
        ("stop", "w", "crash"),
        ("stop", "a", "shutdown"),
    ]


async def test_intensity_is_counted_per_supervisor_over_all_its_children(
    runtime: Runtime, clock: VirtualClock
) -> None:
    journal: list[Any] = []
    sup = await Supervisor.start([worker(journal, t) for t in ("a", "b", "c", "d")])
    mon = runtime.monitor(sup)
    await crash_at(runtime, [(0, "a"), (1, "b"), (2, "c")])
    stats = await Supervisor.statistics(sup)
    assert (stats.restarts_in_window, stats.active) == (3, 4)
    assert [c.restarts for c in await Supervisor.which_children(sup)] == [1, 1, 1, 0]
    await crash_at(runtime, [(3, "d")])  # d's first crash, the supervisor's fourth restart
    assert (await mon.wait(60)).reason == "shutdown"
    assert runtime.clock.now() == 3.0
    assert journal[-4:] == [
        ("stop", "d", "crash"),
        ("stop", "c", "shutdown"),
        ("stop", "b", "shutdown"),
        ("stop", "a", "shutdown"),
    ]


async def test_restarts_leave_the_window_after_max_seconds(
    runtime: Runtime, clock: VirtualClock
) -> None:
    journal: list[Any] = []
    sup = await Supervisor.start([worker(journal, "w")], max_seconds=5)
    await crash_at(runtime, [(0, "w"), (1, "w")])
    await runtime.sleep(4)  # allow-sleep: runtime clock (virtual)
    assert (await Supervisor.statistics(sup)).restarts_in_window == 2  # t=5: 0 and 1 count
    await runtime.sleep(0.5)  # allow-sleep: runtime clock (virtual)
    assert (await Supervisor.statistics(sup)).restarts_in_window == 1  # t=5.5: only 1
    await runtime.sleep(1)  # allow-sleep: runtime clock (virtual)
    stats = await Supervisor.statistics(sup)
    assert (stats.restarts_in_window, stats.restarts_total) == (0, 2)


async def _nested(journal: list[Any], restart: str) -> tuple[ActorRef, ActorRef]:
    sub = Supervisor.child_spec([worker(journal, "w")], id="sub", restart=restart, max_restarts=0)
    top = await Supervisor.start([sub, worker(journal, "z")], max_restarts=1)
    (sub_row, _) = await Supervisor.which_children(top)
    assert sub_row.ref is not None
    return top, sub_row.ref


async def test_a_nested_supervisor_that_gives_up_is_restarted_by_its_parent_and_counts_there(
    runtime: Runtime, clock: VirtualClock
) -> None:
    journal: list[Any] = []
    top, sub = await _nested(journal, "permanent")
    top_mon = runtime.monitor(top)
    sub_mon = runtime.monitor(sub)
    async with capture(RESTART) as cap:
        await crash(runtime, "w")
        assert (await sub_mon.wait(60)).reason == "shutdown"
        event = await cap.wait(match=lambda e: e.metadata["id"] == "sub")
    assert event.metadata["supervisor"] == top.pid
    assert event.metadata["reason"] == "shutdown"
    assert event.measurements["restarts"] == 1
    rows = await Supervisor.which_children(top)
    assert [(r.id, r.status, r.restarts) for r in rows] == [
        ("sub", "running", 1),
        ("z", "running", 0),
    ]
    assert (await Supervisor.statistics(top)).restarts_in_window == 1
    await crash_at(runtime, [(1, "w")])  # the new sub gives up too: top's second restart
    assert (await top_mon.wait(60)).reason == "shutdown"
    assert runtime.clock.now() == 1.0
    assert journal[-2:] == [("stop", "w", "crash"), ("stop", "z", "shutdown")]


async def test_a_transient_nested_supervisor_that_gives_up_is_not_restarted(
    runtime: Runtime, clock: VirtualClock
) -> None:
    journal: list[Any] = []
    top, sub = await _nested(journal, "transient")
    sub_mon = runtime.monitor(sub)
    await crash(runtime, "w")
    assert (await sub_mon.wait(60)).reason == "shutdown"  # a normal exit for transient
    rows = await Supervisor.which_children(top)
    assert (rows[0].id, rows[0].ref, rows[0].status) == ("sub", None, "undefined")
    assert (await Supervisor.statistics(top)).restarts_total == 0


# -- failed restarts -----------------------------------------------------------------------
async def crash_and_wait_restart(child: ActorRef | None) -> None:
    """Crash ``child`` and wait for the supervisor's next successful restart."""
    assert child is not None
    async with capture(RESTART) as cap:
        child.cast("crash")
        await cap.wait()


async def test_a_failed_restart_is_retried_and_every_attempt_counts_toward_intensity(
    runtime: Runtime,
) -> None:
    plan: dict[str, Any] = {"starts": 0, "fail": {2, 3}}
    sup = await Supervisor.start([ChildSpec("f", (Flaky, (plan,)))], max_restarts=3)
    sup_mon = runtime.monitor(sup)
    (child,) = await Supervisor.which_children(sup)
    await crash_and_wait_restart(child.ref)
    assert plan["starts"] == 4  # the first start, two failed restarts, one that worked
    stats = await Supervisor.statistics(sup)
    assert (stats.restarts_in_window, stats.restarts_total) == (3, 3)
    (child,) = await Supervisor.which_children(sup)
    assert (child.status, child.restarts) == ("running", 1)
    assert child.ref is not None
    child.ref.cast("crash")  # a fourth restart within the window: the supervisor gives up
    assert (await sup_mon.wait()).reason == "shutdown"
    assert plan["starts"] == 4


async def _during_a_failing_restart(
    runtime: Runtime,
    sup: ActorRef,
    plan: dict[str, Any],
    request: Callable[[ActorRef], Awaitable[Any]],
) -> Any:
    """Run ``request(sup)`` queued while the second start of the child is blocked, then
    let that start fail; return the request's result."""
    (child,) = await Supervisor.which_children(sup)
    assert child.ref is not None
    child.ref.cast("crash")
    await plan["entered"].wait()
    result: dict[str, Any] = {}

    async def client() -> None:
        result["value"] = await request(sup)

    async with anyio.create_task_group() as tg:
        tg.start_soon(client)
        await runtime.wait_idle()  # the request waits in the supervisor's mailbox
        assert runtime.info(sup)["mailbox"].length == 1  # type: ignore[index]
        plan["gate"].set()
    return result["value"]


async def _gated_supervisor() -> tuple[ActorRef, dict[str, Any]]:
    plan: dict[str, Any] = {"starts": 0, "entered": anyio.Event(), "gate": anyio.Event()}
    sup = await Supervisor.start([ChildSpec("g", (Gated, (plan,)))])
    return sup, plan


async def test_which_children_shows_restarting_while_a_failed_restart_waits_for_its_retry(
    runtime: Runtime,
) -> None:
    sup, plan = await _gated_supervisor()
    async with capture(RESTART) as cap:
        (row,) = await _during_a_failing_restart(runtime, sup, plan, Supervisor.which_children)
        assert (row.id, row.ref, row.status) == ("g", None, "restarting")
        await cap.wait()
    (row,) = await Supervisor.which_children(sup)
    assert (row.status, row.restarts) == ("running", 1)
    assert plan["starts"] == 3


async def test_terminate_child_during_a_retried_restart_cancels_the_retry(
    runtime: Runtime,
) -> None:
    sup, plan = await _gated_supervisor()

    async def terminate(sup: ActorRef) -> None:
        await Supervisor.terminate_child(sup, "g")

    await _during_a_failing_restart(runtime, sup, plan, terminate)
    (row,) = await Supervisor.which_children(sup)  # answered after the queued retry
    assert (row.ref, row.status) == (None, "undefined")
    assert plan["starts"] == 2
    assert (await Supervisor.count_children(sup)).active == 0
