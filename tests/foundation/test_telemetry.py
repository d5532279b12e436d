"""Telemetry: attach/detach/emit by prefix, failing handlers, ``capture``, and every
lifecycle event the kernel emits."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import pytest

from foundation import (
    Actor,
    Caller,
    CallTimeout,
    NoReply,
    Registry,
    Runtime,
    current_time,
    telemetry,
)
from foundation.telemetry import Capture, TelemetryEvent, attach, capture, detach, emit
from foundation.testing import VirtualClock, assert_down, wait_for_event

pytestmark = pytest.mark.anyio

Record = list[tuple[tuple[str, ...], dict[str, Any], dict[str, Any]]]


def recorder(into: Record) -> Any:
    def handler(
        event: tuple[str, ...], measurements: Mapping[str, Any], metadata: Mapping[str, Any]
    ) -> None:
        into.append((event, dict(measurements), dict(metadata)))

    return handler


class Echo(Actor):
    async def handle_call(self, request: Any, caller: Caller) -> Any:
        if request == "never":
            return NoReply
        return request

    async def handle_cast(self, msg: Any) -> None:
        if msg == "crash":
            raise ValueError("crash requested")


# -- attach, detach, emit --------------------------------------------------------------


async def test_handlers_receive_events_under_their_prefix(runtime: Runtime) -> None:
    app: Record = []
    everything: Record = []
    exact: Record = []
    attach("app.jobs", recorder(app))
    attach((), recorder(everything))
    attach(("app", "jobs", "done"), recorder(exact))
    emit("app.jobs.done", {"ms": 3}, {"id": 7})
    emit(("app", "jobs", "failed"))
    emit("app.jobsx.done")  # a prefix matches whole name parts, not characters
    emit("other")
    assert app == [
        (("app", "jobs", "done"), {"ms": 3}, {"id": 7}),
        (("app", "jobs", "failed"), {}, {}),
    ]
    assert exact == [(("app", "jobs", "done"), {"ms": 3}, {"id": 7})]
    assert [e for e, _, _ in everything] == [
        ("app", "jobs", "done"),
        ("app", "jobs", "failed"),
        ("app", "jobsx", "done"),
        ("other",),
    ]


async def test_a_detached_handler_is_not_called_again(runtime: Runtime) -> None:
    got: Record = []
    hid = attach("app", recorder(got))
    emit("app.one")
    assert detach(hid) is True
    assert detach(hid) is False
    emit("app.two")
    assert [e for e, _, _ in got] == [("app", "one")]
    assert not runtime.telemetry.active


async def test_handler_ids_can_be_chosen_but_not_reused(runtime: Runtime) -> None:
    got: Record = []
    assert attach("app", recorder(got), id="mine") == "mine"
    with pytest.raises(ValueError, match="already attached"):
        attach("app", recorder(got), id="mine")
    emit("app.x")
    assert len(got) == 1
    assert detach("mine")


async def test_attach_and_emit_refuse_malformed_names_and_handlers(runtime: Runtime) -> None:
    with pytest.raises(TypeError, match="callable"):
        attach("app", "not callable")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="event name"):
        attach(["app"], recorder([]))  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="event name"):
        emit(("app", 1))  # type: ignore[arg-type]


def test_the_module_functions_need_a_runtime() -> None:
    with pytest.raises(RuntimeError, match="inside a foundation runtime"):
        emit("app.x")
    with pytest.raises(RuntimeError, match="inside a foundation runtime"):
        attach("app", recorder([]))


async def test_a_failing_handler_is_detached_and_the_emitter_carries_on(
    runtime: Runtime, caplog: pytest.LogCaptureFixture
) -> None:
    calls: list[str] = []

    def broken(event: Any, measurements: Any, metadata: Any) -> None:
        calls.append("broken")
        raise RuntimeError("handler bug")

    good: Record = []
    attach("app", broken)
    attach("app", recorder(good))
    with caplog.at_level(logging.ERROR, logger="foundation.telemetry"):
        emit("app.first")  # does not raise
        emit("app.second")
    assert calls == ["broken"]
    assert [e for e, _, _ in good] == [("app", "first"), ("app", "second")]
    assert any("detached" in r.getMessage() for r in caplog.records)
    # A crashing handler in kernel events does not disturb the actors either.
    attach("foundation.actor.spawn", broken)
    ref = await runtime.spawn(Echo)
    assert await ref.call("still works") == "still works"
    assert calls == ["broken", "broken"]


# -- capture ---------------------------------------------------------------------------


async def test_capture_records_events_and_waits_for_one(
    runtime: Runtime, clock: VirtualClock
) -> None:
    async with capture("foundation.actor") as cap:
        assert isinstance(cap, Capture)
        ref = await runtime.spawn(Echo, name="echo")
        ref.cast("crash")
        exit_event = await cap.wait("foundation.actor.exit")
    assert isinstance(exit_event, TelemetryEvent)
    assert exit_event.metadata["pid"] == ref.pid
    assert isinstance(exit_event.metadata["reason"], ValueError)
    assert [e.name[-1] for e in cap.events] == ["spawn", "exit"]
    assert cap.named(("foundation", "actor", "spawn"))[0].metadata["name"] == "echo"
    assert current_time() == 0
    # After the block, nothing more is recorded.
    await runtime.spawn(Echo)
    assert len(cap.events) == 2


async def test_capture_wait_sees_earlier_events_unless_told_not_to(
    runtime: Runtime, clock: VirtualClock
) -> None:
    async with capture() as cap:
        emit("app.ping", {"n": 1})
        assert (await cap.wait("app.ping")).measurements == {"n": 1}
        with pytest.raises(TimeoutError, match="app"):
            await cap.wait("app.ping", seen=False, timeout=2)
        assert current_time() == 2
        first = await cap.wait(match=lambda e: e.measurements.get("n") == 1)
        assert first.name == ("app", "ping")


async def test_wait_for_event_returns_the_next_matching_event(
    runtime: Runtime, clock: VirtualClock
) -> None:
    ref = await runtime.spawn(Echo)
    mon = runtime.monitor(ref)
    ref.cast("crash")
    event = await wait_for_event(
        "foundation.actor.exit", match=lambda e: e.metadata["pid"] == ref.pid
    )
    assert isinstance(event.metadata["reason"], ValueError)
    await mon.wait()
    with pytest.raises(AssertionError, match=r"no .* event within 3"):
        await wait_for_event("foundation.actor.exit", timeout=3)
    assert current_time() == 3


# -- kernel lifecycle events -----------------------------------------------------------


async def test_spawn_and_exit_events_carry_pid_name_class_and_reason(
    runtime: Runtime, clock: VirtualClock
) -> None:
    async with capture("foundation.actor") as cap:
        a = await runtime.spawn(Echo, name="a")
        b = await runtime.spawn(Echo)
        c = await runtime.spawn(Echo)
        await a.stop()
        b.cast("crash")
        await assert_down(b)
        c.kill()
        await assert_down(c)
        d = await runtime.spawn(Echo)
        await d.stop(("shutdown", "bye"))
    spawns = cap.named("foundation.actor.spawn")
    assert [(e.metadata["pid"], e.metadata["name"], e.metadata["actor"]) for e in spawns] == [
        (a.pid, "a", "Echo"),
        (b.pid, None, "Echo"),
        (c.pid, None, "Echo"),
        (d.pid, None, "Echo"),
    ]
    exits = {e.metadata["pid"]: e.metadata for e in cap.named("foundation.actor.exit")}
    assert exits[a.pid]["reason"] == "normal" and exits[a.pid]["name"] == "a"
    assert isinstance(exits[b.pid]["reason"], ValueError)
    assert exits[c.pid]["reason"] == "killed"
    assert exits[d.pid]["reason"] == ("shutdown", "bye")
    assert all(md["actor"] == "Echo" for md in exits.values())


async def test_a_mailbox_overflow_is_reported(runtime: Runtime) -> None:
    async with capture("foundation.mailbox") as cap:
        ref = await runtime.spawn(Echo, name="small", mailbox_size=1, overflow="drop_new")
        ref.cast("one")  # fills the mailbox: the actor has not run yet
        ref.cast("two")  # dropped
    (event,) = cap.events
    assert event.name == ("foundation", "mailbox", "overflow")
    assert event.metadata == {"pid": ref.pid, "name": "small", "policy": "drop_new"}
    assert event.measurements == {"length": 1}


async def test_a_call_timeout_is_reported(runtime: Runtime, clock: VirtualClock) -> None:
    ref = await runtime.spawn(Echo, name="slow")
    async with capture("foundation.call") as cap:
        with pytest.raises(CallTimeout):
            await ref.call("never", timeout=1.5)
    assert current_time() == 1.5
    (event,) = cap.events
    assert event.name == ("foundation", "call", "timeout")
    assert event.measurements == {"timeout": 1.5}
    assert event.metadata == {"pid": ref.pid, "name": "slow", "caller": None}


async def test_registry_changes_are_reported(runtime: Runtime) -> None:
    reg = Registry(name="pool")
    async with capture("foundation.registry") as cap:
        ref = await runtime.spawn(Echo, name="named")
        reg.register("k", ref)
        await ref.stop()
    got = [(e.name[-1], e.metadata["registry"], e.metadata["key"]) for e in cap.events]
    assert got[:2] == [("register", None, "named"), ("register", "pool", "k")]
    assert sorted(got[2:], key=repr) == sorted(
        [("unregister", None, "named"), ("unregister", "pool", "k")], key=repr
    )
    assert all(e.metadata["pid"] == ref.pid for e in cap.events)


class Blocker(Actor):
    async def handle_cast(self, msg: Any) -> None:
        # The blockage being measured: hold the event loop until the watchdog's sampler
        # thread has detected it (a threading.Event set from that thread; 5 s is only a
        # safety net should detection never happen).
        self.runtime.watchdog.detected.wait(timeout=5)


async def test_a_blocked_loop_is_reported() -> None:
    async with Runtime(watchdog=0.05) as rt, capture("foundation.loop") as cap:
        ref = await rt.spawn(Blocker, name="hog")
        ref.cast("block")
        event = await cap.wait(
            "foundation.loop.blocked", match=lambda e: e.metadata["pid"] == ref.pid
        )
    assert event.metadata["name"] == "hog" and event.metadata["actor"] == "Blocker"
    assert event.measurements["duration"] > 0.05


def test_the_telemetry_namespace_documents_the_kernel_events() -> None:
    doc = telemetry.__doc__ or ""
    for name in (
        "actor.spawn",
        "actor.exit",
        "mailbox.overflow",
        "call.timeout",
        "registry.register",
        "registry.unregister",
        "loop.blocked",
    ):
        assert name in doc
