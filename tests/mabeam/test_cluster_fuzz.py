"""Garbage on the wire of a live coordinator: it counts the rejects and keeps serving.

The payloads come from frame_strategies.py: frames of every type in ``protocol.
FRAME_CLASSES``, valid, mutated, truncated, oversized, with wrong types or an unknown
version, and random bytes. They go over real DEALER sockets to a coordinator running in
this process (its statistics are readable):

- each example of a batch from a fresh peer, fewer than ``MAX_CONSECUTIVE_BAD_FRAMES``
  of them so no peer is quarantined, then a STATUS from the same socket must be answered;
- every frame type in every category, and a stream of mixed frames with two-part
  messages, from one long-lived peer (``fuzz_peers.CoordinatorStream`` keeps it under
  the quarantine threshold with a good frame where needed);

and the rejects counted must be exactly the payloads ``coordinator_refuses``. Then a
real client and a real node must still get a job done. One test does the same against
a subprocess coordinator, whose rejects are read from its debug log, and the ``slow``
long run streams 100,000 frames into a coordinator process (fuzz_target.py), bounds
its RSS growth and runs a real job at the end.
"""

from __future__ import annotations

import itertools
import random
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import zmq
from cluster_harness import HERE, check_history, client_call, ep, running_cluster, submit
from frame_strategies import CATEGORIES, coordinator_refuses, mixed, pack, payloads
from fuzz_peers import MIB, CoordinatorStream, TargetProcess, feed, long_run
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mabeam.cluster import protocol
from mabeam.cluster.coordinator import CoordinatorConfig, CoordinatorHandle, start_coordinator
from mabeam.cluster.keys import load_key
from mabeam.cluster.node import NodeConfig, start_node
from mabeam.cluster.protocol import FRAME_CLASSES, PROTOCOL_VERSION

V = PROTOCOL_VERSION


_CHECKS = [HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.function_scoped_fixture]
CI = settings(max_examples=25, deadline=None, suppress_health_check=_CHECKS)
SOAK = settings(max_examples=1_000, deadline=None, suppress_health_check=_CHECKS)
_peers = itertools.count(1)


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


def check_counted(live: LiveCoordinator, before: Snapshot, refused: int) -> Snapshot:
    """The coordinator counted exactly ``refused`` rejects since ``before``; no peer was
    quarantined, nothing failed inside."""
    after = live.statistics()
    counted = after.rejects.total - before.rejects.total
    assert counted == refused, (counted, refused, after.rejects.by_code)
    assert after.quarantined_drops == before.quarantined_drops
    assert after.rejects.disconnects == before.rejects.disconnects
    assert after.internal_errors == before.internal_errors
    return after


def send_and_check(live: LiveCoordinator, ctx: zmq.Context[Any], batch: list[bytes]) -> None:
    """``batch`` from a fresh peer, then a STATUS it must answer (after the batch)."""
    before = live.statistics()
    stream = CoordinatorStream(ctx, live.endpoint, name=f"~fuzz~{next(_peers)}")
    try:
        for payload in batch:
            stream.send(payload)
        stream.sync()  # in order after the batch: every frame of it was handled
    finally:
        stream.close()
    check_counted(live, before, stream.refused)


batches = st.lists(mixed, min_size=1, max_size=protocol.MAX_CONSECUTIVE_BAD_FRAMES - 1)


@CI
@given(batch=batches)
def test_random_frames_are_counted_and_the_coordinator_keeps_answering(
    live: LiveCoordinator, zmq_ctx: zmq.Context[Any], batch: list[bytes]
) -> None:
    send_and_check(live, zmq_ctx, batch)


@pytest.mark.slow
@SOAK
@given(batch=batches)
def test_random_frames_soak(
    live: LiveCoordinator, zmq_ctx: zmq.Context[Any], batch: list[bytes]
) -> None:
    send_and_check(live, zmq_ctx, batch)


@pytest.fixture(scope="module")
def stream(live: LiveCoordinator, zmq_ctx: zmq.Context[Any]) -> Iterator[CoordinatorStream]:
    """One long-lived peer for the tests below."""
    peer = CoordinatorStream(zmq_ctx, live.endpoint)
    yield peer
    peer.close()


@pytest.mark.parametrize("category", CATEGORIES)
@settings(max_examples=2, deadline=None, suppress_health_check=_CHECKS)
@given(data=st.data())
def test_every_frame_type_in_every_category_is_counted_on_one_peer(
    live: LiveCoordinator, stream: CoordinatorStream, category: str, data: st.DataObject
) -> None:
    before, refused, over = live.statistics(), stream.refused, stream.over_limit
    drawn = [data.draw(payloads(cls, category), label=cls.__name__) for cls in FRAME_CLASSES]
    for payload in drawn:
        stream.send(payload)  # one over MAX_FRAME_BYTES goes on a throwaway peer
    stream.sync()
    check_counted(live, before, stream.refused - refused)
    if category == "oversized":
        big = sum(len(payload) > protocol.MAX_FRAME_BYTES for payload in drawn)
        assert stream.over_limit - over == big


def test_a_stream_of_mixed_frames_and_two_part_messages_is_counted_exactly(
    live: LiveCoordinator, stream: CoordinatorStream
) -> None:
    before, refused, fillers = live.statistics(), stream.refused, stream.fillers
    feed(stream, stream.sent + 1_000, multipart_every=5)
    check_counted(live, before, stream.refused - refused)
    assert stream.refused - refused > 300 and stream.fillers > fillers  # runs were cut


def test_a_string_over_its_limit_in_a_frame_under_the_size_limit_is_too_large(
    live: LiveCoordinator, zmq_ctx: zmq.Context[Any]
) -> None:
    before = live.statistics()
    long_str = pack({"v": V, "t": "STATUS", "request_id": "x" * 300_000})
    assert len(long_str) < protocol.MAX_FRAME_BYTES
    send_and_check(live, zmq_ctx, [long_str])
    after = live.statistics()
    assert after.rejects.by_code["too_large"] == before.rejects.by_code["too_large"] + 1


def job_completes(endpoint: str, portal: Any, work_dir: Path, x: int) -> None:
    """A node (in ``portal``'s event loop) and a client get a real job done."""
    config = NodeConfig(
        coordinator=endpoint,
        node_id="after-fuzz",
        slots=1,
        gpus="none",
        allow=("task_entrypoints:*",),  # jobs a fuzzed SUBMIT created fail at once
        work_dir=work_dir,
        pythonpath=(str(HERE),),
        heartbeat_s=0.2,
        drain_timeout_s=0.5,
        insecure=True,
    )
    with portal.wrap_async_context_manager(start_node(config)) as node:
        portal.call(node.connected.wait)
        job_id = submit(endpoint, [protocol.JobSpec(ep("square"), {"x": x})], insecure=True)[0]

        async def result(client: Any) -> Any:
            return await client.result(job_id, timeout=20)

        assert client_call(endpoint, result, insecure=True)["y"] == x * x


def test_after_the_fuzzing_a_client_and_a_node_still_get_a_job_done(
    live: LiveCoordinator, tmp_path: Path
) -> None:
    """Runs after the fuzz tests in this module (same coordinator)."""
    stats = live.statistics()
    assert stats.rejects.total > 0 and stats.internal_errors == 0
    job_completes(live.endpoint, live.portal, tmp_path / "node", 12)
    view = check_history(live.state, all_terminal=False)
    assert [job.state for job in view.jobs.values() if job.params == {"x": 12}] == ["succeeded"]


def _bad_payloads(seed: int) -> list[bytes]:
    """A fixed sample of the kinds above, for the subprocess coordinator."""
    rng = random.Random(seed)
    good = protocol.encode(protocol.Status("s1"))
    sample = [
        bytes(rng.randrange(256) for _ in range(rng.randrange(1, 40))),
        pack([1, 2, 3]),
        pack({"v": V}),
        good[: len(good) // 2],
        pack({"v": V + 1, "t": "STATUS", "request_id": "s2"}),
        pack({"v": V, "t": "NOPE"}),
        pack({"v": V, "t": "SUBMIT", "request_id": "s3", "specs": "x"}),
        pack({"v": V, "t": "RESULT", "job_id": 7, "lease": None}),
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
                assert all(coordinator_refuses(b, b"~") for b in batch)
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


# -- the long run (--run-slow) -----------------------------------------------------------

RSS_GROWTH_LIMIT = 20 * MIB


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_long_run_100k_frames_into_a_coordinator_process(tmp_path: Path) -> None:
    """100,000 frames (an oversized frame in about one batch in 40, a two-part message
    in one in 10) from one peer into a coordinator process: every bad one counted, no
    quarantine, RSS growth after the warm-up under 20 MiB, and a real job at the end."""
    from anyio.from_thread import start_blocking_portal

    target = TargetProcess(["coordinator", str(tmp_path / "state.db")], tmp_path / "coord.log")
    endpoint = target.ready["endpoint"]
    ctx: zmq.Context[Any] = zmq.Context()
    stream = CoordinatorStream(ctx, endpoint)
    try:
        before = target.statistics()
        rss, wall = long_run(stream, target, oversized_every=40)
        after = target.statistics()
        with start_blocking_portal("asyncio") as portal:
            job_completes(endpoint, portal, tmp_path / "node", 7)
        final = target.statistics()
    finally:
        stream.close()
        ctx.destroy(linger=0)
        code = target.close()
    counted = after["rejects"]["total"] - before["rejects"]["total"]
    print(
        f"\ncoordinator long run: {stream.sent:,} frames sent ({stream.refused:,} bad,"
        f" {stream.fillers:,} good ones put in to stay under the quarantine threshold,"
        f" {stream.over_limit} over the size limit on throwaway peers) in {wall:.1f} s;"
        f" coordinator counted {counted:,} rejects {after['rejects']['by_code']};"
        f" RSS after warm-up {rss[0] / MIB:.1f} MiB, at the end {rss[1] / MIB:.1f} MiB"
        f" (+{(rss[1] - rss[0]) / MIB:.1f} MiB)"
    )
    assert counted == stream.refused
    assert after["frames_in"] - before["frames_in"] == stream.sent
    assert after["quarantined_drops"] == after["rejects"]["disconnects"] == 0
    assert after["internal_errors"] == 0
    assert rss[1] - rss[0] < RSS_GROWTH_LIMIT
    assert final["results_ok"] == 1 and final["internal_errors"] == 0
    assert code == 0


def test_a_bad_batch_entry_is_refused_and_counted_alone(
    live: LiveCoordinator, zmq_ctx: zmq.Context[Any]
) -> None:
    """A BATCH with a bad entry between good ones: the bad one is answered with ERROR
    and counted once; the good ones before and after it are answered."""
    before = live.statistics()
    peer = RawPeer(zmq_ctx, live.endpoint)
    try:
        entries = [
            protocol.encode(protocol.Status("s1")),
            pack({"v": V, "t": "STATUS", "request_id": "s2", "job_ids": 5}),
            protocol.encode(protocol.Status("s3")),
        ]
        peer.sock.send(protocol.pack_batch(entries))
        answers = []
        while len(answers) < 3 and peer.sock.poll(10_000):
            answers.append(protocol.decode(peer.sock.recv()))
    finally:
        peer.close()
    by_request = {getattr(a, "request_id", getattr(a, "in_reply_to", None)): a for a in answers}
    assert sorted(by_request) == ["s1", "s2", "s3"]
    assert isinstance(by_request["s1"], protocol.StatusReply)
    assert isinstance(by_request["s3"], protocol.StatusReply)
    error = by_request["s2"]
    assert isinstance(error, protocol.Error) and error.code == "bad_type"
    assert "BATCH.frames[1]" in error.message
    check_counted(live, before, 1)


def test_a_batch_of_bad_entries_quarantines_its_peer_as_separate_frames_would(
    live: LiveCoordinator, zmq_ctx: zmq.Context[Any]
) -> None:
    """MAX_CONSECUTIVE_BAD_FRAMES bad entries in one BATCH disconnect the peer: the
    entries after them are dropped unread (counted), not handled."""
    before = live.statistics()
    peer = RawPeer(zmq_ctx, live.endpoint)
    try:
        bad = pack({"v": V, "t": "STATUS", "request_id": "bad", "job_ids": 5})
        entries = [bad] * protocol.MAX_CONSECUTIVE_BAD_FRAMES
        entries.append(protocol.encode(protocol.Status("after")))
        peer.sock.send(protocol.pack_batch(entries))
        answers = []
        while peer.sock.poll(2_000):
            frame = protocol.decode(peer.sock.recv())
            answers.append(frame)
            if isinstance(frame, protocol.Bye):
                break
    finally:
        peer.close()
    assert isinstance(answers[-1], protocol.Bye), answers[-1]
    assert not any(isinstance(a, protocol.StatusReply) for a in answers)
    after = live.statistics()
    assert after.rejects.total - before.rejects.total == protocol.MAX_CONSECUTIVE_BAD_FRAMES
    assert after.rejects.disconnects == before.rejects.disconnects + 1
    assert after.quarantined_drops == before.quarantined_drops + 1
