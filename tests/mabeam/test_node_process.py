"""The node agent as a real process (``python -m mabeam.cli._node start``), and its outbox.

A SIGKILLed agent loses nothing: the next one started on the same work directory lists
the un-ACKed attempt in its HELLO and delivers the same RESULT. SIGTERM drains and
exits 0. The agent runs with tests/mabeam as its working directory, so the workers
import ``task_entrypoints`` through the PYTHONPATH the agent gives them. Waits are on
the agent's stdout line, on frames and on process exits; never on sleeps.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import IO, Any

import anyio
import psutil
import pytest
from anyio.abc import Process
from anyio.streams.buffered import BufferedByteReceiveStream
from node_helpers import HERE, WAIT_S, FakeCoordinator, dispatch

from mabeam.cluster._node_outbox import (
    OUTBOX_NAME,
    REMOVALS_PER_WRITE,
    Outbox,
    OutboxEntry,
    in_order,
)
from mabeam.cluster.protocol import (
    Accept,
    Ack,
    Bye,
    Heartbeat,
    Hello,
    Ready,
    Result,
    RunningJob,
    decode,
    encode,
)

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def agent_command(endpoint: str, work_dir: Path, *extra: str) -> list[str]:
    return [
        sys.executable, "-m", "mabeam.cli._node", "start", "--coordinator", endpoint,
        "--node-id", "n1", "--work-dir", str(work_dir), "--slots", "1", "--heartbeat", "0.2",
        "--drain-timeout", "2", "--insecure", *extra,
    ]  # fmt: skip


@pytest.fixture
def agent_log(tmp_path: Path) -> Iterator[IO[bytes]]:
    """The agents' stderr (their logs), kept in the test's directory."""
    with open(tmp_path / "agent.log", "ab") as log:
        yield log


@asynccontextmanager
async def agent(
    endpoint: str, tmp_path: Path, log: IO[bytes], *extra: str
) -> AsyncIterator[tuple[Process, Any]]:
    """An agent process; yields it with a reader of its stdout lines. Killed on exit."""
    process = await anyio.open_process(
        agent_command(endpoint, tmp_path / "work", *extra), cwd=HERE, stderr=log
    )
    assert process.stdout is not None
    lines = BufferedByteReceiveStream(process.stdout)
    try:
        yield process, lines
    finally:
        if process.returncode is None:
            process.kill()
        with anyio.CancelScope(shield=True):
            await process.wait()
        await process.aclose()


async def read_line(lines: BufferedByteReceiveStream) -> str:
    with anyio.fail_after(WAIT_S):
        return (await lines.receive_until(b"\n", 4096)).decode()


async def test_a_killed_agent_restarted_on_its_work_dir_redelivers_its_result(
    tmp_path: Path, agent_log: IO[bytes]
) -> None:
    fake = FakeCoordinator()
    try:
        async with agent(fake.endpoint, tmp_path, agent_log) as (first, lines):
            assert (await fake.expect(Hello)).running == ()
            fake.send("n1", Heartbeat())
            assert await read_line(lines) == f"mabeam node n1 connected to {fake.endpoint}"
            assert (await fake.expect(Ready)).credit == 1
            fake.send("n1", dispatch("j1", "echo", {"x": 1}))
            result = await fake.result()
            assert result.ok and result.value["params"] == {"x": 1}
            first.kill()  # SIGKILL before the ACK: the result is only on disk now
            await first.wait()
        async with agent(fake.endpoint, tmp_path, agent_log) as (second, lines):
            hello = await fake.expect(Hello, skip=(Ready, Result))
            assert hello.running == (RunningJob("j1", 1, "L-j1"),)
            fake.send("n1", Heartbeat())
            assert await read_line(lines) == f"mabeam node n1 connected to {fake.endpoint}"
            assert await fake.expect(Result, skip=(Ready,)) == result  # the same RESULT
            fake.send("n1", Ack("j1", "L-j1"))
            second.terminate()  # SIGTERM: drain, BYE, exit 0
            assert await fake.expect(Bye, skip=(Ready, Result)) == Bye("node drained")
            with anyio.fail_after(WAIT_S):
                assert await second.wait() == 0
    finally:
        fake.close()
    assert len(Outbox(tmp_path / "work")) == 0


async def test_an_agent_started_nice_runs_itself_and_its_tasks_at_that_niceness(
    tmp_path: Path, agent_log: IO[bytes]
) -> None:
    """``--nice 3``: the agent and the task processes it starts, three steps lower."""
    fake = FakeCoordinator()
    ours = os.nice(0)
    try:
        async with agent(fake.endpoint, tmp_path, agent_log, "--nice", "3") as (proc, lines):
            await fake.expect(Hello)
            fake.send("n1", Heartbeat())
            assert await read_line(lines) == f"mabeam node n1 connected to {fake.endpoint}"
            assert psutil.Process(proc.pid).nice() == min(ours + 3, 19)
            for isolation in ("process", "pool"):
                fake.send("n1", dispatch(f"j-{isolation}", "niceness", isolation=isolation))
                result = await fake.result()
                assert result.ok and result.value == min(ours + 3, 19), result
    finally:
        fake.close()


@pytest.mark.parametrize(
    ("args", "error"),
    [
        (["--coordinator", "tcp://127.0.0.1:1", "--nice", "20"], "--nice: must be at most 19"),
        (["--coordinator", "localhost:5555"], "malformed coordinator address 'localhost:5555'"),
        (["--coordinator", "tcp://127.0.0.1:1", "--slots", "0"], "--slots: must be at least 1"),
        (["--coordinator", "tcp://127.0.0.1:1", "--gpus", "lots"], "--gpus: bad entry 'lots'"),
        (["--coordinator", "tcp://127.0.0.1:1", "--gpus", "5"], "no GPU 5 on this machine"),
        (["--coordinator", "tcp://127.0.0.1:1", "--node-id", "a b"], "node_id must be"),
    ],
)
def test_bad_arguments_exit_2_with_one_error_line(args: list[str], error: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "mabeam.cli._node", "start", "--insecure", *args],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    errors = [line for line in done.stderr.splitlines() if "error:" in line]
    assert len(errors) == 1 and error in errors[0], done.stderr
    assert errors[0] == done.stderr.splitlines()[-1]
    assert done.stdout == ""


# -- the outbox file -------------------------------------------------------------------


def entry(job_id: str, attempt: int = 1) -> OutboxEntry:
    payload = encode(Result(job_id, f"L-{job_id}", attempt, True, {"v": job_id}))
    return OutboxEntry(job_id, f"L-{job_id}", attempt, payload)


def test_the_outbox_keeps_results_across_reopening_in_order(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path)
    assert outbox.write([entry("a"), entry("b"), entry("c")]) == 0
    assert outbox.write([entry("c", 2)], [("b", "L-b"), ("x", "L-x"), ("b", "L-b")]) == 1
    outbox.close()
    again = Outbox(tmp_path)
    assert [e.key for e in again] == [("a", "L-a"), ("c", "L-c")]
    assert again.get(("c", "L-c")) == entry("c", 2)
    assert ("a", "L-a") in again and len(again) == 2
    again.close()


def test_an_outbox_row_that_is_not_a_result_for_its_key_is_dropped(tmp_path: Path) -> None:
    Outbox(tmp_path).close()
    with sqlite3.connect(tmp_path / OUTBOX_NAME) as db:
        rows = [
            ("a", "L-a", 1, entry("a").payload),
            ("b", "L-b", 1, b"\xc1 garbage"),
            ("c", "L-other", 1, entry("c").payload),  # a RESULT for another key
        ]
        db.executemany("INSERT INTO results VALUES (?, ?, ?, ?)", rows)
    outbox = Outbox(tmp_path)
    assert [e.key for e in outbox] == [("a", "L-a")]
    outbox.close()
    assert [e.key for e in Outbox(tmp_path)] == [("a", "L-a")]  # deleted, not just skipped


def test_an_unreadable_outbox_file_is_moved_aside_and_a_fresh_one_started(
    tmp_path: Path,
) -> None:
    (tmp_path / OUTBOX_NAME).write_bytes(b"this is not a database" * 100)
    outbox = Outbox(tmp_path)
    assert len(outbox) == 0
    outbox.write([entry("a")])
    outbox.close()
    assert (tmp_path / f"{OUTBOX_NAME}.bad-1").read_bytes().startswith(b"this is not")
    assert len(Outbox(tmp_path)) == 1


def test_an_ack_leaves_the_file_with_the_next_results_or_at_close(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path)
    outbox.write([entry("a"), entry("b")])
    assert outbox.write([], [("a", "L-a")]) == 1  # from memory at once, no transaction
    assert [e.key for e in outbox] == [("b", "L-b")]
    assert _rows(tmp_path) == ["a", "b"]  # a crash now only resends "a": stale, ACKed
    outbox.write([entry("c")])  # the next results carry the removal
    assert _rows(tmp_path) == ["b", "c"]
    outbox.write([], [("b", "L-b")])
    outbox.write([entry("b", 2)])  # written again after its ACK: the new row stays
    assert _rows(tmp_path) == ["b", "c"] and outbox.get(("b", "L-b")) == entry("b", 2)
    assert outbox.write([], [("c", "L-c")]) == 1
    outbox.close()
    assert _rows(tmp_path) == ["b"]


def test_acks_alone_reach_the_file_in_batches(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path)
    n = REMOVALS_PER_WRITE
    outbox.write([entry(f"j{i}") for i in range(n + 1)])
    for i in range(n - 1):
        outbox.write([], [(f"j{i}", f"L-j{i}")])
    assert len(_rows(tmp_path)) == n + 1
    outbox.write([], [(f"j{n - 1}", f"L-j{n - 1}")])  # the batch is full: written
    assert _rows(tmp_path) == [f"j{n}"]
    outbox.close()


def _rows(directory: Path) -> list[str]:
    with contextlib.closing(sqlite3.connect(directory / OUTBOX_NAME)) as db:
        return sorted(r[0] for r in db.execute("SELECT job_id FROM results"))


def test_accepts_and_results_go_out_in_the_order_they_happened() -> None:
    a, b, c = entry("a"), entry("b"), entry("c")
    accepted = {("b", "L-b"): 1, ("c", "L-c"): 2}  # b started after a's result, c after b's
    payloads, sources = in_order(accepted, [a, b, c])
    assert [decode(p) for p in payloads] == [
        decode(a.payload), Accept("b", "L-b"), decode(b.payload), Accept("c", "L-c"),
        decode(c.payload),
    ]  # fmt: skip
    assert sources == [a, None, b, None, c]
    # a went out with a HELLO before this flush: the counts start after it
    payloads, sources = in_order({("b", "L-b"): 1}, [b], first=1)
    assert [decode(p) for p in payloads] == [Accept("b", "L-b"), decode(b.payload)]
    assert sources == [None, b]
