"""The chaos history checker finds each kind of problem in a hand-made history, and
nothing in a sound one."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from cluster_harness import StoredEvent, StoredJob, StoreView
from history import SubmitterView, chaos_problems

pytestmark = pytest.mark.chaos


def job(
    seq: int, events: list[tuple[str, int]], *, state: str = "succeeded", **row: Any
) -> StoredJob:
    """Job ``x = seq`` with ``events`` (kind, attempt), all on node n1."""
    attempt = max(a for _, a in events)
    stored = StoredJob(
        job_id=f"j-s-{seq}", seq=seq, entrypoint="chaos_tasks:work", params={"x": seq},
        max_retries=5, state=state, attempt=attempt, failures=0, node="n1", token="t",
        cancel_requested=False, result={"x": seq, "y": seq * seq, "attempt": attempt},
        error=None, progress=None,
    )  # fmt: skip
    for key, value in row.items():
        setattr(stored, key, value)
    node = {"node": "n1"}
    stored.events = [StoredEvent(i, k, a, node if k != "submitted" else {}) for i, (k, a) in
                     enumerate(events)]  # fmt: skip
    return stored


SOUND = [("submitted", 1), ("leased", 1), ("running", 1), ("retry", 2), ("leased", 2),
         ("running", 2), ("succeeded", 2)]  # fmt: skip


def run_check(tmp_path: Path, jobs: list[StoredJob], seen: list[dict[str, Any]]) -> list[str]:
    """``chaos_problems`` of ``jobs`` against a submitter that wrote ``seen``."""
    path = tmp_path / "view.jsonl"
    path.write_text("".join(json.dumps(entry) + "\n" for entry in seen))
    counts: dict[str, int] = {}
    for j in jobs:
        counts[j.state] = counts.get(j.state, 0) + 1
    store = StoreView({j.job_id: j for j in jobs}, counts)
    return [str(p) for p in chaos_problems(store, SubmitterView(path).refresh(), 2)]


def view(jobs: list[StoredJob], **change: Any) -> list[dict[str, Any]]:
    """What a submitter that saw ``jobs`` end as stored wrote (``change``: a different
    value for job ``x = 1``)."""
    entries: list[dict[str, Any]] = [
        {"chunk": 0, "xs": [j.params["x"] for j in jobs], "job_ids": [j.job_id for j in jobs]}
    ]
    for j in jobs:
        entry = {"job": j.job_id, "state": j.state, "attempt": j.attempt, "value": j.result}
        entries.append(entry | (change if j.params["x"] == 1 else {}))
    return [*entries, {"done": True}]


def test_a_sound_history_has_no_problem(tmp_path: Path) -> None:
    jobs = [job(1, SOUND), job(2, [*SOUND[:3], ("succeeded", 1)])]
    assert run_check(tmp_path, jobs, view(jobs)) == []


def test_a_job_acknowledged_but_not_stored_is_lost(tmp_path: Path) -> None:
    jobs = [job(1, SOUND), job(2, SOUND)]
    seen = view(jobs)
    assert run_check(tmp_path, jobs[:1], seen) == [
        "[lost] j-s-2: acknowledged to the submitter, not stored"
    ]


def test_a_second_success_or_a_second_job_for_a_trial_is_duplicated(tmp_path: Path) -> None:
    twice = job(1, [*SOUND, ("succeeded", 2)])
    problems = run_check(tmp_path, [twice, job(2, SOUND)], view([twice, job(2, SOUND)]))
    assert any(p.startswith("[duplicated] j-s-1: 2 succeeded events") for p in problems)
    extra = job(3, SOUND, params={"x": 2})
    jobs = [job(1, SOUND), job(2, SOUND)]
    problems = run_check(tmp_path, [*jobs, extra], view(jobs))
    assert "[duplicated] j-s-3: stored, never acknowledged" in problems
    assert "[duplicated] trial x=2 is stored 2 times" in problems


def test_a_result_of_a_lease_that_was_not_current_is_stale(tmp_path: Path) -> None:
    # attempt 1's result recorded after the job had moved on to attempt 2
    late = job(1, [("submitted", 1), ("leased", 1), ("running", 1), ("retry", 2),
                   ("succeeded", 1)])  # fmt: skip
    # the right attempt in the events, but the value computed by an earlier attempt
    forged = job(2, SOUND, result={"x": 2, "y": 4, "attempt": 1})
    problems = run_check(tmp_path, [late, forged], view([late, forged]))
    assert [p.split(":")[0] for p in problems if p.startswith("[stale]")] == [
        "[stale] j-s-1",
        "[stale] j-s-2",
    ]
    assert "attempt 1 succeeded after the job moved on to attempt 2" in problems[-2]
    assert "is not attempt 2's for x=2" in problems[-1]


def test_a_job_not_finished_is_reported_and_one_that_failed_too(tmp_path: Path) -> None:
    stuck = job(1, SOUND[:5], state="leased")
    failed = job(2, [*SOUND[:3], ("failed", 1)], state="failed", error="boom")
    problems = run_check(tmp_path, [stuck, failed], view([stuck, failed]))
    assert any(p.startswith("[history] j-s-1: not finished: leased") for p in problems)
    assert "[failed] j-s-2: ended failed after 1 attempts: boom" in problems


def test_the_submitter_must_have_seen_what_the_store_holds(tmp_path: Path) -> None:
    jobs = [job(1, SOUND), job(2, SOUND)]
    problems = run_check(tmp_path, jobs, view(jobs, value={"x": 1, "y": 2, "attempt": 2}))
    assert len(problems) == 1 and problems[0].startswith("[view] j-s-1: the submitter saw")
    unseen = [e for e in view(jobs) if e.get("job") != "j-s-2"]
    assert run_check(tmp_path, jobs, unseen) == [
        "[view] j-s-2: the submitter never saw it end (store: succeeded)"
    ]
