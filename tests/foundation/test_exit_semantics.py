"""Erlang's exit rules, one test per rule (DESIGN.md §3).

Every actor here writes what it sees (``handle_info`` messages, ``terminate`` reasons)
into a ``Journal`` kept outside it, so the record survives the actor's death. No test
sleeps: each waits on a monitor, a reply, ``wait_idle`` or virtual time.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import anyio
import pytest

from foundation import (
    Actor,
    ActorDead,
    ActorRef,
    Caller,
    CallTimeout,
    Down,
    Exit,
    MonitorRef,
    NoReply,
    Runtime,
    RuntimeClosed,
    StartError,
)
from foundation.testing import VirtualClock, assert_down

pytestmark = pytest.mark.anyio


@dataclass
class Journal:
    """What one actor saw; lives outside the actor so it survives its death."""

    infos: list[Any] = field(default_factory=list)
    terminated: list[Any] = field(default_factory=list)


class Recorder(Actor):
    """A scriptable actor: every request is ``(op, arg)``; casts of ``"crash"`` crash it."""

    async def init(self, journal: Journal | None = None, *, trap: bool = False) -> None:
        self.journal = journal if journal is not None else Journal()
        self.trap_exits = trap
        self.held: list[Caller] = []
        self.gate: anyio.Event | None = None

    async def handle_call(self, request: Any, caller: Caller) -> Any:
        op, arg = request
        if op == "link":
            self.link(arg)
            return None
        if op == "monitor":
            return self.monitor(arg)
        if op == "exit":
            target, reason = arg
            self.exit(target, reason)
            return None
        if op == "spawn_link":
            journal, trap = arg
            return await self.spawn_link(Recorder, journal, trap=trap)
        if op == "crash":
            raise ValueError(arg)
        if op == "defer":
            self.held.append(caller)
            return NoReply
        if op == "release":
            return [held.reply(arg) for held in self.held]
        if op == "call":
            target, req, timeout = arg
            try:
                return await target.call(req, timeout=timeout)
            except CallTimeout as exc:
                return ("timeout", self.runtime.clock.now(), exc)
        if op == "gate":
            self.gate = anyio.Event()
            return None
        if op == "wait_gate_then_demonitor":
            mref, flush = arg
            assert self.gate is not None
            await self.gate.wait()
            return self.demonitor(mref, flush=flush)
        if op == "journal":
            return self.journal
        raise AssertionError(f"unknown request {request!r}")

    async def handle_cast(self, msg: Any) -> None:
        if msg == "crash":
            raise RuntimeError("boom")
        if isinstance(msg, tuple) and msg[0] == "exit_self":
            self.exit(self.ref, msg[1])
        if isinstance(msg, tuple) and msg[0] == "link":
            self.link(msg[1])

    async def handle_info(self, msg: Any) -> None:
        self.journal.infos.append(msg)

    async def terminate(self, reason: Any) -> None:
        self.journal.terminated.append(reason)


class Stubborn(Actor):
    """An actor whose ``terminate`` never returns."""

    async def terminate(self, reason: Any) -> None:
        await anyio.Event().wait()


class FailingInit(Actor):
    async def init(self) -> None:
        raise KeyError("no config")


async def spawn_recorder(
    runtime: Runtime, *, trap: bool = False
) -> tuple[ActorRef, Journal]:
    journal = Journal()
    ref: ActorRef = await runtime.spawn(Recorder, journal, trap=trap)
    return ref, journal


# -- links --------------------------------------------------------------------------


async def test_an_abnormal_crash_kills_a_linked_non_trapping_actor_with_the_same_reason(
    runtime: Runtime,
) -> None:
    a, a_journal = await spawn_recorder(runtime)
    b, b_journal = await spawn_recorder(runtime)
    await a.call(("link", b))
    mon_a, mon_b = runtime.monitor(a), runtime.monitor(b)
    a.cast("crash")
    down_a: Down = await mon_a.wait()
    down_b: Down = await mon_b.wait()
    assert isinstance(down_a.reason, RuntimeError)
    assert down_b.reason is down_a.reason
    assert a_journal.terminated == [down_a.reason]
    assert b_journal.terminated == []  # killed by a signal: terminate does not run


@pytest.mark.parametrize("reason", ["shutdown", ("shutdown", "db down"), "custom"])
async def test_an_abnormal_stop_kills_a_linked_non_trapping_actor_with_the_same_reason(
    runtime: Runtime, reason: Any
) -> None:
    a, _ = await spawn_recorder(runtime)
    b, b_journal = await spawn_recorder(runtime)
    await a.call(("link", b))
    mon_b = runtime.monitor(b)
    await a.stop(reason)
    assert (await mon_b.wait()).reason == reason
    assert b_journal.terminated == []


async def test_a_normal_exit_does_not_propagate_through_links(runtime: Runtime) -> None:
    a, _ = await spawn_recorder(runtime)
    b, b_journal = await spawn_recorder(runtime)
    await a.call(("link", b))
    await a.stop()
    await runtime.wait_idle()
    assert b.is_alive
    assert await b.call(("journal", None)) is b_journal
    assert b_journal.infos == []
    info = runtime.info(b)
    assert info is not None and info["links"] == []


@pytest.mark.parametrize("how", ["crash", "normal", "shutdown"])
async def test_a_trapping_actor_receives_an_exit_message_instead_of_dying(
    runtime: Runtime, how: str
) -> None:
    a, _ = await spawn_recorder(runtime)
    b, b_journal = await spawn_recorder(runtime, trap=True)
    await a.call(("link", b))
    mon_a = runtime.monitor(a)
    if how == "crash":
        a.cast("crash")
    else:
        await a.stop(how)
    reason = (await mon_a.wait()).reason
    await runtime.wait_idle()
    assert b.is_alive
    assert b_journal.infos == [Exit(a.pid, reason)]
    assert b_journal.terminated == []


@pytest.mark.parametrize("via", ["runtime.exit", "ref.kill", "actor.exit"])
async def test_kill_is_untrappable_and_the_target_exits_with_killed(
    runtime: Runtime, via: str
) -> None:
    target, journal = await spawn_recorder(runtime, trap=True)
    mon = runtime.monitor(target)
    if via == "runtime.exit":
        runtime.exit(target, "kill")
    elif via == "ref.kill":
        target.kill()
    else:
        sender, _ = await spawn_recorder(runtime)
        await sender.call(("exit", (target, "kill")))
    assert (await mon.wait()).reason == "killed"
    assert journal.infos == []
    assert journal.terminated == []


async def test_killed_propagates_to_links_as_an_ordinary_trappable_reason(
    runtime: Runtime,
) -> None:
    victim, _ = await spawn_recorder(runtime)
    trapper, trapper_journal = await spawn_recorder(runtime, trap=True)
    bystander, _ = await spawn_recorder(runtime)
    await victim.call(("link", trapper))
    await victim.call(("link", bystander))
    mon_bystander = runtime.monitor(bystander)
    victim.kill()
    assert (await mon_bystander.wait()).reason == "killed"
    await runtime.wait_idle()
    assert trapper.is_alive
    assert trapper_journal.infos == [Exit(victim.pid, "killed")]


@pytest.mark.parametrize("reason", ["normal", "shutdown", "crash"])
async def test_a_trapping_child_runs_terminate_with_its_parents_reason_when_the_parent_exits(
    runtime: Runtime, reason: str
) -> None:
    parent, _ = await spawn_recorder(runtime)
    child_journal = Journal()
    child: ActorRef = await parent.call(("spawn_link", (child_journal, True)))
    mon_parent, mon_child = runtime.monitor(parent), runtime.monitor(child)
    if reason == "crash":
        parent.cast("crash")
    else:
        await parent.stop(reason)
    parent_reason = (await mon_parent.wait()).reason
    child_down: Down = await mon_child.wait()
    assert child_down.reason is parent_reason or child_down.reason == parent_reason
    assert child_journal.terminated == [child_down.reason]
    # The parent's exit ends the child; it is not also delivered as an Exit message.
    assert child_journal.infos == []


async def test_a_trapping_actor_that_is_not_the_child_of_the_exiting_one_keeps_running(
    runtime: Runtime,
) -> None:
    parent, _ = await spawn_recorder(runtime)
    child: ActorRef = await parent.call(("spawn_link", (Journal(), True)))
    peer, peer_journal = await spawn_recorder(runtime, trap=True)
    await child.call(("link", peer))
    mon_parent = runtime.monitor(parent)
    await child.stop("shutdown")
    # The non-trapping parent dies through the link.
    assert (await mon_parent.wait()).reason == "shutdown"
    await runtime.wait_idle()
    assert peer.is_alive
    assert peer_journal.infos == [Exit(child.pid, "shutdown")]


# -- monitors -------------------------------------------------------------------------


async def test_each_monitor_delivers_exactly_one_down_carrying_the_exit_reason(
    runtime: Runtime,
) -> None:
    watcher, journal = await spawn_recorder(runtime)
    target, _ = await spawn_recorder(runtime)
    first: MonitorRef = await watcher.call(("monitor", target))
    second: MonitorRef = await watcher.call(("monitor", target))
    assert first != second
    external = runtime.monitor(target)
    target.cast("crash")
    reason = (await external.wait()).reason
    assert isinstance(reason, RuntimeError)
    await runtime.wait_idle()
    assert sorted(journal.infos, key=lambda d: d.ref.serial) == [
        Down(first, target.pid, reason),
        Down(second, target.pid, reason),
    ]
    assert external.down == Down(external.ref, target.pid, reason)


async def test_monitoring_a_dead_actor_yields_one_down_with_noproc(runtime: Runtime) -> None:
    watcher, journal = await spawn_recorder(runtime)
    target, _ = await spawn_recorder(runtime)
    await target.stop()
    mref: MonitorRef = await watcher.call(("monitor", target))
    await runtime.wait_idle()
    assert journal.infos == [Down(mref, target.pid, "noproc")]
    down = await runtime.monitor(target).wait()
    assert down.pid == target.pid and down.reason == "noproc"


@pytest.mark.parametrize("flush", [True, False])
async def test_demonitor_with_flush_removes_a_queued_down_and_without_flush_leaves_it(
    runtime: Runtime, flush: bool
) -> None:
    watcher, journal = await spawn_recorder(runtime)
    target, _ = await spawn_recorder(runtime)
    mref: MonitorRef = await watcher.call(("monitor", target))
    await watcher.call(("gate", None))
    async with anyio.create_task_group() as tg:
        result: list[bool] = []

        async def demonitor_behind_the_gate() -> None:
            result.append(await watcher.call(("wait_gate_then_demonitor", (mref, flush))))

        tg.start_soon(demonitor_behind_the_gate)
        await runtime.wait_idle()  # the watcher now waits on its gate
        target_mon = runtime.monitor(target)  # before the kill: a parked actor dies at once
        target.kill()
        assert (await target_mon.wait()).reason == "killed"
        await runtime.wait_idle()
        assert journal.infos == []  # the Down is queued behind the gated call
        info = runtime.info(watcher)
        assert info is not None and info["mailbox"].length == 1
        gate = watcher._proc.actor.gate  # type: ignore[union-attr]
        assert gate is not None
        gate.set()
    await runtime.wait_idle()
    assert result == [False]  # the monitor had already fired
    assert journal.infos == ([] if flush else [Down(mref, target.pid, "killed")])


# -- links to the dead ------------------------------------------------------------------


async def test_linking_to_a_dead_actor_kills_a_non_trapping_linker_with_noproc(
    runtime: Runtime,
) -> None:
    dead, _ = await spawn_recorder(runtime)
    await dead.stop()
    linker, journal = await spawn_recorder(runtime)
    mon = runtime.monitor(linker)
    await linker.call(("link", dead))
    assert (await mon.wait()).reason == "noproc"
    assert journal.terminated == []


async def test_linking_to_a_dead_actor_sends_a_trapping_linker_a_noproc_exit_message(
    runtime: Runtime,
) -> None:
    dead, _ = await spawn_recorder(runtime)
    await dead.stop()
    linker, journal = await spawn_recorder(runtime, trap=True)
    await linker.call(("link", dead))
    await runtime.wait_idle()
    assert linker.is_alive
    assert journal.infos == [Exit(dead.pid, "noproc")]


# -- calls ------------------------------------------------------------------------------


async def test_a_call_to_a_dead_actor_raises_actor_dead_noproc_at_once(
    runtime: Runtime, clock: VirtualClock
) -> None:
    ref, _ = await spawn_recorder(runtime)
    await ref.stop()
    with pytest.raises(ActorDead) as info:
        await ref.call(("journal", None), timeout=5)
    assert info.value.reason == "noproc" and info.value.pid == ref.pid
    assert clock.now() == 0.0  # no timeout was waited for


async def test_a_call_whose_target_crashes_mid_call_raises_actor_dead_with_the_crash_exception(
    runtime: Runtime,
) -> None:
    ref, journal = await spawn_recorder(runtime)
    mon = runtime.monitor(ref)
    with pytest.raises(ActorDead) as info:
        await ref.call(("crash", "bad request"))
    assert isinstance(info.value.reason, ValueError)
    assert info.value.reason.args == ("bad request",)
    assert info.value.pid == ref.pid
    assert (await mon.wait()).reason is info.value.reason
    assert journal.terminated == [info.value.reason]


async def test_a_call_whose_target_is_killed_while_holding_a_deferred_reply_raises_actor_dead(
    runtime: Runtime, clock: VirtualClock
) -> None:
    ref, _ = await spawn_recorder(runtime)
    errors: list[ActorDead] = []

    async def call_and_wait() -> None:
        with pytest.raises(ActorDead) as info:
            await ref.call(("defer", None), timeout=5)
        errors.append(info.value)

    async with anyio.create_task_group() as tg:
        tg.start_soon(call_and_wait)
        await runtime.wait_idle()  # the call is held by the actor
        assert errors == []
        ref.kill()
    assert [(e.pid, e.reason) for e in errors] == [(ref.pid, "killed")]
    assert clock.now() == 0.0  # failed by the exit, not by the timeout


async def test_a_call_that_times_out_raises_call_timeout_at_the_virtual_deadline_and_the_late_reply_is_discarded(  # noqa: E501
    runtime: Runtime, clock: VirtualClock
) -> None:
    slow, slow_journal = await spawn_recorder(runtime)
    asker, asker_journal = await spawn_recorder(runtime)
    outcome = await asker.call(("call", (slow, ("defer", None), 5.0)), timeout=60)
    assert outcome[0] == "timeout"
    assert outcome[1] == 5.0 and clock.now() == 5.0
    assert isinstance(outcome[2], CallTimeout) and outcome[2].pid == slow.pid
    # The actor answers late: the caller gave up, so the reply is dropped.
    assert await slow.call(("release", "late")) == [False]
    await runtime.wait_idle()
    assert asker_journal.infos == []
    assert slow_journal.infos == []
    assert runtime.info(asker) is not None and runtime.info(asker)["mailbox"].length == 0  # type: ignore[index]
    assert asker.is_alive and slow.is_alive


async def test_a_call_from_outside_any_actor_times_out_at_exactly_the_virtual_deadline(
    runtime: Runtime, clock: VirtualClock
) -> None:
    slow, _ = await spawn_recorder(runtime)
    await runtime.sleep(1.5)  # allow-sleep: runtime clock (virtual)
    with pytest.raises(CallTimeout) as info:
        await slow.call(("defer", None), timeout=2.0)
    assert clock.now() == 3.5
    assert info.value.timeout == 2.0


# -- stop and terminate ---------------------------------------------------------------


async def test_stop_runs_terminate_with_the_reason_and_waits_for_the_exit(
    runtime: Runtime,
) -> None:
    ref, journal = await spawn_recorder(runtime)
    await ref.stop(("shutdown", "maintenance"))
    assert not ref.is_alive  # no wait needed: stop returned after the exit
    assert journal.terminated == [("shutdown", "maintenance")]
    with pytest.raises(ActorDead) as info:
        await ref.stop()
    assert info.value.reason == "noproc"


async def test_stop_with_a_timeout_kills_an_actor_whose_terminate_never_returns(
    runtime: Runtime, clock: VirtualClock
) -> None:
    ref = await runtime.spawn(Stubborn)
    mon = runtime.monitor(ref)
    with pytest.raises(CallTimeout):
        await ref.stop(timeout=2.0)
    assert clock.now() == 2.0
    assert (await mon.wait()).reason == "killed"


async def test_terminate_runs_on_a_crash_with_the_exception_but_not_on_a_kill(
    runtime: Runtime,
) -> None:
    crashed, crashed_journal = await spawn_recorder(runtime)
    killed, killed_journal = await spawn_recorder(runtime)
    mon = runtime.monitor(crashed)
    crashed.cast("crash")
    reason = (await mon.wait()).reason
    killed_mon = runtime.monitor(killed)  # monitor before kill: a parked actor dies at once
    killed.kill()
    assert (await killed_mon.wait()).reason == "killed"
    assert isinstance(reason, RuntimeError)
    assert crashed_journal.terminated == [reason]
    assert killed_journal.terminated == []


# -- start failures ---------------------------------------------------------------------


class Spawner(Actor):
    async def init(self, journal: Journal, trap: bool) -> None:
        self.journal = journal
        self.trap_exits = trap

    async def handle_call(self, request: Any, caller: Caller) -> Any:
        try:
            await self.spawn_link(FailingInit, name="config-loader")
        except StartError as exc:
            return exc
        raise AssertionError("spawn_link of a failing init returned")

    async def handle_info(self, msg: Any) -> None:
        self.journal.infos.append(msg)


@pytest.mark.parametrize("trap", [True, False])
async def test_an_init_that_raises_makes_spawn_raise_start_error_without_name_or_exit_signal(
    runtime: Runtime, trap: bool
) -> None:
    journal = Journal()
    spawner = await runtime.spawn(Spawner, journal, trap)
    error: StartError = await spawner.call("go")
    assert isinstance(error, StartError)
    assert isinstance(error.__cause__, KeyError)
    assert error.reason is error.__cause__
    assert runtime.whereis("config-loader") is None
    await runtime.wait_idle()
    assert spawner.is_alive
    assert journal.infos == []
    info = runtime.info(spawner)
    assert info is not None and info["links"] == []
    # From outside an actor too; and the name is free for the next attempt.
    with pytest.raises(StartError) as outside:
        await runtime.spawn(FailingInit, name="config-loader")
    assert isinstance(outside.value.__cause__, KeyError)
    ok = await runtime.spawn(Recorder, name="config-loader")
    assert runtime.whereis("config-loader") == ok


# -- exit/2 -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("signal", "reason"),
    [
        (("exit_self", "kill"), "killed"),
        (("exit_self", "shutdown"), "shutdown"),
        ("link", "noproc"),
    ],
)
async def test_an_exit_signal_an_actor_sends_itself_ends_it_before_its_next_message(
    runtime: Runtime, signal: Any, reason: str
) -> None:
    dead, _ = await spawn_recorder(runtime)
    await dead.stop()
    ref, journal = await spawn_recorder(runtime)
    mon = runtime.monitor(ref)
    ref.cast(("link", dead) if signal == "link" else signal)
    for i in range(3):
        ref.send(("after", i))
    assert (await mon.wait()).reason == reason
    assert journal.infos == []
    assert journal.terminated == []


async def test_exit_with_normal_to_a_non_trapping_actor_is_ignored(runtime: Runtime) -> None:
    target, journal = await spawn_recorder(runtime)
    sender, _ = await spawn_recorder(runtime)
    runtime.exit(target, "normal")
    await sender.call(("exit", (target, "normal")))
    await runtime.wait_idle()
    assert target.is_alive
    assert await target.call(("journal", None)) is journal
    assert journal.infos == [] and journal.terminated == []


async def test_exit_to_a_trapping_actor_arrives_as_an_exit_message_from_the_sender(
    runtime: Runtime,
) -> None:
    target, journal = await spawn_recorder(runtime, trap=True)
    sender, _ = await spawn_recorder(runtime)
    await sender.call(("exit", (target, "shutdown")))
    runtime.exit(target, "normal")
    await runtime.wait_idle()
    assert target.is_alive
    assert journal.infos == [Exit(sender.pid, "shutdown"), Exit(None, "normal")]  # type: ignore[arg-type]


async def test_exit_with_an_abnormal_reason_kills_a_non_trapping_actor_without_terminate(
    runtime: Runtime,
) -> None:
    target, journal = await spawn_recorder(runtime)
    runtime.exit(target, ("shutdown", "evicted"))
    await assert_down(target, ("shutdown", "evicted"))
    assert journal.terminated == []


# -- runtime shutdown and refs after it ---------------------------------------------------


async def test_shutting_the_runtime_down_runs_terminate_shutdown_of_every_live_actor() -> None:
    journals = [Journal() for _ in range(3)]
    async with Runtime() as rt:
        for journal in journals:
            await rt.spawn(Recorder, journal)
        trapping = Journal()
        await rt.spawn(Recorder, trapping, trap=True)
        stopped = Journal()
        ref = await rt.spawn(Recorder, stopped)
        await ref.stop()
    assert [j.terminated for j in journals] == [["shutdown"]] * 3
    assert trapping.terminated == ["shutdown"]
    assert stopped.terminated == ["normal"]  # already gone: not terminated twice


async def test_casts_and_sends_to_a_dead_actor_are_dropped_but_a_closed_runtime_refuses_refs(
) -> None:
    async with Runtime() as rt:
        ref = await rt.spawn(Recorder)
        await ref.stop()
        ref.cast("crash")
        ref.send("hello")
        assert rt.statistics().dropped_to_dead == 2
        live = await rt.spawn(Recorder)
    assert rt.closed
    for r in (ref, live):
        with pytest.raises(RuntimeClosed):
            r.cast("hello")
        with pytest.raises(RuntimeClosed):
            r.send("hello")
        with pytest.raises(RuntimeClosed):
            await r.call(("journal", None))
        with pytest.raises(RuntimeClosed):
            await r.stop()
        with pytest.raises(RuntimeClosed):
            r.kill()
