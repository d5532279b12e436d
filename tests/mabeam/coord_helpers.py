"""Fake nodes and clients for coordinator tests: raw ZeroMQ DEALER sockets.

Each peer is a plain (sync) DEALER; a receive polls the socket with a timeout in a
worker thread (``anyio.to_thread``), so the coordinator, running in the test's event
loop, keeps serving meanwhile. Nothing sleeps: every wait is a poll with a deadline.
"""

from __future__ import annotations

import itertools
import sqlite3
import time
from collections import deque
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any, TypeVar

import anyio
import zmq

from mabeam.cluster import protocol as p
from mabeam.cluster._security import secure_client
from mabeam.cluster.coordinator import CoordinatorConfig, CoordinatorHandle, start_coordinator
from mabeam.cluster.keys import KeyPair

F = TypeVar("F")
WAIT = 5.0
_ids = itertools.count(1)


class Peer:
    """One DEALER connected to the coordinator; frames in and out, checked."""

    def __init__(
        self,
        ctx: zmq.Context[Any],
        endpoint: str,
        routing_id: bytes | None = None,
        *,
        curve: tuple[KeyPair, bytes] | None = None,
    ):
        """``curve``: (this peer's key pair, the coordinator's public key) for CURVE."""
        self.sock = ctx.socket(zmq.DEALER)
        self.sock.setsockopt(zmq.LINGER, 0)
        self._batch: deque[p.Frame | p.ProtocolError] = deque()
        if routing_id is not None:
            self.sock.setsockopt(zmq.ROUTING_ID, routing_id)
        if curve is not None:
            secure_client(self.sock, *curve)
        self.sock.connect(endpoint)

    def send(self, frame: Any) -> None:
        self.sock.send(p.encode(frame))

    def send_raw(self, payload: bytes) -> None:
        self.sock.send(payload)

    def _poll(self, timeout: float) -> p.Frame | None:
        """The next frame: a BATCH's entries come one by one (a bad one is raised)."""
        if not self._batch:
            if not self.sock.poll(max(int(timeout * 1000), 0)):
                return None
            self._batch.extend(p.decode_batch(self.sock.recv(zmq.NOBLOCK)))
        frame = self._batch.popleft()
        if isinstance(frame, p.ProtocolError):
            raise frame
        return frame

    async def recv(self, timeout: float = WAIT, *, heartbeats: bool = False) -> p.Frame:
        """The next frame (HEARTBEATs skipped unless ``heartbeats``)."""
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            frame = await anyio.to_thread.run_sync(self._poll, left)
            if frame is None:
                break
            if heartbeats or not isinstance(frame, p.Heartbeat):
                return frame
        raise AssertionError(f"no frame within {timeout} s")

    async def expect(self, kind: type[F], timeout: float = WAIT) -> F:
        frame = await self.recv(timeout)
        assert isinstance(frame, kind), f"expected {kind.__name__}, got {frame!r}"
        return frame

    async def quiet(self, within: float = 0.3) -> None:
        """Assert that no frame but HEARTBEATs arrives for ``within`` seconds."""
        deadline = time.monotonic() + within
        while (left := deadline - time.monotonic()) > 0:
            frame = await anyio.to_thread.run_sync(self._poll, left)
            assert frame is None or isinstance(frame, p.Heartbeat), f"unexpected {frame!r}"

    def close(self) -> None:
        self.sock.close(linger=0)


class FakeNode(Peer):
    """A node agent reduced to its frames: HELLO, READY, ACCEPT, PROGRESS, RESULT."""

    def __init__(
        self,
        ctx: zmq.Context[Any],
        endpoint: str,
        node_id: str,
        *,
        gpus: int = 0,
        cpus: int = 8,
        ram_mb: int = 16_000,
        slots: int = 4,
        curve: tuple[KeyPair, bytes] | None = None,
    ) -> None:
        super().__init__(ctx, endpoint, node_id.encode(), curve=curve)
        self.node_id = node_id
        gpu_list = tuple(p.Gpu(f"GPU-{node_id}-{i}", "Fake", 16_000) for i in range(gpus))
        self.inventory = p.Inventory(node_id, gpu_list, cpus, ram_mb, slots)

    def hello(self, running: tuple[p.RunningJob, ...] = (), credit: int | None = None) -> None:
        self.send(p.Hello(self.node_id, self.inventory, running))
        if credit:
            self.send(p.Ready(credit))

    def ready(self, credit: int) -> None:
        self.send(p.Ready(credit))

    def accept(self, d: p.Dispatch) -> None:
        self.send(p.Accept(d.job_id, d.lease))

    def ok(self, d: p.Dispatch, value: Any = None) -> None:
        self.send(p.Result(d.job_id, d.lease, d.attempt, True, value, duration_s=0.01))

    def fail(self, d: p.Dispatch, kind: str, error: str = "boom") -> None:
        self.send(p.Result(d.job_id, d.lease, d.attempt, False, None, error, kind, 0.01))  # type: ignore[arg-type]

    async def sync(self, job_id: str) -> None:
        """Wait until everything this node sent so far is committed: a RESULT under a
        wrong lease is stale, and its ACK comes after the frames before it."""
        self.send(p.Result(job_id, "5ca1ab1e5ca1ab1e", 1, True, duration_s=0.0))
        assert await self.expect(p.Ack) == p.Ack(job_id, "5ca1ab1e5ca1ab1e")

    async def dispatches(self, n: int, timeout: float = WAIT) -> list[p.Dispatch]:
        return [await self.expect(p.Dispatch, timeout) for _ in range(n)]


class FakeClient(Peer):
    """A client reduced to its frames; each request gets a fresh request id."""

    def request_id(self) -> str:
        return f"r{next(_ids)}"

    async def submit(
        self, *specs: p.JobSpec, key: str | None = None, sweep_id: str | None = None
    ) -> p.Submitted:
        self.send(p.Submit(self.request_id(), key or f"key-{next(_ids)}", specs, sweep_id))
        return await self.expect(p.Submitted)

    async def one(self, spec: p.JobSpec) -> str:
        return (await self.submit(spec)).job_ids[0]

    async def status(self, job_ids: tuple[str, ...] = (), sweep_id: str | None = None) -> Any:
        self.send(p.Status(self.request_id(), job_ids, sweep_id))
        return await self.recv()

    async def cancel(self, job_id: str) -> p.Frame:
        self.send(p.CancelJob(self.request_id(), job_id))
        return await self.recv()


def spec(entrypoint: str = "pkg.tasks:run", **kw: Any) -> p.JobSpec:
    """A job spec with unique params unless ``params`` is given (no cache hits)."""
    params = kw.pop("params", {"n": next(_ids)})
    return p.JobSpec(entrypoint, params, **kw)


class Cluster:
    """A running coordinator, a ZeroMQ context, and the fake peers made from it."""

    def __init__(self, coord: CoordinatorHandle, ctx: zmq.Context[Any]) -> None:
        self.coord = coord
        self.ctx = ctx
        self.peers: list[Peer] = []

    @property
    def state(self) -> Path:
        return Path(self.coord.config.state)

    def node(self, node_id: str = "n1", **kw: Any) -> FakeNode:
        node = FakeNode(self.ctx, self.coord.endpoint, node_id, **kw)
        self.peers.append(node)
        return node

    def client(self) -> FakeClient:
        client = FakeClient(self.ctx, self.coord.endpoint)
        self.peers.append(client)
        return client

    def raw(self, routing_id: bytes | None = None) -> Peer:
        peer = Peer(self.ctx, self.coord.endpoint, routing_id)
        self.peers.append(peer)
        return peer

    def row(self, job_id: str) -> dict[str, Any]:
        return store_row(self.state, job_id)


def config(tmp_path: Path, **overrides: Any) -> CoordinatorConfig:
    """A test coordinator: free port, NORMAL sync, short back-off."""
    base: dict[str, Any] = {
        "bind": "tcp://127.0.0.1:0",
        "state": tmp_path / "state.db",
        "synchronous": "NORMAL",
        "retry_backoff_s": 0.05,
        "retry_backoff_cap_s": 0.2,
    }
    base.update(overrides)
    if "key" not in base:
        base.setdefault("insecure", True)  # plain TCP on loopback: tests of the protocol
    return CoordinatorConfig(**base)


@asynccontextmanager
async def cluster(tmp_path: Path, **overrides: Any) -> AsyncIterator[Cluster]:
    """A coordinator (in this runtime, or a new one) and peers closed on the way out."""
    with zmq_context() as ctx:
        async with start_coordinator(config(tmp_path, **overrides)) as coord:
            env = Cluster(coord, ctx)
            try:
                yield env
            finally:
                for peer in env.peers:
                    peer.close()


@contextmanager
def zmq_context() -> Iterator[zmq.Context[Any]]:
    ctx: zmq.Context[Any] = zmq.Context()
    try:
        yield ctx
    finally:
        ctx.destroy(linger=0)  # closes the sockets a failed test left open


def store_row(path: Path, job_id: str) -> dict[str, Any]:
    """A job's row, read through a separate read-only connection (what is durable)."""
    seq = int(job_id.rsplit("-", 1)[1])
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        conn.row_factory = sqlite3.Row
        row = conn.execute(
            "SELECT state, attempt, failures, node, token, error FROM jobs WHERE seq = ?", (seq,)
        ).fetchone()
    finally:
        conn.close()
    assert row is not None, f"no job {job_id} in {path}"
    return dict(row)
