"""Garbage on the wire of a live coordinator: it counts the rejects and keeps serving.

Hypothesis draws payloads (random bytes, msgpack values of wrong shapes, truncated
frames, wrong versions, frames of every type from ``protocol.FRAME_CLASSES`` with random
field values, valid frames of every type) and sends them over real DEALER sockets to a
coordinator running in this process (its statistics are readable), each example from a
fresh peer and fewer than ``MAX_CONSECUTIVE_BAD_FRAMES`` of them, so no peer is
quarantined. After each example a STATUS from the same socket must be answered, and the
rejects counted must cover every payload ``protocol.decode`` refuses. Then a real client
and a real node must still get a job done. One test does the same against a subprocess
coordinator, whose rejects are read from its debug log.
"""

from __future__ import annotations

import itertools
import random
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgpack
import pytest
import zmq
from cluster_harness import HERE, check_history, ep, running_cluster, submit
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_protocol import frames

from mabeam.cluster import protocol
from mabeam.cluster.coordinator import CoordinatorConfig, CoordinatorHandle, start_coordinator
from mabeam.cluster.keys import load_key
from mabeam.cluster.node import NodeConfig, start_node

_CHECKS = [HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.function_scoped_fixture]
CI = settings(max_examples=50, deadline=None, suppress_health_check=_CHECKS)
SOAK = settings(max_examples=1_000, deadline=None, suppress_health_check=_CHECKS)
_peers = itertools.count(1)


# -- payload strategies ------------------------------------------------------------------

leaves = (
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats()
    | st.text(max_size=16)
    | st.binary(max_size=16)
)
values = st.recursive(
    leaves,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=6,
)


def pack(value: Any) -> bytes:
    data: bytes = msgpack.packb(value, use_bin_type=True)
    return data


@st.composite
def typed_frames(draw: st.DrawFn) -> bytes:
    """A map of a real frame type whose fields (from the dataclass) hold random values;
    some fields left out, sometimes an extra one."""
    cls = draw(st.sampled_from(protocol.FRAME_CLASSES))
    raw: dict[str, Any] = {"v": protocol.PROTOCOL_VERSION, "t": cls.TYPE}  # type: ignore[attr-defined]
    for name in cls.__dataclass_fields__:  # type: ignore[attr-defined]
        if draw(st.integers(0, 4)):
            raw[name] = draw(values)
    if draw(st.booleans()):
        raw[draw(st.text(min_size=1, max_size=8))] = draw(values)
    return pack(raw)


@st.composite
def truncated(draw: st.DrawFn) -> bytes:
    payload = protocol.encode(draw(frames))
    return payload[: draw(st.integers(0, max(len(payload) - 1, 0)))]


@st.composite
def wrong_version(draw: st.DrawFn) -> bytes:
    frame = msgpack.unpackb(protocol.encode(draw(frames)), raw=False)
    frame["v"] = draw(st.sampled_from([0, 2, -1, 2**40, "1", 1.0, True, None]))
    return pack(frame)


payloads = st.one_of(
    st.binary(max_size=64),
    values.map(pack),
    truncated(),
    wrong_version(),
    typed_frames(),
    frames.map(protocol.encode),
)


def refused_locally(payload: bytes) -> bool:
    """Whether ``protocol.decode`` refuses the payload (the coordinator must count it)."""
    try:
        protocol.decode(payload)
    except protocol.ProtocolError:
        return True
    return False


# -- a socket of our own -------------------------------------------------------------------


class RawPeer:
    """A DEALER with a fresh routing id that no drawn frame can name; with ``keys`` (a
    harness's ``Keys``) a CURVE client holding the client key (an authenticated peer
    that sends garbage), else plain TCP."""

    def __init__(self, ctx: zmq.Context[Any], endpoint: str, keys: Any = None) -> None:
        self.sock = ctx.socket(zmq.DEALER)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.setsockopt(zmq.ROUTING_ID, f"~fuzz~{next(_peers)}".encode())
        if keys is not None:
            client = load_key(keys.client_secret)
            self.sock.curve_serverkey = load_key(keys.coordinator_public).public
            self.sock.curve_publickey = client.public
            self.sock.curve_secretkey = client.secret
        self.sock.connect(endpoint)

    def status(self, timeout: float = 10.0) -> protocol.StatusReply:
        """Send STATUS and return its reply, skipping the answers to earlier frames."""
        request_id = f"probe-{next(_peers)}"
        self.sock.send(protocol.encode(protocol.Status(request_id)))
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            if not self.sock.poll(int(left * 1000) + 1):
                break
            frame = protocol.decode(self.sock.recv())
            if isinstance(frame, protocol.StatusReply) and frame.request_id == request_id:
                return frame
        raise AssertionError(f"no STATUS_REPLY within {timeout} s")

    def close(self) -> None:
        self.sock.close(linger=0)


@pytest.fixture(scope="module")
def zmq_ctx() -> Iterator[zmq.Context[Any]]:
    ctx: zmq.Context[Any] = zmq.Context()
    yield ctx
    ctx.destroy(linger=0)


class LiveCoordinator:
    """An in-process coordinator on a free port, in an event loop of its own thread."""

    def __init__(self, portal: Any, handle: CoordinatorHandle, state: Path) -> None:
        self.portal = portal
        self.handle = handle
        self.state = state
        self.endpoint = handle.endpoint

    def statistics(self) -> Snapshot:
        """Rejects and error counters now, read in the coordinator's event loop."""
        shared = self.handle.app.shared

        def read() -> Snapshot:
            c = shared.counters
            return Snapshot(shared.health.statistics(), c.quarantined_drops, c.internal_errors)

        snapshot: Snapshot = self.portal.call(read)
        return snapshot


@dataclass(frozen=True)
class Snapshot:
    """The coordinator's counters this module checks."""

    rejects: Any
    quarantined_drops: int
    internal_errors: int


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveCoordinator]:
    from anyio.from_thread import start_blocking_portal

    state = tmp_path_factory.mktemp("fuzz") / "state.db"
    config = CoordinatorConfig(
        bind="tcp://127.0.0.1:0", state=state, synchronous="NORMAL", heartbeat_s=0.2, insecure=True
    )
    with (
        start_blocking_portal("asyncio") as portal,
        portal.wrap_async_context_manager(start_coordinator(config)) as handle,
    ):
        yield LiveCoordinator(portal, handle, state)


def send_and_check(live: LiveCoordinator, ctx: zmq.Context[Any], batch: list[bytes]) -> None:
    before = live.statistics()
    peer = RawPeer(ctx, live.endpoint)
    try:
        for payload in batch:
            peer.sock.send(payload)
        reply = peer.status()  # in order after the batch: every frame of it was handled
    finally:
        peer.close()
    after = live.statistics()
    counted = after.rejects.total - before.rejects.total
    expected = sum(map(refused_locally, batch))
    assert expected <= counted <= len(batch), (expected, counted, after.rejects.by_code)
    assert after.quarantined_drops == before.quarantined_drops
    assert after.internal_errors == before.internal_errors
    assert isinstance(reply.counts, dict)


@CI
@given(batch=st.lists(payloads, min_size=1, max_size=protocol.MAX_CONSECUTIVE_BAD_FRAMES - 1))
def test_random_frames_are_counted_and_the_coordinator_keeps_answering(
    live: LiveCoordinator, zmq_ctx: zmq.Context[Any], batch: list[bytes]
) -> None:
    send_and_check(live, zmq_ctx, batch)


@pytest.mark.slow
@SOAK
@given(batch=st.lists(payloads, min_size=1, max_size=protocol.MAX_CONSECUTIVE_BAD_FRAMES - 1))
def test_random_frames_soak(
    live: LiveCoordinator, zmq_ctx: zmq.Context[Any], batch: list[bytes]
) -> None:
    send_and_check(live, zmq_ctx, batch)


def test_oversize_and_over_limit_frames_are_refused(
    live: LiveCoordinator, zmq_ctx: zmq.Context[Any]
) -> None:
    before = live.statistics()
    # Over MAXMSGSIZE: libzmq drops it and resets the connection; nothing reaches the
    # coordinator's code, and the next connection is served.
    big = RawPeer(zmq_ctx, live.endpoint)
    big.sock.send(b"\x00" * (protocol.MAX_FRAME_BYTES + 1024))
    big.close()
    # Under it, but a string past the 256 KiB limit: decoded, refused, counted.
    long_str = pack({"v": 1, "t": "STATUS", "request_id": "x" * 300_000})
    assert len(long_str) < protocol.MAX_FRAME_BYTES and refused_locally(long_str)
    send_and_check(live, zmq_ctx, [long_str])
    after = live.statistics()
    assert after.rejects.by_code.get("too_large", 0) > before.rejects.by_code.get("too_large", 0)


def test_after_the_fuzzing_a_client_and_a_node_still_get_a_job_done(
    live: LiveCoordinator, tmp_path: Path
) -> None:
    """Runs after the fuzz tests in this module (same coordinator)."""
    stats = live.statistics()
    assert stats.rejects.total > 0 and stats.internal_errors == 0
    config = NodeConfig(
        coordinator=live.endpoint,
        node_id="after-fuzz",
        slots=1,
        gpus="none",
        work_dir=tmp_path / "node",
        pythonpath=(str(HERE),),
        heartbeat_s=0.2,
        drain_timeout_s=0.5,
        insecure=True,
    )
    with live.portal.wrap_async_context_manager(start_node(config)) as node:
        live.portal.call(node.connected.wait)
        from cluster_harness import client_call

        job_id = submit(live.endpoint, [protocol.JobSpec(ep("square"), {"x": 12})], insecure=True)[
            0
        ]

        async def result(client: Any) -> Any:
            return await client.result(job_id, timeout=20)

        value = client_call(live.endpoint, result, insecure=True)
    assert value["y"] == 144
    view = check_history(live.state, all_terminal=False)
    assert view.jobs[job_id].state == "succeeded"


def _bad_payloads(seed: int) -> list[bytes]:
    """A fixed sample of the kinds above, for the subprocess coordinator."""
    rng = random.Random(seed)
    good = protocol.encode(protocol.Status("s1"))
    sample = [
        bytes(rng.randrange(256) for _ in range(rng.randrange(1, 40))),
        pack([1, 2, 3]),
        pack({"v": 1}),
        good[: len(good) // 2],
        pack({"v": 2, "t": "STATUS", "request_id": "s2"}),
        pack({"v": 1, "t": "NOPE"}),
        pack({"v": 1, "t": "SUBMIT", "request_id": "s3", "specs": "x"}),
        pack({"v": 1, "t": "RESULT", "job_id": 7, "lease": None}),
    ]
    return sample


def test_a_subprocess_coordinator_counts_garbage_and_keeps_serving(tmp_path: Path) -> None:
    with running_cluster(tmp_path) as cluster:
        coord = cluster.start_coordinator(log_level="debug")
        cluster.start_node("n1", slots=1)
        ctx: zmq.Context[Any] = zmq.Context()
        try:
            for seed in range(3):
                peer = RawPeer(ctx, cluster.endpoint, cluster.keys)
                batch = _bad_payloads(seed)
                assert all(map(refused_locally, batch))
                for payload in batch:
                    peer.sock.send(payload)
                peer.status()
                peer.close()
        finally:
            ctx.destroy(linger=0)
        assert coord.count(r"bad frame from ") >= 3 * len(_bad_payloads(0))
        job_id = submit(cluster.endpoint, [protocol.JobSpec(ep("square"), {"x": 5})])[0]
        view = cluster.wait_terminal([job_id])
        check_history(cluster.state)
        assert view.jobs[job_id].result["y"] == 25
        assert coord.alive
