"""supervision.testing: the chaos actor and ``crash_random`` kill random workers of a
tree on the runtime clock, reproducibly with a seed."""

from __future__ import annotations

import random
from typing import Any

import pytest

from foundation import Actor, ActorRef, Runtime, StartError
from foundation.telemetry import capture
from foundation.testing import VirtualClock
from supervision import ChildInfo, Supervisor, child_spec
from supervision._dynamic import DynamicSupervisor
from supervision.testing import ChaosMonkey, ChaosStats, crash_random

pytestmark = pytest.mark.anyio


class Worker(Actor):
    async def handle_call(self, request: Any, caller: Any) -> Any:
        return request


def workers(*ids: str, restart: str = "permanent") -> list[Any]:
    return [child_spec(Worker, id=i, restart=restart) for i in ids]


async def nested_tree() -> ActorRef:
    """top -> [a, inner -> [b, c], d], loose enough that nothing gives up."""
    inner = Supervisor.child_spec(workers("b", "c"), id="inner", max_restarts=1000)
    return await Supervisor.start(
        [*workers("a"), inner, *workers("d")], max_restarts=1000, max_seconds=1
    )


def is_chaos(reason: Any) -> bool:
    return isinstance(reason, RuntimeError) and reason.args == ("chaos",)


async def test_the_monkey_kills_at_its_rate_and_exits_normally_after_max_kills(
    runtime: Runtime, clock: VirtualClock
) -> None:
    tree = await nested_tree()
    start = clock.now()
    async with capture(("supervision",)) as events:
        monkey = await ChaosMonkey.start(tree, rate=4.0, seed=7, max_kills=20)
        down = await runtime.monitor(monkey).wait(None)
        await runtime.wait_idle()
    assert down.reason == "normal"
    assert clock.now() == start + 20 * 0.25
    stats = await ChaosMonkey.stats(monkey)
    assert stats.kills == 20 and stats.skipped == 0
    assert sum(stats.by_id.values()) == 20
    assert set(stats.by_id) <= {"a", "b", "c", "d"}
    kills = events.named(("supervision", "chaos", "kill"))
    assert len(kills) == 20
    exits = events.named(("supervision", "child", "exit"))
    assert [e.metadata["reason"] for e in exits] == ["killed"] * 20
    assert [e.metadata["pid"] for e in exits] == [e.metadata["pid"] for e in kills]
    assert len(events.named(("supervision", "child", "restart"))) == 20


async def test_the_same_seed_kills_the_same_children_in_the_same_order(
    runtime: Runtime, clock: VirtualClock
) -> None:
    orders = []
    for _ in range(2):
        tree = await nested_tree()
        async with capture(("supervision", "chaos")) as events:
            monkey = await ChaosMonkey.start(tree, rate=10.0, seed=42, max_kills=30)
            await runtime.monitor(monkey).wait(None)
        orders.append([e.metadata["id"] for e in events.events])
        await tree.stop("shutdown")
    assert orders[0] == orders[1]
    assert len(set(orders[0])) > 1


async def test_the_monkey_descends_into_nested_supervisors_but_kills_only_workers(
    runtime: Runtime, clock: VirtualClock
) -> None:
    tree = await nested_tree()
    monkey = await ChaosMonkey.start(tree, rate=100.0, seed=3, max_kills=200)
    await runtime.monitor(monkey).wait(None)
    stats = await ChaosMonkey.stats(monkey)
    assert set(stats.by_id) == {"a", "b", "c", "d"}
    inner = {c.id: c for c in await Supervisor.which_children(tree)}["inner"]
    assert inner.restarts == 0


async def test_include_makes_supervisors_candidates_and_only_kill_takes_them_down(
    runtime: Runtime, clock: VirtualClock
) -> None:
    tree = await nested_tree()

    def only_inner(info: ChildInfo) -> bool:
        return info.id == "inner"

    monkey = await ChaosMonkey.start(tree, rate=10.0, max_kills=3, include=only_inner)
    await runtime.monitor(monkey).wait(None)
    await runtime.wait_idle()
    assert (await ChaosMonkey.stats(monkey)).by_id == {"inner": 3}
    inner = {c.id: c for c in await Supervisor.which_children(tree)}["inner"]
    assert inner.restarts == 3 and inner.status == "running"


async def test_a_crash_reason_reaches_the_supervisor_and_restarts_transient_children(
    runtime: Runtime, clock: VirtualClock
) -> None:
    tree = await Supervisor.start(workers("t1", "t2", restart="transient"), max_restarts=100)
    async with capture(("supervision", "child")) as events:
        monkey = await ChaosMonkey.start(tree, rate=10.0, max_kills=6, reason=RuntimeError("chaos"))
        await runtime.monitor(monkey).wait(None)
        await runtime.wait_idle()
    exits = events.named(("supervision", "child", "exit"))
    assert len(exits) == 6 and all(is_chaos(e.metadata["reason"]) for e in exits)
    restarts = sum(c.restarts for c in await Supervisor.which_children(tree))
    assert restarts == 6
    assert [c.status for c in await Supervisor.which_children(tree)] == ["running"] * 2


async def test_the_monkey_exits_normally_as_soon_as_its_tree_dies(
    runtime: Runtime, clock: VirtualClock
) -> None:
    tree = await nested_tree()
    monkey = await ChaosMonkey.start(tree, rate=1.0)
    mon = runtime.monitor(monkey)
    await tree.stop("shutdown")
    assert (await mon.wait(None)).reason == "normal"
    assert (await ChaosMonkey.stats(monkey)).kills == 0


async def test_a_tree_given_by_name_is_looked_up_at_each_tick(
    runtime: Runtime, clock: VirtualClock
) -> None:
    tree = await Supervisor.start(workers("a", "b"), name="chaos_tree", max_restarts=100)
    monkey = await ChaosMonkey.start("chaos_tree", rate=10.0, max_kills=5)
    assert (await runtime.monitor(monkey).wait(None)).reason == "normal"
    assert (await ChaosMonkey.stats(monkey)).kills == 5
    monkey = await ChaosMonkey.start("chaos_tree", rate=10.0)
    mon = runtime.monitor(monkey)
    await tree.stop("shutdown")
    assert (await mon.wait(None)).reason == "normal"


async def test_stop_ends_the_monkey_normally_and_stats_keep_its_final_counts(
    runtime: Runtime, clock: VirtualClock
) -> None:
    tree = await nested_tree()
    monkey = await ChaosMonkey.start(tree, rate=10.0)
    await runtime.sleep(1.05)  # allow-sleep: runtime clock (virtual)
    mon = runtime.monitor(monkey)
    live = await ChaosMonkey.stats(monkey)
    await ChaosMonkey.stop(monkey)
    assert (await mon.wait(None)).reason == "normal"
    assert live == ChaosStats(10, live.by_id, 0)
    assert await ChaosMonkey.stats(monkey) == live
    await ChaosMonkey.stop(monkey)  # a second stop is harmless


async def test_the_monkey_attacks_the_children_of_a_dynamic_supervisor(
    runtime: Runtime, clock: VirtualClock
) -> None:
    sup = await DynamicSupervisor.start(max_restarts=100, max_seconds=1)
    for i in range(3):
        await DynamicSupervisor.start_child(sup, child_spec(Worker, id=f"w{i}"))
    monkey = await ChaosMonkey.start(sup, rate=10.0, max_kills=9)
    await runtime.monitor(monkey).wait(None)
    await runtime.wait_idle()
    children = await DynamicSupervisor.which_children(sup)
    assert sum(c.restarts for c in children) == 9
    assert all(c.ref is not None and c.ref.is_alive for c in children)


async def test_a_supervised_monkey_finishes_and_is_not_restarted(
    runtime: Runtime, clock: VirtualClock
) -> None:
    tree = await nested_tree()
    spec = ChaosMonkey.child_spec(tree, rate=10.0, max_kills=4, include=lambda info: True)
    host = await Supervisor.start([spec])
    (info,) = await Supervisor.which_children(host)
    assert info.ref is not None
    assert (await runtime.monitor(info.ref).wait(None)).reason == "normal"
    await runtime.wait_idle()
    assert await Supervisor.which_children(host) == [
        ChildInfo("chaos_monkey", None, "undefined", "worker", "transient", 0)
    ]


async def test_a_monkey_inside_the_tree_it_attacks_never_kills_itself(
    runtime: Runtime, clock: VirtualClock
) -> None:
    top = await Supervisor.start(workers("a", "b"), name="self_tree", max_restarts=1000)
    spec = ChaosMonkey.child_spec("self_tree", rate=10.0, max_kills=50, include=lambda i: True)
    monkey = await Supervisor.start_child(top, spec)
    assert monkey is not None
    assert (await runtime.monitor(monkey).wait(None)).reason == "normal"
    stats = await ChaosMonkey.stats(monkey)
    assert set(stats.by_id) == {"a", "b"} and stats.kills == 50


async def test_crash_random_kills_one_worker_and_returns_its_info(
    runtime: Runtime, clock: VirtualClock
) -> None:
    tree = await nested_tree()
    rounds = []
    for _ in range(2):
        rng = random.Random(5)
        picks = []
        for _ in range(8):
            info = await crash_random(tree, rng)
            assert info is not None and info.ref is not None
            await runtime.wait_idle()
            assert not info.ref.is_alive
            picks.append(info.id)
        rounds.append(picks)
    assert rounds[0] == rounds[1]
    assert set(rounds[0]) <= {"a", "b", "c", "d"} and len(set(rounds[0])) > 1


async def test_crash_random_returns_none_for_a_dead_or_empty_tree(
    runtime: Runtime, clock: VirtualClock
) -> None:
    empty = await Supervisor.start([])
    assert await crash_random(empty, random.Random(1)) is None
    await empty.stop("shutdown")
    assert await crash_random(empty, random.Random(1)) is None


async def test_bad_options_fail_the_start_with_a_clear_cause(
    runtime: Runtime, clock: VirtualClock
) -> None:
    tree = await nested_tree()
    for options, message in [
        ({"rate": 0.0}, "rate must be"),
        ({"max_kills": 0}, "max_kills must be"),
        ({"include": "workers"}, "include must be"),
    ]:
        with pytest.raises(StartError) as info:
            await ChaosMonkey.start(tree, **options)
        assert message in str(info.value.__cause__)
    await tree.stop("shutdown")
    with pytest.raises(StartError):
        await ChaosMonkey.start(tree)
    with pytest.raises(TypeError, match="no instances"):
        ChaosMonkey()
