"""Trivial-task throughput through a real coordinator and real node agents.

One measurement: a ``mabeam coordinator start`` subprocess, ``nodes`` ``mabeam node
start`` subprocesses, and a client in this process submitting ``n`` echo jobs
(``benchmarks._cluster_tasks:echo``, ``cpus=0`` so the node slots bound concurrency).
The clock runs from just before the first SUBMIT to the last ``succeeded`` event in the
store (``time.time()`` on both sides: the store stamps events with it); completion is
checked by reading the store file itself (N jobs ``succeeded``, nothing else).

Completion is awaited by events, not by polling: the client watches the last job
submitted (FIFO: dispatched last), then reads the store once and watches whatever is
still unfinished. Watching only that one job keeps the watch traffic (an EVENT per
state change) out of the coordinator's per-task cost.

``warmup`` jobs run first and are left out of every figure: they start the pool
workers (an interpreter each; the process-mode row measures that cost) and warm the
caches, as the Ray peer's warm-up round does for its workers. They carry the run's code
version (a pool worker takes only jobs of the code version it imported) and other
params (no result-cache hit). ``prefetch`` and ``nice`` are the agents' ``--prefetch``
and ``--nice``.
"""

from __future__ import annotations

import sqlite3
import tempfile
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import anyio

from ._cluster_procs import (
    client_keys,
    cpu_breakdown,
    cpu_seconds,
    make_keys,
    start_coordinator,
    start_nodes,
    stop_all,
)

ENTRYPOINT = "benchmarks._cluster_tasks:echo"


@dataclass
class Throughput:
    """One run: rate, latencies and CPU per task of the coordinator and the nodes."""

    n: int
    nodes: int
    slots: int
    isolation: str
    prefetch: int
    nice: int
    tasks_per_s: float
    elapsed_s: float
    submit_s: float  # the SUBMITs alone (store commits included)
    p50_ms: float  # submit -> succeeded (queueing included: all N are submitted at once)
    p99_ms: float
    run_p50_ms: float  # leased -> succeeded (dispatch, run, RESULT, commit)
    run_p99_ms: float
    coord_cpu_us: float  # coordinator process CPU (all threads) per task
    node_cpu_us: float  # node agents + their pool workers per task
    succeeded: int
    cpu_us: dict[str, float] = field(default_factory=dict)
    """CPU per task by role (``cpu_breakdown``: threads, pool workers, the client)."""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def measure(
    n: int,
    nodes: int,
    slots: int,
    isolation: str = "pool",
    timeout_s: float = 300.0,
    *,
    prefetch: int = 0,
    warmup: int = 0,
    nice: int = 0,
) -> Throughput:
    """Start the processes, run ``warmup`` then ``n`` echo tasks (only those measured),
    stop everything (even on failure)."""
    with tempfile.TemporaryDirectory(prefix="mabeam-bench-") as tmp:
        root = Path(tmp)
        state = root / "coordinator.db"
        keys = make_keys(root / "keys")  # CurveZMQ, as users run it
        coord, endpoint = start_coordinator(state, root, keys=keys)
        children = [coord]
        try:
            children += start_nodes(
                endpoint,
                nodes,
                slots,
                root / "work",
                root,
                prefetch=prefetch,
                keys=keys,
                nice=nice,
            )
            pids = [c.pid for c in children[1:]]
            # One code version for the warm-up and the run (a pool worker takes only jobs
            # of the code version it imported), new to this store (no cache hit).
            code = uuid.uuid4().hex[:12]
            drive = (endpoint, isolation, state, timeout_s, code, keys)
            if warmup:
                anyio.run(_drive, warmup, "warmup", *drive)
            cpu0 = cpu_seconds([coord.pid]), cpu_seconds(pids, children=True)
            by_role0 = cpu_breakdown(coord.pid, pids)
            t0, t_submitted, first = anyio.run(_drive, n, "run", *drive)
            cpu1 = cpu_seconds([coord.pid]), cpu_seconds(pids, children=True)
            by_role1 = cpu_breakdown(coord.pid, pids)
        finally:
            stop_all(children)
        run = (nodes, slots, isolation, prefetch, nice)
        res = _summarize(state, n, run, first, t0, t_submitted, cpu0, cpu1)
        res.cpu_us = {k: round((by_role1[k] - by_role0[k]) / n * 1e6) for k in by_role1}
        res.cpu_us["total"] = sum(res.cpu_us.values())
        return res


async def _drive(
    n: int,
    batch: str,
    endpoint: str,
    isolation: str,
    state: Path,
    timeout_s: float,
    code: str,
    keys: Path | None,
) -> tuple[float, float, int]:
    """Submit ``n`` echo jobs of ``code`` (params tagged with ``batch``: never a cache hit
    on another batch), wait for all; (t0, submitted, the first job's seq)."""
    from mabeam.cluster import protocol
    from mabeam.cluster.client import connect

    specs = [
        protocol.JobSpec(
            entrypoint=ENTRYPOINT,
            params={"x": i, "batch": batch},
            resources=protocol.Resources(gpus=0, cpus=0, memory_mb=0),
            max_retries=0,
            isolation=isolation,  # type: ignore[arg-type]
            code_version=code,
        )
        for i in range(n)
    ]
    with anyio.fail_after(timeout_s):
        async with connect(endpoint, timeout=60.0, **client_keys(keys)) as client:
            t0 = time.time()
            sub = await client.submit(specs, idempotency_key=f"bench-{code}-{batch}")
            t_submitted = time.time()
            await _wait_terminal(client, [sub.job_ids[-1]])
            left = _unfinished(state, sub.job_ids)
            if left:
                await _wait_terminal(client, left)
    return t0, t_submitted, _seq(sub.job_ids[0])


def _seq(job_id: str) -> int:
    return int(job_id.rsplit("-", 1)[1])


async def _wait_terminal(client: Any, job_ids: list[str]) -> None:
    async with client.watch(job_ids) as events:
        async for _ in events:
            pass


def _read(state: Path) -> sqlite3.Connection:
    return sqlite3.connect(f"file:{state}?mode=ro", uri=True, timeout=30.0)


def _unfinished(state: Path, job_ids: tuple[str, ...]) -> list[str]:
    wanted = {_seq(j): j for j in job_ids}
    with _read(state) as db:
        rows = db.execute(
            "SELECT seq FROM jobs WHERE state NOT IN ('succeeded', 'failed', 'cancelled')"
        ).fetchall()
    return [wanted[seq] for (seq,) in rows if seq in wanted]


def _summarize(
    state: Path,
    n: int,
    run: tuple[int, int, str, int, int],
    first: int,
    t0: float,
    t_submitted: float,
    cpu0: tuple[float, float],
    cpu1: tuple[float, float],
) -> Throughput:
    """The figures of the jobs from seq ``first`` on (the warm-up's come before)."""
    nodes, slots, isolation, prefetch, nice = run
    db = _read(state)
    try:
        counts = dict(
            db.execute(
                "SELECT state, count(*) FROM jobs WHERE seq >= ? GROUP BY state", (first,)
            ).fetchall()
        )
        times: dict[str, dict[int, float]] = {"submitted": {}, "leased": {}, "succeeded": {}}
        for job, kind, at in db.execute(
            "SELECT job, kind, time FROM events WHERE job >= ? "
            "AND kind IN ('submitted', 'leased', 'succeeded')",
            (first,),
        ):
            times[kind].setdefault(job, at)
    finally:
        db.close()
    succeeded = int(counts.get("succeeded", 0))
    if succeeded != n or sum(counts.values()) != n:
        raise RuntimeError(f"store after the run: {counts} (expected {n} succeeded)")
    done = times["succeeded"]
    t_end = max(done.values())
    total = [done[j] - times["submitted"][j] for j in done]
    run = [done[j] - times["leased"][j] for j in done]
    elapsed = t_end - t0
    return Throughput(
        n=n,
        nodes=nodes,
        slots=slots,
        isolation=isolation,
        prefetch=prefetch,
        nice=nice,
        tasks_per_s=n / elapsed,
        elapsed_s=elapsed,
        submit_s=t_submitted - t0,
        p50_ms=_pct(total, 50) * 1e3,
        p99_ms=_pct(total, 99) * 1e3,
        run_p50_ms=_pct(run, 50) * 1e3,
        run_p99_ms=_pct(run, 99) * 1e3,
        coord_cpu_us=(cpu1[0] - cpu0[0]) / n * 1e6,
        node_cpu_us=(cpu1[1] - cpu0[1]) / n * 1e6,
        succeeded=succeeded,
    )


def _pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


if __name__ == "__main__":  # python -m benchmarks._cluster_tput N NODES SLOTS [ISO [PF [NICE]]]
    import json
    import sys

    a = sys.argv[1:]
    iso, pf = (a[3] if len(a) > 3 else "pool"), (int(a[4]) if len(a) > 4 else 0)
    nice = int(a[5]) if len(a) > 5 else 0
    warmup = int(a[1]) * 40
    res = measure(int(a[0]), int(a[1]), int(a[2]), iso, prefetch=pf, warmup=warmup, nice=nice)
    print(json.dumps(res.as_dict(), indent=1))
