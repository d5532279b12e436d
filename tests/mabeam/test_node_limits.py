"""Per-task limits on the node agent: memory (RSS of the task's process tree) and the
size of its outputs, enforced by the node's watchdog and when an attempt ends.

The node runs in the test's runtime against a fake coordinator (a real ROUTER); tasks
run in real worker processes and really allocate memory and write files. No sleeps:
waits are on frames, node events (the watchdog's samples) and process exits.
"""

from __future__ import annotations

import os
import re
import select
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from pathlib import Path
from typing import Any

import anyio
import psutil  # type: ignore[import-untyped]
import pytest
from node_helpers import WAIT_S, FakeCoordinator, dispatch, node_config, settled

from foundation import Runtime
from mabeam.cli import _node as node_cli
from mabeam.cluster._coord_session import result_op
from mabeam.cluster._store_batch import Fail
from mabeam.cluster._task_limits import MIB, TaskLimits, output_bytes
from mabeam.cluster.node import NodeConfig, NodeHandle, start_node
from mabeam.cluster.protocol import Accept, Progress, Ready, Resources, Result

pytestmark = pytest.mark.anyio

MEMORY_ERROR = re.compile(
    r"task used (\d+) MiB \(RSS of its processes\), over its memory limit of (\d+) MiB "
    r"\((.+)\); killed with SIGKILL"
)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@asynccontextmanager
async def node(
    fake: FakeCoordinator, tmp_path: Path, **overrides: Any
) -> AsyncIterator[NodeHandle]:
    """A connected node agent whose watchdog samples every 50 ms."""
    overrides.setdefault("limit_check_s", 0.05)
    config = node_config(fake.endpoint, tmp_path / "work", **overrides)
    async with Runtime(), start_node(config) as handle:
        await fake.handshake()
        with anyio.fail_after(WAIT_S):
            await handle.connected.wait()
        yield handle
        fake.ack_results()


async def started(fake: FakeCoordinator) -> dict[str, Any]:
    """The metrics of the next PROGRESS (a task's report that it holds what it took)."""
    progress = await fake.expect(Progress, skip=(Accept, Ready))
    return progress.metrics


def pids(path: Path) -> list[int]:
    """The pids a task wrote (``hog`` / ``write_mb`` with ``pids``) before it took
    anything: its worker's, then its child's (0: none)."""
    return [int(p) for p in path.read_text().split()]


def _exits(pid: int) -> bool:
    """Whether process ``pid`` exits (or has) within WAIT_S: a poll on its pidfd, which
    is readable once it has terminated (a zombie nobody reaped yet counts)."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return True
    try:
        return bool(select.select([fd], [], [], WAIT_S)[0])
    finally:
        os.close(fd)


async def wait_gone(pid: int) -> None:
    """Wait until process ``pid`` has exited."""
    assert await anyio.to_thread.run_sync(_exits, pid), f"process {pid} still runs"


def kill_leftover(pid: int) -> None:
    """A process a failed test may leave behind (one in its own session): kill it."""
    with suppress(psutil.Error):
        if pid:
            psutil.Process(pid).kill()


def first_line(result: Result) -> str:
    assert result.error is not None
    return result.error.splitlines()[0]


# -- memory ----------------------------------------------------------------------------


async def test_a_process_task_over_its_memory_limit_is_killed_with_all_its_processes(
    fake: FakeCoordinator, tmp_path: Path
) -> None:
    async with node(fake, tmp_path) as handle:
        # The memory is in a child that left the task's session: only the tree counts it
        # and only a kill of the tree (not of the process group) stops it.
        params = {"child_mb": 160, "hold": True, "pids": str(tmp_path / "pids")}
        fake.send("n1", dispatch("hog", "hog", params, resources=Resources(memory_mb=100)))
        result = await fake.result("hog")
        worker, child = pids(tmp_path / "pids")
        try:
            assert (result.ok, result.error_kind) == (False, "memory_limit")
            match = MEMORY_ERROR.fullmatch(first_line(result))
            assert match is not None, result.error
            # the worker itself holds ~25 MiB: the rest is the child's
            assert int(match[1]) > 100 and match.groups()[1:] == ("100", "resources.memory_mb")
            await wait_gone(worker)
            await wait_gone(child)
        finally:
            kill_leftover(child)
        stats = handle.statistics()
        assert (stats.over_limit, stats.tasks_failed, stats.running) == (1, 1, 0)


async def test_the_node_cap_holds_when_the_job_names_no_memory_or_asks_for_more(
    fake: FakeCoordinator, tmp_path: Path
) -> None:
    async with node(fake, tmp_path, task_memory_mb=90, slots=2) as handle:
        for job, asked in (("none", 0), ("more", 4096)):
            params = {"mb": 150, "hold": True}
            fake.send("n1", dispatch(job, "hog", params, resources=Resources(memory_mb=asked)))
        for job in ("none", "more"):
            result = await fake.result(job)
            assert result.error_kind == "memory_limit"
            match = MEMORY_ERROR.fullmatch(first_line(result))
            assert match is not None and match.groups()[1:] == ("90", "the node's --task-memory-mb")
        assert handle.statistics().over_limit == 2


@pytest.mark.parametrize("isolation", ["process", "pool"])
async def test_a_task_under_its_memory_limit_runs_to_its_end_while_it_is_watched(
    fake: FakeCoordinator, tmp_path: Path, isolation: str
) -> None:
    gate = tmp_path / "gate"
    os.mkfifo(gate)
    async with node(fake, tmp_path, task_memory_mb=400) as handle:
        params = {"mb": 16, "gate": str(gate)}
        limited = Resources(memory_mb=200)
        fake.send("n1", dispatch("small", "hog", params, isolation=isolation, resources=limited))
        await started(fake)  # it holds its 16 MiB now
        checks = handle.statistics().limit_checks
        await settled(handle, lambda s: s.limit_checks >= checks + 3)
        await anyio.to_thread.run_sync(gate.write_text, "go")
        result = await fake.result("small")
        assert result.ok and result.value == 16
        assert handle.statistics().over_limit == 0


async def test_a_pool_task_over_its_memory_limit_fails_and_the_one_behind_runs_on_a_new_worker(
    fake: FakeCoordinator, tmp_path: Path
) -> None:
    async with node(fake, tmp_path, slots=1, prefetch=1) as handle:
        params = {"mb": 160, "hold": True, "pids": str(tmp_path / "pids")}
        limited = Resources(memory_mb=100)
        fake.send("n1", dispatch("hog", "hog", params, isolation="pool", resources=limited))
        fake.send("n1", dispatch("next", "pid", isolation="pool"))  # queued in its pipe
        hog, after = await fake.result("hog"), await fake.result("next")
        worker = pids(tmp_path / "pids")[0]
        assert hog.error_kind == "memory_limit"
        match = MEMORY_ERROR.fullmatch(first_line(hog))
        assert match is not None and int(match[1]) > 100, hog.error
        assert after.ok and after.value != worker  # a fresh worker ran it
        await wait_gone(worker)
        stats = handle.statistics()
        assert (stats.over_limit, stats.tasks_ok, stats.tasks_failed) == (1, 1, 1)


# -- outputs ---------------------------------------------------------------------------


@pytest.mark.parametrize("isolation", ["process", "pool"])
async def test_outputs_over_the_disk_limit_at_the_end_fail_and_are_not_published(
    fake: FakeCoordinator, tmp_path: Path, isolation: str
) -> None:
    # The watchdog never samples here (a minute between samples): the end's check does it.
    async with node(fake, tmp_path, task_disk_mb=1, limit_check_s=60.0) as handle:
        fake.send("n1", dispatch("big", "write_mb", {"mb": 2}, isolation=isolation))
        fake.send("n1", dispatch("fits", "write_output", {"text": "ok"}, isolation=isolation))
        big, fits = await fake.result("big"), await fake.result("fits")
        assert big.error_kind == "disk_limit"
        assert first_line(big) == (
            "task wrote 2 MiB to its output directory, over the node's limit of 1 MiB for "
            "task outputs (--task-disk-mb); its outputs were removed"
        )
        attempt = handle.work_dir / "jobs" / "big" / "1"
        assert not (attempt / "output").exists() and not (attempt / ".output.partial").exists()
        assert fits.ok
        published = handle.work_dir / "jobs" / "fits" / "1" / "output" / "model.txt"
        assert published.read_text() == "ok"
        assert handle.statistics().over_limit == 1


async def test_a_task_writing_past_the_disk_limit_is_killed_while_it_runs(
    fake: FakeCoordinator, tmp_path: Path
) -> None:
    async with node(fake, tmp_path, task_disk_mb=1) as handle:
        params = {"mb": 3, "hold": True, "pids": str(tmp_path / "pids")}
        fake.send("n1", dispatch("w", "write_mb", params))
        result = await fake.result("w")
        pid = pids(tmp_path / "pids")[0]
        assert result.error_kind == "disk_limit"
        assert re.fullmatch(
            r"task wrote over \d+ MiB to its output directory, over the node's limit of 1 MiB "
            r"for task outputs \(--task-disk-mb\); killed with SIGKILL while running; its "
            r"outputs were removed",
            first_line(result),
        ), result.error
        await wait_gone(pid)
        attempt = handle.work_dir / "jobs" / "w" / "1"
        assert not (attempt / "output").exists() and not (attempt / ".output.partial").exists()
        assert handle.statistics().over_limit == 1


# -- the pieces ------------------------------------------------------------------------


def test_the_lower_of_the_jobs_memory_and_the_nodes_cap_applies() -> None:
    job, node_cap = "resources.memory_mb", "the node's --task-memory-mb"
    assert TaskLimits.of(0, None, None) is None  # nothing to watch
    assert TaskLimits.of(512, None, None) == TaskLimits(512, job)
    assert TaskLimits.of(0, 1024, None) == TaskLimits(1024, node_cap)
    assert TaskLimits.of(512, 1024, 7) == TaskLimits(512, job, 7)
    assert TaskLimits.of(2048, 1024, None) == TaskLimits(1024, node_cap)
    assert TaskLimits.of(0, None, 7) == TaskLimits(None, "", 7)


def test_the_outputs_walk_counts_files_in_subdirectories_and_stops_when_asked(
    tmp_path: Path,
) -> None:
    assert output_bytes(tmp_path / "missing") == 0
    (tmp_path / "a" / "b").mkdir(parents=True)
    for i, where in enumerate((tmp_path, tmp_path / "a", tmp_path / "a" / "b")):
        (where / f"f{i}").write_bytes(b"x" * MIB)
    (tmp_path / "link").symlink_to("/")  # not followed
    assert output_bytes(tmp_path) == 3 * MIB + len("/")
    assert MIB < output_bytes(tmp_path, stop_above=MIB) < 3 * MIB  # over it: enough
    assert output_bytes(tmp_path, max_entries=1) <= MIB  # a lower bound


@pytest.mark.parametrize("kind", ["memory_limit", "disk_limit"])
def test_a_limit_failure_is_recorded_as_permanent_never_retried(kind: str) -> None:
    op = result_op("n1", Result("j", "L", 1, False, error="over", error_kind=kind))  # type: ignore[arg-type]
    assert op == Fail("j", "L", "over", permanent=True)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"task_memory_mb": 0}, "task_memory_mb must be a whole number of MiB >= 1, or None"),
        ({"task_memory_mb": 1.5}, r"task_memory_mb must be .*, got 1\.5"),
        ({"task_disk_mb": "5"}, r"task_disk_mb must be a whole number of MiB .*, got '5'"),
        ({"task_disk_mb": True}, "task_disk_mb must be a whole number"),
        ({"limit_check_s": 0}, "limit_check_s must be a finite number of seconds > 0"),
    ],
)
def test_bad_limits_in_a_node_config_are_refused_with_a_clear_message(
    overrides: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        NodeConfig(coordinator="tcp://127.0.0.1:5555", node_id="n1", insecure=True, **overrides)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--task-memory-mb", "0"], "argument --task-memory-mb: must be at least 1, got 0"),
        (["--task-disk-mb", "lots"], "argument --task-disk-mb: expected a whole number"),
        (["--limit-check", "0"], "argument --limit-check: must be a number of seconds > 0"),
    ],
)
def test_bad_limit_options_of_node_start_exit_2_with_one_error_line(
    args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        node_cli.main(["start", "--coordinator", "tcp://127.0.0.1:1", *args])
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
