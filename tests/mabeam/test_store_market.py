"""The job store's escrow holds: a lease won at auction holds the team's money in the
lease's own transaction; completion settles it by the hours held, every other end of
the lease releases it; the teams' balances reach the committed batch."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from store_helpers import Clock

from mabeam.cluster.store import (
    BudgetSet,
    Cancel,
    Complete,
    Fail,
    JobSpec,
    JobStore,
    Lease,
    Leased,
    LeaseTerms,
    NotLeasable,
    Rejected,
    Release,
    RequeueNode,
    SetBudget,
)
from mabeam.economics import MICRO


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def store(tmp_path: Path, clock: Clock) -> Iterator[JobStore]:
    with JobStore(tmp_path / "jobs.db", clock=clock, synchronous="NORMAL") as s:
        yield s


RATE = 2 * MICRO  # 2 credits per hour for the bundle
TERMS = LeaseTerms("vision", "owner-a", RATE, 2 * MICRO)  # held: one hour's worth


def _job(store: JobStore, n: int = 0, retries: int = 3) -> str:
    spec = JobSpec("pkg.mod:fn", {"n": n}, max_retries=retries, cache=False)
    return store.submit([spec], "client").job_ids[0]


def _lease(store: JobStore, job: str, terms: LeaseTerms | None = TERMS) -> Leased:
    out = store.apply([Lease(job, "n1", terms)])[0]
    assert isinstance(out, Leased), out
    return out


def test_set_budget_reports_the_team_and_reaches_the_batch(store: JobStore) -> None:
    out = store.apply([SetBudget("vision", 10 * MICRO)])[0]
    assert out == BudgetSet("vision", 10 * MICRO, 0)
    assert store.take_balances() == {"vision": 10 * MICRO}
    assert store.take_balances() == {}
    bad = store.apply([SetBudget("vision", -1)])[0]
    assert isinstance(bad, Rejected) and "negative" in str(bad.error)


def test_a_completed_lease_pays_the_hours_it_held_the_gpus(store: JobStore, clock: Clock) -> None:
    store.apply([SetBudget("vision", 10 * MICRO)])
    job = _job(store)
    leased = _lease(store, job)
    ledger = store.ledger()
    assert ledger.account("vision").available == 8 * MICRO
    assert ledger.account("vision").held == 2 * MICRO
    assert ledger.account("owner-a").kind == "owner"
    clock.t += 1800.0  # half an hour at 2 credits/h
    store.apply([Complete(job, leased.token, "ok")])
    assert ledger.account("vision").available == 9 * MICRO
    assert ledger.account("vision").held == 0
    assert ledger.account("owner-a").available == MICRO
    assert store.take_balances()["vision"] == 9 * MICRO
    ledger.verify()


def test_the_charge_never_exceeds_the_hold(store: JobStore, clock: Clock) -> None:
    store.apply([SetBudget("vision", 10 * MICRO)])
    job = _job(store)
    leased = _lease(store, job)
    clock.t += 5 * 3600.0  # ran five hours on a one-hour hold
    store.apply([Complete(job, leased.token, "ok")])
    assert store.ledger().account("owner-a").available == 2 * MICRO
    assert store.ledger().account("vision").available == 8 * MICRO


@pytest.mark.parametrize("how", ["fail", "release", "cancel", "node_lost", "fail_final"])
def test_every_other_end_of_a_lease_releases_its_hold(
    store: JobStore, clock: Clock, how: str
) -> None:
    store.apply([SetBudget("vision", 10 * MICRO)])
    job = _job(store, retries=0 if how == "fail_final" else 3)
    leased = _lease(store, job)
    clock.t += 600.0
    op = {
        "fail": Fail(job, leased.token, "boom"),
        "fail_final": Fail(job, leased.token, "boom"),
        "release": Release(job, leased.token, "node draining"),
        "cancel": Cancel(job),
        "node_lost": RequeueNode("n1", "silent"),
    }[how]
    store.apply([op])
    if how == "cancel":  # a running job's cancel ends when the node gives it back
        assert store.ledger().account("vision").held == 2 * MICRO
        store.apply([Fail(job, leased.token, "cancelled")])
    ledger = store.ledger()
    assert ledger.account("vision").available == 10 * MICRO
    assert ledger.account("owner-a").available == 0
    assert ledger.open_holds() == []
    ledger.verify()
    if store.job(job).state == "queued":  # a requeued job can be leased (and held) again
        clock.t += 3600.0
        _lease(store, job)
        assert store.ledger().account("vision").held == 2 * MICRO


def test_a_team_that_cannot_pay_is_not_leased_and_nothing_changes(store: JobStore) -> None:
    store.apply([SetBudget("vision", MICRO)])  # less than the 2-credit hold
    job = _job(store)
    out = store.apply([Lease(job, "n1", TERMS)])[0]
    assert isinstance(out, NotLeasable) and out.state == "queued"
    assert "vision" in out.reason and "available" in out.reason
    assert store.job(job).state == "queued"
    assert store.ledger().account("vision").available == MICRO
    assert store.take_balances()["vision"] == MICRO
    unknown = store.apply([Lease(job, "n1", LeaseTerms("nobody", "owner-a", 1, 1))])[0]
    assert isinstance(unknown, NotLeasable) and "nobody" in unknown.reason
    _lease(store, job, None)  # a lease without terms costs nothing


def test_malformed_terms_are_rejected(store: JobStore) -> None:
    job = _job(store)
    for terms in (LeaseTerms("", "o", 1, 1), LeaseTerms("t", "o", -1, 1), "x"):
        out = store.apply([Lease(job, "n1", terms)])[0]  # type: ignore[arg-type]
        assert isinstance(out, Rejected), terms
    assert store.job(job).state == "queued"
