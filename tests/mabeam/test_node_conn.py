"""The node's connection over time: back-off, re-HELLO, hello_first, BYE, self-fencing
and draining, against a fake coordinator that can go silent.

Heartbeats are short here (50 ms) so liveness plays out in a fraction of a second; a
silent coordinator is one that stops answering (``answer_heartbeats = False``). Every
wait is on a frame, a telemetry event of the node, or a process.
"""

from __future__ import annotations

import itertools
import os
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from pathlib import Path
from typing import Any

import anyio
import psutil  # type: ignore[import-untyped]
import pytest
from node_helpers import WAIT_S, FakeCoordinator, dispatch, node_config, settled

from foundation import Runtime
from foundation.testing import until
from mabeam.cluster.node import NodeHandle, start_node
from mabeam.cluster.protocol import (
    Accept,
    Ack,
    Bye,
    Error,
    Heartbeat,
    Hello,
    Progress,
    Ready,
    Result,
    RunningJob,
)

pytestmark = pytest.mark.anyio

FAST = {"heartbeat_s": 0.05, "liveness": 3}  # the coordinator is lost after 0.15 s


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@asynccontextmanager
async def running(
    fake: FakeCoordinator, tmp_path: Path, **overrides: Any
) -> AsyncIterator[NodeHandle]:
    config = node_config(fake.endpoint, tmp_path / "work", **overrides)
    async with Runtime(), start_node(config) as handle:
        yield handle
        fake.ack_results()



async def process_ends(pid: int) -> None:
    def wait() -> None:
        with suppress(psutil.NoSuchProcess):
            psutil.Process(pid).wait(timeout=WAIT_S)

    await anyio.to_thread.run_sync(wait)


# -- reconnecting ----------------------------------------------------------------------


async def test_a_silent_coordinator_gets_new_hellos_after_a_growing_back_off(
    fake: FakeCoordinator, tmp_path: Path
) -> None:
    fake.answer_heartbeats = False
    async with running(fake, tmp_path, reconnect_min_s=0.2, **FAST) as handle:
        arrivals = []
        for _ in range(4):
            await fake.expect(Hello, skip=(Ready,))
            arrivals.append(time.monotonic())
        gaps = [b - a for a, b in itertools.pairwise(arrivals)]
        # silence detected after 0.15 s, then 0.2 s doubling, each within -20 %; a HELLO
        # read late by this test (a loaded machine) shortens the gap after it, so each
        # bound leaves 50 ms for that
        assert gaps[0] >= 0.15 + 0.16 - 0.05
        assert gaps[1] >= 0.15 + 0.32 - 0.05
        assert gaps[2] >= 0.15 + 0.64 - 0.05 and gaps[2] > gaps[0]
        assert handle.statistics().reconnects >= 3
        assert not handle.connected.is_set()
        fake.answer_heartbeats = True
        fake.send("n1", Heartbeat())  # the coordinator is back: the node connects
        with anyio.fail_after(WAIT_S):
            await handle.connected.wait()


async def test_after_a_silence_the_node_reconnects_and_lists_its_running_task(
    fake: FakeCoordinator, tmp_path: Path
) -> None:
    async with running(fake, tmp_path, lease_s=30.0, **FAST) as handle:
        seen: list[bool] = []
        handle.app.on_connected(seen.append)
        await fake.handshake()
        fake.send("n1", dispatch("j1", "block"))
        await fake.expect(Progress, skip=(Accept,))
        fake.answer_heartbeats = False
        hello = await fake.expect(Hello)  # a new socket, a new HELLO
        assert hello.running == (RunningJob("j1", 1, "L-j1"),)
        fake.answer_heartbeats = True
        fake.send("n1", Heartbeat())
        assert (await fake.expect(Ready)).credit == 1  # one of the two slots is taken
        await settled(handle, lambda s: s.connected)
        assert seen == [False, True]  # "connected", then "reconnected"
        assert handle.statistics().reconnects == 1
        assert handle.statistics().running == 1


async def test_hello_first_gets_a_new_hello_and_the_outbox_again_at_once(
    fake: FakeCoordinator, tmp_path: Path
) -> None:
    async with running(fake, tmp_path) as handle:
        seen: list[bool] = []
        handle.app.on_connected(seen.append)
        await fake.handshake()
        fake.send("n1", dispatch("j1", "echo"))
        first = await fake.result()
        fake.send("n1", Error("hello_first", "unknown peer: send HELLO first"))
        hello = await fake.expect(Hello, skip=(Ready, Result))
        assert hello.running == (RunningJob("j1", 1, "L-j1"),)
        assert (await fake.expect(Ready)).credit == 2
        assert await fake.expect(Result) == first
        assert handle.statistics().reconnects == 0  # the same socket
        fake.send("n1", Heartbeat())  # the restarted coordinator answers the new HELLO
        await until(lambda: seen == [False, True], timeout=WAIT_S)  # "reconnected"


async def test_bye_from_the_coordinator_makes_the_node_reconnect(
    fake: FakeCoordinator, tmp_path: Path
) -> None:
    async with running(fake, tmp_path) as handle:
        await fake.handshake()
        fake.send("n1", Bye("coordinator stopping"))
        await fake.expect(Hello)
        assert handle.statistics().reconnects == 1


# -- self-fencing ----------------------------------------------------------------------


async def test_cut_off_past_its_lease_the_node_stops_its_tasks_and_keeps_its_outbox(
    fake: FakeCoordinator, tmp_path: Path
) -> None:
    # lost after 0.5 s of silence (a new socket), fenced after 0.6 s
    async with running(fake, tmp_path, heartbeat_s=0.1, liveness=5, lease_s=0.6) as handle:
        await fake.handshake()
        fake.send("n1", dispatch("done", "echo"))
        await fake.result()  # not ACKed: it stays in the outbox
        fake.send("n1", dispatch("j1", "block_pid"))
        pid = (await fake.expect(Progress, skip=(Accept, Ready, Result))).metrics["pid"]
        fake.answer_heartbeats = False
        await settled(handle, lambda s: s.fenced == 1)
        await process_ends(pid)
        assert handle.statistics().running == 0
        # the node comes back holding only the result that was already on disk
        fake.answer_heartbeats = True
        held = (RunningJob("done", 1, "L-done"),)
        while (await fake.expect(Hello, skip=(Result, Ready))).running != held:
            pass  # HELLOs of the reconnects before the fence
        fake.send("n1", Heartbeat())
        assert (await fake.expect(Ready, skip=(Result,))).credit == 2
        fake.send("n1", dispatch("after", "echo"))
        assert (await fake.result("after")).ok
        assert not any(isinstance(f, Result) and f.job_id == "j1" for f in fake.seen)


# -- draining --------------------------------------------------------------------------


async def test_stopping_drains_a_running_task_to_its_end_then_says_bye(
    fake: FakeCoordinator, tmp_path: Path
) -> None:
    fifo = tmp_path / "go"
    os.mkfifo(fifo)
    async with running(fake, tmp_path, drain_timeout_s=WAIT_S) as handle:
        await fake.handshake()
        fake.send("n1", dispatch("j1", "wait_fifo", {"path": str(fifo)}))
        await fake.expect(Progress, skip=(Accept,))
        async with anyio.create_task_group() as tg:
            tg.start_soon(handle.app.stop)
            await settled(handle, lambda s: s.draining)
            fake.send("n1", dispatch("late", "echo"))  # no new work while draining
            late = await fake.result("late")
            assert (late.job_id, late.error_kind) == ("late", "handed_back")
            await anyio.to_thread.run_sync(fifo.write_text, "finished")
            result = await fake.result("j1")
            assert (result.job_id, result.ok, result.value) == ("j1", True, "finished")
            fake.send("n1", Ack("late", "L-late"))
            fake.send("n1", Ack("j1", "L-j1"))
            assert await fake.expect(Bye) == Bye("node drained")
        assert not handle.app.is_running
        assert not any(isinstance(f, Ready) for f in fake.seen[fake.seen.index(late) :])
        assert handle.statistics().outbox == 0


async def test_a_task_still_running_at_the_drain_timeout_is_handed_back(
    fake: FakeCoordinator, tmp_path: Path
) -> None:
    async with running(fake, tmp_path, drain_timeout_s=0.2) as handle:
        await fake.handshake()
        fake.send("n1", dispatch("j1", "block"))
        await fake.expect(Progress, skip=(Accept,))
        async with anyio.create_task_group() as tg:
            tg.start_soon(handle.app.stop)
            result = await fake.result()
            assert (result.job_id, result.error_kind) == ("j1", "handed_back")
            fake.send("n1", Ack("j1", "L-j1"))
            await fake.expect(Bye)
        assert handle.statistics().handed_back == 1


async def test_a_drain_hands_back_a_waiting_attempt_at_once_and_finishes_the_running_one(
    fake: FakeCoordinator, tmp_path: Path
) -> None:
    fifo = tmp_path / "go"
    os.mkfifo(fifo)
    async with running(fake, tmp_path, slots=1, prefetch=1, drain_timeout_s=WAIT_S) as handle:
        await fake.handshake()
        fake.send("n1", dispatch("j1", "wait_fifo", {"path": str(fifo)}, isolation="pool"))
        fake.send("n1", dispatch("j2", "echo"))  # a fresh-process task: it waits on the node
        await fake.expect(Progress, skip=(Accept,))
        await settled(handle, lambda s: s.queued == 1)
        async with anyio.create_task_group() as tg:
            tg.start_soon(handle.app.stop)
            waiting = await fake.result("j2")  # handed back before j1 ends
            assert (waiting.error_kind, waiting.error) == (
                "handed_back",
                "handed back before it started",
            )
            await anyio.to_thread.run_sync(fifo.write_text, "finished")
            assert (await fake.result("j1")).value == "finished"
            fake.ack_results()
            assert await fake.expect(Bye) == Bye("node drained")
        assert handle.statistics().handed_back == 1


# -- the other event loop --------------------------------------------------------------


@pytest.mark.parametrize("anyio_backend", ["trio"])
async def test_the_node_runs_process_and_pool_tasks_on_trio(
    fake: FakeCoordinator, tmp_path: Path
) -> None:
    async with running(fake, tmp_path) as handle:
        await fake.handshake()
        fake.send("n1", dispatch("p", "count", {"n": 2}))
        assert (await fake.result("p")).value == 1
        fake.send("n1", dispatch("q", "pid", isolation="pool"))
        first = await fake.result("q")
        fake.send("n1", dispatch("r", "pid", isolation="pool"))
        assert (await fake.result("r")).value == first.value
        fake.ack_results()
        await settled(handle, lambda s: s.outbox == 0)
