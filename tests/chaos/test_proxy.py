"""The chaos proxy does what its faults say, on real ZeroMQ sockets; and the cluster bug
it found stays fixed (a DISPATCH lost in a connection reset that libzmq healed).

Waits block on a socket poll or on the proxy's traffic, never on a sleep.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import msgpack
import pytest
import zmq
from chaos_cluster import ChaosCluster
from cluster_harness import client_call, submit, wait_until
from proxy import COMMAND, LONG, MORE, ChaosProxy, ZmtpReader

from mabeam.cluster import protocol

pytestmark = pytest.mark.chaos


def frame(flags: int, body: bytes) -> bytes:
    if len(body) > 255:
        return bytes([flags | LONG]) + len(body).to_bytes(8, "big") + body
    return bytes([flags, len(body)]) + body


def greeting(mechanism: bytes) -> bytes:
    head = b"\xff" + b"\0" * 8 + b"\x7f" + b"\x03\x01"
    return head + mechanism.ljust(20, b"\0") + b"\0" * 32


def test_the_reader_cuts_a_zmtp_stream_into_greeting_commands_and_messages() -> None:
    dispatch = msgpack.packb({"v": 1, "t": "DISPATCH", "params": "x" * 300})
    stream = (
        greeting(b"NULL")
        + frame(COMMAND, b"\x05READY\x0bSocket-Type\0\0\0\x06DEALER")
        + frame(MORE, b"part one")
        + frame(0, msgpack.packb({"v": 1, "t": "READY", "credit": 2}))
        + frame(0, dispatch)  # over 255 bytes: an 8-byte length
    )
    reader = ZmtpReader()
    units = [unit for byte in range(len(stream)) for unit in reader.feed(stream[byte : byte + 1])]
    assert reader.mechanism == "NULL"
    assert b"".join(u.data for u in units) == stream  # nothing lost, nothing added
    assert [u.kind for u in units if u.kind != "greeting"] == ["control", "message", "message"]
    assert [u.label for u in units if u.kind == "message"] == ["?", "DISPATCH"]
    assert len(units[-1].data) == 9 + len(dispatch)
    curve = ZmtpReader()
    (_, hello, message) = curve.feed(
        greeting(b"CURVE") + frame(COMMAND, b"\x05HELLO" + b"\0" * 194)
        + frame(COMMAND, b"\x07MESSAGE" + b"\0" * 40)
    )  # fmt: skip
    assert (curve.mechanism, hello.kind, message.kind, message.label) == (
        "CURVE", "control", "message", "")  # fmt: skip


class Pair:
    """A ROUTER, and a DEALER connected to it through the proxy."""

    def __init__(self, curve: bool) -> None:
        ctx = zmq.Context.instance()
        self.router = ctx.socket(zmq.ROUTER)
        self.dealer = ctx.socket(zmq.DEALER)
        for sock in (self.router, self.dealer):
            sock.setsockopt(zmq.LINGER, 0)
        if curve:
            server_public, server_secret = zmq.curve_keypair()
            public, secret = zmq.curve_keypair()
            self.router.curve_server = True
            self.router.curve_secretkey = server_secret
            self.dealer.curve_serverkey = server_public
            self.dealer.curve_publickey = public
            self.dealer.curve_secretkey = secret
        port = self.router.bind_to_random_port("tcp://127.0.0.1")
        self.proxy = ChaosProxy(port, seed=7)
        self.dealer.setsockopt(zmq.ROUTING_ID, b"n1")
        self.dealer.connect(self.proxy.listen("n1"))

    def send(self, i: int, timeout: float = 5.0) -> None:
        """Send message ``i`` from the dealer once a connection takes it."""
        self.dealer.setsockopt(zmq.SNDTIMEO, int(timeout * 1000))
        self.dealer.send(msgpack.packb({"v": 1, "t": "HEARTBEAT", "i": i}))

    def received(self, within: float, count: int = 0) -> list[int]:
        """What the router got within ``within`` s (a poll with a deadline), returning
        early once it has ``count`` messages (0: wait the whole time)."""
        got: list[int] = []
        deadline = time.monotonic() + within
        while (left := deadline - time.monotonic()) > 0 and (not count or len(got) < count):
            if self.router.poll(int(left * 1000) + 1):
                got.append(msgpack.unpackb(self.router.recv_multipart()[1])["i"])
        return got

    def close(self) -> None:
        self.proxy.close()
        self.dealer.close()
        self.router.close()


@pytest.fixture(params=["null", "curve"])
def pair(request: pytest.FixtureRequest) -> Any:
    p = Pair(request.param == "curve")
    yield p
    p.close()


def test_partition_holds_traffic_in_order_until_it_heals(pair: Pair) -> None:
    pair.send(0)
    assert pair.received(within=2, count=1) == [0]
    pair.proxy.set_faults(["n1"], partitioned=True)
    for i in (1, 2, 3):
        pair.send(i)
    assert pair.received(within=0.2) == []  # held, the connection open
    assert pair.proxy.connections("n1") == 1
    pair.proxy.heal(["n1"])
    assert pair.received(within=2, count=3) == [1, 2, 3]


def test_a_drop_loses_the_message_and_resets_the_connection(pair: Pair) -> None:
    pair.send(0)
    assert pair.received(within=2, count=1) == [0]
    pair.proxy.set_faults(["n1"], drop_p=1.0)
    pair.send(1)
    pair.proxy.wait_for(lambda stats: stats["cut_connections"] == 1)
    pair.proxy.heal(["n1"])
    pair.send(2)  # libzmq reconnected the dealer by itself
    assert pair.received(within=2, count=1) == [2]
    assert pair.proxy.stats["connections"] == 2


def test_delay_holds_each_message_and_keeps_the_order(pair: Pair) -> None:
    pair.send(0)
    assert pair.received(within=2, count=1) == [0]
    pair.proxy.set_faults(["n1"], delay_s=0.2, jitter_s=0.05)
    start = time.monotonic()
    for i in (1, 2, 3):
        pair.send(i)
    assert pair.received(within=0.15) == []
    assert pair.received(within=2, count=3) == [1, 2, 3]
    assert time.monotonic() - start >= 0.2


def test_a_duplicate_arrives_twice_in_plain_tcp_and_is_a_reset_under_curve(pair: Pair) -> None:
    curve = pair.router.curve_server
    pair.send(0)
    assert pair.received(within=2, count=1) == [0]
    pair.proxy.set_faults(["n1"], dup_p=1.0)
    pair.send(1)
    if not curve:
        assert pair.received(within=2, count=2) == [1, 1]
        assert pair.received(within=0.1) == []
        return
    # libzmq refuses the repeated nonce and drops the connection; the dealer reconnects.
    assert pair.received(within=2, count=1) == [1]
    pair.proxy.wait_for(lambda stats: stats["connections"] == 2)


def test_a_dispatch_lost_in_a_reset_that_libzmq_heals_is_requeued_and_the_node_keeps_its_credit(
    tmp_path: Path,
) -> None:
    # Heartbeats of 0.5 s: nothing times out while the proxy holds the node's traffic.
    with ChaosCluster(tmp_path, secure=False, heartbeat=0.5, seed=0) as cluster:
        coord = cluster.start_coordinator()
        node = cluster.start_node("n1", slots=2)
        node.wait_connected()
        proxy = cluster.proxy
        assert proxy is not None
        proxy.set_faults(["n1"], partitioned=True)
        spec = protocol.JobSpec("chaos_tasks:work", {"x": 3, "work": 1000}, isolation="pool")
        (job_id,) = submit(coord.endpoint, [spec], insecure=True)
        proxy.wait_for(lambda stats: stats["seen DISPATCH"] == 1)  # held in the proxy
        proxy.cut(["n1"])  # ... and lost with the connection; libzmq reconnects at once
        proxy.heal(["n1"])

        def done() -> Any:
            job = cluster.read().jobs[job_id]
            return job if job.state == "succeeded" else None

        # Without a HELLO the job stayed leased to n1 for good, and n1's credit was 1.
        job = wait_until(done, [cluster.state.parent], 15, "the job's success")
        node.wait_line(r"the connection to \S+ dropped; HELLO again", stderr=True)
        assert job.kinds() == ["submitted", "leased", "requeued", "leased", "running", "succeeded"]
        assert job.events[2].detail["reason"] == "node restarted without it"
        assert job.result["attempt"] == 2 and job.succeeded_on() == "n1"
        status = client_call(coord.endpoint, lambda c: c.status(), insecure=True)
        assert [(n.inventory.node_id, n.credit) for n in status.nodes] == [("n1", 2)]
