"""Timers and the runtime clock: every deadline is exact under a ``VirtualClock``."""

from __future__ import annotations

import random
from typing import Any

import pytest

from foundation import (
    Actor,
    ActorRef,
    Caller,
    CallTimeout,
    NoReply,
    Runtime,
    TimerRef,
)
from foundation.testing import VirtualClock

pytestmark = pytest.mark.anyio


class Clocked(Actor):
    """Records ``(message, runtime time)`` for every info and cast it handles."""

    async def init(self, log: list[tuple[Any, float]]) -> None:
        self.log = log
        self.timers: list[TimerRef] = []

    async def handle_call(self, request: Any, caller: Caller) -> Any:
        op, arg = request
        if op == "send_after":
            delay, msg = arg
            self.timers.append(self.send_after(delay, msg))
            return None
        if op == "cast_after":
            delay, msg = arg
            self.timers.append(self.cast_after(delay, msg))
            return None
        if op == "cancel":
            return self.timers[arg].cancel()
        if op == "never":
            return NoReply
        raise AssertionError(f"unknown request {request!r}")

    async def handle_cast(self, msg: Any) -> None:
        self.log.append((("cast", msg), self.runtime.clock.now()))

    async def handle_info(self, msg: Any) -> None:
        self.log.append((msg, self.runtime.clock.now()))
        if msg == "tick" and sum(1 for m, _ in self.log if m == "tick") < 3:
            self.send_after(1.5, "tick")


async def spawn_clocked(runtime: Runtime) -> tuple[ActorRef, list[tuple[Any, float]]]:
    log: list[tuple[Any, float]] = []
    ref: ActorRef = await runtime.spawn(Clocked, log)
    return ref, log


async def test_send_after_delivers_at_exactly_the_virtual_deadline(
    runtime: Runtime, clock: VirtualClock
) -> None:
    ref, log = await spawn_clocked(runtime)
    timer = runtime.send_after(2.5, ref, "hello")
    assert timer.pending and timer.remaining() == 2.5
    await runtime.sleep(10)  # allow-sleep: runtime clock (virtual)
    assert log == [("hello", 2.5)]
    assert not timer.pending and timer.remaining() == 0.0
    assert clock.now() == 10.0


async def test_cancelling_a_timer_before_it_fires_prevents_delivery_and_returns_true(
    runtime: Runtime, clock: VirtualClock
) -> None:
    ref, log = await spawn_clocked(runtime)
    timer = runtime.send_after(3, ref, "never")
    await runtime.sleep(1)  # allow-sleep: runtime clock (virtual)
    assert timer.cancel() is True
    assert not timer.pending
    assert timer.cancel() is False  # a second cancel finds nothing to cancel
    await runtime.sleep(10)  # allow-sleep: runtime clock (virtual)
    assert log == []
    assert runtime.statistics().timers_pending == 0


async def test_cancelling_a_timer_after_it_fired_returns_false(
    runtime: Runtime, clock: VirtualClock
) -> None:
    ref, log = await spawn_clocked(runtime)
    timer = runtime.send_after(1, ref, "fired")
    await runtime.sleep(2)  # allow-sleep: runtime clock (virtual)
    assert log == [("fired", 1.0)]
    assert timer.cancel() is False


async def test_an_actor_schedules_messages_to_itself_with_send_after_and_cast_after(
    runtime: Runtime, clock: VirtualClock
) -> None:
    ref, log = await spawn_clocked(runtime)
    await ref.call(("send_after", (1.0, "tick")))  # re-arms itself twice, 1.5 s apart
    await ref.call(("cast_after", (2.0, "poke")))
    await ref.call(("send_after", (7.0, "cancelled")))
    assert await ref.call(("cancel", 2)) is True
    await runtime.sleep(10)  # allow-sleep: runtime clock (virtual)
    assert log == [("tick", 1.0), (("cast", "poke"), 2.0), ("tick", 2.5), ("tick", 4.0)]


async def test_a_virtual_clock_without_autojump_moves_only_when_advanced() -> None:
    clock = VirtualClock(autojump=False)
    async with Runtime(clock=clock) as rt:
        log: list[tuple[Any, float]] = []
        ref = await rt.spawn(Clocked, log)
        rt.send_after(5, ref, "due")
        await rt.wait_idle()
        assert clock.now() == 0.0 and log == []
        clock.advance(2.5)
        await rt.wait_idle()
        assert clock.now() == 2.5 and log == []
        clock.advance(2.5)
        await rt.wait_idle()
        assert log == [("due", 5.0)]
        clock.advance(100)
        await rt.wait_idle()
        assert log == [("due", 5.0)]
        assert clock.now() == 105.0


async def test_runtime_sleep_returns_at_exactly_the_virtual_deadline(
    runtime: Runtime, clock: VirtualClock
) -> None:
    await runtime.sleep(5)  # allow-sleep: runtime clock (virtual)
    assert clock.now() == 5.0
    await runtime.sleep(0.25)  # allow-sleep: runtime clock (virtual)
    assert clock.now() == 5.25


async def test_a_five_second_call_timeout_fires_at_exactly_five_seconds(
    runtime: Runtime, clock: VirtualClock
) -> None:
    ref, _ = await spawn_clocked(runtime)
    with pytest.raises(CallTimeout) as info:
        await ref.call(("never", None), timeout=5)
    assert clock.now() == 5.0
    assert info.value.timeout == 5 and info.value.pid == ref.pid


async def test_many_timers_fire_in_deadline_order_and_ties_in_creation_order(
    runtime: Runtime, clock: VirtualClock
) -> None:
    ref, log = await spawn_clocked(runtime)
    rng = random.Random(7)
    delays = [rng.choice([0.5, 1.0, 1.25, 2.0, 3.5, 8.0]) for _ in range(60)]
    for i, delay in enumerate(delays):
        runtime.send_after(delay, ref, ("timer", i))
    await runtime.sleep(10)  # allow-sleep: runtime clock (virtual)
    expected = sorted(((("timer", i), d) for i, d in enumerate(delays)), key=lambda e: e[1])
    assert log == expected  # sorted() is stable: ties stay in creation order


async def test_the_virtual_clock_refuses_to_go_backwards(
    runtime: Runtime, clock: VirtualClock
) -> None:
    with pytest.raises(ValueError, match="backwards"):
        clock.advance(-1)
    with pytest.raises(ValueError):
        await runtime.sleep(-1)
    assert clock.now() == 0.0


async def test_a_virtual_clock_can_start_at_any_reading() -> None:
    clock = VirtualClock(start=1000.0)
    async with Runtime(clock=clock) as rt:
        log: list[tuple[Any, float]] = []
        ref = await rt.spawn(Clocked, log)
        rt.send_after(1, ref, "later")
        await rt.sleep(2)
        assert log == [("later", 1001.0)]
        assert clock.now() == 1002.0
