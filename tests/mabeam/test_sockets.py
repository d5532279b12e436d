"""The cluster's socket options, checked on real ZeroMQ sockets over tcp://127.0.0.1.

Every wait is a poll with a timeout (on the socket or on a socket monitor); sockets and
the context are closed in ``finally``.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from typing import Any

import pytest
import zmq
from zmq.utils.monitor import recv_monitor_message

from mabeam.cluster._sockets import (
    CONNECTION_IDLE_S,
    DEFAULT_HWM,
    HANDSHAKE_S,
    configure_dealer,
    configure_router,
    drain,
    send_to,
    try_send,
)
from mabeam.cluster.protocol import (
    MAX_FRAME_BYTES,
    Dispatch,
    Event,
    Hello,
    Inventory,
    JobSpec,
    Progress,
    ProtocolError,
    Ready,
    Submit,
    Submitted,
    decode,
    encode,
)

LOOPBACK = "tcp://127.0.0.1"
WAIT_MS = 5_000

Socket = zmq.Socket[Any]


class Sockets:
    """A context and the sockets made from it, all closed by ``close``."""

    def __init__(self) -> None:
        self.ctx = zmq.Context()
        self.opened: list[Socket] = []

    def make(self, kind: int) -> Socket:
        sock = self.ctx.socket(kind)
        sock.setsockopt(zmq.LINGER, 0)
        self.opened.append(sock)
        return sock

    def router(self, **options: Any) -> tuple[Socket, str]:
        sock = self.make(zmq.ROUTER)
        configure_router(sock, **options)
        port = sock.bind_to_random_port(LOOPBACK)
        return sock, f"{LOOPBACK}:{port}"

    def dealer(self, endpoint: str, **options: Any) -> Socket:
        sock = self.make(zmq.DEALER)
        configure_dealer(sock, **options)
        sock.connect(endpoint)
        return sock

    def monitor(self, sock: Socket) -> Socket:
        mon = sock.get_monitor_socket()
        self.opened.append(mon)
        return mon

    def close(self) -> None:
        for sock in reversed(self.opened):
            sock.close(linger=0)
        self.ctx.term()


@pytest.fixture
def zsock() -> Iterator[Sockets]:
    sockets = Sockets()
    try:
        yield sockets
    finally:
        sockets.close()


def recv(sock: Socket, timeout_ms: int = WAIT_MS) -> list[bytes]:
    """One message: poll (with a timeout), then receive without blocking."""
    assert sock.poll(timeout_ms, zmq.POLLIN), "no message within the timeout"
    (message,) = drain(sock, limit=1)
    return message


def wait_event(monitor: Socket, event: int, timeout_ms: int = WAIT_MS) -> None:
    """Poll the monitor until ``event`` shows up (other events are skipped)."""
    deadline = time.monotonic() + timeout_ms / 1000
    while (left := deadline - time.monotonic()) > 0:
        ready = monitor.poll(int(left * 1000) + 1, zmq.POLLIN)
        if ready and recv_monitor_message(monitor, zmq.NOBLOCK)["event"] == event:
            return
    raise AssertionError(f"no monitor event {event} within {timeout_ms} ms")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def test_the_options_are_set_as_documented(zsock: Sockets) -> None:
    router, endpoint = zsock.router()
    dealer = zsock.dealer(endpoint, routing_id=b"node-1")
    for sock in (router, dealer):
        assert sock.getsockopt(zmq.MAXMSGSIZE) == MAX_FRAME_BYTES
        assert sock.getsockopt(zmq.SNDHWM) == sock.getsockopt(zmq.RCVHWM) == DEFAULT_HWM
        assert sock.getsockopt(zmq.LINGER) == 0
    assert dealer.getsockopt(zmq.IMMEDIATE) == 1
    assert dealer.getsockopt(zmq.ROUTING_ID) == b"node-1"
    assert router.getsockopt(zmq.HANDSHAKE_IVL) == HANDSHAKE_S * 1000 == 10_000
    half_idle = CONNECTION_IDLE_S * 1000 / 2
    assert router.getsockopt(zmq.HEARTBEAT_IVL) == router.getsockopt(zmq.HEARTBEAT_TIMEOUT)
    assert router.getsockopt(zmq.HEARTBEAT_IVL) == half_idle == 30_000
    tuned = zsock.make(zmq.ROUTER)
    configure_router(tuned, handshake_s=0.25, idle_s=0.5)
    assert tuned.getsockopt(zmq.HANDSHAKE_IVL) == 250 and tuned.getsockopt(zmq.HEARTBEAT_IVL) == 250
    for bad in (0.0, -1.0, float("nan"), 1e10):
        with pytest.raises(ValueError, match="handshake_s"):
            configure_router(zsock.make(zmq.ROUTER), handshake_s=bad)
    with pytest.raises(ValueError):
        configure_router(dealer)
    with pytest.raises(ValueError):
        configure_dealer(router)
    with pytest.raises(ValueError):
        configure_dealer(zsock.make(zmq.DEALER), routing_id=b"\x00reserved")
    with pytest.raises(ValueError):
        configure_dealer(zsock.make(zmq.DEALER), hwm=0)


def test_encoded_frames_round_trip_dealer_to_router_to_dealer(zsock: Sockets) -> None:
    router, endpoint = zsock.router()
    node = zsock.dealer(endpoint, routing_id=b"node-1")
    client = zsock.dealer(endpoint)
    hello = Hello("node-1", Inventory("node-1", cpus=8, ram_mb=16_000, slots=2))
    submit = Submit("req-1", "key-1", (JobSpec("pkg.mod:train", {"lr": 0.1}),))

    node.send(encode(hello))
    node_id, payload = recv(router)
    assert node_id == b"node-1"  # the routing id the node chose
    assert decode(payload) == hello
    node.send(encode(Ready(credit=2)))
    assert decode(recv(router)[1]) == Ready(credit=2)
    client.send(encode(submit))
    client_id, payload = recv(router)
    assert decode(payload) == submit

    dispatch = Dispatch("job-1", 1, "lease-1", "pkg.mod:train", {"lr": 0.1})
    assert send_to(router, node_id, encode(dispatch)) == "sent"
    assert send_to(router, client_id, encode(Submitted("req-1", ("job-1",)))) == "sent"
    assert decode(recv(node)[0]) == dispatch
    assert decode(recv(client)[0]) == Submitted("req-1", ("job-1",))

    # Node -> router -> client: a PROGRESS relayed as an EVENT of the client's watch.
    node.send(encode(Progress("job-1", "lease-1", step=3, metrics={"loss": 0.5})))
    progress = decode(recv(router)[1])
    assert isinstance(progress, Progress)
    event = Event("req-1", progress.job_id, "running", 1, "node-1", progress.step, progress.metrics)
    assert send_to(router, client_id, encode(event)) == "sent"
    assert decode(recv(client)[0]) == event


def test_router_mandatory_turns_a_send_to_an_unknown_peer_into_an_error(zsock: Sockets) -> None:
    router, _ = zsock.router()
    payload = encode(Dispatch("job-1", 1, "lease-1", "pkg.mod:train"))
    assert send_to(router, b"nobody", payload) == "unreachable"
    with pytest.raises(zmq.ZMQError) as info:
        router.send_multipart([b"nobody", payload], flags=zmq.NOBLOCK)
    assert info.value.errno == zmq.EHOSTUNREACH
    # Without the option, libzmq drops the same message and says nothing.
    silent = zsock.make(zmq.ROUTER)
    silent.bind_to_random_port(LOOPBACK)
    silent.send_multipart([b"nobody", payload], flags=zmq.NOBLOCK)


def test_a_send_to_a_vanished_node_becomes_unreachable_so_its_job_can_be_requeued(
    zsock: Sockets,
) -> None:
    router, endpoint = zsock.router()
    monitor = zsock.monitor(router)
    node = zsock.dealer(endpoint, routing_id=b"node-1")
    node.send(encode(Ready(credit=1)))
    assert recv(router)[0] == b"node-1"
    dispatch = encode(Dispatch("job-1", 1, "lease-1", "pkg.mod:train"))
    assert send_to(router, b"node-1", dispatch) == "sent"

    node.close(linger=0)
    wait_event(monitor, zmq.EVENT_DISCONNECTED)
    # The socket learns of the closed pipe when it next processes commands; a send in
    # between still reads "sent" (and is lost: the lease and heartbeats cover that).
    requeued: list[bytes] = []
    for _ in range(250):
        if send_to(router, b"node-1", dispatch) == "unreachable":
            requeued.append(dispatch)
            break
        router.poll(20)  # lets libzmq's command queue run; nothing will arrive
    assert requeued == [dispatch]


def test_router_handover_gives_a_reconnecting_node_its_routing_id_back(zsock: Sockets) -> None:
    router, endpoint = zsock.router()
    first = zsock.dealer(endpoint, routing_id=b"node-1")
    first.send(b"first")
    assert recv(router) == [b"node-1", b"first"]
    # The old connection is still up (a half-open one looks the same to the ROUTER).
    second = zsock.dealer(endpoint, routing_id=b"node-1")
    second.send(b"second")
    assert recv(router) == [b"node-1", b"second"]
    assert send_to(router, b"node-1", b"to the new one") == "sent"
    assert recv(second) == [b"to the new one"]
    assert not first.poll(0)


def test_maxmsgsize_drops_a_bigger_frame_and_resets_the_connection(zsock: Sockets) -> None:
    router, endpoint = zsock.router()
    monitor = zsock.monitor(router)
    raw = zsock.make(zmq.DEALER)  # a peer that does not check sizes before sending
    raw.connect(endpoint)

    half = MAX_FRAME_BYTES // 2
    overhead = len(encode(Dispatch("j", 1, "l", "a:b", params={"blob": b"\0" * half}))) - half
    exact = Dispatch("j", 1, "l", "a:b", params={"blob": b"\0" * (MAX_FRAME_BYTES - overhead)})
    payload = encode(exact)
    assert len(payload) == MAX_FRAME_BYTES
    raw.send(payload)
    assert decode(recv(router)[1]) == exact  # the limit itself passes

    raw.send(payload + b"\0")  # one byte over: libzmq drops it and hangs up
    wait_event(monitor, zmq.EVENT_DISCONNECTED)
    wait_event(monitor, zmq.EVENT_HANDSHAKE_SUCCEEDED)  # the DEALER reconnected by itself
    raw.send(encode(Ready(credit=1)))
    _, got = recv(router)
    assert decode(got) == Ready(credit=1)  # the oversized frame never arrived
    assert drain(router) == []

    # The sender-side check refuses such a frame before it reaches a socket.
    big = Dispatch("j", 1, "l", "a:b", params={"blob": b"\0" * MAX_FRAME_BYTES})
    with pytest.raises(ProtocolError) as info:
        encode(big)
    assert info.value.code == "too_large"


def test_maxmsgsize_boundary_with_a_small_limit(zsock: Sockets) -> None:
    router, endpoint = zsock.router(max_msg_size=4096)
    monitor = zsock.monitor(router)
    raw = zsock.make(zmq.DEALER)
    raw.connect(endpoint)
    raw.send(b"a" * 4096)
    assert recv(router)[1] == b"a" * 4096
    raw.send(b"b" * 4097)
    wait_event(monitor, zmq.EVENT_DISCONNECTED)
    wait_event(monitor, zmq.EVENT_HANDSHAKE_SUCCEEDED)
    raw.send(b"d")
    assert recv(router)[1] == b"d"
    assert drain(router) == []


def test_immediate_dealer_refuses_to_queue_while_nothing_is_connected(zsock: Sockets) -> None:
    endpoint = f"{LOOPBACK}:{free_port()}"
    node = zsock.dealer(endpoint, routing_id=b"node-1")
    plain = zsock.make(zmq.DEALER)
    plain.connect(endpoint)
    assert try_send(node, b"result") is False  # stays in the node's outbox
    plain.send(b"queued", flags=zmq.NOBLOCK)  # without IMMEDIATE it sits in a pipe

    router = zsock.make(zmq.ROUTER)
    configure_router(router)
    router.bind(endpoint)
    assert node.poll(WAIT_MS, zmq.POLLOUT), "the IMMEDIATE dealer never became writable"
    assert try_send(node, b"result") is True
    got = {tuple(recv(router)), tuple(recv(router))}
    assert (b"node-1", b"result") in got
    assert any(message[1] == b"queued" for message in got)


def test_send_to_reports_busy_when_the_peers_pipe_is_full(zsock: Sockets) -> None:
    router, endpoint = zsock.router(hwm=2)
    node = zsock.dealer(endpoint, routing_id=b"node-1", hwm=2)
    node.send(b"hello")
    assert recv(router)[0] == b"node-1"
    chunk = b"\0" * (256 * 1024)
    outcomes = []
    for _ in range(5_000):  # the node never reads: kernel buffers, then the HWM fill up
        outcome = send_to(router, b"node-1", chunk)
        outcomes.append(outcome)
        if outcome != "sent":
            break
    assert outcomes[-1] == "busy"
    assert recv(node) == [chunk]  # the node can still read what was queued


def test_drain_takes_at_most_limit_messages_and_never_blocks(zsock: Sockets) -> None:
    router, endpoint = zsock.router()
    assert drain(router) == []  # nothing ready: returns at once
    node = zsock.dealer(endpoint, routing_id=b"n")
    assert node.poll(WAIT_MS, zmq.POLLOUT)
    for i in range(5):
        node.send(b"%d" % i)
    got: list[list[bytes]] = []
    while len(got) < 5:
        assert router.poll(WAIT_MS, zmq.POLLIN)
        batch = drain(router, limit=2)
        assert 1 <= len(batch) <= 2
        got.extend(batch)
    assert [message[1] for message in got] == [b"0", b"1", b"2", b"3", b"4"]
    assert drain(router) == []
