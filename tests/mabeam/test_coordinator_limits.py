"""Slow, half-open and numerous peers cannot hold a coordinator's resources forever.

- A TCP connection that never finishes the ZMTP handshake (it sends nothing, or half a
  greeting) is closed after ``handshake_s`` (the ROUTER's ``HANDSHAKE_IVL``).
- A connection that finished the handshake and then went silent, not even answering
  ZMTP heartbeats (a peer that vanished), is closed after ``connection_idle_s``; a real
  DEALER that merely sends nothing stays connected (libzmq answers the PINGs).
- A thousand peers (ten thousand in the ``slow`` run) that send one bad frame each
  leave at most ``max_tracked_peers`` entries in ``PeerHealth``.
- A client holds at most ``max_watches_per_client`` open WATCHes.

The raw sockets are the ``socket`` module's; each wait for a close is a blocking
``recv`` under a socket timeout, in a worker thread while the coordinator runs here.
"""

from __future__ import annotations

import socket
import struct
import time
from typing import Any

import anyio
import pytest
import zmq
from coord_helpers import Cluster, cluster, spec
from frame_strategies import pack

from mabeam.cluster import protocol as p

V = p.PROTOCOL_VERSION


pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


# -- raw TCP -----------------------------------------------------------------------------

_SIGNATURE = b"\xff" + bytes(8) + b"\x7f"
_GREETING = _SIGNATURE + bytes([3, 0]) + b"NULL".ljust(20, b"\0") + bytes(32)


def _ready_command() -> bytes:
    """ZMTP 3.0's READY command of a DEALER (NULL mechanism): the handshake's end."""
    name, value = b"Socket-Type", b"DEALER"
    body = b"\x05READY" + bytes([len(name)]) + name + struct.pack(">I", len(value)) + value
    return bytes([0x04, len(body)]) + body


def _held_for(endpoint: str, data: bytes, timeout: float = 10.0) -> float:
    """Connect, send ``data``, never answer; seconds until the coordinator closes."""
    host, port = endpoint.removeprefix("tcp://").rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=timeout) as raw:
        started = time.monotonic()
        raw.sendall(data)
        try:
            while raw.recv(4096):  # its greeting and PINGs, then EOF
                pass
        except ConnectionResetError:
            pass
        except TimeoutError:
            raise AssertionError(f"the connection was still open after {timeout} s") from None
        return time.monotonic() - started


def _disconnects(sock: Any, seconds: float) -> int:
    """EVENT_DISCONNECTED events of a DEALER over ``seconds`` (a wait on its monitor)."""
    monitor = sock.get_monitor_socket(zmq.EVENT_DISCONNECTED)
    try:
        deadline, seen = time.monotonic() + seconds, 0
        while (left := deadline - time.monotonic()) > 0:
            if monitor.poll(int(left * 1000) + 1):
                monitor.recv_multipart()
                seen += 1
        return seen
    finally:
        sock.disable_monitor()
        monitor.close(linger=0)


async def served(env: Cluster) -> None:
    """A fresh client still gets an answer."""
    reply = await env.client().status()
    assert isinstance(reply, p.StatusReply)


async def test_a_connection_that_never_finishes_the_handshake_is_closed_in_time(
    tmp_path: Any,
) -> None:
    async with cluster(tmp_path, handshake_s=0.3) as env:
        endpoint = env.coord.endpoint
        silent = await anyio.to_thread.run_sync(_held_for, endpoint, b"")
        half = await anyio.to_thread.run_sync(_held_for, endpoint, _GREETING[:11])
        assert 0.25 <= silent < 3.0 and 0.25 <= half < 3.0, (silent, half)
        await served(env)


async def test_a_peer_that_stops_answering_heartbeats_is_let_go_and_a_quiet_one_is_not(
    tmp_path: Any,
) -> None:
    async with cluster(tmp_path, connection_idle_s=0.4) as env:
        quiet = env.client()
        await served(env)  # ``quiet`` is connected before the wait below
        gone = anyio.to_thread.run_sync(_held_for, env.coord.endpoint, _GREETING + _ready_command())
        async with anyio.create_task_group() as tg:
            held: list[float] = []

            async def vanish() -> None:
                held.append(await gone)

            tg.start_soon(vanish)
            assert await anyio.to_thread.run_sync(_disconnects, quiet.sock, 1.5) == 0
        assert 0.3 <= held[0] < 3.0, held
        assert isinstance(await quiet.status(), p.StatusReply)  # the same connection


@pytest.mark.parametrize("peers", [1_000, pytest.param(10_000, marks=pytest.mark.slow)])
async def test_thousands_of_peers_with_one_bad_frame_each_leave_peer_health_bounded(
    tmp_path: Any, peers: int
) -> None:
    bound = 100
    async with cluster(tmp_path, max_tracked_peers=bound) as env:
        before = (await env.coord.statistics()).rejects
        for start in range(0, peers, 250):
            await anyio.to_thread.run_sync(_one_bad_frame_each, env, start, 250)
        after = (await env.coord.statistics()).rejects
        assert after.total - before.total == peers
        assert after.by_code["bad_type"] - before.by_code["bad_type"] == peers
        assert after.peers_tracked == bound
        assert (
            after.peers_forgotten - before.peers_forgotten == peers - bound + before.peers_tracked
        )
        await served(env)


def _one_bad_frame_each(env: Cluster, start: int, n: int) -> None:
    """``n`` peers at once send one bad frame each (a STATUS whose ``job_ids`` is an
    int) and wait for the ERROR that answers it (the frame's request id is readable)."""
    socks = []
    try:
        for i in range(start, start + n):
            sock = env.ctx.socket(zmq.DEALER)
            socks.append(sock)
            sock.setsockopt(zmq.LINGER, 0)
            sock.setsockopt(zmq.ROUTING_ID, f"peer-{i}".encode())
            sock.connect(env.coord.endpoint)
            sock.send(pack({"v": V, "t": "STATUS", "request_id": f"r{i}", "job_ids": i}))
        for i, sock in enumerate(socks, start):
            assert sock.poll(10_000), f"no answer for peer {i}"
            error = p.decode(sock.recv())
            assert isinstance(error, p.Error) and error.in_reply_to == f"r{i}", error
    finally:
        for sock in socks:
            sock.close(linger=0)


async def test_a_client_over_its_watch_limit_is_refused_but_may_send_a_watch_again(
    tmp_path: Any,
) -> None:
    async with cluster(tmp_path, max_watches_per_client=2) as env:
        client, other = env.client(), env.client()
        job = await client.one(spec())  # queued: no node, its watches stay open
        for request_id in ("w1", "w2"):
            client.send(p.Watch(request_id, (job,)))
            assert (await client.expect(p.Event)).request_id == request_id
        client.send(p.Watch("w3", (job,)))
        error = await client.expect(p.Error)
        assert (error.code, error.in_reply_to) == ("too_many_watches", "w3")
        client.send(p.Watch("w1", (job,)))  # sent again: it replaces the open w1
        assert (await client.expect(p.Event)).request_id == "w1"
        other.send(p.Watch("w1", (job,)))  # the limit is per client
        assert (await other.expect(p.Event)).request_id == "w1"
