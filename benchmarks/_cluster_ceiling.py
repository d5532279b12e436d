"""The coordinator alone: trivial tasks through a real coordinator to instant nodes.

``python -m benchmarks._cluster_ceiling N [NODES [CREDIT]]`` prints one JSON line. A
``mabeam coordinator start`` subprocess (``--insecure``), one subprocess holding
``NODES`` simulated node agents (DEALERs that answer each DISPATCH with its RESULT at
once and give the credit back), and the benchmark's client in this process, which
submits ``N`` echo jobs and waits for them as ``_cluster_tput`` does. Every job is
stored, leased, dispatched, completed and ACKed as in the real run; only the nodes'
work is left out. The figure is what one coordinator can commit on this machine when
the nodes cost nothing: the ceiling of ``_cluster_tput``, where the node agents and
their pool workers share the same cores.

``python -m benchmarks._cluster_ceiling --nodes ENDPOINT NODES CREDIT`` is the
simulated nodes' side (it runs until its stdin closes).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import anyio

from ._cluster_procs import cpu_seconds, start_coordinator, stop_all


def instant_nodes(endpoint: str, nodes: int, credit: int) -> None:
    """The simulated nodes: HELLO and READY each, then RESULT (and READY) per DISPATCH."""
    import zmq

    from mabeam.cluster import protocol as p

    ctx = zmq.Context.instance()
    socks: dict[zmq.Socket[bytes], str] = {}
    for i in range(nodes):
        node_id = f"instant-{i}"
        sock = ctx.socket(zmq.DEALER)
        sock.setsockopt(zmq.IDENTITY, node_id.encode())
        sock.setsockopt(zmq.LINGER, 0)
        sock.connect(endpoint)
        inventory = p.Inventory(node_id=node_id, cpus=64, slots=credit)
        sock.send(p.encode(p.Hello(node_id=node_id, inventory=inventory)))
        sock.send(p.encode(p.Ready(credit=credit)))
        socks[sock] = node_id
    poller = zmq.Poller()
    for sock in socks:
        poller.register(sock, zmq.POLLIN)
    stdin = sys.stdin.fileno()
    poller.register(stdin, zmq.POLLIN)
    heartbeat = p.encode(p.Heartbeat())
    last_beat = time.monotonic()
    while True:
        for what, _ in poller.poll(200):
            if what == stdin:
                if not os.read(stdin, 4096):
                    return
                continue
            sock = what  # type: ignore[assignment]
            out: list[bytes] = []
            while True:
                try:
                    data = sock.recv(zmq.NOBLOCK)
                except zmq.Again:
                    break
                for frame in p.decode_batch(data):
                    if isinstance(frame, p.Dispatch):
                        result = p.Result(
                            frame.job_id, frame.lease, frame.attempt, True, frame.params
                        )
                        out.append(p.encode(result))
            if out:
                out.append(p.encode(p.Ready(credit=len(out))))
                for group in p.batches(out):
                    sock.send(p.pack_batch(group))
        if time.monotonic() - last_beat > 0.5:
            for sock in socks:
                sock.send(heartbeat)
            last_beat = time.monotonic()


def measure(n: int, nodes: int = 8, credit: int = 130, warmup: int = 500) -> dict[str, float]:
    """One run: tasks/s, leased -> succeeded p50 and the coordinator's CPU per task."""
    from . import _cluster_tput as tput

    with tempfile.TemporaryDirectory(prefix="mabeam-ceiling-") as tmp:
        root = Path(tmp)
        state = root / "coordinator.db"
        coord, endpoint = start_coordinator(state, root)
        sim = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "benchmarks._cluster_ceiling",
                "--nodes",
                endpoint,
                str(nodes),
                str(credit),
            ],
            stdin=subprocess.PIPE,
        )
        try:
            drive = (endpoint, "pool", state, 300.0, uuid.uuid4().hex[:12], None)
            anyio.run(tput._drive, warmup, "warmup", *drive)
            cpu0 = cpu_seconds([coord.pid]), cpu_seconds([sim.pid])
            t0, submitted, first = anyio.run(tput._drive, n, "run", *drive)
            cpu1 = cpu_seconds([coord.pid]), cpu_seconds([sim.pid])
        finally:
            assert sim.stdin is not None
            sim.stdin.close()
            sim.wait(30)
            stop_all([coord])
        res = tput._summarize(state, n, (nodes, credit, "pool", 0, 0), first, t0, submitted,
                              cpu0, cpu1)  # fmt: skip
    return {
        "n": n,
        "nodes": nodes,
        "credit": credit,
        "tasks_per_s": res.tasks_per_s,
        "run_p50_ms": res.run_p50_ms,
        "coord_cpu_us": res.coord_cpu_us,
        "sim_cpu_us": res.node_cpu_us,
    }


if __name__ == "__main__":
    args = sys.argv[1:]
    if args and args[0] == "--nodes":
        instant_nodes(args[1], int(args[2]), int(args[3]))
    else:
        sizes = [int(a) for a in args[:3]]
        print(json.dumps(measure(*sizes)))
