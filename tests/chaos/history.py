"""The chaos run's history checker: the store and the submitter's view must tell one story.

``chaos_problems(store, seen, jobs)`` returns one line per problem (none: the run is
sound). On top of ``cluster_harness.history_problems`` (one terminal event per job,
nothing after it, attempts that only grow, one lease per attempt, each RUNNING and
SUCCEEDED recorded for the node that held the lease, state counts equal to the rows, and
every job ended: the queue drained) it checks:

- **lost**: every job the submitter got an id for is in the store, and the store holds
  no job the submitter did not get (a resent SUBMIT must not make new jobs): exactly one
  job per trial ``x``;
- **completed twice**: one ``succeeded`` event per job, and every job succeeded (the
  retries are generous: a job that failed means a fault cost more attempts than it may);
- **stale result accepted**: the accepted result is the one of the lease that was
  current when it was recorded: the last ``leased`` event before ``succeeded`` is for the
  same attempt, no ``retry``/``requeued`` moved the job past that attempt in between,
  and the result itself (computed by the task from its own ``ctx.attempt``) names that
  attempt, for the right ``x``;
- **the submitter's view**: the submitter saw every job end, each in one way only, and
  the way it saw is the store's (state, and for a success the same value).

Each finding is a ``Problem`` of one kind: ``lost``, ``duplicated`` (a second success,
or a second job for one trial), ``stale`` (a stale result accepted), ``failed``,
``view`` or ``history`` (the general checks).
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from chaos_tasks import CRASH_STATUS
from cluster_harness import StoredJob, StoreView, history_problems


@dataclass
class SubmitterView:
    """What the submitter wrote (submitter.py), read as it grows."""

    path: Path
    chunks: dict[int, tuple[list[int], list[str]]] = field(default_factory=dict)
    ends: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    done: bool = False
    error: str | None = None
    _offset: int = 0

    def refresh(self) -> SubmitterView:
        """Read the lines written since the last call (whole lines only)."""
        try:
            with open(self.path, "rb") as file:
                file.seek(self._offset)
                data = file.read()
        except FileNotFoundError:
            return self
        end = data.rfind(b"\n") + 1
        self._offset += end
        for line in data[:end].splitlines():
            entry = json.loads(line)
            if "job" in entry:
                self.ends.setdefault(entry["job"], []).append(entry)
            elif "chunk" in entry:
                self.chunks[entry["chunk"]] = (entry["xs"], entry["job_ids"])
            elif "done" in entry:
                self.done = True
            elif "error" in entry:
                self.error = entry["error"]
        return self

    @property
    def ended(self) -> int:
        """Jobs the submitter has seen end."""
        return len(self.ends)

    def submitted(self) -> dict[str, int]:
        """Job id -> trial ``x``, for every chunk the coordinator acknowledged."""
        return {
            job_id: x
            for xs, job_ids in self.chunks.values()
            for x, job_id in zip(xs, job_ids, strict=True)
        }


class Problem(NamedTuple):
    """One finding: ``kind`` is lost, duplicated, stale, failed, view or history."""

    kind: str
    text: str

    def __str__(self) -> str:
        return f"[{self.kind}] {self.text}"


def chaos_problems(store: StoreView, seen: SubmitterView, jobs: int) -> list[Problem]:
    """Every problem of the run (see the module docstring); [] when it is sound."""
    problems = [Problem("history", text) for text in history_problems(store, all_terminal=True)]
    submitted = seen.submitted()
    if len(submitted) != jobs:
        problems.append(
            Problem("lost", f"the submitter got job ids for {len(submitted)} of {jobs} jobs")
        )
    for job_id in submitted.keys() - store.jobs.keys():
        problems.append(Problem("lost", f"{job_id}: acknowledged to the submitter, not stored"))
    for job_id in store.jobs.keys() - submitted.keys():
        problems.append(Problem("duplicated", f"{job_id}: stored, never acknowledged"))
    for x, n in Counter(job.params.get("x") for job in store.jobs.values()).items():
        if n > 1:
            problems.append(Problem("duplicated", f"trial x={x} is stored {n} times"))
    for job_id, x in submitted.items():
        job = store.jobs.get(job_id)
        if job is None:
            continue
        if job.params.get("x") != x:
            text = f"{job_id}: stored for x={job.params.get('x')}, submitted for x={x}"
            problems.append(Problem("lost", text))
        problems += [Problem(k, f"{job_id}: {t}") for k, t in _outcome_problems(job)]
        for text in _view_problems(job, seen.ends.get(job_id, [])):
            problems.append(Problem("view", f"{job_id}: {text}"))
    return problems


def _outcome_problems(job: StoredJob) -> list[tuple[str, str]]:
    if job.state != "succeeded":
        return [("failed", f"ended {job.state} after {job.attempt} attempts: {job.error}")]
    kinds = job.kinds()
    if kinds.count("succeeded") != 1:
        return [("duplicated", f"{kinds.count('succeeded')} succeeded events: {kinds}")]
    at = kinds.index("succeeded")
    attempt = job.events[at].attempt
    leases = [e for e in job.events[:at] if e.kind == "leased"]
    if not leases or leases[-1].attempt != attempt:
        current = leases[-1].attempt if leases else None
        return [("stale", f"succeeded for attempt {attempt} while the current lease was"
                          f" attempt {current} ({kinds})")]  # fmt: skip
    moved = [e for e in job.events[job.events.index(leases[-1]) : at] if e.attempt > attempt]
    if moved:
        return [("stale", f"attempt {attempt} succeeded after the job moved on to attempt"
                          f" {moved[0].attempt} ({kinds})")]  # fmt: skip
    result = job.result if isinstance(job.result, dict) else {}
    x = job.params.get("x")
    if result.get("attempt") != attempt or result.get("x") != x or result.get("y") != x * x:
        return [("stale", f"the recorded result {job.result!r} is not attempt {attempt}'s"
                          f" for x={x}")]  # fmt: skip
    return []


def _view_problems(job: StoredJob, ends: list[dict[str, Any]]) -> list[str]:
    if not ends:
        return [f"the submitter never saw it end (store: {job.state})"]
    ways = {(e["state"], json.dumps(e["value"], sort_keys=True)) for e in ends}
    if len(ways) > 1:
        return [f"the submitter saw it end in {len(ways)} ways: {sorted(ways)}"]
    end = ends[0]
    stored = json.loads(json.dumps(job.result))  # as JSON carries it
    if end["state"] != job.state or (job.state == "succeeded" and end["value"] != stored):
        return [f"the submitter saw {end['state']} {end['value']!r}, the store has"
                f" {job.state} {job.result!r}"]  # fmt: skip
    return []


def figures(store: StoreView) -> Counter[str]:
    """What the store's history counts: attempts, retries, requeues, worker crashes."""
    out: Counter[str] = Counter()
    for job in store.jobs.values():
        out["attempts"] += job.attempt
        for event in job.events:
            if event.kind in ("retry", "requeued"):
                out[event.kind] += 1
                error = str(event.detail.get("error") or event.detail.get("reason") or "")
                if f"exited with code {CRASH_STATUS}" in error:
                    out["worker crashes"] += 1
                elif "silent for" in error or "node" in error:
                    out["attempts lost with a node"] += 1
    return out
