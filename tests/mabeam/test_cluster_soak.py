"""Soak: continuous submissions and node faults against one coordinator; its resources
must stay flat.

Real processes (a CurveZMQ coordinator with a short ``--retention``, three node agents
with pool workers) and a submitter that keeps the cluster busy: batch after batch of
trivial jobs, each from a fresh client connection, waited for through a watch (the pace
is the cluster's own: no sleeps). Every few batches a node agent is SIGKILLed and
restarted, or SIGSTOPped for a batch (its leases go to the others) and continued.
After each batch the coordinator's RSS, open file descriptors, threads and state file
(with its WAL) are sampled. After a warm-up, the last quarter of the run may not
exceed the second quarter by more than a small, stated margin: a leak of anything per
job, per client or per fault would show as a steady climb.

The default run lasts ``SHORT_S`` seconds (CI); ``--run-slow`` adds the ten-minute one
(``MABEAM_SOAK_S`` overrides both). ``MABEAM_SOAK_REPORT=FILE`` writes the samples as
JSON (docs/reliability.md shows a long run's).
"""

from __future__ import annotations

import itertools
import json
import os
import signal
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import psutil  # type: ignore[import-untyped]
import pytest
from cluster_harness import ClusterHarness, client_call, ep, running_cluster

from mabeam.cluster import protocol

SHORT_S = 60.0
LONG_S = 600.0
BATCH = 100
MIB = 1024 * 1024


@dataclass(frozen=True)
class Sample:
    t: float
    jobs: int
    rss_mib: float
    fds: int
    threads: int
    db_kib: float


@dataclass
class Soak:
    seconds: float
    jobs: int = 0
    batches: int = 0
    kills: int = 0
    stops: int = 0
    samples: list[Sample] | None = None


def _sample(cluster: ClusterHarness, t0: float, jobs: int) -> Sample:
    assert cluster.coordinator is not None
    proc = psutil.Process(cluster.coordinator.pid)
    db = sum(
        p.stat().st_size
        for p in (cluster.state, cluster.state.with_name(cluster.state.name + "-wal"))
        if p.exists()
    )
    return Sample(
        round(time.monotonic() - t0, 2),
        jobs,
        round(proc.memory_info().rss / MIB, 2),
        proc.num_fds(),
        proc.num_threads(),
        round(db / 1024, 1),
    )


def _batch(endpoint: str, first: int) -> None:
    specs = [
        protocol.JobSpec(ep("square"), {"x": first + i}, isolation="pool", max_retries=5)
        for i in range(BATCH)
    ]

    async def go(client: Any) -> None:
        ids = (await client.submit(specs)).job_ids
        async with client.watch(list(ids), timeout=120.0) as events:
            async for _ in events:
                pass
        for job_id in ids[:: max(1, BATCH // 10)]:  # spot checks of the results
            assert (await client.result(job_id))["y"] == (first + ids.index(job_id)) ** 2

    client_call(endpoint, go)


def soak(tmp_path: Path, seconds: float) -> Soak:
    run = Soak(seconds)
    samples: list[Sample] = []
    with running_cluster(tmp_path, heartbeat=0.2) as cluster:
        cluster.start_coordinator(options=["--retention", "3s"], log_level="warning")
        names = [f"soak-{i}" for i in range(3)]
        for name in names:
            cluster.start_node(name, slots=2, options=["--prefetch", "4"])
        victims = itertools.cycle(names)
        t0 = time.monotonic()
        samples.append(_sample(cluster, t0, 0))
        while time.monotonic() - t0 < seconds:
            fault = run.batches % 8
            victim = next(victims) if fault in (3, 7) else None
            if fault == 3 and victim is not None:  # SIGKILL, then the same node again
                cluster.kill(cluster.nodes[victim])
                cluster.start_node(victim, slots=2, options=["--prefetch", "4"])
                run.kills += 1
            if fault == 7 and victim is not None:  # frozen for one batch
                cluster.nodes[victim].signal(signal.SIGSTOP)
                run.stops += 1
            _batch(cluster.endpoint, run.jobs)
            if fault == 7 and victim is not None:
                cluster.nodes[victim].signal(signal.SIGCONT)
            run.jobs += BATCH
            run.batches += 1
            samples.append(_sample(cluster, t0, run.jobs))
    run.samples = samples
    report = os.environ.get("MABEAM_SOAK_REPORT")
    if report:
        data = {**asdict(run), "samples": [asdict(s) for s in samples]}
        Path(report).write_text(json.dumps(data, indent=1))
    return run


def check_flat(run: Soak) -> None:
    """The last quarter may not exceed the second quarter by more than the margins."""
    samples = run.samples or []
    assert len(samples) >= 8, f"too few samples to see a trend: {len(samples)}"
    n = len(samples)
    second, last = samples[n // 4 : n // 2], samples[3 * n // 4 :]
    print(
        f"\nsoak: {run.jobs} jobs in {run.batches} batches, {run.kills} node kills, "
        f"{run.stops} node stops; samples (t s, jobs, RSS MiB, fds, threads, db KiB):"
    )
    for s in [*samples[:: max(1, n // 12)], samples[-1]]:
        print(
            f"  {s.t:7.1f} {s.jobs:7d} {s.rss_mib:8.1f} {s.fds:5d} {s.threads:4d} {s.db_kib:9.1f}"
        )

    def peak(part: list[Sample], field: str) -> float:
        return max(float(getattr(s, field)) for s in part)

    rss_before, rss_after = peak(second, "rss_mib"), peak(last, "rss_mib")
    assert rss_after <= rss_before * 1.10 + 8, f"RSS climbed: {rss_before} -> {rss_after} MiB"
    fds_before, fds_after = peak(second, "fds"), peak(last, "fds")
    assert fds_after <= fds_before + 4, f"open fds climbed: {fds_before} -> {fds_after}"
    threads_before, threads_after = peak(second, "threads"), peak(last, "threads")
    assert threads_after <= threads_before + 2, f"threads: {threads_before} -> {threads_after}"
    db_before, db_after = peak(second, "db_kib"), peak(last, "db_kib")
    assert db_after <= db_before * 1.25 + 512, f"state file grew: {db_before} -> {db_after} KiB"


@pytest.mark.timeout(SHORT_S + 120)
def test_a_short_soak_keeps_the_coordinators_resources_flat(tmp_path: Path) -> None:
    check_flat(soak(tmp_path, float(os.environ.get("MABEAM_SOAK_S", SHORT_S))))


@pytest.mark.slow
@pytest.mark.timeout(LONG_S + 300)
def test_a_ten_minute_soak_keeps_the_coordinators_resources_flat(tmp_path: Path) -> None:
    check_flat(soak(tmp_path, float(os.environ.get("MABEAM_SOAK_S", LONG_S))))
