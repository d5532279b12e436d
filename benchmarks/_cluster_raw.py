"""The raw reference of the cluster benchmark: the least a dispatcher can do.

``python -m benchmarks._cluster_raw N AGENTS SLOTS`` prints one JSON line
``{"tasks_per_s": ...}``. The same shape as mabeam's path, with nothing else: a
ROUTER dispatcher (this process) sends msgpack ``[i, x]`` tasks to ``AGENTS`` agent
processes (DEALER), at most ``SLOTS`` outstanding per agent (credit); each agent hands
a task over a pipe to one of its ``SLOTS`` worker processes, which calls the echo
function and writes the value back; the agent replies ``[i, value]``. No store, no
leases, no validation, no retries: the floor of Python + ZeroMQ + pipes on this
machine, measured in the same run as mabeam so that their ratio is machine-independent.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from typing import Any

import msgpack
import zmq

from ._cluster_tasks import echo


def _worker() -> None:
    """Read one msgpack task per line-length frame from stdin, write back the value."""
    inp, out = sys.stdin.buffer, sys.stdout.buffer
    unpacker = msgpack.Unpacker()
    while True:
        chunk = os.read(inp.fileno(), 65536)
        if not chunk:
            return
        unpacker.feed(chunk)
        for i, x in unpacker:
            out.write(msgpack.packb([i, echo({"x": x}, None)]))
        out.flush()


def _agent(endpoint: str, slots: int) -> None:
    """DEALER to the dispatcher; each task to a free worker over its pipe."""
    sock = zmq.Context.instance().socket(zmq.DEALER)
    sock.connect(endpoint)
    workers = [
        subprocess.Popen(
            [sys.executable, "-m", "benchmarks._cluster_raw", "worker"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        for _ in range(slots)
    ]
    free = list(range(slots))
    unpackers = [msgpack.Unpacker() for _ in workers]
    fds = {w.stdout.fileno(): k for k, w in enumerate(workers)}  # type: ignore[union-attr]
    poller = zmq.Poller()
    poller.register(sock, zmq.POLLIN)
    for fd in fds:
        poller.register(fd, zmq.POLLIN)
    sock.send(b"ready")
    try:
        while True:
            for what, _ in poller.poll():
                if what is sock:
                    while True:
                        try:
                            msg = sock.recv(zmq.NOBLOCK)
                        except zmq.Again:
                            break
                        if msg == b"stop":
                            return
                        k = free.pop()
                        stdin = workers[k].stdin
                        assert stdin is not None
                        stdin.write(msg)
                        stdin.flush()
                else:
                    k = fds[int(what)]
                    unpackers[k].feed(os.read(int(what), 65536))
                    for reply in unpackers[k]:
                        sock.send(msgpack.packb(reply))
                        free.append(k)
    finally:
        for w in workers:
            assert w.stdin is not None
            w.stdin.close()
            w.wait(10)


def dispatch(n: int, agents: int, slots: int) -> float:
    """Tasks/s of ``n`` echo tasks through ``agents`` x ``slots`` (processes stopped)."""
    ctx = zmq.Context.instance()
    router = ctx.socket(zmq.ROUTER)
    port = router.bind_to_random_port("tcp://127.0.0.1")
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "benchmarks._cluster_raw",
                "agent",
                f"tcp://127.0.0.1:{port}",
                str(slots),
            ]
        )
        for _ in range(agents)
    ]
    try:
        peers: list[bytes] = []
        while len(peers) < agents:  # each agent says "ready" once connected
            peer, _ = router.recv_multipart()
            peers.append(peer)
        credit = {p: slots for p in peers}
        sent = done = 0
        t0 = time.perf_counter()
        while done < n:
            for p in peers:
                while credit[p] and sent < n:
                    router.send_multipart([p, msgpack.packb([sent, sent])])
                    credit[p] -= 1
                    sent += 1
            peer, _ = router.recv_multipart()
            credit[peer] += 1
            done += 1
            while True:
                try:
                    peer, _ = router.recv_multipart(zmq.NOBLOCK)
                except zmq.Again:
                    break
                credit[peer] += 1
                done += 1
        elapsed = time.perf_counter() - t0
        for p in peers:
            router.send_multipart([p, b"stop"])
        for proc in procs:
            proc.wait(10)
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        router.close(linger=0)
    return n / elapsed


def main(argv: list[str]) -> int:
    if argv[:1] == ["worker"]:
        _worker()
        return 0
    if argv[:1] == ["agent"]:
        _agent(argv[1], int(argv[2]))
        return 0
    rate = dispatch(int(argv[0]), int(argv[1]), int(argv[2]))
    result: dict[str, Any] = {"tasks_per_s": rate}
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
