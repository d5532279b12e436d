"""Model-based test of ``JobStore``: random batches of ops checked against a plain model.

A hypothesis state machine drives one store file with batches of submit (with reused
idempotency keys and duplicate params, so the cache and followers come into play),
lease, accept, complete, fail, release (with current, earlier or forged tokens), cancel
and requeue_node, moves the clock, and closes and reopens the file. The model predicts
every outcome; after each step the store must agree with it job by job, and: no job is
lost, no job completes twice, stale tokens change nothing, attempts never go down, the
state counts add up and the ready queue is the model's, in order.
"""

from __future__ import annotations

import tempfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from mabeam.cluster.store import (
    STATES,
    TERMINAL_STATES,
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
    JobSpec,
    JobStore,
    Lease,
    Leased,
    NodeRequeued,
    NotCancelled,
    NotLeasable,
    Op,
    Outcome,
    Rejected,
    Release,
    Requeued,
    RequeueNode,
    Retried,
    Stale,
    Submit,
    Submitted,
)

NODES = ("n1", "n2", "n3")
_TOKEN_OPS = frozenset({"accept", "complete", "fail", "release"})
BASE, CAP = 1.0, 4.0
LIVE = ("queued", "leased", "running")


@dataclass
class MJob:
    """The model of one job."""

    job_id: str
    params: int
    max_retries: int
    state: str = "queued"
    attempt: int = 1
    failures: int = 0
    node: str | None = None
    token: str | None = None
    not_before: float = 0.0
    cancel_requested: bool = False
    follows: str | None = None
    result: Any = None
    tokens: list[str] = field(default_factory=list)


class Model:
    """What the store should hold, and what each op should answer."""

    def __init__(self) -> None:
        self.jobs: list[MJob] = []  # in submission (seq) order
        self.by_id: dict[str, MJob] = {}
        self.keys: dict[tuple[str, str], tuple[tuple[Any, ...], tuple[str, ...]]] = {}
        self.now = 0.0

    def followers(self, leader: MJob) -> list[MJob]:
        return [j for j in self.jobs if j.follows == leader.job_id and j.state == "queued"]

    def ready(self) -> list[str]:
        return [
            j.job_id
            for j in self.jobs
            if j.state == "queued" and j.follows is None and j.not_before <= self.now
        ]

    # Each method checks the store's outcome for one op and updates the model.

    def submit(
        self, specs: list[tuple[int, bool, int]], who: str, key: str | None, out: Outcome
    ) -> None:
        if key is not None and (who, key) in self.keys:
            seen, ids = self.keys[(who, key)]
            if seen == tuple(specs):
                assert out == Submitted(ids, duplicate=True), out
            else:
                assert isinstance(out, Rejected), out
                assert isinstance(out.error, IdempotencyConflictError)
            return
        assert isinstance(out, Submitted) and not out.duplicate, out
        assert len(out.job_ids) == len(specs) and not set(out.job_ids) & set(self.by_id)
        cached: list[str] = []
        joined: list[str] = []
        for job_id, (params, cache, retries) in zip(out.job_ids, specs, strict=True):
            job = MJob(job_id, params, retries, not_before=self.now)
            same = [j for j in self.jobs if j.params == params]
            done = [j for j in same if j.state == "succeeded"]
            live = [j for j in same if j.state in LIVE and j.follows is None]
            if cache and done:
                job.state, job.result = "succeeded", done[0].result
                cached.append(job_id)
            elif cache and live:
                job.follows = live[0].job_id
                joined.append(job_id)
            self.jobs.append(job)
            self.by_id[job_id] = job
        assert (out.cached, out.joined) == (tuple(cached), tuple(joined))
        if key is not None:
            self.keys[(who, key)] = (tuple(specs), out.job_ids)

    def lease(self, job: MJob, node: str, out: Outcome) -> None:
        if job.state != "queued" or job.follows is not None or job.not_before > self.now:
            assert isinstance(out, NotLeasable) and out.state == job.state, out
            return
        assert isinstance(out, Leased) and (out.node, out.attempt) == (node, job.attempt), out
        assert out.token not in job.tokens
        job.state, job.node, job.token = "leased", node, out.token
        job.tokens.append(out.token)

    def holds(self, job: MJob, token: str, out: Outcome) -> bool:
        if job.state in ("leased", "running") and token == job.token:
            return True
        assert isinstance(out, Stale) and out.state == job.state, out
        return False

    def accept(self, job: MJob, token: str, out: Outcome) -> None:
        if self.holds(job, token, out):
            assert out == Accepted(job.job_id)
            job.state = "running"

    def complete(self, job: MJob, token: str, result: int, out: Outcome) -> None:
        if self.holds(job, token, out):
            followers = self.followers(job)
            assert out == Completed(job.job_id, tuple(f.job_id for f in followers)), out
            for j in (job, *followers):
                j.state, j.result = "succeeded", result

    def fail(self, job: MJob, token: str, out: Outcome) -> None:
        if self.holds(job, token, out):
            self.attempt_failed(job, out)

    def release(self, job: MJob, token: str, out: Outcome) -> None:
        if not self.holds(job, token, out):
            return
        if job.cancel_requested:
            self.cancel_now(job, out)
        else:
            self.requeue(job, failures=job.failures, not_before=self.now)
            assert out == Requeued(job.job_id, job.attempt), out

    def cancel(self, job: MJob, out: Outcome) -> None:
        if job.state in TERMINAL_STATES:
            assert out == NotCancelled(job.job_id, job.state), out
        elif job.state == "queued":
            self.cancel_now(job, out)
        else:
            assert out == CancelRequested(job.job_id, str(job.node), str(job.token)), out
            job.cancel_requested = True

    def requeue_node(self, node: str, out: Outcome) -> None:
        lost = [j for j in self.jobs if j.node == node and j.state in ("leased", "running")]
        requeued: list[str] = []
        failed: list[str] = []
        cancelled: list[str] = []
        for job in lost:
            if job.cancel_requested:
                self.cancel_now(job, None)
                cancelled.append(job.job_id)
            elif job.state == "leased":
                self.requeue(job, failures=job.failures, not_before=self.now)
                requeued.append(job.job_id)
            else:
                self.attempt_failed(job, None)
                (failed if job.state == "failed" else requeued).append(job.job_id)
        assert out == NodeRequeued(node, tuple(requeued), tuple(failed), tuple(cancelled)), out

    def requeue(self, job: MJob, *, failures: int, not_before: float) -> None:
        job.state, job.attempt, job.failures = "queued", job.attempt + 1, failures
        job.node = job.token = None
        job.not_before, job.cancel_requested = not_before, False

    def attempt_failed(self, job: MJob, out: Outcome | None) -> None:
        if job.cancel_requested:
            self.cancel_now(job, out)
            return
        failures = job.failures + 1
        if failures > job.max_retries:
            followers = self.followers(job)
            job.state, job.failures = "failed", failures
            for f in followers:
                f.state = "failed"
            if out is not None:
                assert isinstance(out, Failed), out
                assert out.followers == tuple(f.job_id for f in followers)
            return
        wait = min(CAP, BASE * 2 ** (failures - 1))
        self.requeue(job, failures=failures, not_before=self.now + wait)
        if out is not None:
            assert out == Retried(job.job_id, job.attempt, job.not_before), out

    def cancel_now(self, job: MJob, out: Outcome | None) -> None:
        followers = self.followers(job)
        job.state = "cancelled"
        if followers:
            followers[0].follows = None
            for f in followers[1:]:
                f.follows = followers[0].job_id
        if out is not None:
            promoted = followers[0].job_id if followers else None
            assert out == Cancelled(job.job_id, promoted), out


spec_args = st.tuples(st.integers(0, 2), st.booleans(), st.integers(0, 2))
job_ix = st.integers(0, 1 << 16)
token_kind = st.sampled_from(["current", "current", "earlier", "forged"])
submitter = st.sampled_from(["alice", "bob"])
idempotency_key = st.sampled_from([None, None, "k1", "k2"])
# Copies of one spec: the second and later copies follow the first (or hit the cache).
copies = spec_args.flatmap(lambda s: st.integers(2, 3).map(lambda k: [s] * k))
op_desc = st.one_of(
    st.tuples(
        st.just("submit"),
        st.lists(spec_args, min_size=1, max_size=3) | copies,
        submitter,
        idempotency_key,
    ),
    st.tuples(st.just("lease"), job_ix, st.sampled_from(NODES)),
    st.tuples(st.just("accept"), job_ix, token_kind),
    st.tuples(st.just("complete"), job_ix, token_kind, st.integers(0, 99)),
    st.tuples(st.just("fail"), job_ix, token_kind),
    st.tuples(st.just("release"), job_ix, token_kind),
    st.tuples(st.just("cancel"), job_ix),
    st.tuples(st.just("requeue_node"), st.sampled_from(NODES)),
)


def _spec(params: int, cache: bool, retries: int) -> JobSpec:
    return JobSpec("pkg.trial:run", {"p": params}, max_retries=retries, cache=cache)


class StoreMachine(RuleBasedStateMachine):
    """One store file, its model, and the attempts each job was last seen with."""

    def __init__(self) -> None:
        super().__init__()
        self._dir = tempfile.TemporaryDirectory(prefix="store-model-")
        self.path = Path(self._dir.name) / "jobs.db"
        self.store = self._open()
        self.model = Model()
        self.seen_attempts: dict[str, int] = {}

    def _open(self) -> JobStore:
        return JobStore(self.path, synchronous="NORMAL", backoff_base_s=BASE, backoff_cap_s=CAP)

    def teardown(self) -> None:
        self.store.close()
        self._dir.cleanup()

    def _token(self, job: MJob, kind: str) -> str:
        if kind == "current" and job.token is not None:
            return job.token
        earlier = [t for j in self.model.jobs for t in j.tokens if t != job.token]
        if kind == "earlier" and earlier:
            return earlier[len(earlier) // 2]
        return "forged-token"

    def _build(self, desc: tuple[Any, ...]) -> tuple[Op, Any] | None:
        """The op for ``desc`` and how the model checks its outcome (None: no job yet)."""
        m, kind = self.model, desc[0]
        if kind == "submit":
            _, specs, who, key = desc
            op = Submit([_spec(*s) for s in specs], who, key)
            return op, lambda out: m.submit(specs, who, key, out)
        if kind == "requeue_node":
            return RequeueNode(desc[1]), lambda out: m.requeue_node(desc[1], out)
        if not m.jobs:
            return None
        held = [j for j in m.jobs if j.state in ("leased", "running")]
        # Ops that carry a token mostly go to jobs that hold a lease, or few would apply.
        pool = held if kind in _TOKEN_OPS and held and desc[1] % 4 else m.jobs
        job = pool[desc[1] % len(pool)]
        if kind == "lease":
            return Lease(job.job_id, desc[2]), lambda out: m.lease(job, desc[2], out)
        if kind == "cancel":
            return Cancel(job.job_id), lambda out: m.cancel(job, out)
        token = self._token(job, desc[2])
        if kind == "accept":
            return Accept(job.job_id, token), lambda out: m.accept(job, token, out)
        if kind == "complete":
            value = desc[3]
            return (
                Complete(job.job_id, token, value),
                lambda out: m.complete(job, token, value, out),
            )
        if kind == "fail":
            return Fail(job.job_id, token, "boom"), lambda out: m.fail(job, token, out)
        return Release(job.job_id, token), lambda out: m.release(job, token, out)

    @rule(descs=st.lists(op_desc, min_size=1, max_size=5))
    def batch(self, descs: list[tuple[Any, ...]]) -> None:
        # Tokens are picked from the model before the batch; within it, an earlier op
        # may already have made them stale, which the model then expects.
        built = [b for b in map(self._build, descs) if b is not None]
        if not built:
            return
        outcomes = self.store.apply([op for op, _ in built], now=self.model.now)
        assert len(outcomes) == len(built)
        for (_, check), out in zip(built, outcomes, strict=True):
            check(out)

    @rule(dt=st.sampled_from([0.5, 1.0, 3.0, 10.0]))
    def advance_clock(self, dt: float) -> None:
        self.model.now += dt

    @rule()
    def reopen(self) -> None:
        self.store.close()
        self.store = self._open()

    @precondition(lambda self: bool(self.model.jobs))
    @rule(data=st.data())
    def lease_a_ready_job(self, data: st.DataObject) -> None:
        """Lease what the store says is ready (random batches rarely hit a ready job)."""
        ready = self.store.ready(now=self.model.now, limit=5)
        if ready:
            job = self.model.by_id[data.draw(st.sampled_from(ready)).job_id]
            node = data.draw(st.sampled_from(NODES))
            out = self.store.apply([Lease(job.job_id, node)], now=self.model.now)[0]
            self.model.lease(job, node, out)

    @invariant()
    def store_agrees_with_the_model(self) -> None:
        m = self.model
        records = {r.job_id: r for r in self.store.jobs(limit=1 << 20)}
        assert set(records) == set(m.by_id), "a job was lost or invented"
        for job in m.jobs:
            r = records[job.job_id]
            got = (r.state, r.attempt, r.failures, r.follows, r.cancel_requested)
            want = (job.state, job.attempt, job.failures, job.follows, job.cancel_requested)
            assert got == want, (job.job_id, got, want)
            if job.state in ("leased", "running"):
                assert (r.node, r.token) == (job.node, job.token)
            if job.state == "queued":
                assert r.token is None and r.not_before == job.not_before
            if job.state == "succeeded":
                assert r.result == job.result
            assert r.attempt >= self.seen_attempts.get(job.job_id, 1), "attempt went down"
            self.seen_attempts[job.job_id] = r.attempt
        want_counts = Counter({s: 0 for s in STATES})
        want_counts.update(j.state for j in m.jobs)
        assert self.store.counts() == dict(want_counts)
        assert [r.job_id for r in self.store.ready(now=m.now, limit=1 << 20)] == m.ready()
        conn = self.store._conn
        assert conn is not None
        mismatched = conn.execute(  # the end time keys the unfinished-job index
            "SELECT count(*) FROM jobs WHERE (ended IS NULL)"
            " != (state IN ('queued', 'leased', 'running'))"
        ).fetchone()[0]
        assert mismatched == 0, "a job's end time disagrees with its state"

    @invariant()
    def nothing_finishes_twice(self) -> None:
        ends = Counter(
            (e.job_id, e.kind)
            for e in self.store.events(limit=1 << 20)
            if e.kind in ("succeeded", "failed", "cancelled")
        )
        assert all(n == 1 for n in ends.values()), ends
        assert len({job for job, _ in ends}) == len(ends), "a job ended two ways"


StoreMachine.TestCase.settings = settings(
    max_examples=100,
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestStoreModel = StoreMachine.TestCase
