"""The coordinator's store actor publishes event-log rows only of the watched jobs it
was told of, and of every job from the moment a watch starts until it is told again:
a new watch never misses an event of its jobs, and an unwatched job's events are not
built at all."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import pytest

from foundation import Runtime
from foundation.testing import Probe
from mabeam.cluster._coord_store import (
    Committed,
    StoreActor,
    StoreReply,
    StoreRequest,
    Subscribe,
    WatchEvents,
)
from mabeam.cluster.store import Complete, JobSpec, JobStore, Lease, Leased, Submit

pytestmark = pytest.mark.anyio
WAIT_S = 10.0


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def spec(x: int) -> JobSpec:
    return JobSpec("task_entrypoints:square", {"x": x})


async def commit(store: Any, probe: Probe, ops: list[Any]) -> tuple[StoreReply, Committed]:
    """Commit ``ops``; the reply and the batch the subscriber got."""
    store.cast(StoreRequest(ops, probe.ref, tag="t"))
    with anyio.fail_after(WAIT_S):
        reply = await probe.assert_receive(StoreReply, timeout=WAIT_S)
        batch = await probe.assert_receive(Committed, timeout=WAIT_S)
    return reply, batch


async def test_only_the_named_jobs_events_are_published_and_all_while_a_watch_starts(
    tmp_path: Path,
) -> None:
    async with Runtime() as rt:
        probe = await Probe.start()
        store = await rt.spawn(StoreActor, str(tmp_path / "jobs.db"))
        store.cast(Subscribe(probe.ref))
        reply, _ = await commit(store, probe, [Submit([spec(1), spec(2), spec(3)], "me")])
        a, b, c = reply.outcomes[0].job_ids

        store.cast(StoreRequest([], probe.ref, tag="watch", watch=True))  # a watch starts
        await probe.assert_receive(StoreReply, timeout=WAIT_S)
        reply, batch = await commit(store, probe, [Lease(a, "n1"), Lease(b, "n1")])
        assert {e.job_id for e in batch.events} == {a, b}  # every job's, not told whose
        leases: dict[str, Leased] = {out.job_id: out for out in reply.outcomes}

        store.cast(WatchEvents(True, frozenset({a})))
        _, batch = await commit(store, probe, [Complete(j, t.token, 1) for j, t in leases.items()])
        assert [(e.job_id, e.kind) for e in batch.events] == [(a, "running"), (a, "succeeded")]

        store.cast(StoreRequest([], probe.ref, tag="watch", watch=True))  # another starts
        await probe.assert_receive(StoreReply, timeout=WAIT_S)
        _, batch = await commit(store, probe, [Lease(c, "n1")])
        assert [(e.job_id, e.kind) for e in batch.events] == [(c, "leased")]


def test_events_of_named_jobs_skip_the_others_and_ids_of_no_job(tmp_path: Path) -> None:
    with JobStore(tmp_path / "jobs.db") as store:
        a, b = store.submit([spec(1), spec(2)], submitter="me").job_ids
        store.lease(b, "n1")
        assert [e.job_id for e in store.events(jobs={b, "j-nope-1", "x"})] == [b, b]
        assert [e.kind for e in store.events(jobs={a})] == ["submitted"]
        assert store.events(jobs=set()) == []
        assert len(store.events()) == 3
