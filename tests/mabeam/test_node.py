"""The node agent against a fake coordinator: handshake, dispatch to result, the outbox,
every way a task ends, the allow-list, the pool, GPUs and bad input.

The node runs in the test's runtime (``start_node``); the coordinator is a real ROUTER
driven frame by frame (``node_helpers.FakeCoordinator``); tasks run in real worker
processes (tests/mabeam/task_entrypoints.py). No sleeps: every wait is on a frame, a
telemetry event of the node or a process.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import psutil  # type: ignore[import-untyped]
import pytest
from node_helpers import WAIT_S, FakeCoordinator, dispatch, node_config, settled

from foundation import Runtime
from mabeam.cluster import protocol
from mabeam.cluster._node_outbox import Outbox
from mabeam.cluster.gpus import Gpu, GpuOptionError
from mabeam.cluster.node import NodeConfig, NodeHandle, node_app, start_node
from mabeam.cluster.protocol import (
    Accept,
    Ack,
    Cancel,
    Hello,
    Inventory,
    Progress,
    Ready,
    Resources,
    Result,
)

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # the node's socket and pipes on trio: test_node_conn.py


@asynccontextmanager
async def node(
    fake: FakeCoordinator, tmp_path: Path, **overrides: Any
) -> AsyncIterator[NodeHandle]:
    """A node agent in a fresh runtime, connected (HELLO and READY already read)."""
    config = node_config(fake.endpoint, tmp_path / "work", **overrides)
    async with Runtime(), start_node(config) as handle:
        await fake.handshake()
        with anyio.fail_after(WAIT_S):
            await handle.connected.wait()
        yield handle
        fake.ack_results()  # the node drains on the way out: it need not wait for ACKs


# -- the handshake ---------------------------------------------------------------------


async def test_hello_carries_the_cpu_only_inventory_and_ready_grants_every_slot(
    fake: FakeCoordinator, tmp_path: Path
) -> None:
    config = node_config(fake.endpoint, tmp_path / "work", slots=3, gpus="all")
    async with Runtime(), start_node(config) as handle:
        hello = await fake.expect(Hello)
        # no NVML on this machine: a CPU-only node, and it still starts
        assert hello.inventory == Inventory(
            "n1",
            gpus=(),
            cpus=os.cpu_count() or 1,
            ram_mb=psutil.virtual_memory().total // (1024 * 1024),
            slots=3,
            owner="node:n1",  # the market's default payee
        )
        assert hello.running == ()
        assert not handle.connected.is_set()
        fake.send("n1", protocol.Heartbeat())
        assert (await fake.expect(Ready)).credit == 3
        with anyio.fail_after(WAIT_S):
            await handle.connected.wait()
        assert handle.statistics().connected


async def test_without_slots_a_cpu_only_node_offers_one_slot_per_cpu(tmp_path: Path) -> None:
    app = node_app(
        NodeConfig(coordinator="tcp://127.0.0.1:1", node_id="n", work_dir=tmp_path, insecure=True)
    )
    assert app.setup.slots == (os.cpu_count() or 1)
    assert app.setup.inventory.gpus == ()


def test_workers_get_the_agents_working_directory_first_on_their_path(tmp_path: Path) -> None:
    config = NodeConfig(
        coordinator="tcp://127.0.0.1:1",
        node_id="n",
        work_dir=Path("w"),
        pythonpath=("/x",),
        insecure=True,
    )
    setup = node_app(config).setup
    paths = setup.task.env["PYTHONPATH"].split(os.pathsep)
    assert paths[:2] == [os.getcwd(), "/x"]
    assert setup.work_dir == Path.cwd() / "w"  # relative to where the agent started


# -- a task from dispatch to ACK -------------------------------------------------------


async def test_dispatch_accept_progress_result_and_the_ack_empties_the_outbox(
    fake: FakeCoordinator, tmp_path: Path
) -> None:
    async with node(fake, tmp_path) as handle:
        fake.send("n1", dispatch("j1", "count", {"n": 3}))
        assert await fake.expect(Accept) == Accept("j1", "L-j1")
        steps = [await fake.expect(Progress) for _ in range(3)]
        assert [p.step for p in steps] == [0, 1, 2]
        assert steps[1].metrics == {"loss": 0.5, "tag": "s1"}
        result = await fake.expect(Result)
        assert (result.job_id, result.lease, result.attempt) == ("j1", "L-j1", 1)
        assert result.ok and result.value == 3 and result.duration_s > 0
        assert (await fake.expect(Ready)).credit == 1  # the slot is free again
        # the RESULT was on disk before it was sent, and stays there until the ACK
        assert handle.statistics().outbox == 1
        assert [e.key for e in Outbox(handle.work_dir)] == [("j1", "L-j1")]
        fake.send("n1", Ack("j1", "L-j1"))
        await settled(handle, lambda s: s.outbox == 0)
        work_dir = handle.work_dir  # the row leaves the file with a later write, or at the stop
        attempt = handle.work_dir / "jobs" / "j1" / "1"
        assert (attempt / "task.log").exists()  # a fresh process always has its log
        assert not (attempt / "output").exists()  # count never used ctx.output_dir
        stats = handle.statistics()
        assert (stats.tasks_run, stats.tasks_ok, stats.tasks_failed) == (1, 1, 0)
    assert len(Outbox(work_dir)) == 0


async def test_an_unacked_result_is_sent_again_until_the_ack(
    fake: FakeCoordinator, tmp_path: Path
) -> None:
    async with node(fake, tmp_path, heartbeat_s=0.1) as handle:
        fake.send("n1", dispatch("j1", "echo", {"x": 1}))
        first = await fake.result()
        again = await fake.result()  # after a few heartbeat intervals without an ACK
        assert again == first
        # a DISPATCH or a CANCEL of an attempt that already ended answers with its result
        fake.send("n1", dispatch("j1", "echo", {"x": 1}))
        assert await fake.result() == first
        fake.send("n1", Cancel("j1", "L-j1"))
        assert await fake.result() == first
        fake.send("n1", Ack("j1", "L-j1"))
        await settled(handle, lambda s: s.outbox == 0)
        assert handle.statistics().results_resent >= 3
        assert handle.statistics().tasks_run == 1  # it ran once


async def test_a_slash_in_a_job_id_stays_inside_the_work_dir(
    fake: FakeCoordinator, tmp_path: Path
) -> None:
    async with node(fake, tmp_path) as handle:
        fake.send("n1", dispatch("a/../../x", "echo"))
        assert (await fake.result()).ok
        assert (handle.work_dir / "jobs" / "a%2F..%2F..%2Fx" / "1" / "output").is_dir()


# -- how tasks fail --------------------------------------------------------------------


async def test_an_exception_is_reported_with_its_traceback(
    fake: FakeCoordinator, tmp_path: Path
) -> None:
    async with node(fake, tmp_path) as handle:
        fake.send("n1", dispatch("j1", "fail", {"lr": 0.5}))
        result = await fake.result()
        assert not result.ok and result.error_kind == "exception"
        assert result.error is not None
        assert result.error.startswith(
            "task_entrypoints:fail raised ValueError: bad learning rate 0.5\n"
        )
        assert "task_entrypoints.py" in result.error and "# the raising line" in result.error
        assert handle.statistics().tasks_failed == 1


async def test_a_worker_that_exits_without_a_result_crashed(
    fake: FakeCoordinator, tmp_path: Path
) -> None:
    async with node(fake, tmp_path):
        fake.send("n1", dispatch("j1", "exit_hard", {"code": 3}))
        result = await fake.result()
        assert result.error_kind == "crashed"
        assert result.error is not None and "worker exited with code 3" in result.error


async def test_a_task_past_its_timeout_is_stopped_and_reported_as_timeout(
    fake: FakeCoordinator, tmp_path: Path
) -> None:
    async with node(fake, tmp_path):
        fake.send("n1", dispatch("j1", "block", timeout_s=0.5))
        result = await fake.result()
        assert result.error_kind == "timeout"
        assert result.error is not None
        assert result.error.startswith("timed out after 0.5 s; stopped with SIGTERM")


async def test_cancel_stops_a_running_task_and_reports_it_cancelled(
    fake: FakeCoordinator, tmp_path: Path
) -> None:
    async with node(fake, tmp_path) as handle:
        fake.send("n1", dispatch("j1", "block_pid"))
        progress = await fake.expect(Progress, skip=(Accept, Ready))
        pid = progress.metrics["pid"]
        fake.send("n1", Cancel("j1", "L-j1"))
        result = await fake.result()
        assert result.error_kind == "cancelled"
        assert result.error is not None and result.error.startswith("cancelled; stopped with")
        with pytest.raises(psutil.NoSuchProcess):
            psutil.Process(pid).status()
        assert handle.statistics().running == 0


async def test_an_entrypoint_off_the_allow_list_is_refused_without_spawning(
    fake: FakeCoordinator, tmp_path: Path
) -> None:
    async with node(fake, tmp_path, allow=("task_entrypoints:echo",)) as handle:
        fake.send("n1", dispatch("j1", "task_entrypoints:pid"))
        result = await fake.expect(Result)
        assert result.error_kind == "refused"
        assert result.error == (
            "entrypoint 'task_entrypoints:pid' is not allowed on this node; allowed "
            "patterns: 'task_entrypoints:echo'"
        )
        assert (await fake.expect(Ready)).credit == 1  # the slot was never used
        assert not (handle.work_dir / "jobs").exists()
        assert handle.statistics().refused == 1 and handle.statistics().tasks_run == 0


async def test_an_entrypoint_that_cannot_be_imported_is_not_found(
    fake: FakeCoordinator, tmp_path: Path
) -> None:
    async with node(fake, tmp_path):
        fake.send("n1", dispatch("j1", "no_such_module_here:train"))
        result = await fake.result()
        assert result.error_kind == "not_found"
        assert result.error is not None
        assert "cannot import module 'no_such_module_here'" in result.error


async def test_a_dispatch_beyond_the_granted_credit_is_handed_back(
    fake: FakeCoordinator, tmp_path: Path
) -> None:
    async with node(fake, tmp_path, slots=1, drain_timeout_s=0.1) as handle:
        fake.send("n1", dispatch("j1", "block"))
        await fake.expect(Accept)
        fake.send("n1", dispatch("j2", "echo"))
        result = await fake.result("j2")
        assert (result.job_id, result.error_kind) == ("j2", "handed_back")
        assert result.error is not None and "no free slot" in result.error
        assert handle.statistics().running == 1


def accepted(fake: FakeCoordinator) -> list[str]:
    """The jobs reported started so far, in order: a node ACCEPTs an attempt when it
    starts, except one that started and succeeded in one wake-up, whose successful
    RESULT says so (docs/protocol.md). A failure is always ACCEPTed first if it ran."""
    started: dict[str, None] = {}
    for f in fake.seen:
        if isinstance(f, Accept) or (isinstance(f, Result) and f.ok):
            started.setdefault(f.job_id, None)
    return list(started)


async def test_prefetched_attempts_wait_for_the_slot_in_order_and_a_cancel_ends_one_at_once(
    fake: FakeCoordinator, tmp_path: Path
) -> None:
    fifo = tmp_path / "go"
    os.mkfifo(fifo)
    config = node_config(fake.endpoint, tmp_path / "work", slots=1, prefetch=2)
    async with Runtime(), start_node(config) as handle:
        _, ready = await fake.handshake()
        assert ready.credit == 3  # the slot and two places to wait
        fake.send("n1", dispatch("a", "wait_fifo", {"path": str(fifo)}))
        for job in ("b", "c", "d"):  # fresh-process tasks wait on the node itself
            fake.send("n1", dispatch(job, "pid"))
        over = await fake.result("d")  # beyond slots + prefetch
        assert over.error_kind == "handed_back"
        assert over.error == "the node has no free slot (all 1 are in use and 2 more wait)"
        await fake.expect(Progress, skip=(Accept, Ready))  # a runs
        await settled(handle, lambda s: (s.running, s.queued) == (1, 2))
        fake.send("n1", Cancel("b", "L-b"))
        cancelled = await fake.result("b")  # at once: it never ran
        assert cancelled.error_kind == "cancelled"
        assert cancelled.error == "cancelled before it started"
        assert accepted(fake) == ["a"]
        await anyio.to_thread.run_sync(fifo.write_text, "done")
        first, last = await fake.result("a"), await fake.result("c")
        assert first.value == "done" and last.ok and isinstance(last.value, int)
        assert accepted(fake) == ["a", "c"]  # c took the freed slot; b never ran
        stats = handle.statistics()
        assert (stats.running, stats.queued, stats.tasks_ok, stats.tasks_failed) == (0, 0, 2, 2)
        fake.ack_results()


async def test_a_pool_attempt_written_ahead_and_cancelled_is_called_off_in_its_worker(
    fake: FakeCoordinator, tmp_path: Path
) -> None:
    fifo = tmp_path / "go"
    os.mkfifo(fifo)
    async with node(fake, tmp_path, slots=1, prefetch=2) as handle:
        fake.send("n1", dispatch("a", "wait_fifo", {"path": str(fifo)}, isolation="pool"))
        fake.send("n1", dispatch("b", "block", isolation="pool"))  # written ahead into
        fake.send("n1", dispatch("c", "pid", isolation="pool"))  # a's worker, as is c
        await fake.expect(Progress, skip=(Accept, Ready))
        await settled(handle, lambda s: (s.running, s.queued) == (1, 2))
        fake.send("n1", Cancel("b", "L-b"))
        # Only the worker knows whether b began; it answers once a is done. If the call-off
        # reached it after it took b up, b is stopped as SIGTERM would (and c goes on a
        # new worker): b is cancelled either way, and never ACCEPTed.
        await anyio.to_thread.run_sync(fifo.write_text, "done")
        a, b, c = [await fake.result(job) for job in ("a", "b", "c")]
        assert a.value == "done" and c.ok and isinstance(c.value, int)
        assert b.error_kind == "cancelled"
        assert b.error in ("cancelled before it started", "cancelled; stopped with SIGTERM")
        assert accepted(fake) == ["a", "c"]
        stats = handle.statistics()
        assert (stats.running, stats.queued, stats.tasks_ok, stats.tasks_failed) == (0, 0, 2, 1)


async def test_waiting_pool_attempts_are_written_ahead_to_a_busy_worker_and_run_in_order(
    fake: FakeCoordinator, tmp_path: Path
) -> None:
    async with node(fake, tmp_path, slots=1, prefetch=3) as handle:
        for job in ("a", "b", "c", "d"):
            fake.send("n1", dispatch(job, "pid", isolation="pool"))
        results = [await fake.result(job) for job in ("a", "b", "c", "d")]
        assert len({r.value for r in results}) == 1  # one worker process ran all four
        assert accepted(fake) == ["a", "b", "c", "d"]
        assert handle.statistics().tasks_ok == 4


async def test_attempts_queued_behind_a_stopped_pool_task_run_on_a_new_worker(
    fake: FakeCoordinator, tmp_path: Path
) -> None:
    async with node(fake, tmp_path, slots=1, prefetch=3) as handle:
        fake.send("n1", dispatch("slow", "block_pid", isolation="pool", timeout_s=0.5))
        for job in ("b", "c", "d"):  # queued in the busy worker's pipe
            fake.send("n1", dispatch(job, "pid", isolation="pool"))
        first = await fake.expect(Progress, skip=(Accept, Ready))
        await settled(handle, lambda s: s.queued == 3)
        slow = await fake.result("slow")  # its worker is stopped: b, c, d come back
        assert slow.error_kind == "timeout"
        rest = [await fake.result(job) for job in ("b", "c", "d")]
        assert all(r.ok for r in rest) and len({r.value for r in rest}) == 1
        assert rest[0].value != first.metrics["pid"]  # on a new worker
        assert accepted(fake) == ["slow", "b", "c", "d"]  # in their order of arrival
        stats = handle.statistics()
        assert (stats.tasks_ok, stats.tasks_failed, stats.running, stats.queued) == (3, 1, 0, 0)


async def test_attempts_queued_behind_a_crashing_pool_task_run_on_a_new_worker(
    fake: FakeCoordinator, tmp_path: Path
) -> None:
    fifo = tmp_path / "go"
    os.mkfifo(fifo)
    async with node(fake, tmp_path, slots=1, prefetch=2) as handle:
        fake.send("n1", dispatch("a", "pid_then_wait", {"path": str(fifo)}, isolation="pool"))
        fake.send("n1", dispatch("boom", "exit_hard", isolation="pool"))  # queued behind a,
        fake.send("n1", dispatch("c", "pid", isolation="pool"))  # then c, in a's worker
        first = await fake.expect(Progress, skip=(Accept, Ready))
        await settled(handle, lambda s: s.queued == 2)
        await anyio.to_thread.run_sync(fifo.write_text, "done")
        a, boom, c = [await fake.result(job) for job in ("a", "boom", "c")]
        assert a.value == "done" and boom.error_kind == "crashed"
        assert c.ok and c.value != first.metrics["pid"]  # c never ran in the dead one
        assert accepted(fake) == ["a", "boom", "c"]
        stats = handle.statistics()
        assert (stats.tasks_ok, stats.tasks_failed, stats.running, stats.queued) == (2, 1, 0, 0)


async def test_a_malformed_frame_is_counted_and_dropped(
    fake: FakeCoordinator, tmp_path: Path
) -> None:
    async with node(fake, tmp_path) as handle:
        fake.send_raw("n1", b"\xc1 not msgpack")
        fake.send("n1", protocol.Submitted("r1", ("j",)))  # valid, but not for a node
        fake.send("n1", dispatch("j1", "echo"))
        assert (await fake.result()).ok  # the node carries on
        stats = handle.statistics()
        assert stats.bad_frames == 2
        assert stats.rejects_by_code["bad_msgpack"] == stats.rejects_by_code["unexpected"] == 1
        assert sum(stats.rejects_by_code.values()) == 2


# -- the pool --------------------------------------------------------------------------


async def pool_pid(fake: FakeCoordinator, job_id: str, name: str = "pid", **fields: Any) -> Result:
    fake.send("n1", dispatch(job_id, name, isolation="pool", **fields))
    result = await fake.result(job_id)
    fake.send("n1", Ack(job_id, f"L-{job_id}"))
    return result


async def test_a_pool_worker_is_reused_and_replaced_after_a_crash(
    fake: FakeCoordinator, tmp_path: Path
) -> None:
    async with node(fake, tmp_path, slots=1):
        pids = [(await pool_pid(fake, f"j{i}")).value for i in range(3)]
        assert len(set(pids)) == 1  # one process ran all three
        crash = await pool_pid(fake, "boom", "exit_hard")
        assert crash.error_kind == "crashed"
        after = (await pool_pid(fake, "j4")).value
        assert after != pids[0]
        assert not psutil.pid_exists(pids[0]) or psutil.Process(pids[0]).status() == "zombie"


async def test_a_pool_worker_is_replaced_after_max_tasks_per_worker(
    fake: FakeCoordinator, tmp_path: Path
) -> None:
    async with node(fake, tmp_path, slots=1, max_tasks_per_worker=2):
        pids = [(await pool_pid(fake, f"j{i}")).value for i in range(5)]
        assert pids[0] == pids[1] != pids[2] == pids[3] != pids[4]


async def test_a_pool_worker_never_runs_a_module_at_another_code_version(
    fake: FakeCoordinator, tmp_path: Path
) -> None:
    async with node(fake, tmp_path, slots=1):
        v1 = [(await pool_pid(fake, f"a{i}", code_version="v1")).value for i in range(2)]
        v2 = (await pool_pid(fake, "b", code_version="v2")).value  # the module changed
        again = (await pool_pid(fake, "c", code_version="v1")).value
        assert v1[0] == v1[1] != v2 != again  # a worker with other code is replaced
        for pid in (v1[0], v2):  # and it exits
            assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == "zombie"


async def test_pool_tasks_time_out_fail_and_are_cancelled_like_process_tasks(
    fake: FakeCoordinator, tmp_path: Path
) -> None:
    async with node(fake, tmp_path, slots=1):
        timeout = await pool_pid(fake, "t", "block", timeout_s=0.3)
        assert timeout.error_kind == "timeout"
        assert timeout.error is not None and timeout.error.startswith("timed out after 0.3 s")
        failure = await pool_pid(fake, "f", "fail", params={"lr": 2})
        assert failure.error_kind == "exception"
        assert failure.error is not None and "bad learning rate 2" in failure.error
        fake.send("n1", dispatch("c", "block", isolation="pool"))
        await fake.expect(Progress, skip=(Accept, Ready))
        fake.send("n1", Cancel("c", "L-c"))
        assert (await fake.result("c")).error_kind == "cancelled"
        fake.send("n1", Ack("c", "L-c"))
        missing = await pool_pid(fake, "m", "nowhere_module:f")
        assert missing.error_kind == "not_found"
        assert (await pool_pid(fake, "ok", "echo", params={"a": 1})).value["params"] == {"a": 1}


# -- GPUs ------------------------------------------------------------------------------

GPUS = (
    Gpu(0, "GPU-00000000-aaaa", "Fake A100", 40960, 40000),
    Gpu(1, "GPU-11111111-bbbb", "Fake A100", 40960, 40000),
)


async def test_gpus_are_assigned_by_uuid_in_the_task_environment(
    fake: FakeCoordinator, tmp_path: Path
) -> None:
    config = node_config(fake.endpoint, tmp_path / "work", gpus="all", inventory_gpus=GPUS)
    config = dataclasses.replace(config, slots=None)
    async with Runtime(), start_node(config):
        hello, ready = await fake.handshake()
        assert [g.uuid for g in hello.inventory.gpus] == [g.uuid for g in GPUS]
        assert hello.inventory.gpus[0].model == "Fake A100"
        assert hello.inventory.gpus[0].memory_mb == 40960
        assert hello.inventory.slots == ready.credit == 2  # default: one slot per GPU
        fake.send("n1", dispatch("g", "cuda_env", resources=Resources(gpus=1)))
        gpu = (await fake.result("g")).value
        assert gpu == {
            "CUDA_VISIBLE_DEVICES": "GPU-00000000-aaaa",
            "CUDA_DEVICE_ORDER": "PCI_BUS_ID",
            "device": "GPU-00000000-aaaa",
            "gpus": ["GPU-00000000-aaaa"],
        }
        fake.send("n1", dispatch("c", "cuda_env"))
        cpu = (await fake.result("c")).value
        assert cpu["CUDA_VISIBLE_DEVICES"] == "" and cpu["device"] == "cpu"
        fake.send("n1", dispatch("big", "cuda_env", resources=Resources(gpus=3)))
        big = await fake.result("big")
        assert big.error_kind == "handed_back"
        assert big.error == "job needs 3 GPUs and this node has 2 free of 2"
        fake.ack_results()


async def test_gpus_option_selects_and_refuses_gpus_by_index_or_uuid(tmp_path: Path) -> None:
    def config(gpus: str) -> NodeConfig:
        return NodeConfig(
            coordinator="tcp://127.0.0.1:1", node_id="n", gpus=gpus, work_dir=tmp_path,
            inventory_gpus=GPUS, insecure=True,
        )  # fmt: skip

    assert node_app(config("1")).setup.gpus == ("GPU-11111111-bbbb",)
    assert node_app(config("GPU-00000000-aaaa")).setup.gpus == ("GPU-00000000-aaaa",)
    assert node_app(config("none")).setup.slots == (os.cpu_count() or 1)
    with pytest.raises(GpuOptionError, match="no GPU 7 on this machine"):
        node_app(config("7"))


# -- configuration ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"coordinator": "localhost:5555"}, "malformed coordinator address 'localhost:5555'"),
        ({"coordinator": "tcp://host:99999"}, "port 1-65535"),
        ({"slots": 0}, r"slots must be an int in \[1, 1000000\], got 0"),
        ({"gpus": "0,zero"}, "bad entry 'zero'"),
        ({"node_id": "has space"}, "node_id must be 1 to 128 chars"),
        ({"heartbeat_s": 0}, "heartbeat_s must be a finite number of seconds > 0"),
        ({"max_tasks_per_worker": 0}, "max_tasks_per_worker must be an int"),
    ],
)
def test_a_bad_config_is_refused_with_a_clear_message(
    overrides: dict[str, Any], message: str
) -> None:
    options: dict[str, Any] = {
        "coordinator": "tcp://127.0.0.1:5555",
        "node_id": "n1",
        "insecure": True,
    }
    with pytest.raises(ValueError, match=message):
        NodeConfig(**{**options, **overrides})
