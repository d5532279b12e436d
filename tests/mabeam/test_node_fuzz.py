"""Garbage from the coordinator's side: a live node agent refuses and counts every bad
frame, never crashes, and still runs a well-formed DISPATCH to its ACK afterwards.

A fake coordinator (``fuzz_peers.NodeStream``: a real ROUTER on 127.0.0.1) answers the
node's HELLO, then sends it hypothesis-drawn payloads of every frame type in every
category of frame_strategies.py (valid, mutated, truncated, oversized, wrong types,
bad versions, random bytes), DISPATCH, CANCEL and ACK with garbage or unknown leases,
duplicate DISPATCHes, two-part messages and a frame over ``MAX_FRAME_BYTES``. The node
runs in this process (``start_node`` behind a blocking portal: its statistics are
readable), with an allow-list that refuses every drawn entrypoint at once, so no
fuzzed DISPATCH starts a process. Its ``bad_frames`` and ``rejects_by_code`` must grow
by exactly the number of bad frames sent. The ``slow`` long run sends 100,000 frames to
a node in a process of its own (fuzz_target.py) and bounds its RSS growth.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import zmq
from frame_strategies import CATEGORIES, padded, payloads, raw_frame
from fuzz_peers import LONG_RUN_FRAMES, MIB, NodeStream, TargetProcess, feed, long_run
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from node_helpers import dispatch, node_config

from mabeam.cluster import protocol as p
from mabeam.cluster.node import NodeHandle, NodeStatistics, start_node

_CHECKS = list(HealthCheck)


@dataclass
class LiveNode:
    """A node agent in an event loop of its own thread, fed by ``stream``."""

    portal: Any
    handle: NodeHandle
    stream: NodeStream

    def statistics(self) -> NodeStatistics:
        stats: NodeStatistics = self.portal.call(self.handle.statistics)
        return stats

    def settle(self, condition: Callable[[NodeStatistics], bool]) -> NodeStatistics:
        """Serve the node until its statistics satisfy ``condition``; return them."""
        self.stream.until(lambda: condition(self.statistics()))
        return self.statistics()


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveNode]:
    from anyio.from_thread import start_blocking_portal

    ctx: zmq.Context[Any] = zmq.Context()
    stream = NodeStream(ctx)
    work = tmp_path_factory.mktemp("node-fuzz") / "work"
    # Liveness 1 s: the node reopens its socket 1 s after a frame over the size limit
    # (below); the fake coordinator answers its heartbeats in every sync, ~20 a second.
    config = node_config(
        stream.endpoint, work, slots=1, allow=("task_entrypoints:*",), heartbeat_s=0.1, liveness=10
    )
    try:
        with (
            start_blocking_portal("asyncio") as portal,
            portal.wrap_async_context_manager(start_node(config)) as handle,
        ):
            stream.handshake()
            stream.sync()
            yield LiveNode(portal, handle, stream)
    finally:
        stream.close()
        ctx.destroy(linger=0)


def check_counted(
    live: LiveNode, before: NodeStatistics, refused_before: int, *, reconnects: int = 0
) -> None:
    """The node counted exactly the bad frames sent since ``before``, and is fine
    (connected again: it may have read the sync before its new HELLO was answered)."""
    after = live.settle(lambda stats: stats.connected)
    refused = live.stream.refused - refused_before
    assert after.bad_frames - before.bad_frames == refused
    by_code = {k: v - before.rejects_by_code.get(k, 0) for k, v in after.rejects_by_code.items()}
    assert sum(by_code.values()) == refused, by_code
    assert after.connected and after.fenced == 0
    assert after.reconnects - before.reconnects == reconnects


@pytest.mark.parametrize("category", CATEGORIES)
@settings(max_examples=2, deadline=None, suppress_health_check=_CHECKS)
@given(data=st.data())
def test_every_frame_type_in_every_category_is_refused_and_counted(
    live: LiveNode, category: str, data: st.DataObject
) -> None:
    before, refused = live.statistics(), live.stream.refused
    drawn = [data.draw(payloads(cls, category), label=cls.__name__) for cls in p.FRAME_CLASSES]
    for payload in drawn:
        if len(payload) <= p.MAX_FRAME_BYTES:  # over it: see the test below
            live.stream.send(payload)
    live.stream.sync()
    check_counted(live, before, refused)


def test_a_stream_of_mixed_frames_and_two_part_messages_is_counted_exactly(
    live: LiveNode,
) -> None:
    before, refused = live.statistics(), live.stream.refused
    sent = live.stream.sent
    feed(live.stream, sent + 1_000, multipart_every=5)
    check_counted(live, before, refused)
    assert live.stream.refused - refused > 300  # most of a mixed stream is bad


def test_a_frame_over_the_limit_resets_the_connection_and_the_node_comes_back(
    live: LiveNode,
) -> None:
    """libzmq drops a message over MAXMSGSIZE and ends that connection for good (a
    protocol error: the DEALER does not reconnect by itself). The node sees the drop on
    its socket monitor (one reconnect counted: HELLO due), hears nothing more, reopens
    its socket after ``peer_timeout_s`` (the second) and says HELLO again."""
    before, refused, hellos = live.statistics(), live.stream.refused, live.stream.hellos
    big = padded(raw_frame(p.Dispatch("j", 1, "l", "a:b")), p.MAX_FRAME_BYTES + 1)
    live.stream.send(big)  # then DISPATCHes until the node answers one again
    assert live.stream.over_limit == 1 and live.stream.hellos == hellos + 1
    check_counted(live, before, refused, reconnects=2)  # never reached its code: not counted


def test_duplicate_dispatches_and_unknown_leases_leave_one_attempt_that_completes(
    live: LiveNode,
) -> None:
    """After all of the above, a well-formed DISPATCH runs to its RESULT and ACK."""
    stream = live.stream
    before = live.statistics()
    stream.auto_ack = False
    try:
        job = dispatch("after-fuzz", "square", {"x": 12})
        stream.send_frame(job)
        stream.send_frame(job)  # a duplicate while it runs: ignored
        stream.send_frame(p.Cancel(job.job_id, "no-such-lease"))
        stream.send_frame(p.Ack(job.job_id, "no-such-lease"))
        stream.send_frame(p.Ack("no-such-job", job.lease))
        result = stream.pump(lambda f: isinstance(f, p.Result) and f.job_id == job.job_id, 20.0)
        assert isinstance(result, p.Result) and result.ok, result
        assert result.value["y"] == 144
        stream.send_frame(job)  # a duplicate of a finished, un-ACKed attempt: resent
        again = stream.pump(lambda f: isinstance(f, p.Result) and f.job_id == job.job_id)
        assert again == result
        stream.send_frame(p.Ack(job.job_id, job.lease))
    finally:
        stream.auto_ack = True
    live.settle(lambda stats: stats.outbox == 0)  # the ACK dropped it from the outbox
    after = live.statistics()
    assert after.tasks_run - before.tasks_run == 1 and after.tasks_ok - before.tasks_ok == 1
    assert after.results_resent > before.results_resent
    assert after.outbox == 0 and after.bad_frames == before.bad_frames
    assert after.connected and after.reconnects == before.reconnects


# -- the long run (--run-slow) -----------------------------------------------------------

RSS_GROWTH_LIMIT = 20 * MIB


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_long_run_100k_frames_into_a_node_process(tmp_path: Path) -> None:
    """100,000 frames (an oversized frame in about one batch in 100, a two-part message
    in one in 10) into a node agent process: every bad one counted, RSS growth after
    the warm-up under 20 MiB, and a real DISPATCH completes at the end. Each frame over
    the size limit costs the node two reconnects (see the test above)."""
    ctx: zmq.Context[Any] = zmq.Context()
    stream = NodeStream(ctx)
    target = TargetProcess(["node", stream.endpoint, str(tmp_path / "work")], tmp_path / "node.log")
    try:
        stream.handshake()
        stream.sync()
        before = target.statistics()
        rss, wall = long_run(stream, target, oversized_every=100)
        after = target.statistics()
        job = dispatch("after-long-run", "square", {"x": 7})
        stream.send_frame(job)
        result = stream.pump(lambda f: isinstance(f, p.Result) and f.job_id == job.job_id, 30.0)
        assert isinstance(result, p.Result) and result.ok and result.value["y"] == 49
        stream.until(lambda: target.statistics()["outbox"] == 0)  # every RESULT ACKed
        final = target.statistics()
    finally:
        code = target.close()
        stream.close()
        ctx.destroy(linger=0)
    counted = after["bad_frames"] - before["bad_frames"]
    print(
        f"\nnode long run: {stream.sent:,} frames sent ({stream.refused:,} bad,"
        f" {stream.over_limit} over the size limit, {stream.skipped_byes} BYEs left out)"
        f" in {wall:.1f} s; node counted {counted:,} rejects {after['rejects_by_code']};"
        f" RSS after warm-up {rss[0] / MIB:.1f} MiB, at the end {rss[1] / MIB:.1f} MiB"
        f" (+{(rss[1] - rss[0]) / MIB:.1f} MiB)"
    )
    assert counted == stream.refused
    assert stream.sent >= LONG_RUN_FRAMES
    assert rss[1] - rss[0] < RSS_GROWTH_LIMIT
    assert final["connected"] and final["reconnects"] == 2 * stream.over_limit
    assert final["tasks_ok"] == 1 and final["fenced"] == 0
    assert code == 0
