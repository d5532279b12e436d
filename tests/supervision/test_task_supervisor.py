"""``TaskSupervisor``: one test per documented rule of ``start_child`` and
``async_nolink`` (Elixir's ``Task.Supervisor``); ``async_stream`` is in
test_task_stream.py.

Completion order is steered with ``Event``s (each task releases the one before it), and
time with the virtual clock, so every assertion on order or on a time is exact.
"""

from __future__ import annotations

import functools

import anyio
import pytest
from task_helpers import Boom, Spawner, collect, crash, double, forever

from foundation import (
    ActorDead,
    ActorRef,
    Event,
    Runtime,
    StartError,
    self_ref,
)
from foundation.telemetry import capture
from foundation.testing import VirtualClock
from supervision import (
    DynamicSupervisor,
    InvalidChildSpec,
    InvalidSupervisorFlags,
    MaxChildren,
    Task,
    TaskFailed,
    TaskSupervisor,
)

pytestmark = pytest.mark.anyio



# -- start_child ----------------------------------------------------------------------


async def test_start_child_runs_the_function_and_its_crash_does_not_reach_the_caller(
    runtime: Runtime,
) -> None:
    ts = await TaskSupervisor.start()
    spawner = await runtime.spawn(Spawner)
    go = Event()
    ran: list[ActorRef] = []

    async def job() -> None:
        ran.append(self_ref())
        await go.wait()
        raise Boom("after go")

    ref = await spawner.call(("start_child", ts, job))
    mon = runtime.monitor(ref)
    go.set()
    down = await mon.wait()
    assert ran == [ref]
    assert isinstance(down.reason, Boom)
    assert spawner.is_alive and ts.is_alive
    assert await spawner.call(("ping", None, None)) == "alive"


async def test_a_task_is_a_temporary_child_that_is_not_restarted_after_a_crash(
    runtime: Runtime,
) -> None:
    ts = await TaskSupervisor.start()
    runs: list[int] = []

    async def job() -> None:
        runs.append(1)
        raise Boom

    ref = await TaskSupervisor.start_child(ts, job)
    await runtime.monitor(ref).wait()
    assert runs == [1]
    assert await TaskSupervisor.children(ts) == []
    assert (await DynamicSupervisor.count_children(ts)).specs == 0


async def test_a_transient_task_runs_again_after_a_crash_and_not_after_a_return(
    runtime: Runtime,
) -> None:
    ts = await TaskSupervisor.start()
    runs: list[ActorRef] = []
    done = Event()

    async def flaky() -> str:
        runs.append(self_ref())
        if len(runs) == 1:
            raise Boom("first run")
        done.set()
        return "ok"

    async with capture(("supervision", "child")) as events:
        await TaskSupervisor.start_child(ts, flaky, restart="transient")
        await done.wait(timeout=1.0)
        await runtime.monitor(runs[1]).wait()
        assert await TaskSupervisor.children(ts) == []
    assert len(runs) == 2 and runs[0] != runs[1]
    assert [e.name[-1] for e in events.events] == ["start", "exit", "restart", "exit"]
    assert events.events[-1].metadata["reason"] == "normal"


async def test_task_start_and_exit_emit_the_dynamic_supervisor_telemetry(
    runtime: Runtime,
) -> None:
    ts = await TaskSupervisor.start(name="tasks")
    async with capture(("supervision", "child")) as events:
        task = await TaskSupervisor.async_nolink("tasks", double, 21)
        assert await task.result() == 42
        await events.wait("supervision.child.exit")
    start, exit_ = events.events
    assert start.name == ("supervision", "child", "start")
    assert start.metadata["pid"] == task.pid and start.metadata["supervisor_name"] == "tasks"
    assert start.metadata["id"] == "double"
    assert exit_.metadata["reason"] == "normal" and exit_.metadata["supervisor"] == ts.pid


async def test_a_sync_function_is_refused_with_a_hint_to_run_it_in_a_thread(
    runtime: Runtime,
) -> None:
    ts = await TaskSupervisor.start()

    def blocking(x: int) -> int:
        return x

    for start in (
        functools.partial(TaskSupervisor.start_child, ts, blocking, 1),
        functools.partial(TaskSupervisor.async_nolink, ts, blocking, 1),
    ):
        with pytest.raises(TypeError, match="to_thread"):
            await start()
    with pytest.raises(TypeError, match="to_thread"):
        TaskSupervisor.async_stream(ts, [1], blocking)
    assert await TaskSupervisor.children(ts) == []


async def test_async_callables_and_partials_are_accepted(runtime: Runtime) -> None:
    ts = await TaskSupervisor.start()

    class Adder:
        async def __call__(self, x: int) -> int:
            return x + 1

    assert await (await TaskSupervisor.async_nolink(ts, Adder(), 1)).result() == 2
    add = functools.partial(double, 5)
    assert await (await TaskSupervisor.async_nolink(ts, add)).result() == 10


async def test_bad_restart_shutdown_or_flags_are_refused_before_anything_starts(
    runtime: Runtime,
) -> None:
    ts = await TaskSupervisor.start()
    with pytest.raises(InvalidChildSpec, match="restart"):
        await TaskSupervisor.start_child(ts, double, 1, restart="sometimes")  # type: ignore[arg-type]
    with pytest.raises(InvalidChildSpec, match="shutdown"):
        await TaskSupervisor.async_nolink(ts, double, 1, shutdown=-1)
    with pytest.raises(InvalidSupervisorFlags, match="max_children"):
        await TaskSupervisor.start(max_children=-1)
    with pytest.raises(StartError):
        await runtime.spawn(TaskSupervisor, max_restarts=-1)
    assert await TaskSupervisor.children(ts) == []


# -- async_nolink ---------------------------------------------------------------------


async def test_async_nolink_result_returns_the_value(runtime: Runtime) -> None:
    ts = await TaskSupervisor.start()
    task = await TaskSupervisor.async_nolink(ts, double, 21)
    assert isinstance(task, Task) and task.ref.pid == task.pid
    assert await task.result() == 42
    assert task.done()
    assert await task == 42


async def test_async_nolink_does_not_link_the_task_to_its_caller(runtime: Runtime) -> None:
    ts = await TaskSupervisor.start()
    spawner = await runtime.spawn(Spawner)
    reply = await spawner.call(("async_nolink", ts, crash))
    assert reply[0] == "failed" and isinstance(reply[1], Boom)
    assert spawner.is_alive
    task = await TaskSupervisor.async_nolink(ts, forever)
    info = runtime.info(task.ref)
    assert info is not None and info["links"] == [ts.pid]
    task.cancel()


async def test_a_crashed_task_raises_task_failed_with_the_exception_as_cause(
    runtime: Runtime,
) -> None:
    ts = await TaskSupervisor.start()
    task = await TaskSupervisor.async_nolink(ts, crash)
    with pytest.raises(TaskFailed) as info:
        await task.result()
    assert isinstance(info.value.__cause__, Boom)
    assert info.value.reason is info.value.__cause__
    assert info.value.pid == task.pid
    assert ts.is_alive


async def test_a_slow_task_times_out_at_exactly_the_timeout_and_keeps_running(
    runtime: Runtime, clock: VirtualClock
) -> None:
    ts = await TaskSupervisor.start()

    async def slow() -> str:
        await runtime.sleep(10)  # allow-sleep: runtime clock (virtual)
        return "late"

    task = await TaskSupervisor.async_nolink(ts, slow)
    with pytest.raises(TimeoutError, match="keeps running"):
        await task.result(timeout=2)
    assert clock.now() == 2.0
    assert task.ref.is_alive and not task.done()
    with pytest.raises(TimeoutError):
        await task.result(timeout=3)
    assert clock.now() == 5.0
    assert await task.result(timeout=None) == "late"
    assert clock.now() == 10.0


async def test_awaiting_a_task_twice_gives_the_same_outcome(runtime: Runtime) -> None:
    ts = await TaskSupervisor.start()
    ok = await TaskSupervisor.async_nolink(ts, double, 4)
    failed = await TaskSupervisor.async_nolink(ts, crash)
    assert await ok.result() == await ok.result() == 8
    reasons = []
    for _ in range(2):
        with pytest.raises(TaskFailed) as info:
            await failed.result()
        reasons.append(info.value.reason)
    assert reasons[0] is reasons[1]


async def test_a_result_awaited_after_the_task_exited_is_still_its_own(
    runtime: Runtime,
) -> None:
    ts = await TaskSupervisor.start()
    task = await TaskSupervisor.async_nolink(ts, crash)
    await runtime.monitor(task.ref).wait()
    assert task.done()
    with pytest.raises(TaskFailed) as info:
        await task.result()
    assert isinstance(info.value.reason, Boom)


async def test_cancel_kills_the_task_and_its_result_reports_killed(runtime: Runtime) -> None:
    ts = await TaskSupervisor.start()
    task = await TaskSupervisor.async_nolink(ts, forever)
    task.cancel()
    with pytest.raises(TaskFailed) as info:
        await task.result()
    assert info.value.reason == "killed" and info.value.__cause__ is None
    assert await TaskSupervisor.children(ts) == []


async def test_shutdown_stops_the_task_and_its_result_reports_shutdown(
    runtime: Runtime,
) -> None:
    ts = await TaskSupervisor.start()
    task = await TaskSupervisor.async_nolink(ts, forever)
    await task.shutdown()
    assert task.done() and not task.ref.is_alive
    with pytest.raises(TaskFailed) as info:
        await task.result(timeout=0.001)
    assert info.value.reason == "shutdown"
    brutal = await TaskSupervisor.async_nolink(ts, forever)
    await brutal.shutdown("brutal_kill")
    with pytest.raises(TaskFailed, match="killed"):
        await brutal.result()


async def test_shutdown_of_a_finished_task_keeps_its_value(runtime: Runtime) -> None:
    ts = await TaskSupervisor.start()
    task = await TaskSupervisor.async_nolink(ts, double, 3)
    await runtime.monitor(task.ref).wait()
    await task.shutdown()
    assert await task.result() == 6


# -- max_children and shutdown ----------------------------------------------------------


async def test_max_children_is_respected_by_start_child_and_async_nolink(
    runtime: Runtime,
) -> None:
    ts = await TaskSupervisor.start(max_children=2)
    first = await TaskSupervisor.start_child(ts, forever)
    await TaskSupervisor.async_nolink(ts, forever)
    with pytest.raises(MaxChildren):
        await TaskSupervisor.start_child(ts, forever)
    with pytest.raises(MaxChildren):
        await TaskSupervisor.async_nolink(ts, double, 1)
    await DynamicSupervisor.terminate_child(ts, first)
    assert await (await TaskSupervisor.async_nolink(ts, double, 1)).result() == 2


async def test_stopping_the_task_supervisor_stops_its_running_tasks(runtime: Runtime) -> None:
    ts = await TaskSupervisor.start()
    fire_and_forget = await TaskSupervisor.start_child(ts, forever)
    task = await TaskSupervisor.async_nolink(ts, forever)
    mon = runtime.monitor(fire_and_forget)
    await ts.stop("shutdown")
    assert (await mon.wait()).reason == "shutdown"
    with pytest.raises(TaskFailed) as info:
        await task.result()
    assert info.value.reason == "shutdown"


async def test_stream_items_running_when_the_supervisor_stops_yield_its_shutdown(
    runtime: Runtime,
) -> None:
    ts = await TaskSupervisor.start()

    async def job(i: int) -> int:
        if i:
            await Event().wait()
        return i

    results = []
    async for r in TaskSupervisor.async_stream(ts, range(3), job, max_concurrency=3):
        results.append((r.index, r.ok, r.reason))
        if r.index == 0:
            await ts.stop("shutdown")
    assert results == [(0, True, None), (1, False, "shutdown"), (2, False, "shutdown")]


async def test_a_stream_whose_supervisor_is_gone_raises_actor_dead(runtime: Runtime) -> None:
    ts = await TaskSupervisor.start(name="gone")
    await ts.stop()
    with pytest.raises(ActorDead):
        await collect(TaskSupervisor.async_stream("gone", range(3), double))
    killed = await TaskSupervisor.start()

    async def job(i: int) -> int:
        if i:
            killed.kill()
            await Event().wait()
        return i

    with pytest.raises(ActorDead):
        await collect(TaskSupervisor.async_stream(killed, range(3), job, max_concurrency=3))


async def test_a_stream_has_one_consumer_and_aclose_ends_a_parked_one(runtime: Runtime) -> None:
    ts = await TaskSupervisor.start()
    stream = TaskSupervisor.async_stream(ts, range(2), forever)
    outcome: list[str] = []

    async def consume() -> None:
        try:
            await stream.__anext__()
        except StopAsyncIteration:
            outcome.append("ended")

    async with anyio.create_task_group() as tg:
        tg.start_soon(consume)
        await runtime.wait_idle()
        with pytest.raises(RuntimeError, match="one consumer"):
            await stream.__anext__()
        running = await TaskSupervisor.children(ts)
        await stream.aclose()
    assert outcome == ["ended"]
    assert len(running) == 2 and not any(ref.is_alive for ref in running)
