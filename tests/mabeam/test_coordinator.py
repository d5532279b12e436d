"""The coordinator's dispatch path with a real coordinator and fake nodes over tcp.

HELLO/READY -> DISPATCH only once the lease is durable; credit and resources bound what
a node gets; fifo and priority order; each RESULT kind ends in its store op and an ACK
(a stale one is ACKed, refused and counted).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from coord_helpers import cluster, spec

from foundation import current_runtime
from mabeam.cluster import protocol as p

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.mark.parametrize("anyio_backend", ["asyncio", "trio"])
async def test_dispatch_is_sent_only_after_the_lease_is_durable(tmp_path: Path) -> None:
    async with cluster(tmp_path) as env:
        client, node = env.client(), env.node("n1")
        job = await client.one(spec(params={"lr": 0.1}, timeout_s=30))
        assert env.row(job)["state"] == "queued"
        node.hello(credit=1)
        d = await node.expect(p.Dispatch)
        # Read by another connection at the moment the DISPATCH arrived: committed.
        row = env.row(job)
        assert (row["state"], row["node"], row["token"]) == ("leased", "n1", d.lease)
        assert (d.job_id, d.attempt, d.entrypoint, d.params) == (
            job,
            1,
            "pkg.tasks:run",
            {"lr": 0.1},
        )
        assert (d.timeout_s, d.isolation, d.resources) == (30.0, "process", p.Resources(0, 1, 0))
        node.accept(d)
        node.ok(d, {"acc": 0.9})
        assert await node.expect(p.Ack) == p.Ack(job, d.lease)
        row = env.row(job)
        assert (row["state"], row["attempt"]) == ("succeeded", 1)
        stats = await env.coord.statistics()
        assert (stats.dispatched, stats.results_ok, stats.results_stale) == (1, 1, 0)
        assert stats.jobs["succeeded"] == 1 and stats.nodes == ("n1",)


async def test_a_node_never_has_more_dispatches_outstanding_than_its_credit(
    tmp_path: Path,
) -> None:
    async with cluster(tmp_path) as env:
        client, node = env.client(), env.node("n1", slots=8)
        await client.submit(*(spec() for _ in range(5)))
        node.hello(credit=2)
        first = await node.dispatches(2)
        await node.quiet()  # credit 2: no third one
        node.ok(first[0])
        await node.expect(p.Ack)
        await node.quiet()  # a RESULT frees resources, not credit: READY does
        node.ready(1)
        third = await node.expect(p.Dispatch)
        node.ready(5)
        rest = await node.dispatches(2)
        await node.quiet()  # only 5 jobs
        ids = {d.job_id for d in (*first, third, *rest)}
        assert len(ids) == 5
        # HELLO resets the credit to 0: nothing more even though READY granted 3 more.
        held = (first[1], third, *rest)
        node.hello(running=tuple(p.RunningJob(d.job_id, d.attempt, d.lease) for d in held))
        node.send(p.Result(third.job_id, "feedfeedfeedfeed", 1, True, duration_s=0.0))
        await node.expect(p.Ack)  # a stale RESULT's ACK: the HELLO before it was handled
        await client.submit(spec())
        await node.quiet()
        node.ready(1)
        assert (await node.expect(p.Dispatch)).job_id not in ids


async def test_resources_bound_where_a_job_goes(tmp_path: Path) -> None:
    async with cluster(tmp_path) as env:
        client = env.client()
        small = env.node("small", gpus=1, cpus=2, ram_mb=1_000)
        big = env.node("big", gpus=2, cpus=2, ram_mb=4_000)
        two_gpus = await client.one(spec(resources=p.Resources(gpus=2, cpus=1)))
        small.hello(credit=4)
        await small.quiet()  # 2 GPUs never go to a 1-GPU node
        big.hello(credit=4)
        d = await big.expect(p.Dispatch)
        assert d.job_id == two_gpus and d.resources.gpus == 2
        # Memory: 2,000 MiB fits only "big" (whose GPUs are taken, not its memory).
        mem = await client.one(spec(resources=p.Resources(gpus=0, cpus=1, memory_mb=2_000)))
        assert (await big.expect(p.Dispatch)).job_id == mem
        await small.quiet()
        # CPUs: "small" has 2, each job takes 2: one at a time despite credit 4.
        cpu_jobs = await client.submit(*(spec(resources=p.Resources(cpus=2)) for _ in range(2)))
        first = await small.expect(p.Dispatch)
        assert first.job_id in cpu_jobs.job_ids
        await small.quiet()
        small.ok(first)
        await small.expect(p.Ack)
        second = await small.expect(p.Dispatch)
        assert {first.job_id, second.job_id} == set(cpu_jobs.job_ids)


@pytest.mark.parametrize(("policy", "want"), [("fifo", [0, 1, 2, 3]), ("priority", [2, 1, 3, 0])])
async def test_fifo_dispatches_in_submit_order_and_priority_highest_first(
    tmp_path: Path, policy: str, want: list[int]
) -> None:
    async with cluster(tmp_path, policy=policy) as env:
        client, node = env.client(), env.node("n1")
        submitted = await client.submit(*(spec(priority=pr) for pr in (0, 5, 9, 5)))
        node.hello(credit=4)
        order = [d.job_id for d in await node.dispatches(4)]
        assert order == [submitted.job_ids[i] for i in want]


async def test_a_stale_result_is_acked_refused_and_counted(tmp_path: Path) -> None:
    async with cluster(tmp_path) as env:
        client, node = env.client(), env.node("n1")
        job = await client.one(spec())
        node.hello(credit=1)
        d = await node.expect(p.Dispatch)
        node.accept(d)
        node.send(p.Result(job, "0123456789abcdef", 1, True, "forged", duration_s=0.1))
        assert await node.expect(p.Ack) == p.Ack(job, "0123456789abcdef")
        assert env.row(job)["state"] == "running"
        node.ok(d, "real")
        await node.expect(p.Ack)
        node.ok(d, "again")  # a repeat of a finished job's RESULT: stale too
        await node.expect(p.Ack)
        stats = await env.coord.statistics()
        assert (stats.results_ok, stats.results_stale) == (1, 2)
        assert env.row(job)["state"] == "succeeded"


async def test_a_failure_is_retried_with_back_off_then_fails_with_its_cause(
    tmp_path: Path,
) -> None:
    async with cluster(tmp_path, retry_backoff_s=0.1, retry_backoff_cap_s=0.1) as env:
        client, node = env.client(), env.node("n1")
        job = await client.one(spec(max_retries=1))
        node.hello(credit=3)
        d1 = await node.expect(p.Dispatch)
        clock = current_runtime().clock
        failed_at = clock.now()
        node.fail(d1, "exception", "Traceback ...\nValueError: bad lr")
        await node.expect(p.Ack)
        d2 = await node.expect(p.Dispatch)
        assert clock.now() - failed_at >= 0.09  # the back-off, on a timer
        assert (d2.job_id, d2.attempt) == (job, 2) and d2.lease != d1.lease
        node.fail(d2, "timeout", "timed out after 30 s; stopped with SIGTERM")
        await node.expect(p.Ack)
        await node.quiet()
        row = env.row(job)
        assert (row["state"], row["failures"]) == ("failed", 2)
        assert row["error"] == "timed out after 30 s; stopped with SIGTERM"


@pytest.mark.parametrize("kind", ["refused", "not_found"])
async def test_refused_and_not_found_fail_at_once(tmp_path: Path, kind: str) -> None:
    async with cluster(tmp_path) as env:
        client, node = env.client(), env.node("n1")
        job = await client.one(spec(max_retries=5))
        node.hello(credit=2)
        d = await node.expect(p.Dispatch)
        node.fail(d, kind, f"entrypoint pkg.tasks:run {kind}")
        await node.expect(p.Ack)
        await node.quiet()
        row = env.row(job)
        assert (row["state"], row["attempt"]) == ("failed", 1)
        assert kind in row["error"]


async def test_a_handed_back_job_is_requeued_without_counting_a_failure(tmp_path: Path) -> None:
    async with cluster(tmp_path) as env:
        client, node = env.client(), env.node("n1")
        job = await client.one(spec(max_retries=0))
        node.hello(credit=2)
        d1 = await node.expect(p.Dispatch)
        node.fail(d1, "handed_back", "node draining")
        await node.expect(p.Ack)
        d2 = await node.expect(p.Dispatch)
        assert (d2.job_id, d2.attempt) == (job, 2)
        row = env.row(job)
        assert (row["state"], row["failures"]) == ("leased", 0)


async def test_an_error_while_handling_a_frame_is_answered_and_the_coordinator_goes_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mabeam.cluster import _coord_session

    real = _coord_session.result_op

    def flaky(node_id: str, result: p.Result) -> Any:
        if result.value == "explode":
            raise RuntimeError("a bug")
        return real(node_id, result)

    monkeypatch.setattr(_coord_session, "result_op", flaky)
    async with cluster(tmp_path) as env:
        client, node = env.client(), env.node("n1")
        job = await client.one(spec())
        node.hello(credit=1)
        d = await node.expect(p.Dispatch)
        node.ok(d, "explode")
        error = await node.expect(p.Error)
        assert error.code == "internal" and "a bug" in error.message
        node.ok(d, "fine")
        assert await node.expect(p.Ack) == p.Ack(job, d.lease)
        assert (await env.coord.statistics()).internal_errors == 1


async def test_the_isolation_of_a_spec_reaches_the_dispatch_and_not_the_cache_key(
    tmp_path: Path,
) -> None:
    from mabeam.cluster.store import JobSpec

    process, pool = (
        JobSpec("pkg.tasks:run", {"x": 1}),
        JobSpec("pkg.tasks:run", {"x": 1}, isolation="pool"),
    )
    assert process.content_hash == pool.content_hash and process != pool
    async with cluster(tmp_path) as env:
        client, node = env.client(), env.node("n1")
        job = await client.one(spec(isolation="pool"))
        node.hello(credit=1)
        d = await node.expect(p.Dispatch)
        assert (d.job_id, d.isolation) == (job, "pool")
