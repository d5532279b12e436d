"""``TaskSupervisor.async_stream``: one test per documented rule (ordering, concurrency,
laziness, per-item timeouts and errors, early close), as Elixir's ``Task.Supervisor``.

Completion order is steered with ``Event``s (each task releases the one before it), and
time with the virtual clock, so every assertion on order or on a time is exact.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from task_helpers import Boom, collect, double, forever

from foundation import (
    ActorRef,
    Event,
    Runtime,
    self_ref,
)
from foundation.telemetry import capture
from foundation.testing import VirtualClock
from supervision import (
    DynamicSupervisor,
    InvalidChildSpec,
    MaxChildren,
    StreamResult,
    TaskSupervisor,
)

pytestmark = pytest.mark.anyio



# -- async_stream ---------------------------------------------------------------------


def chained(gates: list[Event], finished: list[int]) -> Any:
    """A job that waits for its gate, then opens the previous item's: with the last gate
    open, the items finish in reverse order."""

    async def job(i: int) -> int:
        await gates[i].wait()
        finished.append(i)
        if i:
            gates[i - 1].set()
        return i * 10

    return job


async def test_an_ordered_stream_yields_in_input_order_when_tasks_finish_in_reverse(
    runtime: Runtime,
) -> None:
    ts = await TaskSupervisor.start()
    gates = [Event() for _ in range(4)]
    finished: list[int] = []
    gates[3].set()
    stream = TaskSupervisor.async_stream(ts, range(4), chained(gates, finished), max_concurrency=4)
    results = await collect(stream)
    assert finished == [3, 2, 1, 0]
    assert results == [StreamResult(i, i, True, i * 10) for i in range(4)]


async def test_an_unordered_stream_yields_in_completion_order(runtime: Runtime) -> None:
    ts = await TaskSupervisor.start()
    gates = [Event() for _ in range(4)]
    finished: list[int] = []
    gates[3].set()
    stream = TaskSupervisor.async_stream(
        ts, range(4), chained(gates, finished), max_concurrency=4, ordered=False
    )
    results = await collect(stream)
    assert finished == [3, 2, 1, 0]
    assert [(r.index, r.value) for r in results] == [(3, 30), (2, 20), (1, 10), (0, 0)]


async def test_a_stream_runs_at_most_max_concurrency_tasks_and_takes_items_lazily(
    runtime: Runtime, clock: VirtualClock
) -> None:
    ts = await TaskSupervisor.start()
    running = peak = done = most_taken_ahead = 0

    def items() -> Iterator[int]:
        nonlocal most_taken_ahead
        for i in range(10):
            # Taken but not finished, counting this one: never more than can run.
            most_taken_ahead = max(most_taken_ahead, i + 1 - done)
            yield i

    async def job(i: int) -> int:
        nonlocal running, peak, done
        running += 1
        peak = max(peak, running)
        await runtime.sleep(1)  # allow-sleep: runtime clock (virtual)
        running -= 1
        done += 1
        return i

    results = await collect(TaskSupervisor.async_stream(ts, items(), job, max_concurrency=3))
    assert [r.value for r in results] == list(range(10))
    assert peak == 3
    assert most_taken_ahead == 3
    assert clock.now() == 4.0  # ceil(10 / 3) rounds of one second


async def test_nothing_runs_before_the_stream_is_iterated(runtime: Runtime) -> None:
    ts = await TaskSupervisor.start()
    taken: list[int] = []

    def items() -> Iterator[int]:
        for i in range(3):
            taken.append(i)
            yield i

    stream = TaskSupervisor.async_stream(ts, items(), double)
    await runtime.wait_idle()
    assert taken == [] and await TaskSupervisor.children(ts) == []
    assert [r.value for r in await collect(stream)] == [0, 2, 4]


async def test_a_stream_takes_items_from_an_async_iterable(runtime: Runtime) -> None:
    ts = await TaskSupervisor.start()

    async def items() -> AsyncIterator[int]:
        for i in range(5):
            yield i

    results = await collect(TaskSupervisor.async_stream(ts, items(), double, max_concurrency=2))
    assert [(r.index, r.item, r.value) for r in results] == [(i, i, 2 * i) for i in range(5)]


async def test_an_empty_stream_ends_at_once(runtime: Runtime) -> None:
    ts = await TaskSupervisor.start()
    assert await collect(TaskSupervisor.async_stream(ts, [], double)) == []


async def test_the_default_max_concurrency_is_the_cpu_count(runtime: Runtime) -> None:
    ts = await TaskSupervisor.start()
    stream = TaskSupervisor.async_stream(ts, [1], double)
    assert stream.max_concurrency == (os.cpu_count() or 1)
    assert stream.ordered is True and stream.timeout == 5.0
    await stream.aclose()


async def test_a_crashing_item_yields_its_exception_and_the_others_their_values(
    runtime: Runtime,
) -> None:
    ts = await TaskSupervisor.start()

    async def job(i: int) -> int:
        if i == 1:
            raise Boom(i)
        return i

    results = await collect(TaskSupervisor.async_stream(ts, range(3), job))
    assert [(r.index, r.ok, r.value) for r in results] == [
        (0, True, 0),
        (1, False, None),
        (2, True, 2),
    ]
    assert isinstance(results[1].reason, Boom) and results[1].item == 1
    assert ts.is_alive


async def test_an_item_over_its_timeout_yields_timeout_at_exactly_the_timeout_and_is_killed(
    runtime: Runtime, clock: VirtualClock
) -> None:
    ts = await TaskSupervisor.start()
    refs: dict[int, ActorRef] = {}

    async def job(seconds: int) -> int:
        refs[seconds] = self_ref()
        await runtime.sleep(seconds)  # allow-sleep: runtime clock (virtual)
        return seconds

    seen = []
    stream = TaskSupervisor.async_stream(
        ts, [1, 10, 2], job, timeout=5, ordered=False, max_concurrency=3
    )
    async with capture(("supervision", "child", "exit")) as exits:
        async for r in stream:
            if r.index == 0:
                slow = runtime.monitor(refs[10])
            seen.append((clock.now(), r.index, r.ok, r.value, r.reason))
    assert seen == [
        (1.0, 0, True, 1, None),
        (2.0, 2, True, 2, None),
        (5.0, 1, False, None, "timeout"),
    ]
    assert (await slow.wait()).reason == "killed"
    assert exits.named("supervision.child.exit")[-1].metadata["pid"] == refs[10].pid
    await runtime.wait_idle()
    assert clock.now() == 5.0  # the killed task never reached its 10 s


async def test_a_timeout_counts_from_the_start_of_the_items_own_task(
    runtime: Runtime, clock: VirtualClock
) -> None:
    ts = await TaskSupervisor.start()

    async def job(seconds: int) -> int:
        await runtime.sleep(seconds)  # allow-sleep: runtime clock (virtual)
        return seconds

    # One at a time: the second item starts at t=4 and may run until t=4+5.
    seen = []
    stream = TaskSupervisor.async_stream(ts, [4, 4, 6], job, timeout=5, max_concurrency=1)
    async for r in stream:
        seen.append((clock.now(), r.ok, r.reason))
    assert seen == [(4.0, True, None), (8.0, True, None), (13.0, False, "timeout")]


async def test_on_timeout_exit_raises_timeout_error_and_kills_the_other_tasks(
    runtime: Runtime, clock: VirtualClock
) -> None:
    ts = await TaskSupervisor.start()

    async def job(seconds: int) -> int:
        await runtime.sleep(seconds)  # allow-sleep: runtime clock (virtual)
        return seconds

    seen = []
    with pytest.raises(TimeoutError, match="item 1"):
        async for r in TaskSupervisor.async_stream(
            ts, [1, 9, 20], job, timeout=5, on_timeout="exit", max_concurrency=3
        ):
            seen.append(r.value)
    assert seen == [1]
    assert clock.now() == 5.0
    refs = await TaskSupervisor.children(ts)
    for ref in refs:
        await runtime.monitor(ref).wait()
    assert await TaskSupervisor.children(ts) == []


async def test_breaking_out_of_a_stream_kills_its_remaining_tasks(runtime: Runtime) -> None:
    ts = await TaskSupervisor.start()
    taken: list[int] = []

    def items() -> Iterator[int]:
        for i in range(10):
            taken.append(i)
            yield i

    async def job(i: int) -> int:
        if i:
            await Event().wait()
        return i

    # The iterator is not kept in a variable: breaking out drops it at once.
    async for r in TaskSupervisor.async_stream(ts, items(), job, max_concurrency=3):
        assert r.value == 0
        running = await TaskSupervisor.children(ts)
        monitors = [runtime.monitor(ref) for ref in running]
        break
    assert len(running) == 3
    assert [(await m.wait()).reason for m in monitors] == ["killed"] * 3
    assert taken == [0, 1, 2, 3]
    assert await TaskSupervisor.children(ts) == []


async def test_leaving_async_with_kills_the_remaining_tasks_and_waits_for_them(
    runtime: Runtime,
) -> None:
    ts = await TaskSupervisor.start()

    async def job(i: int) -> int:
        if i:
            await Event().wait()
        return i

    async with TaskSupervisor.async_stream(ts, range(5), job, max_concurrency=2) as stream:
        async for r in stream:
            first = r
            running = await TaskSupervisor.children(ts)
            break
    assert first.value == 0 and len(running) == 2
    assert not any(ref.is_alive for ref in running)
    assert await TaskSupervisor.children(ts) == []
    with pytest.raises(StopAsyncIteration):
        await stream.__anext__()


async def test_a_stream_wider_than_max_children_raises_max_children_and_kills_its_tasks(
    runtime: Runtime,
) -> None:
    ts = await TaskSupervisor.start(max_children=2)
    with pytest.raises(MaxChildren):
        await collect(TaskSupervisor.async_stream(ts, range(5), forever, max_concurrency=3))
    for ref in await TaskSupervisor.children(ts):
        await runtime.monitor(ref).wait()
    assert await TaskSupervisor.children(ts) == []


async def test_a_failing_source_ends_the_stream_with_its_error_and_kills_the_tasks(
    runtime: Runtime,
) -> None:
    ts = await TaskSupervisor.start()

    def items() -> Iterator[int]:
        yield 1
        raise Boom("source")

    with pytest.raises(Boom, match="source"):
        await collect(TaskSupervisor.async_stream(ts, items(), forever))
    for ref in await TaskSupervisor.children(ts):
        await runtime.monitor(ref).wait()
    assert await TaskSupervisor.children(ts) == []


async def test_terminate_child_of_a_stream_task_yields_its_shutdown(runtime: Runtime) -> None:
    ts = await TaskSupervisor.start()

    async def job(i: int) -> int:
        if i:
            await Event().wait()
        return i

    results = []
    async for r in TaskSupervisor.async_stream(ts, range(2), job, max_concurrency=2):
        results.append((r.index, r.ok, r.reason))
        if r.index == 0:
            (other,) = await TaskSupervisor.children(ts)
            await DynamicSupervisor.terminate_child(ts, other)
    assert results == [(0, True, None), (1, False, "shutdown")]


async def test_async_stream_validates_its_options(runtime: Runtime) -> None:
    ts = await TaskSupervisor.start()
    bad: list[dict[str, Any]] = [
        {"max_concurrency": 0},
        {"max_concurrency": True},
        {"timeout": 0},
        {"timeout": float("inf")},
        {"on_timeout": "ignore"},
    ]
    for options in bad:
        with pytest.raises(ValueError):
            TaskSupervisor.async_stream(ts, [1], double, **options)
    with pytest.raises(InvalidChildSpec):
        TaskSupervisor.async_stream(ts, [1], double, shutdown="never")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        TaskSupervisor.async_stream(ts, [1], double, ordered=None)  # type: ignore[arg-type]
    no_timeout = TaskSupervisor.async_stream(ts, [1], double, timeout="infinity")
    assert no_timeout.timeout is None
    assert [r.value for r in await collect(no_timeout)] == [2]
