"""A ``JobStore`` SIGKILLed at a random point keeps every batch it reported, whole.

The child (``store_worker.py crash``) applies batches in a loop and prints each batch
number after ``apply`` returns. The parent reads some lines, SIGKILLs the child (most
of its time is spent inside a transaction), reads what was already printed, reopens the
file and checks: every reported batch is there in full; the batches present are a
prefix 0..M, each complete (its submit, leases and completions all applied or none);
the state counts match the rows; and the reopened store keeps working.
"""

from __future__ import annotations

import os
import selectors
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from store_worker import NODE, SUBMITTER, crash_result, crash_spec

from mabeam.cluster.store import STATES, JobStore, NodeRequeued

WORKER = Path(__file__).with_name("store_worker.py")
K = 40  # jobs per batch


def _read_lines(proc: subprocess.Popen[bytes], want: int, timeout: float) -> list[int]:
    """Batch numbers the child printed, at least ``want`` of them (poll, no sleeps)."""
    assert proc.stdout is not None
    out: list[int] = []
    buf = b""
    deadline = time.monotonic() + timeout
    with selectors.DefaultSelector() as sel:
        sel.register(proc.stdout, selectors.EVENT_READ)
        while len(out) < want:
            left = deadline - time.monotonic()
            if left <= 0 or not sel.select(left):
                raise AssertionError(f"the worker printed {len(out)} of {want} lines in time")
            chunk = os.read(proc.stdout.fileno(), 1 << 16)
            if not chunk:
                err = proc.stderr.read().decode() if proc.stderr else ""
                raise AssertionError(f"the worker exited early ({proc.wait()}): {err}")
            *lines, buf = (buf + chunk).split(b"\n")
            out += [int(line) for line in lines]
    return out


def _drain(proc: subprocess.Popen[bytes]) -> list[int]:
    """The complete lines still in the pipe after the child died (a torn last line is not
    a report: the child was killed while writing it)."""
    assert proc.stdout is not None
    lines = proc.stdout.read().split(b"\n")[:-1]
    return [int(line) for line in lines]


def _kill_after(path: Path, sync: str, lines: int) -> list[int]:
    proc = subprocess.Popen(
        [sys.executable, str(WORKER), "crash", str(path), sync, str(K)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        reported = _read_lines(proc, lines, timeout=40)
        proc.send_signal(signal.SIGKILL)
        assert proc.wait(timeout=10) == -signal.SIGKILL
        reported += _drain(proc)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
        for pipe in (proc.stdout, proc.stderr):
            if pipe is not None:
                pipe.close()
    assert reported == list(range(len(reported)))
    return reported


def _check_recovered(path: Path, reported: list[int]) -> None:
    with JobStore(path) as store:
        batches: list[tuple[str, ...]] = []
        while (ids := store.submission(SUBMITTER, f"b{len(batches)}")) is not None:
            batches.append(ids)
        last = len(batches) - 1
        assert last >= reported[-1], f"reported batch {reported[-1]} lost (have 0..{last})"
        assert store.submission(SUBMITTER, f"b{last + 1}") is None
        for n, ids in enumerate(batches):
            assert len(ids) == K, f"batch {n} has {len(ids)} jobs"
            records = [store.job(j) for j in ids]
            assert [r.spec for r in records] == [crash_spec(n, i) for i in range(K)]
            # Batch n+1 leased batch n's jobs and batch n+2 completed them, atomically.
            if n <= last - 2:
                assert [(r.state, r.result) for r in records] == [
                    ("succeeded", crash_result(n, i)) for i in range(K)
                ], f"batch {n} is not complete"
            elif n == last - 1:
                assert {(r.state, r.node, r.attempt) for r in records} == {("leased", NODE, 1)}
            else:
                assert {r.state for r in records} == {"queued"}
            for r in records:
                assert [e.kind for e in store.events(job_id=r.job_id)] == {
                    "queued": ["submitted"],
                    "leased": ["submitted", "leased"],
                    # completed straight from leased: the success implies it ran
                    "succeeded": ["submitted", "leased", "running", "succeeded"],
                }[r.state]
        counts = store.counts()
        assert sum(counts.values()) == len(batches) * K
        with sqlite3.connect(path) as conn:
            assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
            rows = dict(conn.execute("SELECT state, count(*) FROM jobs GROUP BY state"))
        assert counts == {s: rows.get(s, 0) for s in STATES}
        # Leases of the dead process stay leases until the coordinator requeues them.
        out = store.requeue_node(NODE)
        assert isinstance(out, NodeRequeued) and len(out.requeued) == (K if last >= 1 else 0)
        assert store.counts()["leased"] == 0


@pytest.mark.parametrize("sync", ["FULL", "NORMAL"])
@pytest.mark.parametrize("lines", [1, 7, 60])
def test_a_killed_writer_loses_no_reported_batch_and_leaves_no_partial_one(
    tmp_path: Path, sync: str, lines: int
) -> None:
    path = tmp_path / "jobs.db"
    reported = _kill_after(path, sync, lines)
    assert len(reported) >= lines
    _check_recovered(path, reported)


def test_a_store_killed_twice_resumes_on_the_same_file(tmp_path: Path) -> None:
    """The second run starts on the recovered file; its batches land after the first's."""
    path = tmp_path / "jobs.db"
    first = _kill_after(path, "FULL", 5)
    _check_recovered(path, first)
    with JobStore(path) as store:
        before = sum(store.counts().values())
    # The worker restarts its numbering at 0: its keys repeat, so its submits are dupes.
    proc = subprocess.run(
        [sys.executable, str(WORKER), "crash", str(path), "FULL", str(K)],
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode != 0 and b"duplicate=True" in proc.stderr
    with JobStore(path) as store:
        assert sum(store.counts().values()) == before
