"""``JobStore``: every op and outcome, the result cache, errors, reads and the file format.

Each test runs on a real SQLite file under ``tmp_path`` with a hand-driven clock (the
store never reads time itself, so back-off times are exact).
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from store_helpers import Clock

from mabeam.cluster._store_tokens import LeaseTokens
from mabeam.cluster.store import (
    MAX_ERROR_CHARS,
    STATES,
    Accept,
    Accepted,
    Cancel,
    Cancelled,
    CancelRequested,
    Complete,
    Completed,
    Fail,
    Failed,
    IdempotencyConflictError,
    InvalidOpError,
    InvalidSpecError,
    JobSpec,
    JobStore,
    Lease,
    Leased,
    NodeRequeued,
    NotCancelled,
    NotLeasable,
    Prune,
    Pruned,
    QuotaExceededError,
    Rejected,
    Requeued,
    Resources,
    Retried,
    Stale,
    StoreClosedError,
    StoreFormatError,
    Submit,
    Submitted,
    UnknownJobError,
)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def store(tmp_path: Path, clock: Clock) -> Iterator[JobStore]:
    with JobStore(tmp_path / "jobs.db", clock=clock, backoff_base_s=2.0, backoff_cap_s=10.0) as s:
        yield s


def spec(n: int = 0, **kw: Any) -> JobSpec:
    return JobSpec("pkg.mod:train", {"n": n}, **kw)


def one(store: JobStore, **kw: Any) -> str:
    return store.submit([spec(**kw)], "alice").job_ids[0]


def leased(store: JobStore, job_id: str, node: str = "n1") -> Leased:
    out = store.lease(job_id, node)
    assert isinstance(out, Leased), out
    return out


def running(store: JobStore, job_id: str, node: str = "n1") -> str:
    token = leased(store, job_id, node).token
    assert store.accept(job_id, token) == Accepted(job_id)
    return token


def kinds(store: JobStore, job_id: str) -> list[str]:
    return [e.kind for e in store.events(job_id=job_id)]


def raw_counts(path: Path) -> dict[str, int]:
    with sqlite3.connect(path) as conn:
        rows = conn.execute("SELECT state, count(*) FROM jobs GROUP BY state").fetchall()
    return {state: dict(rows).get(state, 0) for state in STATES}


# -- specs -------------------------------------------------------------------------------


def test_a_spec_round_trips_through_plain_data() -> None:
    s = JobSpec(
        "a.b:c",
        {"lr": 0.1, "layers": (1, 2), "tag": None},
        Resources(gpus=1, cpus=2, memory_mb=512),
        timeout_s=30,
        max_retries=0,
        priority=-3,
        code_version="abc",
        cache=False,
    )
    assert s.timeout_s == 30.0 and s.resources.cpus == 2.0
    assert JobSpec.from_dict(s.to_dict()) == s


@pytest.mark.parametrize(
    ("raw", "where"),
    [
        ({"entrypoint": "nocolon"}, "spec.entrypoint"),
        ({"entrypoint": "a.b:c d"}, "spec.entrypoint"),
        ({"entrypoint": 3}, "spec.entrypoint"),
        ({}, "missing key 'entrypoint'"),
        ({"entrypoint": "a:b", "gpu": 1}, "unknown key 'gpu'"),
        ({"entrypoint": "a:b", "params": [1]}, "spec.params"),
        ({"entrypoint": "a:b", "params": {"x": {1, 2}}}, "spec.params.x"),
        ({"entrypoint": "a:b", "params": {"x": [object()]}}, "spec.params.x[0]"),
        ({"entrypoint": "a:b", "params": {"x": {1: 2}}}, "spec.params.x"),
        ({"entrypoint": "a:b", "params": {"x": 1 << 70}}, "spec.params.x"),
        ({"entrypoint": "a:b", "resources": {"gpu": 1}}, "spec.resources: unknown key 'gpu'"),
        ({"entrypoint": "a:b", "resources": {"gpus": -1}}, "spec.resources.gpus"),
        ({"entrypoint": "a:b", "resources": {"gpus": True}}, "spec.resources.gpus"),
        ({"entrypoint": "a:b", "resources": {"cpus": float("nan")}}, "spec.resources.cpus"),
        ({"entrypoint": "a:b", "resources": {"memory_mb": 1.5}}, "spec.resources.memory_mb"),
        ({"entrypoint": "a:b", "resources": 4}, "spec.resources"),
        ({"entrypoint": "a:b", "timeout_s": 0}, "spec.timeout_s"),
        ({"entrypoint": "a:b", "timeout_s": "10"}, "spec.timeout_s"),
        ({"entrypoint": "a:b", "max_retries": -1}, "spec.max_retries"),
        ({"entrypoint": "a:b", "priority": 1.0}, "spec.priority"),
        ({"entrypoint": "a:b", "code_version": 2}, "spec.code_version"),
        ({"entrypoint": "a:b", "cache": "yes"}, "spec.cache"),
        ("a:b", "expected a map"),
    ],
)
def test_a_bad_spec_is_refused_naming_the_offending_key(raw: Any, where: str) -> None:
    with pytest.raises(InvalidSpecError, match=None) as info:
        JobSpec.from_dict(raw)
    assert where in str(info.value)


def test_params_nested_too_deep_are_refused() -> None:
    deep: Any = 1
    for _ in range(20):
        deep = [deep]
    with pytest.raises(InvalidSpecError, match="nested deeper"):
        JobSpec("a:b", {"x": deep})


def test_the_content_hash_covers_entrypoint_params_and_code_version_only() -> None:
    base = JobSpec("a:b", {"x": 1, "y": [1, 2]}, code_version="v1")
    same = [
        JobSpec("a:b", {"y": [1, 2], "x": 1}, code_version="v1"),  # key order
        JobSpec("a:b", {"x": 1, "y": (1, 2)}, code_version="v1"),  # tuple == list
        JobSpec("a:b", {"x": 1, "y": [1, 2]}, Resources(gpus=2), priority=9, code_version="v1"),
    ]
    other = [
        JobSpec("a:c", {"x": 1, "y": [1, 2]}, code_version="v1"),
        JobSpec("a:b", {"x": 2, "y": [1, 2]}, code_version="v1"),
        JobSpec("a:b", {"x": 1.0, "y": [1, 2]}, code_version="v1"),  # int vs float
        JobSpec("a:b", {"x": 1, "y": [1, 2]}, code_version="v2"),
    ]
    assert all(s.content_hash == base.content_hash for s in same)
    assert len({base.content_hash, *(s.content_hash for s in other)}) == 1 + len(other)


# -- submit, idempotency, cache ------------------------------------------------------------


def test_submit_records_queued_jobs_in_order_with_an_event_each(store: JobStore) -> None:
    out = store.submit([spec(1), spec(2, priority=5)], "alice")
    assert out.duplicate is False and out.cached == () and out.joined == ()
    a, b = out.job_ids
    assert a.startswith(f"j-{store.store_id}-") and a != b
    rec = store.job(b)
    assert (rec.state, rec.attempt, rec.failures, rec.submitter) == ("queued", 1, 0, "alice")
    assert rec.spec == spec(2, priority=5) and rec.created == rec.updated == 1000.0
    assert store.counts()["queued"] == 2
    assert [e.kind for e in store.events()] == ["submitted", "submitted"]


def test_a_repeated_idempotency_key_returns_the_first_jobs_and_records_nothing(
    store: JobStore,
) -> None:
    first = store.submit([spec(1), spec(2)], "alice", "sweep-1")
    events = store.last_event_seq()
    again = store.submit([spec(1), spec(2)], "alice", "sweep-1")
    assert again == Submitted(first.job_ids, duplicate=True)
    assert store.last_event_seq() == events and store.counts()["queued"] == 2
    assert store.submission("alice", "sweep-1") == first.job_ids
    assert store.submission("alice", "other") is None
    # The key is per submitter: bob's "sweep-1" is a new submission.
    bob = store.submit([spec(1), spec(2)], "bob", "sweep-1")
    assert not bob.duplicate and set(bob.job_ids).isdisjoint(first.job_ids)


def test_an_idempotency_key_reused_for_other_specs_is_refused(store: JobStore) -> None:
    store.submit([spec(1)], "alice", "k")
    before = store.counts()
    for other in (spec(2), spec(1, priority=5), spec(1, isolation="pool"), spec(1, timeout_s=9)):
        with pytest.raises(IdempotencyConflictError, match="'k' of 'alice'"):
            store.submit([other], "alice", "k")
    assert store.counts() == before


def test_a_retry_with_the_same_params_in_another_key_order_is_the_same_submission(
    store: JobStore,
) -> None:
    one_way = JobSpec("pkg.mod:train", {"a": 1, "b": [2, {"x": 1, "y": 2}]})
    other_way = JobSpec("pkg.mod:train", {"b": [2, {"y": 2, "x": 1}], "a": 1})
    first = store.submit([one_way], "alice", "k")
    assert store.submit([other_way], "alice", "k") == Submitted(first.job_ids, duplicate=True)


def test_a_finished_result_is_served_from_the_cache(store: JobStore) -> None:
    a = one(store, n=7)
    store.complete(a, leased(store, a).token, {"acc": 0.9})
    out = store.submit([spec(7), spec(7, cache=False)], "bob")
    cached, fresh = out.job_ids
    assert out.cached == (cached,) and out.joined == ()
    rec = store.job(cached)
    assert (rec.state, rec.result) == ("succeeded", {"acc": 0.9})
    assert [e.detail for e in store.events(job_id=cached)][-1] == {"cached_from": a}
    assert store.job(fresh).state == "queued"  # cache=False always runs anew


def test_a_duplicate_of_a_live_job_follows_it_and_shares_its_result(store: JobStore) -> None:
    a = one(store, n=3)
    lease = leased(store, a)
    out = store.submit([spec(3), spec(3)], "bob")
    f1, f2 = out.job_ids
    assert out.joined == (f1, f2)
    assert store.job(f1).follows == a and store.job(f2).follows == a
    assert [r.job_id for r in store.ready()] == []  # followers are never dispatched
    assert store.lease(f1, "n2") == NotLeasable(f1, "queued", f"job follows {a}")
    assert store.complete(a, lease.token, [1, 2]) == Completed(a, (f1, f2))
    for f in (f1, f2):
        rec = store.job(f)
        assert (rec.state, rec.result) == ("succeeded", [1, 2])
        assert kinds(store, f) == ["submitted", "joined", "succeeded"]
    assert store.counts()["succeeded"] == 3


def test_followers_of_a_job_that_fails_for_good_fail_with_its_cause(store: JobStore) -> None:
    a = one(store, max_retries=0)
    token = leased(store, a).token
    (f,) = store.submit([spec()], "bob").job_ids
    out = store.fail(a, token, "CUDA OOM")
    assert out == Failed(a, "CUDA OOM", (f,))
    rec = store.job(f)
    assert rec.state == "failed" and rec.error == f"the job it follows ({a}) failed: CUDA OOM"


def test_cancelling_a_followed_job_promotes_its_first_follower(store: JobStore) -> None:
    a = one(store)
    f1, f2 = store.submit([spec(), spec()], "bob").job_ids
    assert store.cancel(a) == Cancelled(a, promoted=f1)
    assert store.job(f1).follows is None and store.job(f2).follows == f1
    assert [r.job_id for r in store.ready()] == [f1]
    assert kinds(store, f1)[-1] == "promoted"


def test_bad_submissions_are_refused_and_change_nothing(store: JobStore) -> None:
    bad: list[tuple[Any, type[Exception]]] = [
        (Submit([], "alice"), InvalidOpError),
        (Submit("abc", "alice"), InvalidOpError),  # type: ignore[arg-type]
        (Submit([spec(), {"entrypoint": "a:b"}], "alice"), InvalidSpecError),  # type: ignore[list-item]
        (Submit([spec()], ""), InvalidOpError),
        (Submit([spec()], "alice", ""), InvalidOpError),
        (Submit([spec()], 7), InvalidOpError),  # type: ignore[arg-type]
    ]
    outs = store.apply([op for op, _ in bad])
    for out, (_, kind) in zip(outs, bad, strict=True):
        assert isinstance(out, Rejected) and isinstance(out.error, kind), out
    assert store.counts()["queued"] == 0 and store.last_event_seq() == 0


# -- lease, accept, progress, complete -----------------------------------------------------


def test_lease_tokens_are_distinct_hex_and_differ_between_stores() -> None:
    first, second = LeaseTokens(), LeaseTokens()
    tokens = {first() for _ in range(20_000)}
    assert len(tokens) == 20_000
    assert all(len(t) == 16 and int(t, 16) >= 0 for t in tokens)
    assert not tokens & {second() for _ in range(20_000)}  # a reopened store starts afresh


def test_lease_hands_out_attempt_token_and_spec_of_a_queued_job_only(store: JobStore) -> None:
    a = one(store, n=5)
    out = leased(store, a, "gpu-node")
    assert (out.job_id, out.node, out.attempt, out.spec) == (a, "gpu-node", 1, spec(5))
    assert len(out.token) == 16
    assert store.lease(a, "n2") == NotLeasable(a, "leased", "job is leased")
    rec = store.job(a)
    assert (rec.state, rec.node, rec.token, rec.leased_at) == (
        "leased",
        "gpu-node",
        out.token,
        1000.0,
    )
    assert store.leases("gpu-node") == [rec] and store.leased_nodes() == ["gpu-node"]


def test_unknown_and_malformed_job_ids_are_clear_errors(store: JobStore, tmp_path: Path) -> None:
    a = one(store)
    with JobStore(tmp_path / "other.db") as other:
        foreign = other.submit([spec()], "x").job_ids[0]
    for job_id in ("j-nope", f"j-{store.store_id}-999", f"j-{store.store_id}-01", foreign, ""):
        with pytest.raises(UnknownJobError, match="unknown job id"):
            store.lease(job_id, "n1")
        with pytest.raises(UnknownJobError):
            store.job(job_id)
    with pytest.raises(InvalidOpError, match="job_id must be a str"):
        store.cancel(7)  # type: ignore[arg-type]
    with pytest.raises(InvalidOpError, match="node must be"):
        store.lease(a, "")
    with pytest.raises(InvalidOpError, match="token must be a str"):
        store.complete(a, None, 1)  # type: ignore[arg-type]


def test_accept_moves_the_current_lease_to_running_once(store: JobStore) -> None:
    a = one(store)
    token = leased(store, a).token
    assert store.accept(a, "not-it") == Stale(
        a, "leased", "token does not match the current lease (attempt 1)"
    )
    assert store.accept(a, token) == Accepted(a)
    assert store.accept(a, token) == Accepted(a)  # a repeated ACCEPT changes nothing
    assert store.job(a).state == "running"
    assert kinds(store, a) == ["submitted", "leased", "running"]


def test_progress_keeps_the_latest_report_of_the_current_attempt(store: JobStore) -> None:
    a = one(store)
    token = running(store, a)
    assert store.progress(a, token, {"step": 1, "loss": 2.5}) == Accepted(a)
    assert store.progress(a, token, {"step": 2, "loss": 1.5}) == Accepted(a)
    assert isinstance(store.progress(a, "old", {"step": 9}), Stale)
    assert store.job(a).progress == {"step": 2, "loss": 1.5}
    with pytest.raises(InvalidOpError, match="progress data is not storable"):
        store.progress(a, token, {"bad": {1, 2}})


def test_a_result_is_accepted_once_for_the_current_token_only(store: JobStore) -> None:
    a = one(store)
    token = running(store, a)
    assert isinstance(store.complete(a, "forged", 1), Stale)
    assert store.job(a).state == "running"
    assert store.complete(a, token, {"acc": 1.0}) == Completed(a)
    # The same RESULT again (an outbox redelivery) is stale: no second completion.
    assert store.complete(a, token, {"acc": 0.0}) == Stale(a, "succeeded", "job already succeeded")
    assert store.job(a).result == {"acc": 1.0}
    assert kinds(store, a).count("succeeded") == 1


def test_a_token_for_a_job_never_leased_is_stale(store: JobStore) -> None:
    a = one(store)
    assert store.accept(a, "guess") == Stale(a, "queued", "job is queued: it holds no lease")


def test_a_result_may_arrive_before_the_accept(store: JobStore) -> None:
    a = one(store)
    assert store.complete(a, leased(store, a).token, None) == Completed(a)
    assert store.job(a).state == "succeeded"


def test_an_unstorable_result_is_refused_and_the_job_stays_running(store: JobStore) -> None:
    a = one(store)
    token = running(store, a)
    with pytest.raises(InvalidOpError, match="result is not storable"):
        store.complete(a, token, object())
    assert store.job(a).state == "running"


# -- fail, retry, release --------------------------------------------------------------------


def test_a_failed_attempt_is_retried_with_exponential_back_off_then_fails(
    store: JobStore, clock: Clock
) -> None:
    a = one(store, max_retries=3)
    waits = []
    for attempt in (1, 2, 3):
        token = running(store, a)
        out = store.fail(a, token, f"boom {attempt}")
        assert isinstance(out, Retried) and out.attempt == attempt + 1
        waits.append(out.not_before - clock.t)
        rec = store.job(a)
        assert (rec.state, rec.failures, rec.error, rec.token) == (
            "queued",
            attempt,
            f"boom {attempt}",
            None,
        )
        assert store.lease(a, "n1") == NotLeasable(
            a, "queued", f"job backs off until {out.not_before}"
        )
        assert store.ready() == [] and store.next_ready_time() == out.not_before
        clock.t = out.not_before
    assert waits == [2.0, 4.0, 8.0]  # base 2 s, doubling
    token = running(store, a)
    assert store.fail(a, token, "boom 4") == Failed(a, "boom 4")
    rec = store.job(a)
    assert (rec.state, rec.attempt, rec.failures, rec.error) == ("failed", 4, 4, "boom 4")
    assert kinds(store, a).count("retry") == 3 and kinds(store, a)[-1] == "failed"


def test_back_off_is_capped(tmp_path: Path) -> None:
    with JobStore(tmp_path / "j.db", backoff_base_s=1.0, backoff_cap_s=5.0) as s:
        assert [s.backoff(f) for f in (1, 2, 3, 4, 50, 10_000)] == [1, 2, 4, 5, 5, 5]


def test_a_stale_token_from_an_earlier_attempt_is_refused_everywhere(
    store: JobStore, clock: Clock
) -> None:
    a = one(store)
    old = running(store, a)
    store.fail(a, old, "x")
    assert store.complete(a, old, 1) == Stale(a, "queued", "lease is over: the job was requeued")
    clock.t += 100
    new = running(store, a, "n2")
    for op in (Accept(a, old), Complete(a, old, 1), Fail(a, old, "late")):
        out = store.apply([op])[0]
        assert isinstance(out, Stale) and out.state == "running", out
    assert store.complete(a, new, 2) == Completed(a)


def test_long_error_text_keeps_its_end(store: JobStore) -> None:
    a = one(store, max_retries=0)
    text = "Traceback\n" + "x" * MAX_ERROR_CHARS + "\nValueError: the cause"
    store.fail(a, leased(store, a).token, text)
    error = store.job(a).error
    assert error is not None and len(error) == MAX_ERROR_CHARS + 3
    assert error.startswith("...") and error.endswith("ValueError: the cause")


def test_release_requeues_at_once_without_counting_a_failure(store: JobStore) -> None:
    a = one(store, max_retries=0)
    token = running(store, a)
    assert store.release(a, token, "node draining") == Requeued(a, 2)
    rec = store.job(a)
    assert (rec.state, rec.attempt, rec.failures, rec.not_before) == ("queued", 2, 0, 1000.0)
    assert [r.job_id for r in store.ready()] == [a]
    assert isinstance(store.release(a, token), Stale)


# -- cancel ------------------------------------------------------------------------------------


def test_cancel_of_a_queued_job_is_immediate(store: JobStore) -> None:
    a = one(store)
    assert store.cancel(a) == Cancelled(a)
    assert store.job(a).state == "cancelled" and store.ready() == []
    assert store.job(a).error == "cancelled before it ran"
    assert store.cancel(a) == NotCancelled(a, "cancelled")
    assert store.lease(a, "n1") == NotLeasable(a, "cancelled", "job is cancelled")


def test_cancel_of_a_running_job_asks_its_node_and_its_end_cancels_it(store: JobStore) -> None:
    a = one(store)
    token = running(store, a, "n7")
    assert store.cancel(a) == CancelRequested(a, "n7", token)
    assert store.cancel(a) == CancelRequested(a, "n7", token)  # asked once
    assert kinds(store, a).count("cancel_requested") == 1
    assert store.job(a).cancel_requested is True
    assert store.fail(a, token, "terminated") == Cancelled(a)  # not retried
    assert (store.job(a).state, store.job(a).error) == ("cancelled", "terminated")


def test_a_result_that_beats_the_cancel_still_counts(store: JobStore) -> None:
    a = one(store)
    token = running(store, a)
    store.cancel(a)
    assert store.complete(a, token, 42) == Completed(a)
    assert store.cancel(a) == NotCancelled(a, "succeeded")


def test_release_of_a_job_being_cancelled_cancels_it(store: JobStore) -> None:
    a = one(store)
    token = leased(store, a).token
    store.cancel(a)
    assert store.release(a, token, "node draining") == Cancelled(a)
    assert store.job(a).error == "cancelled; the node gave it back (node draining)"


# -- node loss -----------------------------------------------------------------------------------


def test_requeue_node_requeues_its_leases_and_counts_only_started_attempts(
    store: JobStore, clock: Clock
) -> None:
    started, unstarted, last_try, cancelling, elsewhere = (
        one(store, n=i, max_retries=0 if i == 2 else 3) for i in range(5)
    )
    running(store, started, "n1")
    leased(store, unstarted, "n1")
    running(store, last_try, "n1")
    running(store, cancelling, "n1")
    store.cancel(cancelling)
    other = running(store, elsewhere, "n2")
    out = store.requeue_node("n1", "heartbeat lost")
    assert out == NodeRequeued("n1", (started, unstarted), (last_try,), (cancelling,))
    s, u = store.job(started), store.job(unstarted)
    assert (s.state, s.attempt, s.failures, s.not_before) == ("queued", 2, 1, clock.t + 2.0)
    assert (u.state, u.attempt, u.failures, u.not_before) == ("queued", 2, 0, clock.t)
    assert store.job(last_try).error == "heartbeat lost: node n1"
    assert store.leases("n1") == [] and store.leased_nodes() == ["n2"]
    assert store.requeue_node("n1") == NodeRequeued("n1")
    assert store.complete(elsewhere, other, 1) == Completed(elsewhere)


# -- batches -------------------------------------------------------------------------------------


def test_a_batch_applies_in_order_and_a_wrong_op_does_not_stop_the_others(
    store: JobStore,
) -> None:
    (a,) = store.submit([spec()], "alice").job_ids
    outs = store.apply(
        [Submit([spec(1)], "bob"), Lease(a, "n1"), Lease("j-bad", "n1"), "not an op", Cancel(a)]  # type: ignore[list-item]
    )
    assert isinstance(outs[0], Submitted) and isinstance(outs[1], Leased)
    assert isinstance(outs[2], Rejected) and isinstance(outs[2].error, UnknownJobError)
    assert isinstance(outs[3], Rejected) and isinstance(outs[3].error, InvalidOpError)
    assert outs[4] == CancelRequested(a, "n1", outs[1].token)
    assert store.apply([]) == []


class _Exploding(list[JobSpec]):
    """A spec list that breaks mid-op: an unexpected failure, not a refusal."""

    def __iter__(self) -> Iterator[JobSpec]:
        raise RuntimeError("disk on fire")


def test_an_unexpected_failure_rolls_the_whole_batch_back(store: JobStore, tmp_path: Path) -> None:
    a = one(store)
    before = (store.counts(), store.last_event_seq())
    with pytest.raises(RuntimeError, match="disk on fire"):
        store.apply([Submit([spec(1)], "bob"), Lease(a, "n1"), Submit(_Exploding([spec(2)]), "x")])
    assert (store.counts(), store.last_event_seq()) == before
    assert store.job(a).state == "queued"
    assert isinstance(store.lease(a, "n1"), Leased)  # the store is still usable


def test_state_counts_agree_with_the_rows(store: JobStore, clock: Clock) -> None:
    ids = store.submit([spec(i, max_retries=1) for i in range(8)], "a").job_ids
    toks = {j: running(store, j) for j in ids[:6]}
    store.complete(ids[0], toks[ids[0]], 1)
    store.fail(ids[1], toks[ids[1]], "x")
    store.fail(ids[2], toks[ids[2]], "x")
    store.cancel(ids[3])
    store.fail(ids[3], toks[ids[3]], "stopped")
    store.cancel(ids[6])
    store.submit([spec(0), spec(4)], "b")  # one cached, one follower
    store.requeue_node("n1")
    counts = store.counts()
    assert counts == raw_counts(store.path)
    assert sum(counts.values()) == 10


# -- reads -----------------------------------------------------------------------------------------


def test_ready_orders_fifo_or_by_priority(store: JobStore) -> None:
    ids = store.submit([spec(i, priority=p) for i, p in enumerate([0, 5, -1, 5, 2])], "a").job_ids
    assert [r.job_id for r in store.ready()] == list(ids)
    by_priority = [r.job_id for r in store.ready(policy="priority")]
    assert by_priority == [ids[1], ids[3], ids[4], ids[0], ids[2]]
    assert [r.job_id for r in store.ready(limit=2)] == list(ids[:2])
    with pytest.raises(ValueError, match="policy"):
        store.ready(policy="auction")


def test_unaccepted_leases_and_job_listing(store: JobStore, clock: Clock) -> None:
    a, b, c = store.submit([spec(1), spec(2), spec(3)], "a").job_ids
    leased(store, a)
    clock.t += 10
    leased(store, b)
    running(store, c)
    assert [r.job_id for r in store.unaccepted_leases(before=clock.t)] == [a]
    assert [r.job_id for r in store.unaccepted_leases(before=clock.t + 1)] == [a, b]
    assert [r.job_id for r in store.jobs()] == [c, b, a]
    assert [r.job_id for r in store.jobs(state="leased")] == [b, a]
    assert [r.job_id for r in store.jobs(state="running")] == [c]
    assert store.jobs(state="failed") == []
    with pytest.raises(ValueError, match="state must be one of"):
        store.jobs(state="done")


def test_events_are_read_from_a_seq_onwards(store: JobStore, clock: Clock) -> None:
    a, b = store.submit([spec(1), spec(2)], "a").job_ids
    mark = store.last_event_seq()
    clock.t = 2000.0
    token = running(store, a)
    store.complete(a, token, 1)
    later = store.events(since=mark)
    assert [(e.job_id, e.kind, e.attempt) for e in later] == [
        (a, "leased", 1),
        (a, "running", 1),
        (a, "succeeded", 1),
    ]
    assert all(e.time == 2000.0 for e in later)
    assert [e.seq for e in later] == sorted(e.seq for e in later)
    assert [e.kind for e in store.events(job_id=b)] == ["submitted"]
    assert len(store.events(limit=2)) == 2


def _plan(store: JobStore, call: Any) -> str:
    """The query plans of the SQL statements ``call()`` runs on the store's connection."""
    statements: list[str] = []
    conn = store._conn
    assert conn is not None
    conn.set_trace_callback(statements.append)
    try:
        call()
    finally:
        conn.set_trace_callback(None)
    plans = []
    with sqlite3.connect(store.path) as probe:
        for sql in statements:
            if sql.lstrip().upper().startswith(("SELECT", "UPDATE")):
                rows = probe.execute(f"EXPLAIN QUERY PLAN {sql}").fetchall()
                plans.append(" ".join(str(r[-1]) for r in rows))
    return "\n".join(plans)


def test_a_success_without_accept_records_that_it_ran(store: JobStore) -> None:
    quick, failing = store.submit([spec(1), spec(2)], "a").job_ids
    token = leased(store, quick).token
    assert store.complete(quick, token, 42) == Completed(quick)  # its ACCEPT was left out
    assert kinds(store, quick) == ["submitted", "leased", "running", "succeeded"]
    assert store.job(quick).result == 42 and store.counts()["running"] == 0
    # A failure never implies a start: a node that refused or handed back never ran it.
    other = leased(store, failing).token
    assert isinstance(store.fail(failing, other, "handed back"), Retried)
    assert "running" not in kinds(store, failing)
    assert raw_counts(store.path) == store.counts()


def test_the_hot_queries_use_their_indexes(store: JobStore) -> None:
    ids = store.submit([spec(i) for i in range(50)], "a").job_ids
    store.lease(ids[0], "n1")
    with sqlite3.connect(store.path) as conn:
        conn.execute("ANALYZE")
    # The ready queue is read at a coordinator's start, from the unfinished jobs only.
    assert "USING INDEX jobs_unfinished_owner" in _plan(store, lambda: store.ready())
    assert "USING INDEX jobs_unfinished_owner" in _plan(
        store, lambda: store.ready(policy="priority")
    )
    assert "USING INDEX jobs_lease_node" in _plan(store, lambda: store.leases("n1"))
    assert "USING INDEX jobs_lease_node" in _plan(
        store, lambda: store.unaccepted_leases(before=1e9)
    )
    assert "USING INDEX jobs_hash" in _plan(store, lambda: store.submit([spec(3)], "b"))
    assert "USING INDEX events_job" in _plan(store, lambda: store.events(job_id=ids[3]))
    assert "SCAN jobs" not in _plan(store, lambda: store.complete(ids[0], "x", 1))


# -- the file --------------------------------------------------------------------------------------


def test_a_reopened_store_has_everything_a_closed_one_committed(tmp_path: Path) -> None:
    path = tmp_path / "jobs.db"
    with JobStore(path) as s:
        a, b = s.submit([spec(1), spec(2)], "alice", "k").job_ids
        token = running(s, a)
        store_id, counts, events = s.store_id, s.counts(), s.events()
    with JobStore(path) as s:
        assert s.store_id == store_id and s.counts() == counts and s.events() == events
        assert s.submit([spec(1), spec(2)], "alice", "k").job_ids == (a, b)
        assert s.complete(a, token, "done") == Completed(a)  # the lease survived


def test_the_connection_is_wal_with_the_chosen_durability(tmp_path: Path) -> None:
    for sync, level in (("FULL", 2), ("NORMAL", 1)):
        with JobStore(tmp_path / f"{sync}.db", synchronous=sync) as s:  # type: ignore[arg-type]
            conn = s._conn
            assert conn is not None
            assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
            assert conn.execute("PRAGMA synchronous").fetchone()[0] == level
            assert conn.execute("PRAGMA busy_timeout").fetchone()[0] == 5000


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        ({"synchronous": "OFF"}, "synchronous"),
        ({"backoff_base_s": -1.0}, "backoff"),
        ({"backoff_base_s": 5.0, "backoff_cap_s": 1.0}, "backoff"),
        ({"busy_timeout_s": -1.0}, "busy_timeout_s"),
    ],
)
def test_bad_store_options_are_refused(tmp_path: Path, kw: dict[str, Any], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        JobStore(tmp_path / "j.db", **kw)


def test_files_that_are_not_job_stores_are_refused(tmp_path: Path) -> None:
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"this is not a database at all" * 200)
    with pytest.raises(StoreFormatError, match="not a usable job store"):
        JobStore(junk)
    foreign = tmp_path / "foreign.db"
    with sqlite3.connect(foreign) as conn:
        conn.execute("CREATE TABLE t (x)")
    with pytest.raises(StoreFormatError, match="another application"):
        JobStore(foreign)
    newer = tmp_path / "newer.db"
    JobStore(newer).close()
    with sqlite3.connect(newer) as conn:
        conn.execute("PRAGMA user_version = 99")
    with pytest.raises(StoreFormatError, match="schema v99"):
        JobStore(newer)


def test_a_closed_store_says_so(tmp_path: Path) -> None:
    s = JobStore(tmp_path / "j.db")
    s.close()
    s.close()
    with pytest.raises(StoreClosedError, match="closed"):
        s.submit([spec()], "a")
    with pytest.raises(StoreClosedError):
        s.counts()


def test_calls_from_several_threads_are_serialized(store: JobStore) -> None:
    errors: list[BaseException] = []

    def work(w: int) -> None:
        try:
            for i in range(20):
                store.apply([Submit([spec(w * 100 + i)], f"w{w}")])
                store.counts()
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(w,)) for w in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert errors == [] and store.counts()["queued"] == 80


def test_the_result_cache_key_is_the_sweep_specs_trial_hash() -> None:
    from mabeam.ml import load_spec

    sweep = load_spec(Path(__file__).with_name("specs") / "grid.toml")
    trials = sweep.trials()
    assert len(trials) == 6
    for trial in trials:
        job = JobSpec(
            entrypoint=sweep.entrypoint, params=trial.params, code_version=sweep.code_version or ""
        )
        assert job.content_hash == trial.hash
    assert len({t.hash for t in trials}) == 6


def test_permanent_failure_skips_the_retries(tmp_path: Path) -> None:
    with JobStore(tmp_path / "jobs.db") as store:
        (job,) = store.submit([JobSpec("pkg.mod:f", max_retries=5)], "client").job_ids
        lease = store.lease(job, "n1")
        assert isinstance(lease, Leased)
        out = store.fail(job, lease.token, "entrypoint refused", permanent=True)
        assert isinstance(out, Failed) and out.error == "entrypoint refused"
        record = store.job(job)
        assert record.state == "failed" and record.failures == 1


def test_a_submit_past_its_owners_quota_is_refused_whole(store: JobStore) -> None:
    def submit(owner: str, n: int, key: str | None = None) -> Any:
        op = Submit(tuple(spec(i) for i in range(n)), "client", key, owner, max_unfinished=3)
        return store.apply([op])[0]

    first = submit("alice", 2, "k1")
    assert isinstance(first, Submitted) and len(first.job_ids) == 2
    refused = submit("alice", 2)
    assert isinstance(refused, Rejected) and isinstance(refused.error, QuotaExceededError)
    assert "submitter 'alice' has 2 unfinished jobs; 2 more would pass its quota of 3" in str(
        refused.error
    )
    assert store.counts()["queued"] == 2  # nothing of the refused submit was stored
    assert isinstance(submit("bob", 3), Submitted)  # a quota is per submitter
    again = submit("alice", 2, "k1")  # a repeat of an accepted submit is not new work
    assert isinstance(again, Submitted) and again.duplicate
    leased = store.lease(first.job_ids[0], "n1")
    assert isinstance(leased, Leased)
    assert isinstance(submit("alice", 2), Rejected)  # leased and running jobs count too
    store.complete(first.job_ids[0], leased.token, "done")
    assert isinstance(submit("alice", 2), Submitted)  # a finished job frees its place
    rows = sqlite3.connect(store.path).execute("SELECT DISTINCT submitter FROM jobs").fetchall()
    assert sorted(r[0] for r in rows) == ["alice", "bob"]
    assert "USING INDEX jobs_unfinished_owner" in _plan(store, lambda: submit("carol", 1))


def test_a_version_1_store_file_is_migrated_in_place(tmp_path: Path) -> None:
    path = tmp_path / "v1.db"
    with JobStore(path) as fresh:
        job = fresh.submit([spec(1)], "a").job_ids[0]
    with sqlite3.connect(path) as conn:  # back to what v1 wrote
        _undo_v4(conn)
        _undo_v3(conn)
        for index in ("jobs_unfinished_owner", "jobs_finished", "submissions_created"):
            conn.execute(f"DROP INDEX {index}")
        conn.execute("PRAGMA user_version = 1")
    with JobStore(path) as store:
        assert store.job(job).state == "queued"
        names = [r[0] for r in store._conn.execute("SELECT name FROM sqlite_master")]  # type: ignore[union-attr]
        assert {"jobs_unfinished_owner", "jobs_finished", "submissions_created"} <= set(names)
        assert {"accounts", "holds", "ledger_log"} <= set(names)
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == 4


def _undo_v4(conn: sqlite3.Connection) -> None:
    """Take a fresh file back to schema v3: no end times, the state-keyed indexes."""
    conn.execute("DROP INDEX jobs_unfinished_owner")
    conn.execute("ALTER TABLE jobs DROP COLUMN ended")
    conn.execute(
        "CREATE INDEX jobs_ready_fifo ON jobs(seq) WHERE state = 'queued' AND follows IS NULL"
    )
    conn.execute(
        "CREATE INDEX jobs_ready_priority ON jobs(priority DESC, seq)"
        " WHERE state = 'queued' AND follows IS NULL"
    )
    conn.execute(
        "CREATE INDEX jobs_unfinished_owner ON jobs(submitter)"
        " WHERE state IN ('queued', 'leased', 'running')"
    )


def _undo_v3(conn: sqlite3.Connection) -> None:
    """Take a fresh file back to schema v2: no ledger tables, no hold columns."""
    for (name,) in conn.execute(
        "SELECT name FROM sqlite_master WHERE type = 'trigger' AND tbl_name = 'ledger_log'"
    ).fetchall():
        conn.execute(f"DROP TRIGGER {name}")
    for table in ("ledger_log", "holds", "accounts"):
        conn.execute(f"DROP TABLE {table}")
    conn.execute("ALTER TABLE jobs DROP COLUMN hold")
    conn.execute("ALTER TABLE jobs DROP COLUMN rate")


def test_a_version_2_store_gets_the_ledger_and_its_leases_run_on(tmp_path: Path) -> None:
    path = tmp_path / "v2.db"
    with JobStore(path) as fresh:
        job = fresh.submit([spec(1)], "a").job_ids[0]
        leased = fresh.lease(job, "n1")
        assert isinstance(leased, Leased)
    with sqlite3.connect(path) as conn:
        _undo_v4(conn)
        _undo_v3(conn)
        conn.execute("PRAGMA user_version = 2")
    with JobStore(path) as store:
        store.complete(job, leased.token, "done")  # a lease from v2: no hold to settle
        assert store.job(job).state == "succeeded"
        assert store.ledger().accounts() == []


def test_a_version_3_store_gets_end_times_and_its_quotas_and_queue_hold(
    tmp_path: Path, clock: Clock
) -> None:
    path = tmp_path / "v3.db"
    with JobStore(path, clock=clock) as fresh:
        done, running_job, queued, cancelled = fresh.submit(
            [spec(1), spec(2), spec(3), spec(4)], "a"
        ).job_ids
        leased = fresh.lease(done, "n1")
        assert isinstance(leased, Leased)
        fresh.complete(done, leased.token, "ok")
        token = running(fresh, running_job)
        fresh.apply([Cancel(cancelled)])
    with sqlite3.connect(path) as conn:
        _undo_v4(conn)
        conn.execute("PRAGMA user_version = 3")
    clock.t += 10.0
    with JobStore(path, clock=clock) as store:
        conn = store._conn
        assert conn is not None
        ended = dict(conn.execute("SELECT seq, ended FROM jobs").fetchall())
        jobs = (done, running_job, queued, cancelled)
        unfinished = [ended[int(j.rsplit("-", 1)[1])] is None for j in jobs]
        assert unfinished == [False, True, True, False]
        assert [r.job_id for r in store.ready()] == [queued]
        quota = Submit((spec(5),), "a", max_unfinished=3)  # queued + running + this one
        assert isinstance(store.apply([quota])[0], Submitted)
        over = store.apply([Submit((spec(6),), "a", max_unfinished=3)])[0]
        assert isinstance(over, Rejected) and isinstance(over.error, QuotaExceededError)
        assert store.complete(running_job, token, "ok") == Completed(running_job)
    _assert_ended_matches_state(path)


def _assert_ended_matches_state(path: Path) -> None:
    """Every finished job has its end time, and no unfinished one has one."""
    with sqlite3.connect(path) as conn:
        bad = conn.execute(
            "SELECT count(*) FROM jobs WHERE (ended IS NULL)"
            " != (state IN ('queued', 'leased', 'running'))"
        ).fetchone()[0]
    assert bad == 0


def test_prune_deletes_old_finished_jobs_their_events_and_old_idempotency_records(
    store: JobStore, clock: Clock
) -> None:
    old = store.submit([spec(1), spec(2), spec(3)], "client", "k-old").job_ids
    leased = store.lease(old[0], "n1")
    assert isinstance(leased, Leased)
    store.complete(old[0], leased.token, "done")  # finished at t=1000
    store.apply([Cancel(old[1])])  # a queued job is cancelled at once
    clock.t = 2000.0
    new = store.submit([spec(4)], "client", "k-new").job_ids
    leased = store.lease(new[0], "n1")
    assert isinstance(leased, Leased)
    store.complete(new[0], leased.token, "done")  # finished at t=2000
    before = store.counts()
    out = store.apply([Prune(before=1500.0)])[0]
    assert isinstance(out, Pruned) and set(out.job_ids) == {old[0], old[1]}
    assert out.submissions == 1  # k-old, made at t=1000
    counts = store.counts()
    assert counts["succeeded"] == before["succeeded"] - 1
    assert counts["cancelled"] == before["cancelled"] - 1 and counts["queued"] == 1
    with pytest.raises(UnknownJobError):
        store.job(old[0])
    assert store.job(old[2]).state == "queued"  # unfinished: kept whatever its age
    assert store.events(job_id=new[0]) and not store.events(job_id=old[0])
    assert store.submission("client", "k-old") is None
    assert store.submission("client", "k-new") == new
    # A pruned job no longer answers the result cache: the same spec runs again.
    again = store.submit([spec(1)], "client").job_ids
    assert store.job(again[0]).state == "queued"
    limited = store.apply([Prune(before=1e9, limit=1)])[0]
    assert isinstance(limited, Pruned) and len(limited.job_ids) == 1
    assert "USING INDEX jobs_finished" in _plan(store, lambda: store.apply([Prune(before=1.0)]))
    bad = store.apply([Prune(before="soon", limit=0)])[0]  # type: ignore[arg-type]
    assert isinstance(bad, Rejected) and "before must be a time" in str(bad.error)
