"""A pool worker actor with attempts written ahead into its process's pipe, driven
directly (a probe stands in for the node's connection).

The worker process runs queued jobs on its own, so it is often ahead of what its
``PoolWorker`` has read. These tests make that lag certain without sleeping: the event
loop is held in a blocking read of a FIFO that the last task writes to, so by the time
the actor handles a stop, the process has already finished the jobs before it.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import anyio
import pytest

from foundation import Down, Runtime
from foundation.testing import Probe
from mabeam.cluster._node_pool import PoolWorker, RunAttempt, StopAttempt
from mabeam.cluster._node_setup import TaskSettings
from mabeam.cluster._node_tasks import (
    Attempt,
    TaskEnded,
    TaskProgress,
    TaskStarted,
    attempt_dir,
)
from mabeam.cluster.task import TaskJob

pytestmark = pytest.mark.anyio

HERE = Path(__file__).resolve().parent
WAIT_S = 20.0


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def settings(tmp_path: Path, **overrides: Any) -> TaskSettings:
    paths = os.pathsep.join(p for p in (str(HERE), os.environ.get("PYTHONPATH")) if p)
    fields: dict[str, Any] = {
        "python": sys.executable,
        "env": {"PYTHONPATH": paths},
        "grace_s": 0.5,
        "max_tasks_per_worker": 100,
        "log_dir": tmp_path / "logs",
    }
    fields.update(overrides)
    return TaskSettings(**fields)


def attempt(
    tmp_path: Path, job_id: str, name: str, params: dict[str, Any] | None = None, **kw: Any
) -> Attempt:
    directory = attempt_dir(tmp_path / "work", job_id, 1)
    job = TaskJob(f"task_entrypoints:{name}", params or {}, job_id, 1)
    return Attempt(job, f"L-{job_id}", (), kw.get("timeout_s"), directory)


async def ends(probe: Probe, n: int) -> dict[str, TaskEnded]:
    """The next ``n`` TaskEnded messages, by job id (other messages are passed over)."""
    got: dict[str, TaskEnded] = {}
    with anyio.fail_after(WAIT_S):
        while len(got) < n:
            msg = await probe.assert_receive(object, timeout=WAIT_S)
            if isinstance(msg, TaskEnded):
                got[msg.key[0]] = msg
    return got


def fifos(tmp_path: Path) -> tuple[Path, Path]:
    go, ran = tmp_path / "go", tmp_path / "ran"
    os.mkfifo(go)
    os.mkfifo(ran)
    return go, ran


def run_ahead(go: Path, ran: Path) -> None:
    """Let the head finish and hold the event loop (a blocking read, not a sleep) until
    the task that writes ``ran`` has run: the process is now ahead of its actor."""
    go.write_text("go")
    assert ran.read_text() == "ran\n"


async def test_a_call_off_that_comes_after_the_worker_ran_the_attempt_reports_its_result(
    tmp_path: Path,
) -> None:
    go, ran = fifos(tmp_path)
    async with Runtime() as rt:
        probe = await Probe.start()
        pool = await rt.spawn(PoolWorker, probe.ref, settings(tmp_path), 1)
        head = attempt(tmp_path, "h", "wait_fifo", {"path": str(go)})
        queued = attempt(tmp_path, "q", "pid")
        last = attempt(tmp_path, "r", "notify_fifo", {"path": str(ran)})
        for a in (head, queued, last):
            pool.cast(RunAttempt(a))
        assert (await probe.assert_receive(TaskStarted, timeout=WAIT_S)).key == head.key
        run_ahead(go, ran)
        pool.cast(StopAttempt(queued.key, "cancelled"))  # the actor still sees q queued
        got = await ends(probe, 3)
        assert got["h"].outcome.value == "go"
        assert got["q"].outcome.ok  # it had run: its result counts, nothing is re-run
        assert got["r"].outcome.ok and got["q"].outcome.value == got["r"].outcome.value
        assert not any(m.unstarted for m in got.values())
        assert all(m.reusable for m in got.values()) and pool.is_alive


async def test_stopping_the_head_reports_the_results_already_sent_behind_it(
    tmp_path: Path,
) -> None:
    go, ran = fifos(tmp_path)
    async with Runtime() as rt:
        probe = await Probe.start()
        pool, gone = await rt.spawn(PoolWorker, probe.ref, settings(tmp_path), 1, monitor=True)
        head = attempt(tmp_path, "h", "wait_fifo", {"path": str(go)})
        behind = [
            attempt(tmp_path, "q", "pid"),
            attempt(tmp_path, "r", "pid"),
            # Running when the stop comes; its line says r's result was already sent.
            attempt(tmp_path, "s", "notify_fifo_then_block", {"path": str(ran)}),
            attempt(tmp_path, "t", "pid"),  # never starts
        ]
        for a in (head, *behind):
            pool.cast(RunAttempt(a))
        await probe.assert_receive(TaskStarted, timeout=WAIT_S)
        run_ahead(go, ran)
        pool.cast(StopAttempt(head.key, "cancelled"))  # SIGTERM: s is the one it hits
        got = await ends(probe, 5)
        assert got["h"].outcome.value == "go"  # its result beat the cancel
        assert got["q"].outcome.ok and got["r"].outcome.ok
        assert got["s"].unstarted and got["t"].unstarted  # placed again by the node
        assert not got["s"].reusable
        assert isinstance(await gone.wait(WAIT_S), Down)


async def test_a_worker_retires_after_max_tasks_counting_the_called_off_ones(
    tmp_path: Path,
) -> None:
    go, _ = fifos(tmp_path)
    async with Runtime() as rt:
        probe = await Probe.start()
        config = settings(tmp_path, max_tasks_per_worker=2)
        pool, gone = await rt.spawn(PoolWorker, probe.ref, config, 1, monitor=True)
        head = attempt(tmp_path, "a", "wait_fifo", {"path": str(go)})
        queued = attempt(tmp_path, "b", "pid")
        pool.cast(RunAttempt(head))
        pool.cast(RunAttempt(queued))
        await probe.assert_receive(TaskStarted, timeout=WAIT_S)
        pool.cast(StopAttempt(queued.key, "cancelled"))
        await anyio.to_thread.run_sync(go.write_text, "go")
        got = await ends(probe, 2)
        assert got["a"].outcome.ok
        assert got["b"].outcome.error == "cancelled before it started"
        assert isinstance(await gone.wait(WAIT_S), Down)  # both handed over: it retires


async def test_a_timeout_holds_while_a_job_bigger_than_the_pipe_waits_to_be_written(
    tmp_path: Path,
) -> None:
    async with Runtime() as rt:
        probe = await Probe.start()
        pool = await rt.spawn(PoolWorker, probe.ref, settings(tmp_path), 1)
        # 1.5 s: the worker must report step 0 before its timeout even on a loaded machine.
        spin = attempt(tmp_path, "spin", "spin_in_c", {"n": 10**12}, timeout_s=1.5)
        big = attempt(tmp_path, "big", "echo", {"blob": "x" * 300_000})  # > a 64 KiB pipe
        pool.cast(RunAttempt(spin))
        await probe.assert_receive(TaskProgress, timeout=WAIT_S)  # inside its C call now
        pool.cast(RunAttempt(big))  # the worker reads no more: the pipe fills up
        got = await ends(probe, 2)
        assert got["spin"].outcome.kind == "timeout"  # SIGKILL: the C call ignores SIGTERM
        assert (
            got["spin"].outcome.error
            == "timed out after 1.5 s; stopped with SIGKILL after 0.5 s grace"
        )
        assert got["big"].unstarted
