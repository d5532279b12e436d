"""``Event``, ``CountDownLatch``, ``Barrier`` and ``wait_for``: woken by events, timed by
the runtime clock (exact virtual times), observable through ``statistics()``."""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import anyio
import pytest

from foundation import (
    Actor,
    Barrier,
    BrokenBarrier,
    CountDownLatch,
    Event,
    Runtime,
    current_time,
    wait_for,
)
from foundation.testing import VirtualClock

pytestmark = pytest.mark.anyio


class Idle(Actor):
    pass


def assert_frozen(stats: Any) -> None:
    assert dataclasses.is_dataclass(stats)
    field = dataclasses.fields(stats)[0].name
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(stats, field, None)


# -- Event -----------------------------------------------------------------------------


async def test_setting_an_event_wakes_every_waiter(runtime: Runtime, clock: VirtualClock) -> None:
    event = Event()
    woken: list[int] = []

    async def waiter(i: int) -> None:
        await event.wait()
        woken.append(i)

    async with anyio.create_task_group() as tg:
        tg.start_soon(waiter, 1)
        tg.start_soon(waiter, 2)
        await runtime.wait_idle()
        stats = event.statistics()
        assert (stats.is_set, stats.waiting) == (False, 2)
        assert_frozen(stats)
        event.set()
    assert sorted(woken) == [1, 2]
    assert event.is_set()
    assert (event.statistics().is_set, event.statistics().waiting) == (True, 0)
    assert current_time() == 0


async def test_waiting_on_a_set_event_returns_at_once_and_set_is_idempotent(
    runtime: Runtime, clock: VirtualClock
) -> None:
    event = Event()
    event.set()
    event.set()
    await event.wait()
    await event.wait(timeout=1)
    assert current_time() == 0


async def test_an_event_wait_times_out_at_exactly_the_timeout(
    runtime: Runtime, clock: VirtualClock
) -> None:
    event = Event()
    with pytest.raises(TimeoutError, match=r"Event\.wait"):
        await event.wait(timeout=2.5)
    assert current_time() == 2.5
    assert event.statistics().waiting == 0
    event.set()  # a timed-out waiter is not woken again
    await event.wait(timeout=1)
    assert current_time() == 2.5


@pytest.mark.parametrize("timeout", [0, -1, math.nan])
async def test_sync_waits_refuse_meaningless_timeouts(runtime: Runtime, timeout: float) -> None:
    with pytest.raises(ValueError, match="timeout"):
        await Event().wait(timeout=timeout)
    with pytest.raises(ValueError, match="timeout"):
        await CountDownLatch(1).wait(timeout=timeout)
    barrier = Barrier(2)
    with pytest.raises(ValueError, match="timeout"):
        await barrier.wait(timeout=timeout)
    # The refused call did not count as a party.
    assert barrier.statistics().waiting == 0
    assert not barrier.broken
    with pytest.raises(ValueError, match="timeout"):
        await wait_for(lambda: False, timeout=timeout)


# -- CountDownLatch --------------------------------------------------------------------


async def test_a_latch_opens_when_the_count_reaches_zero(
    runtime: Runtime, clock: VirtualClock
) -> None:
    latch = CountDownLatch(3)
    opened_at: list[float] = []

    async def waiter() -> None:
        await latch.wait()
        opened_at.append(current_time())

    async with anyio.create_task_group() as tg:
        tg.start_soon(waiter)
        tg.start_soon(waiter)
        await runtime.wait_idle()
        stats = latch.statistics()
        assert (stats.count, stats.waiting) == (3, 2)
        assert_frozen(stats)
        latch.count_down()
        await runtime.sleep(1)  # allow-sleep: runtime clock (virtual)
        latch.count_down()
        await runtime.wait_idle()
        assert opened_at == [] and latch.count == 1
        await runtime.sleep(1)  # allow-sleep: runtime clock (virtual)
        latch.count_down()
    assert opened_at == [2, 2]
    assert (latch.statistics().count, latch.statistics().waiting) == (0, 0)


async def test_a_latch_never_counts_below_zero_and_a_zero_latch_is_open(
    runtime: Runtime, clock: VirtualClock
) -> None:
    latch = CountDownLatch(2)
    latch.count_down(5)
    assert latch.count == 0
    await latch.wait()
    await CountDownLatch(0).wait(timeout=1)
    assert current_time() == 0


async def test_a_latch_wait_times_out_on_the_runtime_clock(
    runtime: Runtime, clock: VirtualClock
) -> None:
    latch = CountDownLatch(1)
    with pytest.raises(TimeoutError):
        await latch.wait(timeout=3)
    assert current_time() == 3


def test_a_latch_refuses_bad_counts() -> None:
    for bad in (-1, 1.5, True, "3"):
        with pytest.raises(ValueError, match="count must be an int >= 0"):
            CountDownLatch(bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="n must be >= 1"):
        CountDownLatch(1).count_down(0)


# -- Barrier ---------------------------------------------------------------------------


async def test_a_barrier_trips_for_its_parties_with_distinct_arrival_indices(
    runtime: Runtime, clock: VirtualClock
) -> None:
    barrier = Barrier(3)
    indices: list[int] = []

    async def party() -> None:
        indices.append(await barrier.wait())

    async with anyio.create_task_group() as tg:
        tg.start_soon(party)
        tg.start_soon(party)
        await runtime.wait_idle()
        stats = barrier.statistics()
        assert (stats.parties, stats.waiting, stats.generation, stats.broken) == (3, 2, 0, False)
        assert_frozen(stats)
        assert indices == []
        tg.start_soon(party)
    assert sorted(indices) == [0, 1, 2]
    stats = barrier.statistics()
    assert (stats.waiting, stats.generation, stats.broken) == (0, 1, False)
    assert current_time() == 0

    # The barrier is reusable: the next generation numbers arrivals from 0 again.
    indices.clear()
    async with anyio.create_task_group() as tg:
        for _ in range(3):
            tg.start_soon(party)
    assert sorted(indices) == [0, 1, 2]
    assert barrier.statistics().generation == 2


async def test_a_single_party_barrier_trips_at_once(runtime: Runtime) -> None:
    barrier = Barrier(1)
    assert await barrier.wait() == 0
    assert await barrier.wait() == 0
    assert barrier.statistics().generation == 2


async def test_a_timed_out_waiter_breaks_the_barrier_for_everyone(
    runtime: Runtime, clock: VirtualClock
) -> None:
    barrier = Barrier(3)
    outcomes: dict[str, Any] = {}

    async def patient() -> None:
        try:
            await barrier.wait()
        except BrokenBarrier as exc:
            outcomes["patient"] = (type(exc), current_time())

    async def impatient() -> None:
        try:
            await barrier.wait(timeout=4)
        except TimeoutError as exc:
            outcomes["impatient"] = (type(exc), current_time())

    async with anyio.create_task_group() as tg:
        tg.start_soon(patient)
        tg.start_soon(impatient)
    assert outcomes == {"patient": (BrokenBarrier, 4), "impatient": (TimeoutError, 4)}
    assert barrier.broken
    stats = barrier.statistics()
    assert (stats.waiting, stats.generation, stats.broken) == (0, 0, True)
    # Later arrivals are refused until reset().
    with pytest.raises(BrokenBarrier, match="reset"):
        await barrier.wait()
    barrier.reset()
    assert not barrier.broken
    async with anyio.create_task_group() as tg:
        for _ in range(3):
            tg.start_soon(barrier.wait)
    assert barrier.statistics() == type(stats)(3, 0, 1, False)


async def test_reset_breaks_the_current_waiters_and_leaves_the_barrier_usable(
    runtime: Runtime, clock: VirtualClock
) -> None:
    barrier = Barrier(2)
    errors: list[type[BaseException]] = []

    async def party() -> None:
        try:
            await barrier.wait()
        except BrokenBarrier as exc:
            errors.append(type(exc))

    async with anyio.create_task_group() as tg:
        tg.start_soon(party)
        await runtime.wait_idle()
        barrier.reset()
    assert errors == [BrokenBarrier]
    assert not barrier.broken
    async with anyio.create_task_group() as tg:
        tg.start_soon(party)
        tg.start_soon(party)
    assert errors == [BrokenBarrier]


async def test_a_cancelled_waiter_breaks_the_barrier(
    runtime: Runtime, clock: VirtualClock
) -> None:
    barrier = Barrier(2)
    async with anyio.create_task_group() as tg:
        tg.start_soon(barrier.wait)
        await runtime.wait_idle()
        tg.cancel_scope.cancel()
    assert barrier.broken
    barrier.abort()
    assert barrier.broken


def test_a_barrier_refuses_bad_party_counts() -> None:
    for bad in (0, -2, 2.0, False):
        with pytest.raises(ValueError, match="parties must be an int >= 1"):
            Barrier(bad)  # type: ignore[arg-type]


# -- wait_for --------------------------------------------------------------------------


async def test_wait_for_wakes_on_telemetry_as_actors_spawn(
    runtime: Runtime, clock: VirtualClock
) -> None:
    checks = 0

    def three_actors() -> int | None:
        nonlocal checks
        checks += 1
        n = len(runtime.actors())
        return n if n >= 3 else None

    async def spawner() -> None:
        for _ in range(5):
            await runtime.sleep(1)  # allow-sleep: runtime clock (virtual)
            await runtime.spawn(Idle)

    async with anyio.create_task_group() as tg:
        tg.start_soon(spawner)
        assert await wait_for(three_actors, on="foundation.actor.spawn") == 3
        # It was woken by the third spawn, at t=3, after one check per spawn event.
        assert current_time() == 3
        assert checks == 4
    assert len(runtime.actors()) == 5


async def test_wait_for_returns_at_once_when_the_condition_already_holds(
    runtime: Runtime, clock: VirtualClock
) -> None:
    assert await wait_for(lambda: "yes", timeout=1) == "yes"
    assert current_time() == 0


async def test_wait_for_times_out_at_exactly_the_timeout(
    runtime: Runtime, clock: VirtualClock
) -> None:
    with pytest.raises(TimeoutError, match="condition"):
        await wait_for(lambda: False, on=("foundation", "actor"), timeout=7)
    assert current_time() == 7
    # Its telemetry handler is detached afterwards.
    assert not runtime.telemetry.active


async def test_wait_for_ignores_events_outside_its_prefix(
    runtime: Runtime, clock: VirtualClock
) -> None:
    seen: list[int] = []

    def two_actors() -> bool:
        seen.append(len(runtime.actors()))
        return len(runtime.actors()) >= 2

    async def spawner() -> None:
        await runtime.spawn(Idle)
        await runtime.spawn(Idle)

    async with anyio.create_task_group() as tg:
        tg.start_soon(spawner)
        with pytest.raises(TimeoutError):
            await wait_for(two_actors, on="foundation.registry", timeout=1)
    assert seen == [0]


async def test_a_condition_that_raises_fails_wait_for_at_once(
    runtime: Runtime, clock: VirtualClock
) -> None:
    calls = 0

    def broken() -> bool:
        nonlocal calls
        calls += 1
        if calls > 1:
            raise KeyError("gone")
        return False

    async def spawner() -> None:
        await runtime.sleep(1)  # allow-sleep: runtime clock (virtual)
        await runtime.spawn(Idle)

    async with anyio.create_task_group() as tg:
        tg.start_soon(spawner)
        with pytest.raises(KeyError, match="gone"):
            try:
                await wait_for(broken, on="foundation.actor.spawn", timeout=10)
            finally:
                failed_at = current_time()
    assert failed_at == 1
    assert not runtime.telemetry.active
