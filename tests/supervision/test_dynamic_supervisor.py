"""``DynamicSupervisor``: children added at run time, many of one spec, ``max_children``,
one_for_one restarts with per-supervisor intensity, and a shutdown that signals every
child at once and waits for each until its own deadline (virtual time).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import anyio
import pytest
from sup_helpers import Boom, Flaky, Gated

from foundation import Actor, ActorRef, Caller, Runtime
from foundation.telemetry import capture
from foundation.testing import VirtualClock
from supervision import (
    ChildCounts,
    ChildNotFound,
    ChildSpec,
    DynamicSupervisor,
    MaxChildren,
    StartChildError,
    SupervisorStatistics,
)

pytestmark = pytest.mark.anyio

RESTART = ("supervision", "child", "restart")


class Worker(Actor):
    """Journals its start and stop; casts ``("crash", _)``, ``("stop", reason)``.

    ``trap`` traps exits; ``linger`` is how long ``terminate`` takes on the runtime
    clock (None: forever, a child that ignores the shutdown).
    """

    async def init(
        self, journal: list[Any], tag: str, *, trap: bool = True, linger: float | None = 0.0
    ) -> None:
        self.journal = journal
        self.tag = tag
        self.trap_exits = trap
        self.linger = linger
        journal.append(("start", tag))

    async def handle_call(self, request: Any, caller: Caller) -> Any:
        return self.tag

    async def handle_cast(self, msg: Any) -> None:
        op, arg = msg
        if op == "crash":
            raise Boom(self.tag)
        self.stop(arg)

    async def terminate(self, reason: Any) -> None:
        if self.linger is None:
            await anyio.Event().wait()
        elif self.linger:
            await self.runtime.sleep(self.linger)  # allow-sleep: runtime clock (virtual)
        self.journal.append(("stop", self.tag, "crash" if isinstance(reason, Boom) else reason))


def worker(journal: list[Any], tag: str, *, shutdown: Any = None, **options: Any) -> ChildSpec:
    restart = options.pop("restart", "permanent")
    return ChildSpec(tag, (Worker, (journal, tag), options), restart=restart, shutdown=shutdown)


async def exit_child(runtime: Runtime, ref: ActorRef | None, how: Any) -> Any:
    """Make a child exit; return its reason once its supervisor has the ``Exit`` queued."""
    assert ref is not None
    mon = runtime.monitor(ref)
    ref.cast(how)
    return (await mon.wait(10)).reason


# -- many children of one spec, max_children ---------------------------------------------
async def test_many_children_of_one_spec_run_side_by_side(runtime: Runtime) -> None:
    journal: list[Any] = []
    sup = await DynamicSupervisor.start()
    spec = worker(journal, "w")
    refs = [await DynamicSupervisor.start_child(sup, spec) for _ in range(5)]
    assert len({ref for ref in refs}) == 5
    assert all(ref is not None and ref.is_alive for ref in refs)
    rows = await DynamicSupervisor.which_children(sup)
    assert [(r.id, r.ref, r.status) for r in rows] == [("w", ref, "running") for ref in refs]
    assert await DynamicSupervisor.count_children(sup) == ChildCounts(5, 5, 0, 5)
    assert journal == [("start", "w")] * 5


async def test_start_child_past_max_children_raises_max_children(runtime: Runtime) -> None:
    journal: list[Any] = []
    sup = await DynamicSupervisor.start(max_children=2, name="dyn")
    first = await DynamicSupervisor.start_child("dyn", worker(journal, "a"))
    await DynamicSupervisor.start_child(sup, worker(journal, "b"))
    with pytest.raises(MaxChildren) as exc:
        await DynamicSupervisor.start_child(sup, worker(journal, "c"))
    assert exc.value.limit == 2
    assert journal == [("start", "a"), ("start", "b")]
    assert first is not None
    await DynamicSupervisor.terminate_child(sup, first)
    await DynamicSupervisor.start_child(sup, worker(journal, "c"))
    assert [r.id for r in await DynamicSupervisor.which_children(sup)] == ["b", "c"]


async def test_max_children_zero_refuses_every_child(runtime: Runtime) -> None:
    sup = await DynamicSupervisor.start(max_children=0)
    with pytest.raises(MaxChildren):
        await DynamicSupervisor.start_child(sup, worker([], "a"))
    assert await DynamicSupervisor.count_children(sup) == ChildCounts(0, 0, 0, 0)


async def test_a_child_waiting_for_a_restart_retry_counts_toward_max_children(
    runtime: Runtime,
) -> None:
    plan: dict[str, Any] = {"starts": 0, "entered": anyio.Event(), "gate": anyio.Event()}
    sup = await DynamicSupervisor.start(max_children=1)
    ref = await DynamicSupervisor.start_child(sup, ChildSpec("g", (Gated, (plan,))))
    assert ref is not None
    result: dict[str, Any] = {}
    async with capture(RESTART) as cap:
        ref.cast("crash")
        await plan["entered"].wait()  # the restart is blocked in its init

        async def client() -> None:
            try:
                result["ref"] = await DynamicSupervisor.start_child(sup, worker([], "b"))
            except MaxChildren as exc:
                result["error"] = exc

        async with anyio.create_task_group() as tg:
            tg.start_soon(client)
            await runtime.wait_idle()  # start_child waits in the supervisor's mailbox
            plan["gate"].set()  # the restart fails; its retry is queued behind start_child
        await cap.wait()
    assert isinstance(result.get("error"), MaxChildren)
    rows = await DynamicSupervisor.which_children(sup)
    assert [(r.id, r.status) for r in rows] == [("g", "running")]


# -- terminate_child -------------------------------------------------------------------------
async def test_terminate_child_stops_the_child_by_ref_and_forgets_it(runtime: Runtime) -> None:
    journal: list[Any] = []
    sup = await DynamicSupervisor.start()
    a = await DynamicSupervisor.start_child(sup, worker(journal, "a"))
    b = await DynamicSupervisor.start_child(sup, worker(journal, "b"))
    assert a is not None
    mon = runtime.monitor(a)
    await DynamicSupervisor.terminate_child(sup, a)
    assert (await mon.wait()).reason == "shutdown"
    assert journal[-1] == ("stop", "a", "shutdown")
    assert [r.ref for r in await DynamicSupervisor.which_children(sup)] == [b]
    with pytest.raises(ChildNotFound):
        await DynamicSupervisor.terminate_child(sup, a)  # no longer a child


async def test_terminate_child_of_a_stranger_is_child_not_found(runtime: Runtime) -> None:
    journal: list[Any] = []
    sup = await DynamicSupervisor.start()
    await DynamicSupervisor.start_child(sup, worker(journal, "a"))
    stranger = await runtime.spawn(Worker, journal, "x")
    with pytest.raises(ChildNotFound) as exc:
        await DynamicSupervisor.terminate_child(sup, stranger)
    assert exc.value.child_id == stranger
    with pytest.raises(ChildNotFound):
        await DynamicSupervisor.terminate_child(sup, "a")  # type: ignore[arg-type]
    assert stranger.is_alive
    assert (await DynamicSupervisor.count_children(sup)).active == 1


# -- restarts --------------------------------------------------------------------------------
async def test_a_crashed_child_is_restarted_and_the_count_stays(runtime: Runtime) -> None:
    journal: list[Any] = []
    sup = await DynamicSupervisor.start()
    spec = worker(journal, "w")
    refs = [await DynamicSupervisor.start_child(sup, spec) for _ in range(3)]
    async with capture(RESTART) as cap:
        assert isinstance(await exit_child(runtime, refs[1], ("crash", None)), Boom)
        event = await cap.wait()
    rows = await DynamicSupervisor.which_children(sup)
    assert [r.ref for r in rows][0::2] == [refs[0], refs[2]]
    assert rows[1].ref is not None and rows[1].ref not in refs
    assert event.metadata["pid"] == rows[1].ref.pid
    assert [r.restarts for r in rows] == [0, 1, 0]
    assert await DynamicSupervisor.count_children(sup) == ChildCounts(3, 3, 0, 3)


@pytest.mark.parametrize(
    ("restart", "how", "kept"),
    [
        ("permanent", ("stop", "normal"), True),
        ("transient", ("stop", "normal"), False),
        ("transient", ("stop", ("shutdown", 1)), False),
        ("transient", ("crash", None), True),
        ("temporary", ("crash", None), False),
    ],
    ids=["permanent-normal", "transient-normal", "transient-shutdown", "transient-crash", "temp"],
)
async def test_a_dynamic_child_follows_its_restart_type(
    runtime: Runtime, restart: str, how: Any, kept: bool
) -> None:
    journal: list[Any] = []
    sup = await DynamicSupervisor.start()
    ref = await DynamicSupervisor.start_child(sup, worker(journal, "w", restart=restart))
    await exit_child(runtime, ref, how)
    counts = await DynamicSupervisor.count_children(sup)
    assert (counts.specs, counts.active) == ((1, 1) if kept else (0, 0))
    assert journal.count(("start", "w")) == (2 if kept else 1)


async def test_a_failed_restart_is_retried_and_counts_toward_intensity(runtime: Runtime) -> None:
    plan: dict[str, Any] = {"starts": 0, "fail": {2}}
    sup = await DynamicSupervisor.start()
    ref = await DynamicSupervisor.start_child(sup, ChildSpec("f", (Flaky, (plan,))))
    async with capture(RESTART) as cap:
        await exit_child(runtime, ref, "crash")
        await cap.wait()
    assert plan["starts"] == 3
    stats = await DynamicSupervisor.statistics(sup)
    assert (stats.restarts_in_window, stats.restarts_total, stats.active) == (2, 2, 1)


async def test_intensity_is_counted_over_all_children_of_a_dynamic_supervisor(
    runtime: Runtime, clock: VirtualClock
) -> None:
    journal: list[Any] = []
    sup = await DynamicSupervisor.start()
    mon = runtime.monitor(sup)
    refs = [await DynamicSupervisor.start_child(sup, worker(journal, t)) for t in "abcd"]
    for at, ref in enumerate(refs):
        await runtime.sleep(at - runtime.clock.now())  # allow-sleep: runtime clock (virtual)
        await exit_child(runtime, ref, ("crash", None))
    assert (await mon.wait(60)).reason == "shutdown"
    assert runtime.clock.now() == 3.0
    assert sorted(e[1] for e in journal if e[2:] == ("shutdown",)) == ["a", "b", "c"]


async def test_a_start_child_that_fails_is_not_kept(runtime: Runtime) -> None:
    plan: dict[str, Any] = {"starts": 0, "fail": {1}}
    sup = await DynamicSupervisor.start()
    with pytest.raises(StartChildError) as exc:
        await DynamicSupervisor.start_child(sup, ChildSpec("f", (Flaky, (plan,))))
    assert isinstance(exc.value.__cause__, Boom)
    assert await DynamicSupervisor.count_children(sup) == ChildCounts(0, 0, 0, 0)


async def test_statistics_of_a_dynamic_supervisor(runtime: Runtime) -> None:
    journal: list[Any] = []
    sup = await DynamicSupervisor.start(max_restarts=5, max_seconds=2.5)
    await DynamicSupervisor.start_child(sup, worker(journal, "a"))
    await DynamicSupervisor.start_child(sup, DynamicSupervisor.child_spec(id="nested"))
    assert await DynamicSupervisor.statistics(sup) == SupervisorStatistics(
        "one_for_one", 5, 2.5, 0, 0, 2, 2, 1, 1
    )


# -- shutdown ----------------------------------------------------------------------------------
async def test_shutdown_signals_all_children_at_once_and_kills_each_at_its_own_deadline(
    runtime: Runtime, clock: VirtualClock
) -> None:
    journal: list[Any] = []
    exits: dict[Any, tuple[Any, float]] = {}

    def record(event: Any, measurements: Mapping[str, Any], metadata: Mapping[str, Any]) -> None:
        exits[metadata["pid"]] = (metadata["reason"], runtime.clock.now())

    sup = await DynamicSupervisor.start()
    specs = {
        "a": worker(journal, "a", shutdown=2.0, linger=None),
        "b": worker(journal, "b", shutdown=5.0, linger=None),
        "c": worker(journal, "c", shutdown=5.0, linger=1.0),
        "d": worker(journal, "d", trap=False),
        "e": worker(journal, "e", shutdown="brutal_kill", linger=None),
    }
    refs = {t: await DynamicSupervisor.start_child(sup, s) for t, s in specs.items()}
    runtime.telemetry.attach(("foundation", "actor", "exit"), record)
    await sup.stop("shutdown", timeout=60)
    assert runtime.clock.now() == 5.0  # the longest deadline, not the sum of them
    assert {t: exits[ref.pid] for t, ref in refs.items() if ref is not None} == {
        "a": ("killed", 2.0),
        "b": ("killed", 5.0),
        "c": ("shutdown", 1.0),
        "d": ("shutdown", 0.0),
        "e": ("killed", 0.0),
    }
    assert exits[sup.pid] == ("shutdown", 5.0)
    assert [e for e in journal if e[0] == "stop"] == [("stop", "c", "shutdown")]
