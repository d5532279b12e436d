"""A fake coordinator for node-agent tests: a real ROUTER on a free loopback port.

The test reads the node's frames one by one (``expect``) and writes the coordinator's
(``send``); every wait is on the socket (``Wire.receive``, safe to cancel) under
``anyio.fail_after``. Node settings here are fast: short heartbeats and grace periods.
"""

from __future__ import annotations

import os
from collections import deque
from pathlib import Path
from typing import Any, TypeVar

import anyio
import zmq

from foundation.testing import until
from mabeam.cluster import protocol
from mabeam.cluster._sockets import configure_router
from mabeam.cluster._wire import Wire, context
from mabeam.cluster.node import NodeConfig, NodeHandle

HERE = Path(__file__).resolve().parent
WAIT_S = 10.0
F = TypeVar("F")


def ep(name: str) -> str:
    """An entrypoint of tests/mabeam/task_entrypoints.py."""
    return f"task_entrypoints:{name}"


def node_config(endpoint: str, work_dir: Path, **overrides: Any) -> NodeConfig:
    """A node config for tests: tests/mabeam on the workers' path, quick timings."""
    options: dict[str, Any] = {
        "coordinator": endpoint,
        "node_id": "n1",
        "slots": 2,
        "gpus": "none",
        "work_dir": work_dir,
        "pythonpath": (str(HERE),),
        "heartbeat_s": 0.2,
        "liveness": 25,  # tests of liveness set their own; the others must not trip on it
        "stop_grace_s": 1.0,
        "drain_timeout_s": 0.5,  # a test that stops a node with a task running
    }
    options.update(overrides)
    if "key" not in options:
        options.setdefault("insecure", True)  # plain TCP on loopback: tests of the node
    return NodeConfig(**options)


def dispatch(job_id: str, name: str, params: dict[str, Any] | None = None, **fields: Any) -> Any:
    """A DISPATCH of a test entrypoint (lease ``L-<job_id>``, attempt 1 by default)."""
    fields.setdefault("attempt", 1)
    fields.setdefault("lease", f"L-{job_id}")
    return protocol.Dispatch(
        job_id=job_id, entrypoint=ep(name) if ":" not in name else name, params=params or {},
        **fields,
    )  # fmt: skip


class FakeCoordinator:
    """A ROUTER the test drives frame by frame."""

    def __init__(self, endpoint: str | None = None) -> None:
        sock = context().socket(zmq.ROUTER)
        configure_router(sock)
        if endpoint is None:
            port = sock.bind_to_random_port("tcp://127.0.0.1")
            endpoint = f"tcp://127.0.0.1:{port}"
        else:
            sock.bind(endpoint)
        self.endpoint = endpoint
        self.wire = Wire(sock)
        self._queue: deque[tuple[bytes, Any]] = deque()
        self.seen: list[protocol.Frame] = []
        self.answer_heartbeats = True
        self.peers: dict[str, bytes] = {}  # node id -> the routing id it last used

    async def next(self, *, timeout: float = WAIT_S, heartbeats: bool = False) -> Any:
        """The next frame from any peer (HEARTBEATs skipped unless asked for)."""
        with anyio.fail_after(timeout):
            while True:
                if not self._queue:
                    for peer, payload in (await self.wire.receive()).messages:
                        # the frames of a BATCH one by one, each with its sender
                        batch = protocol.decode_batch(payload)
                        self._queue.extend((peer, entry) for entry in batch)
                peer, frame = self._queue.popleft()
                # A node's routing id is NODE_ID#RANDOM, new on each connection.
                self.peers[peer.partition(b"#")[0].decode()] = peer
                if isinstance(frame, protocol.ProtocolError):
                    raise frame
                self.seen.append(frame)
                if isinstance(frame, protocol.Heartbeat):
                    if self.answer_heartbeats:
                        self.wire.send_to(peer, protocol.encode(protocol.Heartbeat()))
                    if not heartbeats:
                        continue
                return frame

    async def expect(
        self, kind: type[F], *, timeout: float = WAIT_S, skip: tuple[type, ...] = ()
    ) -> F:
        """The next frame, a ``kind`` (frames of the ``skip`` types are passed over)."""
        while True:
            frame = await self.next(timeout=timeout)
            if isinstance(frame, skip) and not isinstance(frame, kind):
                continue
            assert isinstance(frame, kind), f"expected {kind.__name__}, got {frame!r}"
            return frame

    async def handshake(self, node_id: str = "n1") -> tuple[protocol.Hello, protocol.Ready]:
        """HELLO then READY from the node; answered with a HEARTBEAT (so it is connected)."""
        hello = await self.expect(protocol.Hello)
        assert hello.node_id == node_id
        self.send(node_id, protocol.Heartbeat())
        ready = await self.expect(protocol.Ready)
        return hello, ready

    async def result(
        self, job_id: str | None = None, *, timeout: float = WAIT_S
    ) -> protocol.Result:
        """The next RESULT (of ``job_id``: resends of others are passed over)."""
        skip = (protocol.Accept, protocol.Progress, protocol.Ready)
        while True:
            result = await self.expect(protocol.Result, timeout=timeout, skip=skip)
            if job_id is None or result.job_id == job_id:
                return result

    def ack_results(self, node_id: str = "n1") -> None:
        """ACK every RESULT seen so far (if the node is still there)."""
        for frame in self.seen:
            if isinstance(frame, protocol.Result):
                ack = protocol.encode(protocol.Ack(frame.job_id, frame.lease))
                self.wire.send_to(self.peer(node_id), ack)

    def peer(self, node_id: str) -> bytes:
        """The routing id of ``node_id``'s current connection."""
        return self.peers.get(node_id, node_id.encode())

    def send(self, node_id: str, frame: Any) -> None:
        outcome = self.wire.send_to(self.peer(node_id), protocol.encode(frame))
        assert outcome == "sent", outcome

    def send_raw(self, node_id: str, payload: bytes) -> None:
        assert self.wire.send_to(self.peer(node_id), payload) == "sent"

    def close(self) -> None:
        self.wire.close()


def pid_alive(pid: int) -> bool:
    """Whether a process exists (a zombie counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError):
        return False
    except OSError:
        return os.path.exists(f"/proc/{pid}")


NODE_EVENTS = ("mabeam", "node")


async def settled(handle: NodeHandle, condition: Any) -> None:
    """Wait until ``condition(statistics)`` holds, re-checked on each node event."""
    await until(lambda: condition(handle.statistics()), on=NODE_EVENTS, timeout=WAIT_S)
