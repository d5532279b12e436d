"""The shutdown protocol of a child and ``auto_shutdown``, on the virtual clock.

A child gets the ``"shutdown"`` exit signal and ``shutdown`` seconds to exit before it is
killed; ``"brutal_kill"`` kills at once; ``"infinity"`` waits. A supervisor with
``auto_shutdown`` exits ``"shutdown"`` when its significant children exited by themselves.
"""

from __future__ import annotations

from typing import Any

import anyio
import pytest

from foundation import Actor, ActorRef, Caller, Runtime
from foundation.telemetry import capture
from foundation.testing import VirtualClock
from supervision import ChildSpec, Supervisor

pytestmark = pytest.mark.anyio


class Boom(Exception):
    """The crash every test child raises."""


class Worker(Actor):
    """Journals its start and stop (``terminate``).

    Options: ``trap`` traps exits; ``linger`` makes ``terminate`` take that many
    seconds of the runtime clock (``None``: forever); ``stuck`` makes any cast hold the
    actor in its handler forever. Casts ``("stop", reason)`` and ``("crash", _)`` end it.
    """

    async def init(
        self,
        journal: list[Any],
        tag: str,
        *,
        trap: bool = True,
        linger: float | None = 0.0,
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
        if op == "stop":
            self.stop(arg)
        if op == "stuck":
            self.journal.append(("stuck", self.tag))
            await anyio.Event().wait()

    async def terminate(self, reason: Any) -> None:
        self.journal.append(
            ("terminate", self.tag, "crash" if isinstance(reason, Boom) else reason)
        )
        if self.linger is None:
            await anyio.Event().wait()  # ignores the shutdown: a "naughty child"
        elif self.linger:
            await self.runtime.sleep(self.linger)  # allow-sleep: runtime clock (virtual)
        self.journal.append(("stop", self.tag, self.runtime.clock.now()))


def worker(journal: list[Any], tag: str, *, shutdown: Any = None, **options: Any) -> ChildSpec:
    restart = options.pop("restart", "permanent")
    significant = options.pop("significant", False)
    return ChildSpec(
        tag,
        (Worker, (journal, tag), options),
        restart=restart,
        shutdown=shutdown,
        significant=significant,
    )


async def child(sup: ActorRef, child_id: str) -> ActorRef:
    for row in await Supervisor.which_children(sup):
        if row.id == child_id:
            assert row.ref is not None
            return row.ref
    raise AssertionError(f"no child {child_id!r}")


# -- the shutdown protocol ---------------------------------------------------------------
async def test_a_trapping_child_that_ignores_shutdown_is_killed_after_exactly_its_timeout(
    runtime: Runtime, clock: VirtualClock
) -> None:
    journal: list[Any] = []
    sup = await Supervisor.start([worker(journal, "w", shutdown=2.0, linger=None)])
    mon = runtime.monitor(await child(sup, "w"))
    async with capture(("supervision", "child", "shutdown")) as cap:
        await Supervisor.terminate_child(sup, "w")
        assert runtime.clock.now() == 2.0
        (event,) = cap.events
    assert (await mon.wait()).reason == "killed"
    assert event.metadata["reason"] == "killed"
    assert journal == [("start", "w"), ("terminate", "w", "shutdown")]


async def test_a_trapping_child_stuck_in_a_handler_is_killed_after_exactly_its_timeout(
    runtime: Runtime, clock: VirtualClock
) -> None:
    journal: list[Any] = []
    sup = await Supervisor.start([worker(journal, "w", shutdown=3.0)])
    ref = await child(sup, "w")
    mon = runtime.monitor(ref)
    ref.cast(("stuck", None))
    await Supervisor.terminate_child(sup, "w")
    assert runtime.clock.now() == 3.0
    assert (await mon.wait()).reason == "killed"
    assert journal == [("start", "w"), ("stuck", "w")]  # terminate never ran


async def test_a_child_that_exits_within_its_timeout_is_not_killed(
    runtime: Runtime, clock: VirtualClock
) -> None:
    journal: list[Any] = []
    sup = await Supervisor.start([worker(journal, "w", shutdown=3.0, linger=2.5)])
    mon = runtime.monitor(await child(sup, "w"))
    await Supervisor.terminate_child(sup, "w")
    assert runtime.clock.now() == 2.5
    assert (await mon.wait()).reason == "shutdown"
    assert journal[-2:] == [("terminate", "w", "shutdown"), ("stop", "w", 2.5)]


async def test_brutal_kill_kills_at_once_without_running_terminate(
    runtime: Runtime, clock: VirtualClock
) -> None:
    journal: list[Any] = []
    sup = await Supervisor.start([worker(journal, "w", shutdown="brutal_kill", linger=None)])
    mon = runtime.monitor(await child(sup, "w"))
    await Supervisor.terminate_child(sup, "w")
    assert runtime.clock.now() == 0.0
    assert (await mon.wait()).reason == "killed"
    assert journal == [("start", "w")]


async def test_a_non_trapping_child_dies_at_once_with_reason_shutdown(
    runtime: Runtime, clock: VirtualClock
) -> None:
    journal: list[Any] = []
    sup = await Supervisor.start([worker(journal, "w", trap=False, linger=None)])
    mon = runtime.monitor(await child(sup, "w"))
    async with capture(("supervision", "child", "shutdown")) as cap:
        await Supervisor.terminate_child(sup, "w")
    assert runtime.clock.now() == 0.0
    assert (await mon.wait()).reason == "shutdown"
    assert cap.events[0].metadata["reason"] == "shutdown"
    assert journal == [("start", "w")]  # an exit signal, not a stop: terminate does not run


async def test_a_trapping_child_runs_terminate_with_shutdown_and_exits_shutdown(
    runtime: Runtime, clock: VirtualClock
) -> None:
    journal: list[Any] = []
    sup = await Supervisor.start([worker(journal, "w")])
    mon = runtime.monitor(await child(sup, "w"))
    await Supervisor.terminate_child(sup, "w")
    assert (await mon.wait()).reason == "shutdown"
    assert journal == [("start", "w"), ("terminate", "w", "shutdown"), ("stop", "w", 0.0)]


async def test_infinity_waits_as_long_as_a_subtree_needs(
    runtime: Runtime, clock: VirtualClock
) -> None:
    journal: list[Any] = []
    sub = Supervisor.child_spec([worker(journal, "w", shutdown=200.0, linger=100.0)], id="sub")
    assert sub.shutdown == "infinity"
    top = await Supervisor.start([sub])
    mon = runtime.monitor(await child(top, "sub"))
    await Supervisor.terminate_child(top, "sub")
    assert runtime.clock.now() == 100.0
    assert (await mon.wait()).reason == "shutdown"
    assert journal[-2:] == [("terminate", "w", "shutdown"), ("stop", "w", 100.0)]


async def test_a_subtree_with_a_timeout_is_killed_at_its_deadline(
    runtime: Runtime, clock: VirtualClock
) -> None:
    journal: list[Any] = []
    sub = Supervisor.child_spec(
        [worker(journal, "w", shutdown=200.0, linger=100.0)], id="sub", shutdown=10.0
    )
    top = await Supervisor.start([sub])
    mon = runtime.monitor(await child(top, "sub"))
    await Supervisor.terminate_child(top, "sub")
    assert runtime.clock.now() == 10.0
    assert (await mon.wait()).reason == "killed"


async def test_a_stopping_supervisor_shuts_its_children_down_one_by_one_in_reverse_order(
    runtime: Runtime, clock: VirtualClock
) -> None:
    journal: list[Any] = []
    children = [
        worker(journal, "a", shutdown=2.0, linger=None),
        worker(journal, "b", shutdown=3.0, linger=None),
        worker(journal, "c", linger=1.0),
    ]
    sup = await Supervisor.start(children)
    mons = {t: runtime.monitor(await child(sup, t)) for t in "abc"}
    sup_mon = runtime.monitor(sup)
    await sup.stop("shutdown", timeout=60)
    assert runtime.clock.now() == 6.0  # c takes 1 s, then b is killed at 4, a at 6
    assert (await sup_mon.wait()).reason == "shutdown"
    assert [(await mons[t].wait()).reason for t in "abc"] == ["killed", "killed", "shutdown"]
    assert journal[3:] == [
        ("terminate", "c", "shutdown"),
        ("stop", "c", 1.0),
        ("terminate", "b", "shutdown"),
        ("terminate", "a", "shutdown"),
    ]


# -- auto_shutdown -------------------------------------------------------------------------
async def _exit_child(runtime: Runtime, sup: ActorRef, child_id: str, how: Any) -> None:
    """Make a child exit by itself and wait until its supervisor got the ``Exit``."""
    ref = await child(sup, child_id)
    mon = runtime.monitor(ref)
    ref.cast(how)
    await mon.wait()


async def test_any_significant_shuts_down_when_a_significant_transient_child_exits_normally(
    runtime: Runtime,
) -> None:
    journal: list[Any] = []
    children = [
        worker(journal, "a"),
        worker(journal, "s", restart="transient", significant=True),
        worker(journal, "b"),
    ]
    sup = await Supervisor.start(children, auto_shutdown="any_significant")
    sup_mon = runtime.monitor(sup)
    async with capture(("supervision", "supervisor", "shutdown")) as cap:
        await _exit_child(runtime, sup, "s", ("stop", "normal"))
        assert (await sup_mon.wait()).reason == "shutdown"
    assert [(e.metadata["reason"], e.metadata["child"]) for e in cap.events] == [
        ("auto_shutdown", "s")
    ]
    assert [e[:2] for e in journal if e[0] == "terminate"] == [
        ("terminate", "s"),
        ("terminate", "b"),
        ("terminate", "a"),
    ]


@pytest.mark.parametrize("reason", ["shutdown", ("shutdown", "done")])
async def test_any_significant_counts_shutdown_exits_of_a_transient_child_as_its_own_exit(
    runtime: Runtime, reason: Any
) -> None:
    journal: list[Any] = []
    children = [worker(journal, "s", restart="transient", significant=True)]
    sup = await Supervisor.start(children, auto_shutdown="any_significant")
    sup_mon = runtime.monitor(sup)
    await _exit_child(runtime, sup, "s", ("stop", reason))
    assert (await sup_mon.wait()).reason == "shutdown"


async def test_a_significant_transient_child_that_crashes_is_restarted_not_shut_down(
    runtime: Runtime,
) -> None:
    journal: list[Any] = []
    children = [worker(journal, "s", restart="transient", significant=True)]
    sup = await Supervisor.start(children, auto_shutdown="any_significant")
    await _exit_child(runtime, sup, "s", ("crash", None))
    (row,) = await Supervisor.which_children(sup)
    assert (row.status, row.restarts) == ("running", 1)
    assert sup.is_alive


@pytest.mark.parametrize("how", [("stop", "normal"), ("crash", None)], ids=["normal", "crash"])
async def test_any_significant_shuts_down_on_any_exit_of_a_significant_temporary_child(
    runtime: Runtime, how: Any
) -> None:
    journal: list[Any] = []
    children = [worker(journal, "a"), worker(journal, "t", restart="temporary", significant=True)]
    sup = await Supervisor.start(children, auto_shutdown="any_significant")
    sup_mon = runtime.monitor(sup)
    await _exit_child(runtime, sup, "t", how)
    assert (await sup_mon.wait()).reason == "shutdown"


async def test_all_significant_shuts_down_only_after_the_last_significant_child_exits(
    runtime: Runtime,
) -> None:
    journal: list[Any] = []
    children = [
        worker(journal, "s1", restart="transient", significant=True),
        worker(journal, "n", restart="temporary"),
        worker(journal, "s2", restart="temporary", significant=True),
        worker(journal, "p"),
    ]
    sup = await Supervisor.start(children, auto_shutdown="all_significant")
    sup_mon = runtime.monitor(sup)
    await _exit_child(runtime, sup, "n", ("stop", "normal"))  # not significant
    await _exit_child(runtime, sup, "s1", ("stop", "normal"))
    counts = await Supervisor.count_children(sup)
    assert (counts.specs, counts.active) == (3, 2)  # n is gone, s1 kept as not running
    await _exit_child(runtime, sup, "s2", ("stop", "normal"))
    assert (await sup_mon.wait()).reason == "shutdown"
    assert [e[1] for e in journal if e[0] == "terminate"] == ["n", "s1", "s2", "p"]


async def test_terminate_child_on_a_significant_child_does_not_trigger_auto_shutdown(
    runtime: Runtime,
) -> None:
    journal: list[Any] = []
    children = [
        worker(journal, "s", restart="transient", significant=True),
        worker(journal, "t", restart="temporary", significant=True),
    ]
    sup = await Supervisor.start(children, auto_shutdown="any_significant")
    await Supervisor.terminate_child(sup, "s")
    await Supervisor.terminate_child(sup, "t")
    rows = await Supervisor.which_children(sup)
    assert [(r.id, r.status) for r in rows] == [("s", "undefined")]
    assert sup.is_alive
    assert await Supervisor.restart_child(sup, "s") is not None


async def test_under_all_significant_a_terminated_significant_child_counts_as_exited(
    runtime: Runtime,
) -> None:
    journal: list[Any] = []
    children = [
        worker(journal, "s1", restart="transient", significant=True),
        worker(journal, "s2", restart="transient", significant=True),
    ]
    sup = await Supervisor.start(children, auto_shutdown="all_significant")
    sup_mon = runtime.monitor(sup)
    await Supervisor.terminate_child(sup, "s1")
    assert sup.is_alive
    await _exit_child(runtime, sup, "s2", ("stop", "normal"))
    assert (await sup_mon.wait()).reason == "shutdown"


async def test_a_subtree_that_auto_shuts_down_is_not_restarted_as_a_transient_child(
    runtime: Runtime,
) -> None:
    journal: list[Any] = []
    sub = Supervisor.child_spec(
        [worker(journal, "s", restart="transient", significant=True)],
        id="sub",
        restart="transient",
        auto_shutdown="any_significant",
    )
    top = await Supervisor.start([sub, worker(journal, "z")])
    sub_ref = await child(top, "sub")
    sub_mon = runtime.monitor(sub_ref)
    await _exit_child(runtime, sub_ref, "s", ("stop", "normal"))
    assert (await sub_mon.wait()).reason == "shutdown"
    rows = await Supervisor.which_children(top)
    assert [(r.id, r.status) for r in rows] == [("sub", "undefined"), ("z", "running")]
