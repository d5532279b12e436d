"""The pykka bridge: a pykka ``ThreadingActor`` as a supervised child.

pykka actors run on real threads, so every wait here is on an event: a monitor, a
telemetry event, a reply, or a ``threading.Event`` waited on in a worker thread. The
runtime runs on the real clock (an autojumping virtual clock could jump while pykka
works on its thread). After each test every pykka actor is stopped and its thread gone.

Tests that take the ``future_path`` fixture run twice: with the reply futures that call
back into the loop (pykka's ``_create_future`` hook) and with the fallback that waits on
each future in a worker thread.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import anyio
import pykka
import pytest

import supervision._pykka_hooks as hooks
from foundation import Actor, ActorDead, ActorRef, Caller, Runtime, StartError, current_runtime
from foundation.telemetry import capture
from foundation.testing import assert_down
from supervision import (
    ChildSpec,
    DynamicSupervisor,
    InvalidChildSpec,
    PykkaBridge,
    PykkaCall,
    StartChildError,
    Supervisor,
    pykka_child,
)

pytestmark = pytest.mark.anyio

RESTART = ("supervision", "child", "restart")


class Boom(Exception):
    """The crash the test actors raise."""


class Fatal(BaseException):
    """Not an Exception: pykka stops every actor when a handler raises one."""


class Inner:
    """An attribute reached with a dotted ``PykkaCall``."""

    pykka_traversable = True

    def shout(self, word: str) -> str:
        return word.upper()


class Counter(pykka.ThreadingActor):
    """Counts; journals its hooks; a message it does not know raises ``Boom``."""

    def __init__(self, journal: list[Any] | None = None, start: int = 0) -> None:
        super().__init__()
        self.journal: list[Any] = journal if journal is not None else []
        self.value = start
        self.inner = Inner()

    def on_start(self) -> None:
        self.journal.append(("start", self.actor_urn))

    def on_stop(self) -> None:
        self.journal.append(("stop", self.actor_urn))

    def on_failure(self, exc_type: Any, exc: Any, tb: Any) -> None:
        self.journal.append(("failure", self.actor_urn, exc))

    def on_receive(self, message: Any) -> Any:
        if message == "incr":
            return self.add(1)
        if message == "urn":
            return self.actor_urn
        if message == "stop":
            self.stop()
            return None
        if message == "fatal":
            raise Fatal(message)
        raise Boom(message)

    def add(self, n: int, *, times: int = 1) -> int:
        self.value += n * times
        return self.value


class Gate(pykka.ThreadingActor):
    """A handler that blocks its thread until the test opens the gate."""

    def __init__(self, entered: threading.Event, gate: threading.Event) -> None:
        super().__init__()
        self.entered = entered
        self.gate = gate

    def pass_gate(self) -> str:
        self.entered.set()
        if not self.gate.wait(timeout=30):
            raise TimeoutError("the test never opened the gate")
        return "passed"


class Flagged(Counter):
    """Sets a ``threading.Event`` when it stops."""

    def __init__(self, stopped: threading.Event) -> None:
        super().__init__()
        self.stopped = stopped

    def on_stop(self) -> None:
        self.stopped.set()


class BadStart(pykka.ThreadingActor):
    """``on_start`` raises."""

    def on_start(self) -> None:
        raise Boom("on_start")


class Echo(Actor):
    """A plain foundation actor that answers every call."""

    async def handle_call(self, request: Any, caller: Caller) -> Any:
        return request


class Client(Actor):
    """Calls a bridge from inside an actor."""

    async def handle_call(self, request: Any, caller: Caller) -> Any:
        bridge, msg = request
        return await bridge.call(msg, timeout=30)


PYKKA_CLASSES = {cls.__name__ for cls in (Counter, Flagged, Gate, BadStart)}


@pytest.fixture(autouse=True)
def no_pykka_actor_outlives_the_test() -> Iterator[None]:
    """After the runtime closed: no pykka actor registered, every pykka thread ended."""
    yield
    left = pykka.ActorRegistry.get_all()
    pykka.ActorRegistry.stop_all()  # so a failing test does not leak into the next one
    threads = [t for t in threading.enumerate() if t.name.rsplit("-", 1)[0] in PYKKA_CLASSES]
    for thread in threads:
        thread.join(timeout=10)
    assert left == []
    assert [t.name for t in threads if t.is_alive()] == []


@pytest.fixture(params=["callback", "thread"])
def future_path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Run with the loop-callback futures, then with the worker-thread fallback."""
    monkeypatch.setattr(hooks, "FAST_FUTURES", request.param == "callback")
    return str(request.param)


async def start_counter(
    journal: list[Any], *, sup_options: dict[str, Any] | None = None, **options: Any
) -> tuple[ActorRef, ActorRef]:
    """A supervisor with one ``Counter`` child registered as "counter"."""
    spec = pykka_child(Counter, journal, name="counter", **options)
    sup = await Supervisor.start([spec], **(sup_options or {}))
    bridge = current_runtime().whereis("counter")
    assert bridge is not None
    return sup, bridge


def restarted(times: int) -> Any:
    """Match the restart event of the ``times``-th restart of a child."""
    return lambda event: event.measurements["restarts"] == times


# -- calls, casts and pykka's ask semantics ----------------------------------------------


async def test_a_call_is_a_pykka_ask_and_an_error_in_the_ask_goes_back_to_the_caller_only(
    runtime: Runtime, future_path: str
) -> None:
    sup, bridge = await start_counter([])
    pykka_ref = await PykkaBridge.pykka_ref(bridge)
    probe = pykka_ref.ask("urn", block=False)  # the kind of future this path answers from
    assert isinstance(probe, hooks.NotifyingFuture) is (future_path == "callback")
    urn = await bridge.call("urn")
    assert await bridge.call("incr") == 1
    with pytest.raises(Boom, match="bad"):
        await bridge.call("bad")
    # As in pykka: the error went to the asker; the actor keeps its state and runs on.
    assert await bridge.call("incr") == 2
    assert await bridge.call("urn") == urn
    assert bridge.is_alive
    assert (await Supervisor.statistics(sup)).restarts_total == 0
    await sup.stop("shutdown")


async def test_a_pykka_call_runs_a_method_as_the_proxy_does(
    runtime: Runtime, future_path: str
) -> None:
    sup, bridge = await start_counter([])
    assert await bridge.call(PykkaCall("add", 2, times=3)) == 6
    assert await bridge.call(PykkaCall("inner.shout", "hi")) == "HI"
    with pytest.raises(AttributeError):
        await bridge.call(PykkaCall("no_such_method"))
    bridge.cast(PykkaCall("add", 10))  # proxy.add.defer(10): a tell
    assert await bridge.call("incr") == 17  # pykka handles them in order
    assert PykkaCall("add", 1, times=2) == PykkaCall("add", 1, times=2)
    with pytest.raises(TypeError):
        PykkaCall("")
    await sup.stop("shutdown")


async def test_the_reply_futures_call_back_into_the_loop_where_pykka_has_the_hook(
    runtime: Runtime,
) -> None:
    assert hooks.FAST_FUTURES  # pykka 4 creates an actor's futures through _create_future
    bridge = await PykkaBridge.start(Counter)
    pykka_ref = await PykkaBridge.pykka_ref(bridge)
    assert isinstance(pykka_ref.ask("urn", block=False), hooks.NotifyingFuture)
    await bridge.stop()
    assert not pykka_ref.is_alive()


async def test_the_bridged_actor_keeps_its_class_name_for_pykka_registry_lookups(
    runtime: Runtime,
) -> None:
    bridge = await PykkaBridge.start(Counter, [], 5)
    pykka_ref = await PykkaBridge.pykka_ref(bridge)
    assert pykka_ref.actor_class.__name__ == "Counter"
    assert pykka.ActorRegistry.get_by_class(Counter) == [pykka_ref]
    assert pykka.ActorRegistry.get_by_class_name("Counter") == [pykka_ref]
    assert await bridge.call("incr") == 6  # constructor arguments reached it
    await bridge.stop()


async def test_a_slow_pykka_handler_does_not_block_the_event_loop(
    runtime: Runtime, future_path: str
) -> None:
    entered, gate = threading.Event(), threading.Event()
    sup = await Supervisor.start([pykka_child(Gate, entered, gate, name="gate")])
    bridge = runtime.whereis("gate")
    client = await runtime.spawn(Client)
    echo = await runtime.spawn(Echo)
    results: list[Any] = []

    async def slow_call() -> None:
        results.append(await client.call((bridge, PykkaCall("pass_gate")), timeout=30))

    async with anyio.create_task_group() as tg:
        tg.start_soon(slow_call)
        assert await runtime.to_thread(entered.wait, 10)
        # The pykka thread is blocked in a handler; the loop, the other actors and the
        # bridge's own mailbox keep serving.
        for i in range(100):
            assert await echo.call(i) == i
        assert isinstance(await PykkaBridge.pykka_ref(bridge), pykka.ActorRef)
        assert results == []
        gate.set()
    assert results == ["passed"]
    await sup.stop("shutdown")


# -- crashes, normal stops and restarts -----------------------------------------------------


async def test_a_crash_in_a_tell_exits_the_bridge_with_it_and_a_fresh_pykka_actor_replaces_it(
    runtime: Runtime, future_path: str
) -> None:
    journal: list[Any] = []
    sup, bridge = await start_counter(journal)
    urn = await bridge.call("urn")
    assert await bridge.call("incr") == 1
    mon = runtime.monitor(bridge)
    async with capture(RESTART) as cap:
        bridge.cast("boom")
        down = await mon.wait(10)
        event = await cap.wait(RESTART, timeout=10)
    assert isinstance(down.reason, Boom)
    # pykka ran on_failure with the very exception the bridge exited with.
    assert ("failure", urn, down.reason) in journal
    assert event.metadata["reason"] is down.reason
    new = runtime.whereis("counter")
    assert new is not None and new != bridge
    assert await new.call("urn") != urn
    assert await new.call("incr") == 1  # a fresh instance
    await sup.stop("shutdown")


async def test_a_pykka_actor_that_stops_itself_ends_a_transient_bridge_normally_for_good(
    runtime: Runtime, future_path: str
) -> None:
    journal: list[Any] = []
    sup, bridge = await start_counter(journal, restart="transient")
    urn = await bridge.call("urn")
    mon = runtime.monitor(bridge)
    await bridge.call("stop")
    assert (await mon.wait(10)).reason == "normal"
    assert ("stop", urn) in journal
    (child,) = await Supervisor.which_children(sup)
    assert (child.status, child.restarts) == ("undefined", 0)
    await sup.stop("shutdown")


async def test_a_permanent_pykka_child_that_stops_normally_is_restarted(
    runtime: Runtime,
) -> None:
    sup, bridge = await start_counter([])
    async with capture(RESTART) as cap:
        bridge.cast("stop")
        event = await cap.wait(RESTART, timeout=10)
    assert event.metadata["reason"] == "normal"
    await sup.stop("shutdown")


async def test_restart_intensity_applies_to_a_crashing_pykka_child(runtime: Runtime) -> None:
    sup, _ = await start_counter([], sup_options={"max_restarts": 2, "max_seconds": 3600.0})
    sup_mon = runtime.monitor(sup)
    async with capture(RESTART) as cap:
        for crash in range(3):
            bridge = runtime.whereis("counter")
            assert bridge is not None
            bridge.cast("boom")
            if crash < 2:
                await cap.wait(RESTART, match=restarted(crash + 1), timeout=10)
    # The third crash within the window is one too many: the supervisor gives up.
    assert (await sup_mon.wait(10)).reason == "shutdown"
    assert len(cap.named(RESTART)) == 2


async def test_a_call_queued_behind_a_crash_fails_by_ref_and_is_retried_by_name(
    runtime: Runtime, future_path: str
) -> None:
    sup, bridge = await start_counter([])
    async with capture(RESTART) as cap:
        bridge.cast("boom")  # pykka takes the tell first, then the ask queued behind it
        with pytest.raises(ActorDead) as info:
            await bridge.call("incr", timeout=10)
        assert isinstance(info.value.reason, Boom)
        assert info.value.handled is False  # the pykka actor never handled it
        await cap.wait(RESTART, timeout=10)

    second = runtime.whereis("counter")
    assert second is not None
    second.cast("boom")
    # By name, the call waits for the next incarnation instead of failing.
    assert await runtime.call("counter", "incr", timeout=10) == 1
    await sup.stop("shutdown")


async def test_a_base_exception_in_a_handler_makes_pykka_stop_all_its_actors(
    runtime: Runtime,
) -> None:
    first = await PykkaBridge.start(Counter)
    second = await PykkaBridge.start(Counter)
    mon_first, mon_second = runtime.monitor(first), runtime.monitor(second)
    first.cast("fatal")
    assert isinstance((await mon_first.wait(10)).reason, Fatal)
    assert (await mon_second.wait(10)).reason == "normal"  # pykka's stop_all


async def test_an_exception_in_on_start_fails_the_start_with_the_cause(
    runtime: Runtime,
) -> None:
    with pytest.raises(StartError) as info:
        await PykkaBridge.start(BadStart)
    assert isinstance(info.value.__cause__, Boom)

    sup = await Supervisor.start([])
    with pytest.raises(StartChildError) as child_info:
        await Supervisor.start_child(sup, pykka_child(BadStart))
    assert isinstance(child_info.value.__cause__, Boom)
    assert (await Supervisor.count_children(sup)).specs == 0
    await sup.stop("shutdown")


async def test_a_dynamic_supervisor_runs_many_pykka_children_of_one_spec(
    runtime: Runtime,
) -> None:
    sup = await DynamicSupervisor.start(max_children=3)
    spec = pykka_child(Counter, restart="transient")
    bridges = [await DynamicSupervisor.start_child(sup, spec) for _ in range(3)]
    assert len({await b.call("urn") for b in bridges if b is not None}) == 3
    assert len(pykka.ActorRegistry.get_all()) == 3
    assert bridges[0] is not None
    await DynamicSupervisor.terminate_child(sup, bridges[0])
    assert len(pykka.ActorRegistry.get_all()) == 2
    await sup.stop("shutdown")


# -- stopping -------------------------------------------------------------------------------


async def test_shutting_the_supervisor_down_stops_the_pykka_actor_after_its_on_stop(
    runtime: Runtime, future_path: str
) -> None:
    journal: list[Any] = []
    sup, bridge = await start_counter(journal)
    pykka_ref = await PykkaBridge.pykka_ref(bridge)
    await sup.stop("shutdown")
    assert journal[-1] == ("stop", pykka_ref.actor_urn)
    assert pykka.ActorRegistry.get_all() == []


async def test_terminate_child_stops_the_pykka_actor_and_restart_child_starts_a_fresh_one(
    runtime: Runtime,
) -> None:
    journal: list[Any] = []
    sup, bridge = await start_counter(journal)
    urn = await bridge.call("urn")
    await Supervisor.terminate_child(sup, "counter")
    assert journal[-1] == ("stop", urn)
    new = await Supervisor.restart_child(sup, "counter")
    assert new is not None
    assert await new.call("urn") != urn
    await sup.stop("shutdown")


async def test_a_brutally_killed_bridge_still_stops_its_pykka_actor(runtime: Runtime) -> None:
    stopped = threading.Event()
    sup = await Supervisor.start([pykka_child(Flagged, stopped, shutdown="brutal_kill", id="w")])
    (child,) = await Supervisor.which_children(sup)
    await Supervisor.terminate_child(sup, "w")
    assert child.ref is not None and not child.ref.is_alive
    # No terminate ran in the bridge; its warden saw the kill and stopped pykka.
    assert await runtime.to_thread(stopped.wait, 10)

    stopped.clear()
    bridge = await PykkaBridge.start(Flagged, stopped)
    bridge.kill()
    await assert_down(bridge, "killed", timeout=10)
    assert await runtime.to_thread(stopped.wait, 10)
    await sup.stop("shutdown")


async def test_closing_the_runtime_stops_every_bridged_pykka_actor(anyio_backend: str) -> None:
    journal: list[Any] = []
    async with Runtime() as rt:
        await Supervisor.start([pykka_child(Counter, journal, name="counter")])
        await PykkaBridge.start(Counter, journal)
        assert len(pykka.ActorRegistry.get_all()) == 2
        assert rt.whereis("counter") is not None
    assert [entry[0] for entry in journal].count("stop") == 2
    assert pykka.ActorRegistry.get_all() == []


# -- the spec ---------------------------------------------------------------------------------


def test_pykka_child_builds_a_bridge_spec_and_refuses_a_class_that_is_not_a_pykka_actor() -> None:
    spec = pykka_child(Counter, [], 3)
    assert isinstance(spec, ChildSpec)
    assert (spec.id, spec.restart, spec.shutdown, spec.type) == (
        "Counter",
        "permanent",
        5.0,
        "worker",
    )
    assert spec.start == (PykkaBridge, (Counter, ([], 3), {}), {"stop_timeout": 5.0})
    named = pykka_child(Counter, name="c", restart="transient", shutdown=2.0, start=1)
    assert named.id == "c"
    assert named.start == (
        PykkaBridge,
        (Counter, (), {"start": 1}),
        {"stop_timeout": 2.0, "name": "c"},
    )
    assert pykka_child(Counter, shutdown="infinity").start[2] == {"stop_timeout": None}
    with pytest.raises(InvalidChildSpec, match="invalid_mfa"):
        pykka_child(Echo)  # type: ignore[arg-type]


def test_the_benchmark_reports_both_rates_and_their_ratio() -> None:
    from benchmarks._supervision_pykka import measure_pykka_call_overhead

    result = measure_pykka_call_overhead(50, repeat=1)
    assert result["plain_ask_per_s"] > 0 and result["supervised_call_per_s"] > 0
    assert result["ratio"] == pytest.approx(
        result["supervised_call_per_s"] / result["plain_ask_per_s"]
    )
