"""Node sessions: liveness, BYE, re-HELLO reconcile, hello_first, coordinator restarts.

Real coordinator, fake nodes over tcp; short heartbeats where silence matters.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from coord_helpers import Cluster, FakeClient, FakeNode, cluster, config, spec, zmq_context

from foundation import current_runtime
from foundation.testing import until
from mabeam.cluster import protocol as p
from mabeam.cluster.coordinator import start_coordinator

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def running(*ds: p.Dispatch) -> tuple[p.RunningJob, ...]:
    return tuple(p.RunningJob(d.job_id, d.attempt, d.lease) for d in ds)


async def test_a_silent_node_loses_its_session_and_its_jobs_go_elsewhere(tmp_path: Path) -> None:
    async with cluster(tmp_path, heartbeat_s=0.1, liveness=3) as env:
        client, lost, spare = env.client(), env.node("lost"), env.node("spare")
        started, leased = (await client.submit(spec(), spec())).job_ids
        lost.hello(credit=2)
        d1, _ = await lost.dispatches(2)
        assert d1.job_id == started
        lost.accept(d1)  # running: its loss counts as a failure; leased: it does not
        clock = current_runtime().clock
        t0 = clock.now()
        # The coordinator, having sent nothing for an interval, sends a HEARTBEAT; the
        # node stays silent from here on, and its session ends after 3 intervals.
        assert isinstance(await lost.recv(heartbeats=True), p.Heartbeat)
        bye = await lost.expect(p.Bye, timeout=3)
        assert "silent" in bye.reason
        assert clock.now() - t0 <= 1.0  # the liveness window is 0.3 s (slack for a busy CI)
        spare.hello(credit=2)
        moved = {d.job_id: d for d in await spare.dispatches(2)}
        assert set(moved) == {started, leased}
        assert all(d.attempt == 2 for d in moved.values())
        spare.ok(moved[started], "on time")
        assert await spare.expect(p.Ack) == p.Ack(started, moved[started].lease)
        assert env.row(started)["failures"] == 1 and env.row(leased)["failures"] == 0
        # The lost node comes back; its late RESULT for the old lease is ACKed, refused.
        lost.hello()
        lost.ok(d1, "late")
        assert await lost.expect(p.Ack) == p.Ack(started, d1.lease)
        stats = await env.coord.statistics()
        assert stats.results_stale == 1 and stats.sessions_lost >= 1
        assert stats.requeued_nodes >= 1
        assert env.row(started)["state"] == "succeeded"


async def test_a_node_bye_requeues_its_leases_at_once(tmp_path: Path) -> None:
    async with cluster(tmp_path) as env:
        client, leaving, other = env.client(), env.node("leaving"), env.node("other")
        job = await client.one(spec())
        leaving.hello(credit=1)
        d = await leaving.expect(p.Dispatch)
        done = await client.one(spec())
        leaving.ready(1)
        d_done = await leaving.expect(p.Dispatch)
        leaving.ok(d_done, 42)  # a RESULT just before the BYE is still recorded and ACKed
        leaving.send(p.Bye("draining"))
        assert await leaving.expect(p.Ack) == p.Ack(done, d_done.lease)
        other.hello(credit=1)
        again = await other.expect(p.Dispatch)
        assert (again.job_id, again.attempt) == (job, 2) and again.lease != d.lease
        assert env.row(done)["state"] == "succeeded"


async def test_re_hello_reconciles_the_nodes_leases_with_the_store(tmp_path: Path) -> None:
    async with cluster(tmp_path) as env:
        client, node = env.client(), env.node("n1")
        kept, dropped, stale = (await client.submit(spec(), spec(), spec())).job_ids
        node.hello(credit=3)
        ds = {d.job_id: d for d in await node.dispatches(3)}
        node.accept(ds[kept])
        node.fail(ds[stale], "handed_back", "draining")  # requeued: that lease is over
        await node.expect(p.Ack)
        node.ready(1)
        again = await node.expect(p.Dispatch)  # the stale job's new attempt
        assert again.job_id == stale and again.attempt == 2
        # Reconnect: the node still runs "kept", lost "dropped", and reports the old
        # attempt of "stale" (and nothing of its new one).
        node.hello(running=running(ds[kept], ds[stale]))
        cancel = await node.expect(p.Cancel)
        assert cancel == p.Cancel(stale, ds[stale].lease)
        node.ready(2)
        redo = {d.job_id: d for d in await node.dispatches(2)}
        assert set(redo) == {dropped, stale}  # released (requeued), and released again
        assert redo[dropped].attempt == 2 and redo[stale].attempt == 3
        row = env.row(kept)
        assert (row["state"], row["token"]) == ("running", ds[kept].lease)
        node.ok(ds[kept], "kept")
        await node.expect(p.Ack)
        assert env.row(kept)["state"] == "succeeded"


async def test_a_node_frame_from_an_unknown_peer_gets_hello_first(tmp_path: Path) -> None:
    async with cluster(tmp_path) as env:
        stranger = env.node("stranger")
        stranger.ready(1)
        error = await stranger.expect(p.Error)
        assert error.code == "hello_first" and "HELLO" in error.message
        stranger.send(p.Result("j-x-1", "0123456789abcdef", 1, True, duration_s=0.0))
        assert (await stranger.expect(p.Error)).code == "hello_first"
        # A HELLO whose node id is not the connection's routing id is refused.
        liar = env.raw(b"someone")
        liar.send(p.Hello("else", p.Inventory("else")))
        assert (await liar.expect(p.Error)).code == "bad_value"


async def test_the_session_is_registered_with_the_nodes_inventory(tmp_path: Path) -> None:
    async with cluster(tmp_path) as env:
        client = env.client()
        one, two = env.node("one", gpus=1), env.node("two", gpus=2, cpus=16)
        for node in (one, two):
            node.hello(credit=1)
            await client.one(spec())  # one job each: its DISPATCH shows the session is up
            await node.expect(p.Dispatch)
        registry = current_runtime().registry
        found = registry.select({"gpus": 2})
        assert [key for key, _, _ in found] == [("node", "two")]
        meta = found[0][2]
        assert (meta["cpus"], meta["slots"], meta["gpu_models"]) == (16, 4, ("Fake",))
        assert registry.whereis(("node", "one")) is not None


async def test_after_a_restart_nothing_is_lost_and_absent_nodes_leases_are_requeued(
    tmp_path: Path,
) -> None:
    cfg = config(tmp_path, heartbeat_s=0.2, lease_s=0.05)
    with zmq_context() as ctx:
        async with start_coordinator(cfg) as coord:
            client = FakeClient(ctx, coord.endpoint)
            node = FakeNode(ctx, coord.endpoint, "gone")
            jobs = (await client.submit(spec(), spec(), spec())).job_ids
            node.hello(credit=1)
            d = await node.expect(p.Dispatch)
            node.accept(d)
            await node.sync(d.job_id)
            state = Cluster(coord, ctx)
        # The coordinator stopped: its nodes heard BYE, and the lease stays in the store.
        bye = await node.expect(p.Bye)
        assert bye.reason == "coordinator stopping"
        assert state.row(d.job_id)["state"] == "running"
        for peer in (client, node):
            peer.close()
        async with start_coordinator(cfg) as coord:
            env = Cluster(coord, ctx)
            client, fresh = env.client(), env.node("fresh")
            fresh.hello(credit=3)
            first = await fresh.dispatches(2)
            assert {x.job_id for x in first} == set(jobs) - {d.job_id}
            # "gone" never says HELLO: lease_s + heartbeat_s (0.25 s) after the start,
            # its job is requeued (attempt 2) and goes to the node that is here.
            fresh.send(p.Heartbeat())
            later = await fresh.expect(p.Dispatch, timeout=3)
            assert (later.job_id, later.attempt) == (d.job_id, 2)
            status = await client.status(jobs)
            assert isinstance(status, p.StatusReply)
            assert {j.job_id for j in status.jobs} == set(jobs)
            for other in env.peers:
                other.close()


async def test_a_node_that_comes_back_after_a_restart_keeps_its_running_job(
    tmp_path: Path,
) -> None:
    cfg = config(tmp_path, heartbeat_s=1.0, lease_s=30.0)
    with zmq_context() as ctx:
        async with start_coordinator(cfg) as coord:
            client = FakeClient(ctx, coord.endpoint)
            node = FakeNode(ctx, coord.endpoint, "n1")
            job = await client.one(spec())
            node.hello(credit=1)
            d = await node.expect(p.Dispatch)
            node.accept(d)
            await node.sync(job)
        assert (await node.expect(p.Bye)).reason == "coordinator stopping"
        async with start_coordinator(cfg) as coord:
            env = Cluster(coord, ctx)
            # The node reconnects (to the new port); its first frame gets hello_first; it
            # says HELLO listing the job, and the RESULT it finished meanwhile is
            # recorded: the lease is still current, nothing is cancelled.
            again = env.node("n1")
            again.ready(1)
            assert (await again.expect(p.Error)).code == "hello_first"
            again.hello(running=running(d), credit=1)
            await again.sync(job)
            again.ok(d, "finished")
            assert await again.expect(p.Ack) == p.Ack(job, d.lease)
            row = env.row(job)
            assert (row["state"], row["attempt"], row["token"]) == ("succeeded", 1, d.lease)
            await again.quiet(0.1)
            for peer in (client, node, *env.peers):
                peer.close()


async def test_a_killed_router_comes_back_on_the_same_port_and_nodes_say_hello_again(
    tmp_path: Path,
) -> None:
    async with cluster(tmp_path) as env:
        client, node = env.client(), env.node("n1")
        job = await client.one(spec())
        node.hello(credit=2)
        d = await node.expect(p.Dispatch)
        rt = current_runtime()
        names = env.coord.names
        old = {name: rt.whereis(name) for name in (names.router, names.clients)}
        old[names.router].kill()  # type: ignore[union-attr]
        # rest_for_one: the router and every part after it start again.
        await until(
            lambda: all(rt.whereis(n) not in (None, ref) for n, ref in old.items()), timeout=5
        )
        endpoint = env.coord.endpoint
        assert endpoint == (await env.coord.statistics()).endpoint
        # Its session ended with the old router (BYE); the node's next frame gets
        # hello_first, and it says HELLO with its running job.
        assert isinstance(await node.expect(p.Bye), p.Bye)
        node.ok(d, "done")
        assert (await node.expect(p.Error)).code == "hello_first"
        node.hello(running=running(d), credit=1)
        node.ok(d, "done")
        assert await node.expect(p.Ack) == p.Ack(job, d.lease)
        again = await client.one(spec())
        assert (await node.expect(p.Dispatch)).job_id == again
