"""Calls across a restart: a call by registered name waits for the supervisor to bring the
child back (until the caller's timeout); a call by pid keeps Erlang's ``noproc``.

A request is resent to the new incarnation only if the old one never took it from its
mailbox, so no request runs twice. Every test counts handler invocations and reads the
virtual clock.
"""

from __future__ import annotations

from typing import Any

import anyio
import pytest

from foundation import Actor, ActorDead, ActorRef, Caller, CallTimeout, Runtime, current_runtime
from foundation.telemetry import capture
from foundation.testing import VirtualClock
from supervision import ChildSpec, Supervisor

pytestmark = pytest.mark.anyio


class Boom(Exception):
    """The crash of a service incarnation."""


class Service(Actor):
    """Answers ``("whoami", _)`` with its incarnation number; counts every request it
    handles in ``log`` as ``(op, incarnation)``.

    ``("work", _)`` sets ``log["entered"]``, takes 1 s of the runtime clock, then crashes.
    An incarnation whose number is in ``log["fail"]`` takes 1 s to fail its ``init``.
    """

    async def init(self, log: dict[str, Any]) -> None:
        log["incarnations"] += 1
        self.log = log
        self.incarnation = log["incarnations"]
        if self.incarnation in log["fail"]:
            await self.runtime.sleep(1)  # allow-sleep: runtime clock (virtual)
            raise Boom(f"incarnation {self.incarnation} cannot start")

    async def handle_call(self, request: Any, caller: Caller) -> Any:
        op, _ = request
        self.log["handled"].append((op, self.incarnation))
        if op == "work":
            self.log["entered"].set()
            await self.runtime.sleep(1)  # allow-sleep: runtime clock (virtual)
            raise Boom("crashed while handling work")
        return (op, self.incarnation)

    async def handle_cast(self, msg: Any) -> None:
        raise Boom("crash")


def new_log() -> dict[str, Any]:
    return {"incarnations": 0, "handled": [], "entered": anyio.Event(), "fail": set()}


def service(log: dict[str, Any], *, restart_delay: float = 0.0, **options: Any) -> ChildSpec:
    """A ``Service`` registered as ``"svc"``; a restart waits ``restart_delay`` seconds
    (runtime clock) before the new incarnation is spawned and registered."""

    async def start() -> ActorRef:
        rt = current_runtime()
        if log["incarnations"] and restart_delay:
            await rt.sleep(restart_delay)  # allow-sleep: runtime clock (virtual)
        ref: ActorRef = await rt.spawn(Service, log, name="svc", link=True)
        return ref

    return ChildSpec("svc", start, **options)


async def crash(runtime: Runtime) -> ActorRef:
    """Crash the current ``"svc"``; return its (dead) ref once it is down."""
    old = runtime.whereis("svc")
    assert old is not None
    mon = runtime.monitor(old)
    old.cast("crash")
    assert isinstance((await mon.wait(60)).reason, Boom)
    return old


async def test_a_call_by_name_waits_for_the_restarted_child_and_succeeds(
    runtime: Runtime, clock: VirtualClock
) -> None:
    log = new_log()
    await Supervisor.start([service(log, restart_delay=2.0)])
    await crash(runtime)
    assert runtime.whereis("svc") is None  # the supervisor is still restarting it
    assert await runtime.call("svc", ("whoami", None), timeout=5.0) == ("whoami", 2)
    assert runtime.clock.now() == 2.0
    assert log["handled"] == [("whoami", 2)]


async def test_a_call_by_name_during_a_slow_init_is_answered_by_the_new_incarnation(
    runtime: Runtime, clock: VirtualClock
) -> None:
    log = new_log()

    class SlowInit(Service):
        async def init(self, log: dict[str, Any]) -> None:
            await super().init(log)
            if self.incarnation > 1:
                await self.runtime.sleep(3)  # allow-sleep: runtime clock (virtual)

    await Supervisor.start([ChildSpec("svc", (SlowInit, (log,), {"name": "svc"}))])
    await crash(runtime)
    assert await runtime.call("svc", ("whoami", None), timeout=5.0) == ("whoami", 2)
    assert runtime.clock.now() == 3.0


async def test_a_call_by_pid_to_the_dead_incarnation_raises_noproc_at_once(
    runtime: Runtime, clock: VirtualClock
) -> None:
    log = new_log()
    await Supervisor.start([service(log, restart_delay=2.0)])
    old = await crash(runtime)
    with pytest.raises(ActorDead) as exc:
        await old.call(("whoami", None), timeout=5.0)
    assert exc.value.reason == "noproc"
    assert exc.value.pid == old.pid
    assert runtime.clock.now() == 0.0
    assert log["handled"] == []


async def _work_then_count(runtime: Runtime, log: dict[str, Any]) -> dict[str, Any]:
    """Call ``work`` (crashes the incarnation after 1 s) and, while it runs, ``count``
    (queued behind it); both by name. Return each call's outcome."""
    out: dict[str, Any] = {}

    async def call(op: str) -> None:
        try:
            out[op] = await runtime.call("svc", (op, None), timeout=10.0)
        except ActorDead as exc:
            out[op] = exc
        out[op + "_at"] = runtime.clock.now()

    async with anyio.create_task_group() as tg:
        tg.start_soon(call, "work")
        await log["entered"].wait()
        old = runtime.whereis("svc")
        assert old is not None
        tg.start_soon(call, "count")
        await runtime.wait_idle()  # before the clock jumps to 1.0
        assert runtime.clock.now() == 0.0
        assert runtime.info(old)["mailbox"].length == 1  # type: ignore[index]
    return out


async def test_a_request_left_in_the_dead_incarnations_mailbox_is_resent_once(
    runtime: Runtime, clock: VirtualClock
) -> None:
    log = new_log()
    await Supervisor.start([service(log)])
    out = await _work_then_count(runtime, log)
    assert out["count"] == ("count", 2)
    assert out["count_at"] == 1.0
    assert [h for h in log["handled"] if h[0] == "count"] == [("count", 2)]  # handled once


async def test_a_request_being_handled_when_the_child_crashed_raises_and_is_not_resent(
    runtime: Runtime, clock: VirtualClock
) -> None:
    log = new_log()
    await Supervisor.start([service(log)])
    out = await _work_then_count(runtime, log)
    error = out["work"]
    assert isinstance(error, ActorDead)
    assert error.handled is True
    assert isinstance(error.reason, Boom)
    assert out["work_at"] == 1.0
    assert await runtime.call("svc", ("whoami", None)) == ("whoami", 2)
    assert log["handled"] == [("work", 1), ("count", 2), ("whoami", 2)]


async def test_a_name_that_never_comes_back_raises_call_timeout_after_exactly_the_timeout(
    runtime: Runtime, clock: VirtualClock
) -> None:
    log = new_log()
    sup = await Supervisor.start([service(log, restart="temporary")])
    await crash(runtime)
    assert await Supervisor.which_children(sup) == []
    with pytest.raises(CallTimeout):
        await runtime.call("svc", ("whoami", None), timeout=3.0)
    assert runtime.clock.now() == 3.0
    assert log["handled"] == []


async def test_a_restart_slower_than_the_timeout_raises_call_timeout_at_the_timeout(
    runtime: Runtime, clock: VirtualClock
) -> None:
    log = new_log()
    await Supervisor.start([service(log, restart_delay=10.0)])
    async with capture(("supervision", "child", "restart")) as cap:
        await crash(runtime)
        with pytest.raises(CallTimeout):
            await runtime.call("svc", ("whoami", None), timeout=3.0)
        assert runtime.clock.now() == 3.0
        await cap.wait(timeout=60)
    assert runtime.clock.now() == 10.0
    assert await runtime.call("svc", ("whoami", None)) == ("whoami", 2)
    assert log["handled"] == [("whoami", 2)]  # the timed-out request never ran


async def test_a_call_by_name_waits_through_a_failed_restart_for_the_retry(
    runtime: Runtime, clock: VirtualClock
) -> None:
    log = new_log()
    log["fail"].add(2)
    sup = await Supervisor.start([service(log)])
    await crash(runtime)
    # Incarnation 2 is registered (before its init) and fails at t=1; the request queued
    # in its mailbox was never taken, so it goes to incarnation 3, the retried restart.
    assert await runtime.call("svc", ("whoami", None), timeout=5.0) == ("whoami", 3)
    assert runtime.clock.now() == 1.0
    assert log["handled"] == [("whoami", 3)]
    assert (await Supervisor.statistics(sup)).restarts_total == 2
