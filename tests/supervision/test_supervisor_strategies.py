"""``Supervisor`` restart rules: strategies, restart types x exit reasons, start and stop
order, start rollback, nested trees and state hand-over.

Every child writes its lifecycle into a journal list kept outside it, so the record
survives its death. A test waits for a restart on its telemetry event, or for an exit on
a monitor followed by a call to the supervisor (which handles the ``Exit`` queued before
that call), never on a sleep.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import pytest

from foundation import Actor, ActorRef, Caller, Runtime, StartError
from foundation.telemetry import capture
from supervision import ChildSpec, StartChildError, Supervisor

pytestmark = pytest.mark.anyio

RESTART = ("supervision", "child", "restart")


class Boom(Exception):
    """The crash every test child raises."""


def label(reason: Any) -> Any:
    """A crash reason is an exception: journal it as ``"crash"`` to compare exactly."""
    return "crash" if isinstance(reason, Boom) else reason


class Worker(Actor):
    """A child that journals ``("start", tag)`` and ``("stop", tag, reason)``.

    It traps exits (so a shutdown runs ``terminate``) unless ``trap=False``. Casts:
    ``("crash", _)`` raises ``Boom``; ``("stop", reason)`` exits with ``reason``.
    """

    async def init(self, journal: list[Any], tag: str, *, trap: bool = True) -> None:
        self.journal = journal
        self.tag = tag
        self.trap_exits = trap
        journal.append(("start", tag))

    async def handle_call(self, request: Any, caller: Caller) -> Any:
        return self.tag

    async def handle_cast(self, msg: Any) -> None:
        op, arg = msg
        if op == "crash":
            raise Boom(self.tag)
        if op == "stop":
            self.stop(arg)

    async def terminate(self, reason: Any) -> None:
        self.journal.append(("stop", self.tag, label(reason)))


class JournaledSupervisor(Supervisor):
    """A supervisor that journals its own start (after its children) and stop."""

    async def init(  # type: ignore[override]
        self, journal: list[Any], tag: str, children: list[Any], **flags: Any
    ) -> None:
        self.journal = journal
        self.tag = tag
        await super().init(children, **flags)
        journal.append(("start", tag))

    async def terminate(self, reason: Any) -> None:
        await super().terminate(reason)
        self.journal.append(("stop", self.tag, reason))


def worker(journal: list[Any], tag: str, **options: Any) -> ChildSpec:
    trap = options.pop("trap", True)
    return ChildSpec(tag, (Worker, (journal, tag), {"trap": trap}), **options)


async def refs(sup: ActorRef) -> dict[Any, ActorRef | None]:
    return {c.id: c.ref for c in await Supervisor.which_children(sup)}


async def crash_and_wait_restarts(child: ActorRef | None, ids: Iterable[str]) -> None:
    """Crash ``child`` and wait until each child in ``ids`` restarted."""
    assert child is not None
    async with capture(RESTART) as cap:
        child.cast(("crash", None))
        for child_id in ids:
            await cap.wait(match=lambda e, i=child_id: e.metadata["id"] == i)  # type: ignore[misc]


# -- start and stop order --------------------------------------------------------------
async def test_children_start_in_list_order_and_stop_in_reverse_order(runtime: Runtime) -> None:
    journal: list[Any] = []
    sup = await Supervisor.start([worker(journal, t) for t in "abc"])
    assert journal == [("start", "a"), ("start", "b"), ("start", "c")]
    journal.clear()
    await sup.stop("shutdown")
    assert journal == [
        ("stop", "c", "shutdown"),
        ("stop", "b", "shutdown"),
        ("stop", "a", "shutdown"),
    ]


# -- strategies ------------------------------------------------------------------------
async def test_one_for_one_restarts_only_the_child_that_exited(runtime: Runtime) -> None:
    journal: list[Any] = []
    sup = await Supervisor.start([worker(journal, t) for t in "abcd"], strategy="one_for_one")
    before = await refs(sup)
    journal.clear()
    await crash_and_wait_restarts(before["b"], "b")
    after = await refs(sup)
    assert [t for t in "abcd" if after[t] != before[t]] == ["b"]
    assert journal == [("stop", "b", "crash"), ("start", "b")]
    assert [c.restarts for c in await Supervisor.which_children(sup)] == [0, 1, 0, 0]


async def test_one_for_all_stops_the_others_in_reverse_order_and_restarts_all_in_order(
    runtime: Runtime,
) -> None:
    journal: list[Any] = []
    sup = await Supervisor.start([worker(journal, t) for t in "abcd"], strategy="one_for_all")
    before = await refs(sup)
    journal.clear()
    await crash_and_wait_restarts(before["b"], "abcd")
    after = await refs(sup)
    assert [t for t in "abcd" if after[t] != before[t]] == ["a", "b", "c", "d"]
    assert not any(ref.is_alive for ref in before.values() if ref is not None)
    assert journal == [
        ("stop", "b", "crash"),
        ("stop", "d", "shutdown"),
        ("stop", "c", "shutdown"),
        ("stop", "a", "shutdown"),
        ("start", "a"),
        ("start", "b"),
        ("start", "c"),
        ("start", "d"),
    ]
    assert [c.restarts for c in await Supervisor.which_children(sup)] == [1, 1, 1, 1]


async def test_rest_for_one_restarts_the_child_and_those_started_after_it(
    runtime: Runtime,
) -> None:
    journal: list[Any] = []
    sup = await Supervisor.start([worker(journal, t) for t in "abcd"], strategy="rest_for_one")
    before = await refs(sup)
    journal.clear()
    await crash_and_wait_restarts(before["b"], "bcd")
    after = await refs(sup)
    assert [t for t in "abcd" if after[t] != before[t]] == ["b", "c", "d"]
    assert after["a"] is before["a"]
    assert journal == [
        ("stop", "b", "crash"),
        ("stop", "d", "shutdown"),
        ("stop", "c", "shutdown"),
        ("start", "b"),
        ("start", "c"),
        ("start", "d"),
    ]
    assert [c.restarts for c in await Supervisor.which_children(sup)] == [0, 1, 1, 1]


async def test_rest_for_one_on_the_last_child_restarts_only_that_child(runtime: Runtime) -> None:
    journal: list[Any] = []
    sup = await Supervisor.start([worker(journal, t) for t in "abc"], strategy="rest_for_one")
    before = await refs(sup)
    journal.clear()
    await crash_and_wait_restarts(before["c"], "c")
    assert journal == [("stop", "c", "crash"), ("start", "c")]


async def test_one_for_all_drops_temporary_siblings_it_stops_for_a_restart(
    runtime: Runtime,
) -> None:
    journal: list[Any] = []
    children = [
        worker(journal, "a"),
        worker(journal, "t", restart="temporary"),
        worker(journal, "c"),
    ]
    sup = await Supervisor.start(children, strategy="one_for_all")
    before = await refs(sup)
    journal.clear()
    await crash_and_wait_restarts(before["a"], "ac")
    assert journal == [
        ("stop", "a", "crash"),
        ("stop", "c", "shutdown"),
        ("stop", "t", "shutdown"),
        ("start", "a"),
        ("start", "c"),
    ]
    assert [c.id for c in await Supervisor.which_children(sup)] == ["a", "c"]


async def test_under_one_for_all_a_child_that_is_not_restarted_leaves_its_siblings_alone(
    runtime: Runtime,
) -> None:
    journal: list[Any] = []
    children = [worker(journal, "a"), worker(journal, "b", restart="transient")]
    sup = await Supervisor.start(children, strategy="one_for_all")
    before = await refs(sup)
    assert before["b"] is not None
    mon = runtime.monitor(before["b"])
    before["b"].cast(("stop", "normal"))
    assert (await mon.wait()).reason == "normal"
    after = await refs(sup)
    assert after == {"a": before["a"], "b": None}
    assert journal == [("start", "a"), ("start", "b"), ("stop", "b", "normal")]


# -- restart types x exit reasons --------------------------------------------------------
EXITS: dict[str, tuple[Any, Any]] = {
    # name: (how the child exits, the exit reason its monitor sees)
    "normal": (("stop", "normal"), "normal"),
    "shutdown": (("stop", "shutdown"), "shutdown"),
    "shutdown_tuple": (("stop", ("shutdown", "bye")), ("shutdown", "bye")),
    "crash": (("crash", None), Boom),
    "kill": ("kill", "killed"),
}
RESTARTED = {
    "permanent": {"normal", "shutdown", "shutdown_tuple", "crash", "kill"},
    "transient": {"crash", "kill"},
    "temporary": set(),
}
MATRIX = [(restart, exit) for restart in RESTARTED for exit in EXITS]


@pytest.mark.parametrize(("restart", "exit"), MATRIX, ids=[f"{r}-{e}" for r, e in MATRIX])
async def test_the_restart_type_decides_whether_an_exit_reason_restarts_the_child(
    runtime: Runtime, restart: str, exit: str
) -> None:
    journal: list[Any] = []
    children = [worker(journal, "w", restart=restart), worker(journal, "z")]
    sup = await Supervisor.start(children)
    before = await refs(sup)
    old = before["w"]
    assert old is not None
    how, reason = EXITS[exit]
    mon = runtime.monitor(old)
    if how == "kill":
        runtime.exit(old, "kill")
    else:
        old.cast(how)
    down = await mon.wait()
    if isinstance(reason, type):
        assert isinstance(down.reason, reason)
    else:
        assert down.reason == reason
    children_after = {c.id: c for c in await Supervisor.which_children(sup)}
    assert children_after["z"].ref is before["z"]
    if exit in RESTARTED[restart]:
        new = children_after["w"]
        assert new.ref is not None and new.ref != old and new.ref.is_alive
        assert (new.status, new.restarts) == ("running", 1)
        assert await new.ref.call("ping") == "w"
    elif restart == "temporary":
        assert "w" not in children_after  # a temporary child's spec goes with it
    else:
        assert (children_after["w"].ref, children_after["w"].status) == (None, "undefined")
    counts = await Supervisor.count_children(sup)
    restarted = exit in RESTARTED[restart]
    assert counts.active == (2 if restarted else 1)
    assert counts.specs == (1 if restart == "temporary" and not restarted else 2)


async def test_a_temporary_child_spec_is_removed_after_it_exits(runtime: Runtime) -> None:
    journal: list[Any] = []
    sup = await Supervisor.start([worker(journal, "t", restart="temporary")])
    (child,) = await Supervisor.which_children(sup)
    assert child.ref is not None
    mon = runtime.monitor(child.ref)
    child.ref.cast(("crash", None))
    await mon.wait()
    assert await Supervisor.which_children(sup) == []
    assert (await Supervisor.count_children(sup)).specs == 0


# -- a start that fails ----------------------------------------------------------------
class FailingInit(Actor):
    async def init(self, journal: list[Any], tag: str, error: Exception) -> None:
        journal.append(("start", tag))
        raise error


async def test_a_failing_child_init_stops_the_started_children_in_reverse_and_fails_the_start(
    runtime: Runtime,
) -> None:
    journal: list[Any] = []
    error = Boom("c cannot start")
    children = [
        worker(journal, "a"),
        worker(journal, "b"),
        ChildSpec("c", (FailingInit, (journal, "c", error))),
        worker(journal, "d"),
    ]
    actors_before = runtime.statistics().actors
    with pytest.raises(StartError) as exc:
        await Supervisor.start(children)
    cause = exc.value.__cause__
    assert isinstance(cause, StartChildError)
    assert cause.child_id == "c"
    assert cause.__cause__ is error
    assert journal == [
        ("start", "a"),
        ("start", "b"),
        ("start", "c"),
        ("stop", "b", "shutdown"),
        ("stop", "a", "shutdown"),
    ]
    assert runtime.statistics().actors == actors_before


# -- nested trees ----------------------------------------------------------------------
async def test_a_three_level_tree_starts_top_down_in_order_and_stops_bottom_up(
    runtime: Runtime,
) -> None:
    journal: list[Any] = []

    def sub(tag: str, children: list[Any]) -> ChildSpec:
        return ChildSpec(tag, (JournaledSupervisor, (journal, tag, children)), type="supervisor")

    low = sub("low", [worker(journal, "w3"), worker(journal, "w4")])
    mid = sub("mid", [worker(journal, "w2"), low, worker(journal, "w5")])
    top = await runtime.spawn(
        JournaledSupervisor, journal, "top", [worker(journal, "w1"), mid, worker(journal, "w6")]
    )
    assert [e[1] for e in journal] == ["w1", "w2", "w3", "w4", "low", "w5", "mid", "w6", "top"]
    journal.clear()
    await top.stop("shutdown")
    assert journal == [
        ("stop", t, "shutdown") for t in ["w6", "w5", "w4", "w3", "low", "w2", "mid", "w1", "top"]
    ]


async def test_a_crash_deep_in_a_tree_is_handled_by_the_nearest_supervisor(
    runtime: Runtime,
) -> None:
    journal: list[Any] = []
    low = Supervisor.child_spec([worker(journal, "w2"), worker(journal, "w3")], id="low")
    top = await Supervisor.start([worker(journal, "w1"), low], strategy="one_for_all")
    low_ref = (await refs(top))["low"]
    assert low_ref is not None
    w2 = (await refs(low_ref))["w2"]
    journal.clear()
    await crash_and_wait_restarts(w2, ["w2"])
    assert journal == [("stop", "w2", "crash"), ("start", "w2")]
    assert (await refs(top))["low"] is low_ref


# -- state hand-over -------------------------------------------------------------------
class Keeper(Actor):
    """A counter that hands its value to its next incarnation."""

    async def init(self, journal: list[Any], tag: str = "k", *, trap: bool = False) -> None:
        self.journal = journal
        self.tag = tag
        self.trap_exits = trap
        self.value = 0

    async def handle_call(self, request: Any, caller: Caller) -> Any:
        if request == "incr":
            self.value += 1
        return self.value

    async def handle_cast(self, msg: Any) -> None:
        raise Boom("crash")

    def snapshot(self) -> int:
        self.journal.append(("snapshot", self.tag, self.value))
        return self.value

    def restore(self, state: int) -> None:
        self.journal.append(("restore", self.tag, state, self.value))
        self.value = state


async def _keeper_after(runtime: Runtime, how: str) -> tuple[list[Any], int]:
    journal: list[Any] = []
    sup = await Supervisor.start([ChildSpec("k", (Keeper, (journal,)))])
    old = (await refs(sup))["k"]
    assert old is not None
    for _ in range(3):
        await old.call("incr")
    async with capture(RESTART) as cap:
        if how == "kill":
            runtime.exit(old, "kill")
        else:
            old.cast("crash")
        await cap.wait()
    new = (await refs(sup))["k"]
    assert new is not None and new != old
    return journal, await new.call("get")


async def test_snapshot_after_a_crash_is_restored_into_the_next_incarnation(
    runtime: Runtime,
) -> None:
    journal, value = await _keeper_after(runtime, "crash")
    assert journal == [("snapshot", "k", 3), ("restore", "k", 3, 0)]
    assert value == 3


async def test_a_killed_child_is_not_snapshotted_and_its_next_incarnation_starts_fresh(
    runtime: Runtime,
) -> None:
    journal, value = await _keeper_after(runtime, "kill")
    assert journal == []
    assert value == 0


async def test_siblings_stopped_for_a_restart_hand_over_their_state_if_terminate_ran(
    runtime: Runtime,
) -> None:
    journal: list[Any] = []
    children = [
        ChildSpec("t", (Keeper, (journal, "t"), {"trap": True})),  # terminate runs
        ChildSpec("n", (Keeper, (journal, "n"), {"trap": False})),  # killed by the signal
        ChildSpec("c", (Keeper, (journal, "c"))),
    ]
    sup = await Supervisor.start(children, strategy="one_for_all")
    before = await refs(sup)
    for tag in "tn":
        ref = before[tag]
        assert ref is not None
        await ref.call("incr")
        await ref.call("incr")
    async with capture(RESTART) as cap:
        before["c"].cast("crash")  # type: ignore[union-attr]
        for tag in "tnc":
            await cap.wait(match=lambda e, t=tag: e.metadata["id"] == t)  # type: ignore[misc]
    after = await refs(sup)
    assert [await after[t].call("get") for t in "tnc"] == [2, 0, 0]  # type: ignore[union-attr]
    assert journal == [
        ("snapshot", "c", 0),
        ("snapshot", "t", 2),
        ("restore", "t", 2, 0),
        ("restore", "c", 0, 0),
    ]
