"""Client requests against a real coordinator: SUBMIT, WATCH, STATUS, CANCEL, the
result cache, and bad frames (counted, answered or dropped, the peer cut off after too
many) while good clients keep being served.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import msgpack
import pytest
from coord_helpers import FakeClient, FakeNode, cluster, spec

from mabeam.cluster import protocol as p

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def events(client: FakeClient, n: int) -> list[p.Event]:
    return [await client.expect(p.Event) for _ in range(n)]


async def test_submit_is_idempotent_per_key(tmp_path: Path) -> None:
    async with cluster(tmp_path) as env:
        client, other = env.client(), env.client()
        specs = (spec(), spec())
        first = await client.submit(*specs, key="sweep-1", sweep_id="sweep-1")
        again = await other.submit(*specs, key="sweep-1", sweep_id="sweep-1")
        assert first.job_ids == again.job_ids and len(set(first.job_ids)) == 2
        assert (first.duplicate, again.duplicate) == (False, True)
        assert first.sweep_id == "sweep-1"
        # The same key with other specs is refused, naming the key.
        client.send(p.Submit("r-conflict", "sweep-1", (spec(),)))
        error = await client.expect(p.Error)
        assert (error.code, error.in_reply_to) == ("bad_value", "r-conflict")
        assert "sweep-1" in error.message
        assert (await env.coord.statistics()).jobs["queued"] == 2


async def test_a_spec_the_store_refuses_gets_bad_spec(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mabeam.cluster import _coord_clients
    from mabeam.cluster.store import InvalidSpecError

    real = _coord_clients.store_spec

    def strict(wire: p.JobSpec) -> Any:
        if wire.params.get("bad"):
            raise InvalidSpecError("spec.params.bad: not allowed here")
        return real(wire)

    monkeypatch.setattr(_coord_clients, "store_spec", strict)
    async with cluster(tmp_path) as env:
        client = env.client()
        client.send(p.Submit("r1", "k1", (spec(), spec(params={"bad": True}))))
        error = await client.expect(p.Error)
        assert (error.code, error.in_reply_to) == ("bad_spec", "r1")
        assert error.message == "specs[1]: spec.params.bad: not allowed here"
        assert (await env.coord.statistics()).jobs["queued"] == 0  # nothing of it


async def test_watch_sends_the_current_state_then_every_change(tmp_path: Path) -> None:
    async with cluster(tmp_path) as env:
        client, watcher, node = env.client(), env.client(), env.node("n1")
        job = await client.one(spec())
        watcher.send(p.Watch("w1", (job,)))
        (first,) = await events(watcher, 1)
        assert (first.request_id, first.job_id, first.state, first.attempt) == (
            "w1",
            job,
            "queued",
            1,
        )
        node.hello(credit=1)
        d = await node.expect(p.Dispatch)
        node.accept(d)
        node.send(p.Progress(job, d.lease, 1, {"loss": 0.5}))
        node.send(p.Progress(job, d.lease, 2, {"loss": 0.25}))
        await node.sync(job)
        node.ok(d, {"accuracy": 0.97})
        seen = [await watcher.expect(p.Event)]
        while seen[-1].state != "succeeded":
            seen.append(await watcher.expect(p.Event))
        assert [e.state for e in seen[:2]] == ["leased", "running"] and seen[0].node_id == "n1"
        steps = [e.step for e in seen[2:-1]]
        # Progress events, in order; PROGRESS in one batch is coalesced to the latest.
        assert steps in ([1, 2], [2]) and seen[-2].metrics == {"loss": 0.25}
        assert all(e.state == "running" and e.attempt == 1 for e in seen[2:-1])
        final = seen[-1]
        assert (final.state, final.value, final.attempt) == ("succeeded", {"accuracy": 0.97}, 1)
        await watcher.quiet(0.2)  # all terminal: the watch is over
        # A late watcher learns the terminal state at once.
        watcher.send(p.Watch("w2", (job,)))
        late = await watcher.expect(p.Event)
        assert (late.request_id, late.state, late.value) == ("w2", "succeeded", {"accuracy": 0.97})


async def test_watch_a_sweep_and_unknown_ids(tmp_path: Path) -> None:
    async with cluster(tmp_path) as env:
        client, node = env.client(), env.node("n1")
        sweep = await client.submit(spec(), spec(), key="s-7", sweep_id="s-7")
        client.send(p.Watch("w", sweep_id="s-7"))
        firsts = await events(client, 2)
        assert {e.job_id for e in firsts} == set(sweep.job_ids)
        node.hello(credit=2)
        for d in await node.dispatches(2):
            node.fail(d, "refused", "not on the allow-list")
        seen = [e for e in await events(client, 4) if e.state == "failed"]
        assert {e.job_id for e in seen} == set(sweep.job_ids)
        assert all(e.error == "not on the allow-list" for e in seen)
        client.send(p.Watch("w-s", sweep_id="nope"))
        assert (await client.expect(p.Error)).code == "unknown_sweep"
        client.send(p.Watch("w-j", (sweep.job_ids[0], "j-0000-1")))
        error = await client.expect(p.Error)
        assert (error.code, error.in_reply_to) == ("unknown_job", "w-j")


async def test_a_silent_watcher_loses_its_watch_and_a_stranger_gets_hello_first(
    tmp_path: Path,
) -> None:
    async with cluster(tmp_path, heartbeat_s=0.05) as env:
        client, watcher = env.client(), env.client()
        job = await client.one(spec())
        watcher.send(p.Watch("w", (job,)))
        await watcher.expect(p.Event)
        # Silent for 3 intervals: the watch is dropped. Its next HEARTBEAT tells it so.
        await watcher.quiet(0.4)
        watcher.send(p.Heartbeat())
        error = await watcher.expect(p.Error)
        assert error.code == "hello_first" and "WATCH" in error.message
        client.send(p.CancelJob("c", job))
        await client.expect(p.Cancelled)
        await watcher.quiet(0.1)  # no EVENT for a dropped watch


async def test_status_lists_nodes_jobs_and_counts(tmp_path: Path) -> None:
    async with cluster(tmp_path) as env:
        client, node = env.client(), env.node("n1", cpus=4, slots=3)
        done, running, queued = (await client.submit(spec(), spec(), spec(), sweep_id="s")).job_ids
        node.hello(credit=2)
        d1, d2 = await node.dispatches(2)
        by_job = {d1.job_id: d1, d2.job_id: d2}
        node.accept(by_job[running])
        node.ok(by_job[done], [1, 2])
        await node.expect(p.Ack)
        status = await client.status()
        assert isinstance(status, p.StatusReply)
        assert status.counts["succeeded"] == 1 and status.counts["running"] == 1
        assert status.counts["queued"] == 1
        (info,) = status.nodes
        assert (info.inventory.node_id, info.credit, info.running) == ("n1", 0, 1)
        assert 0 <= info.last_seen_s < 5
        states = {j.job_id: j for j in status.jobs}
        assert [j.job_id for j in status.jobs[:2]] == [running, queued]  # unfinished first
        assert states[done].value == [1, 2] and states[done].node_id == "n1"
        assert states[done].duration_s is not None and states[running].sweep_id == "s"
        listed = await client.status((done,))
        assert [j.state for j in listed.jobs] == ["succeeded"]
        assert {j.job_id for j in (await client.status(sweep_id="s")).jobs} == {
            done,
            running,
            queued,
        }
        unknown = await client.status(("j-nothing-9",))
        assert isinstance(unknown, p.Error) and unknown.code == "unknown_job"


async def test_cancel_a_queued_job_a_running_one_and_a_finished_one(tmp_path: Path) -> None:
    async with cluster(tmp_path) as env:
        client, watcher, node = env.client(), env.client(), env.node("n1")
        queued = await client.one(spec())
        client.send(p.CancelJob("c-1", queued))
        assert await client.expect(p.Cancelled) == p.Cancelled("c-1", queued, "cancelled")
        job = await client.one(spec())
        node.hello(credit=1)
        d = await node.expect(p.Dispatch)
        node.accept(d)
        await node.sync(job)
        watcher.send(p.Watch("w", (job,)))
        assert (await watcher.expect(p.Event)).state == "running"
        reply = await client.cancel(job)
        assert isinstance(reply, p.Cancelled) and reply.state == "running"
        assert await node.expect(p.Cancel) == p.Cancel(job, d.lease)  # the node stops it
        node.fail(d, "cancelled", "cancelled; stopped with SIGTERM")
        await node.expect(p.Ack)
        final = await watcher.expect(p.Event)
        assert final.state == "cancelled" and final.error
        assert env.row(job)["state"] == "cancelled"
        finished = await client.cancel(job)
        assert isinstance(finished, p.Cancelled) and finished.state == "cancelled"
        unknown = await client.cancel("j-nothing-1")
        assert isinstance(unknown, p.Error) and unknown.code == "unknown_job"


async def test_the_result_cache_serves_finished_results_and_joins_running_ones(
    tmp_path: Path,
) -> None:
    async with cluster(tmp_path) as env:
        client, node = env.client(), env.node("n1")
        same = spec(params={"lr": 0.1}, code_version="v1")
        leader = await client.one(same)
        node.hello(credit=4)
        d = await node.expect(p.Dispatch)
        node.accept(d)
        follower = await client.one(same)  # a live job with that hash: it joins, no DISPATCH
        client.send(p.Watch("w", (follower,)))
        assert (await client.expect(p.Event)).state == "queued"
        await node.quiet(0.2)
        node.ok(d, {"acc": 0.9})
        await node.expect(p.Ack)
        joined = await client.expect(p.Event)
        assert (joined.job_id, joined.state, joined.value) == (follower, "succeeded", {"acc": 0.9})
        cached = await client.one(same)  # finished: served from the cache at once
        client.send(p.Watch("w2", (cached,)))
        hit = await client.expect(p.Event)
        assert (hit.state, hit.value) == ("succeeded", {"acc": 0.9})
        await node.quiet(0.2)
        assert leader != follower != cached
        assert (await env.coord.statistics()).dispatched == 1


async def test_bad_frames_are_counted_refused_and_a_flood_cuts_the_peer_off(
    tmp_path: Path,
) -> None:
    async with cluster(tmp_path, max_bad_frames=5) as env:
        good, bad = env.client(), env.raw()
        bad.send_raw(b"\xc1 not msgpack")  # garbage, no request id: dropped
        wrong_version = {"v": 99, "t": "STATUS", "request_id": "r-v"}
        bad.send_raw(msgpack.packb(wrong_version))
        error = await bad.expect(p.Error)  # it had a request id: answered
        assert (error.code, error.in_reply_to) == ("bad_version", "r-v")
        bad.send_raw(msgpack.packb({"v": p.PROTOCOL_VERSION, "t": "NOPE", "request_id": "r-t"}))
        assert (await bad.expect(p.Error)).code == "unknown_type"
        bad.send(p.Ack("j-1-1", "l"))  # valid, but no peer may send it to the coordinator
        unexpected = await bad.expect(p.Error)
        assert unexpected.code == "unexpected"
        # A payload over 1 MiB: libzmq drops it and resets that connection (MAXMSGSIZE).
        huge = env.raw()
        huge.send_raw(b"\x00" * (p.MAX_FRAME_BYTES + 1))
        # The fifth bad frame in a row: BYE, then its frames are dropped unread.
        bad.send_raw(b"\xc1")
        bye = await bad.expect(p.Bye)
        assert "bad frames" in bye.reason
        bad.send(p.Status("r-after"))
        await bad.quiet(0.2)
        # A good client is still served.
        submitted = await good.submit(spec())
        node = FakeNode(env.ctx, env.coord.endpoint, "n1")
        env.peers.append(node)
        node.hello(credit=1)
        assert (await node.expect(p.Dispatch)).job_id == submitted.job_ids[0]
        stats = await env.coord.statistics()
        rejects = stats.rejects
        assert rejects.by_code["bad_msgpack"] == 2 and rejects.by_code["bad_version"] == 1
        assert rejects.by_code["unknown_type"] == 1 and rejects.disconnects == 1
        assert stats.unexpected_frames == 1 and stats.quarantined_drops >= 1


async def test_a_request_the_store_cannot_write_fails_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sqlite3

    from mabeam.cluster.store import JobStore, Submit

    real = JobStore.apply

    def failing(self: JobStore, ops: Any, **kw: Any) -> Any:
        for op in ops:
            if isinstance(op, Submit) and any(s.params.get("poison") for s in op.specs):
                raise sqlite3.OperationalError("disk I/O error")
        return real(self, ops, **kw)

    monkeypatch.setattr(JobStore, "apply", failing)
    async with cluster(tmp_path) as env:
        client, other = env.client(), env.client()
        client.send(p.Submit("r-poison", "k-poison", (spec(params={"poison": True}),)))
        other.send(p.Submit("r-fine", "k-fine", (spec(),)))
        error = await client.expect(p.Error)
        assert (error.code, error.in_reply_to) == ("internal", "r-poison")
        assert "disk I/O error" in error.message
        assert (await other.expect(p.Submitted)).request_id == "r-fine"
        assert len((await client.submit(spec())).job_ids) == 1  # it keeps serving
        stats = await env.coord.statistics()
        assert stats.store_errors == 1 and stats.jobs["queued"] == 2


async def test_requests_past_the_in_flight_bound_get_busy_and_the_client_sends_them_again(
    tmp_path: Path,
) -> None:
    import anyio

    from mabeam.cluster.client import connect

    async with cluster(tmp_path, max_client_requests=1) as env:
        raw = env.client()
        for request_id in ("s1", "s2", "s3"):  # one burst: one router batch
            raw.send(p.Status(request_id))
        answers = {}
        for _ in range(3):
            frame = await raw.recv()
            answers[frame.request_id if hasattr(frame, "request_id") else frame.in_reply_to] = frame
        assert isinstance(answers["s1"], p.StatusReply)
        for late in ("s2", "s3"):
            error = answers[late]
            assert isinstance(error, p.Error) and error.code == "busy"
            assert "1 client requests in flight (max_client_requests)" in error.message
        assert env.coord.counters.busy_refusals == 2
        # The client API treats busy as "not yet": every concurrent request succeeds.
        replies: list[Any] = []
        async with (
            connect(env.coord.endpoint, retry_s=0.02, insecure=True) as client,
            anyio.create_task_group() as tg,
        ):
            for _ in range(6):
                tg.start_soon(_status_into, client, replies)
        assert len(replies) == 6 and env.coord.counters.busy_refusals > 2


async def _status_into(client: Any, replies: list[Any]) -> None:
    replies.append(await client.status())


async def test_the_routers_mailbox_is_bounded_and_a_flood_waits_in_libzmq(tmp_path: Path) -> None:
    from foundation import current_runtime
    from mabeam.cluster.coordinator import ROUTER_MAILBOX

    async with cluster(tmp_path) as env:
        raw = env.client()
        payload = p.encode(p.Heartbeat())
        for _ in range(20_000):  # far more than 8 batches of 1,000
            raw.send_raw(payload)
        raw.send(p.Status("after"))
        reply = await raw.recv(timeout=30.0)
        while not (isinstance(reply, p.StatusReply) and reply.request_id == "after"):
            reply = await raw.recv(timeout=30.0)
        rt = current_runtime()
        router = rt.whereis(env.coord.names.router)
        assert router is not None
        info = rt.info(router)
        assert info is not None
        stats = info["mailbox"]
        assert stats.capacity == ROUTER_MAILBOX and 1 <= stats.high_water <= ROUTER_MAILBOX


async def test_finished_jobs_leave_the_store_after_the_retention(tmp_path: Path) -> None:
    from foundation.testing import wait_for_event

    async with cluster(tmp_path, retention_s=0.5) as env:
        client, node = env.client(), env.node("n1")
        sub = await client.submit(spec(), spec(), key="kept-a-while")
        done, waiting = sub.job_ids
        node.hello(credit=1)
        d = await node.expect(p.Dispatch)
        assert d.job_id == done
        node.ok(d, "v")
        await node.expect(p.Ack)
        pruned = await wait_for_event(("mabeam", "coordinator", "pruned"), timeout=10.0)
        assert pruned.measurements["jobs"] == 1
        reply = await client.status((done,))
        assert isinstance(reply, p.Error) and reply.code == "unknown_job"
        status = await client.status((waiting,))
        assert isinstance(status, p.StatusReply) and status.jobs[0].state == "queued"
