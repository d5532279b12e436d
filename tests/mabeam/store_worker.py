"""Child process of tests/mabeam/test_store_crash.py, and a small job-store benchmark.

``python store_worker.py crash PATH SYNC K`` applies batches to the store at PATH until
killed: batch n submits K jobs under the idempotency key ``b<n>``, leases the jobs of
batch n-1 and completes those of batch n-2 (with the tokens batch n-1 returned), all in
one ``apply``; after each ``apply`` returns it prints ``n`` on a line of its own.

``python store_worker.py bench DIR`` prints, as JSON lines, single-op commits/s and
100-op batches/s (submits, then lease+complete) for ``synchronous`` FULL and NORMAL.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from mabeam.cluster.store import (  # noqa: E402
    Complete,
    Completed,
    JobSpec,
    JobStore,
    Lease,
    Leased,
    Op,
    Submit,
    Submitted,
)

SUBMITTER = "worker"
NODE = "n1"


def crash_spec(batch: int, i: int) -> JobSpec:
    return JobSpec("crash.task:run", {"batch": batch, "i": i})


def crash_result(batch: int, i: int) -> dict[str, int]:
    return {"batch": batch, "i": i, "square": i * i}


def crash(path: str, sync: Any, k: int) -> None:
    store = JobStore(path, synchronous=sync)
    submitted: tuple[str, ...] = ()
    leases: list[tuple[str, str]] = []
    n = 0
    while True:
        ops: list[Op] = [Submit([crash_spec(n, i) for i in range(k)], SUBMITTER, f"b{n}")]
        ops += [Complete(j, tok, crash_result(n - 2, i)) for i, (j, tok) in enumerate(leases)]
        ops += [Lease(j, NODE) for j in submitted]
        outs = store.apply(ops)
        sub, done, new = outs[0], outs[1 : 1 + len(leases)], outs[1 + len(leases) :]
        assert isinstance(sub, Submitted) and not sub.duplicate, sub
        assert all(isinstance(o, Completed) for o in done), done
        assert all(isinstance(o, Leased) for o in new), new
        leases = [(o.job_id, o.token) for o in new if isinstance(o, Leased)]
        submitted = sub.job_ids
        sys.stdout.write(f"{n}\n")
        sys.stdout.flush()
        n += 1


def bench(folder: str) -> None:
    for sync in ("FULL", "NORMAL"):
        path = Path(folder) / f"bench-{sync}-{time.time_ns()}.db"
        with JobStore(path, synchronous=sync) as store:
            n = 1000
            t = time.perf_counter()
            for i in range(n):
                store.apply([Submit([JobSpec("b.m:f", {"single": i})], "b")])
            single = n / (time.perf_counter() - t)
            specs = [JobSpec("b.m:f", {"batched": i}) for i in range(20_000)]
            t = time.perf_counter()
            for b in range(0, 10_000, 100):
                store.apply([Submit([s], "b") for s in specs[b : b + 100]])
            submit_ops = 10_000 / (time.perf_counter() - t)
            t = time.perf_counter()
            for b in range(10_000, 20_000, 100):
                store.apply([Submit(specs[b : b + 100], "b")])
            submit_rows = 10_000 / (time.perf_counter() - t)
            ids = [r.job_id for r in store.ready(limit=len(specs) + n)]
            t = time.perf_counter()
            for b in range(0, len(ids), 100):
                outs = store.apply([Lease(j, NODE) for j in ids[b : b + 100]])
                store.apply([Complete(o.job_id, o.token, 1) for o in outs if isinstance(o, Leased)])
            cycle_ops = 2 * len(ids) / (time.perf_counter() - t)
        figures = {
            "synchronous": sync,
            "single_op_commits_per_s": single,
            "batched_submit_ops_per_s": submit_ops,
            "batched_submit_batches_per_s": submit_ops / 100,
            "one_submit_of_100_specs_rows_per_s": submit_rows,
            "batched_lease_then_complete_ops_per_s": cycle_ops,
        }
        print(json.dumps({k: v if isinstance(v, str) else round(v) for k, v in figures.items()}))


if __name__ == "__main__":
    if sys.argv[1] == "crash":
        crash(sys.argv[2], sys.argv[3], int(sys.argv[4]))
    elif sys.argv[1] == "bench":
        bench(sys.argv[2])
    else:
        raise SystemExit(f"unknown mode {sys.argv[1]!r}: use crash or bench")
