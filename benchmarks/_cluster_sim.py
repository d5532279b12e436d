"""Many simulated node agents in ONE process, for the coordinator's heartbeat load.

``python -m benchmarks._cluster_sim ENDPOINT N INTERVAL WINDOW`` connects ``N``
DEALERs (ids ``sim-0000``...) plus one ``sim-victim`` to a coordinator. Each sends
HELLO and READY (credit 0; the victim credit 1), then a HEARTBEAT whenever it sent
nothing for ``INTERVAL`` seconds (phases spread evenly over one interval, as
independent nodes would be) and answers ERROR ``hello_first`` with a new HELLO. The
victim ACCEPTs the one job dispatched to it.

It reports on stdout, one JSON object per line, and the parent acts on them:
``connected`` (every node heard from the coordinator), ``accepted`` (the victim runs
the job), ``window_start`` / ``window_end`` (``WINDOW`` seconds of steady heartbeats,
the parent samples the coordinator's CPU at both), ``silent`` (the victim stopped
sending; ``t`` is the ``time.time()`` of its last frame). Then it keeps the others
beating until its stdin closes. The pacing is the poll timeout of the simulated nodes'
own timer (at least 5 ms per wake-up, so the poll over N sockets stays cheap).
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
from collections import deque
from typing import Any

import zmq

from mabeam.cluster import protocol as p

VICTIM = "sim-victim"
_MIN_WAIT_S = 0.005


def _say(event: str, **fields: Any) -> None:
    print(json.dumps({"event": event, **fields}), flush=True)


def run(endpoint: str, n: int, interval: float, window: float) -> None:
    ctx = zmq.Context.instance()
    ids = [f"sim-{i:04d}" for i in range(n)] + [VICTIM]
    socks: dict[str, zmq.Socket[bytes]] = {}
    for node_id in ids:
        s = ctx.socket(zmq.DEALER)
        s.setsockopt(zmq.IDENTITY, node_id.encode())
        s.setsockopt(zmq.LINGER, 0)
        s.connect(endpoint)
        socks[node_id] = s
    by_sock = {s: node_id for node_id, s in socks.items()}
    heartbeat = p.encode(p.Heartbeat())
    last_sent: dict[str, float] = {}

    def send(node_id: str, frame: bytes) -> None:
        socks[node_id].send(frame)
        last_sent[node_id] = time.time()

    def hello(node_id: str) -> None:
        inv = p.Inventory(node_id=node_id, cpus=1, slots=1)
        send(node_id, p.encode(p.Hello(node_id=node_id, inventory=inv)))
        send(node_id, p.encode(p.Ready(credit=1 if node_id == VICTIM else 0)))

    for node_id in ids:
        hello(node_id)
    start = time.monotonic()
    due = deque((start + interval * (k + 1) / len(ids), node_id) for k, node_id in enumerate(ids))
    poller = zmq.Poller()
    for s in socks.values():
        poller.register(s, zmq.POLLIN)
    stdin = sys.stdin.fileno()
    poller.register(stdin, zmq.POLLIN)
    answered: set[str] = set()
    phase = "connecting"
    window_end = 0.0
    silent = False
    while True:
        now = time.monotonic()
        wait = max(due[0][0] - now, _MIN_WAIT_S)
        if phase == "window":
            wait = min(wait, max(window_end - now, 0.0))
        for what, _ in poller.poll(wait * 1000):
            if what == stdin:
                if not os.read(stdin, 4096):
                    return
                continue
            node_id = by_sock[what]  # type: ignore[index]
            sock = socks[node_id]
            while True:
                try:
                    data = sock.recv(zmq.NOBLOCK)
                except zmq.Again:
                    break
                answered.add(node_id)
                if silent and node_id == VICTIM:
                    continue
                frame = p.decode(data)
                if isinstance(frame, p.Error) and frame.code == "hello_first":
                    hello(node_id)
                elif isinstance(frame, p.Dispatch) and node_id == VICTIM:
                    send(node_id, p.encode(p.Accept(job_id=frame.job_id, lease=frame.lease)))
                    _say("accepted", job_id=frame.job_id)
                    phase, window_end = "window", time.monotonic() + window
                    _say("window_start", t=time.time())
        now = time.monotonic()
        if phase == "connecting" and len(answered) == len(ids):
            phase = "connected"
            _say("connected", nodes=len(ids))
        if phase == "window" and now >= window_end:
            phase = "done"
            _say("window_end", t=time.time())
            silent = True
            _say("silent", t=last_sent[VICTIM])
        while due[0][0] <= now:
            at, node_id = due.popleft()
            if not (silent and node_id == VICTIM):
                if time.time() - last_sent[node_id] >= interval * 0.95:
                    send(node_id, heartbeat)
                due.append((at + interval, node_id))


if __name__ == "__main__":
    a = sys.argv[1:]
    with contextlib.suppress(KeyboardInterrupt):
        run(a[0], int(a[1]), float(a[2]), float(a[3]))
