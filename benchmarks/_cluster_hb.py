"""Heartbeat load on one coordinator process, and how fast it notices a silent node.

A ``mabeam coordinator start`` subprocess and ``benchmarks._cluster_sim`` (N simulated
nodes in one process). Once every simulated node is connected, one job is submitted;
only the victim has credit, so it runs there. Over the simulator's steady window the
coordinator's CPU (psutil, user + system of all its threads) gives the cores it uses
for N nodes' heartbeats. Then the victim goes silent (its socket stays open, as a hung
host's would) and the client's watch of the job waits for its next state: the
coordinator lost the session and requeued the lease (RequeueNode: a running attempt
counts as a failure, so the job is queued for a retry). Detection time is the store's
time of that event minus the victim's last frame.

The simulated nodes are plain DEALERs (1,001 CURVE key pairs and handshakes would
measure key set-up, not heartbeats), so this coordinator runs ``--insecure`` on
loopback; the throughput benchmark runs the default, CurveZMQ.
"""

from __future__ import annotations

import json
import tempfile
import time
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import anyio

from ._cluster_procs import Child, cpu_seconds, start_child, start_coordinator, stop_all
from ._cluster_tput import ENTRYPOINT, _read


@dataclass
class Heartbeats:
    """One run: nodes, interval, coordinator cores over the window, detection time."""

    nodes: int
    interval_s: float
    window_s: float
    coord_cores: float
    sim_cores: float
    detect_s: float
    detect_intervals: float

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def measure(nodes: int, interval: float, window: float, timeout_s: float = 120.0) -> Heartbeats:
    """Run the simulator against a fresh coordinator; everything stopped afterwards."""
    with tempfile.TemporaryDirectory(prefix="mabeam-bench-hb-") as tmp:
        root = Path(tmp)
        state = root / "coordinator.db"
        coord, endpoint = start_coordinator(state, root, heartbeat_s=interval)
        children: list[Child] = [coord]
        try:
            sim = start_child(
                "simulator",
                ["benchmarks._cluster_sim", endpoint, str(nodes), str(interval), str(window)],
                root,
                stdin=True,
            )
            children.append(sim)
            return anyio.run(
                _drive, coord, sim, endpoint, state, nodes, interval, window, timeout_s
            )
        finally:
            stop_all(children)


def _event(sim: Child, name: str, timeout: float) -> dict[str, Any]:
    line = sim.read_line(timeout)
    msg: dict[str, Any] = json.loads(line)
    if msg.get("event") != name:
        raise RuntimeError(f"simulator said {line!r}, expected {name!r}")
    return msg


async def _drive(
    coord: Child,
    sim: Child,
    endpoint: str,
    state: Path,
    nodes: int,
    interval: float,
    window: float,
    timeout_s: float,
) -> Heartbeats:
    from mabeam.cluster import protocol
    from mabeam.cluster.client import connect

    read = anyio.to_thread.run_sync
    await read(_event, sim, "connected", timeout_s)
    async with connect(endpoint, timeout=30.0, heartbeat_s=interval, insecure=True) as client:
        spec = protocol.JobSpec(
            entrypoint=ENTRYPOINT,
            params={"x": 0},
            max_retries=3,
            resources=protocol.Resources(gpus=0, cpus=0, memory_mb=0),
            isolation="pool",
            code_version=uuid.uuid4().hex,
        )
        sub = await client.submit([spec])
        job_id = sub.job_ids[0]
        await read(_event, sim, "accepted", timeout_s)
        await read(_event, sim, "window_start", timeout_s)
        c0, s0, t0 = cpu_seconds([coord.pid]), cpu_seconds([sim.pid]), time.monotonic()
        await read(_event, sim, "window_end", window + timeout_s)
        c1, s1, t1 = cpu_seconds([coord.pid]), cpu_seconds([sim.pid]), time.monotonic()
        silent = await read(_event, sim, "silent", timeout_s)
        with anyio.fail_after(timeout_s):
            async with client.watch([job_id]) as events:
                seen_running = False
                async for ev in events:
                    if ev.state == "running":
                        seen_running = True
                    elif seen_running:
                        break
    detected = _requeue_time(state, job_id)
    detect = detected - float(silent["t"])
    return Heartbeats(
        nodes=nodes,
        interval_s=interval,
        window_s=t1 - t0,
        coord_cores=(c1 - c0) / (t1 - t0),
        sim_cores=(s1 - s0) / (t1 - t0),
        detect_s=detect,
        detect_intervals=detect / interval,
    )


def _requeue_time(state: Path, job_id: str) -> float:
    seq = int(job_id.rsplit("-", 1)[1])
    with _read(state) as db:
        rows = db.execute(
            "SELECT kind, time FROM events WHERE job = ? ORDER BY seq", (seq,)
        ).fetchall()
    after = False
    for kind, at in rows:
        if kind == "running":
            after = True
        elif after:
            return float(at)
    raise RuntimeError(f"job {job_id}: no event after 'running' in the store: {rows}")


if __name__ == "__main__":  # quick look: python -m benchmarks._cluster_hb NODES INTERVAL WINDOW
    import sys

    a = sys.argv[1:]
    print(json.dumps(measure(int(a[0]), float(a[1]), float(a[2])).as_dict(), indent=1))
