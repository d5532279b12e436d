"""The chaos suite's task, run inside real worker processes of the node agents.

Importable as ``chaos_tasks`` by the workers of node agents started in tests/chaos (a
node puts its working directory on its workers' path).
"""

from __future__ import annotations

import hashlib
import os
from typing import Any

from mabeam.cluster.task import TaskContext

CRASH_STATUS = 86
"""The exit status of a worker that crashes on purpose (``crashed`` in the store)."""


def crashes(seed: int, x: int, attempt: int, rate: float) -> bool:
    """Whether attempt ``attempt`` of job ``x`` crashes under ``seed``: a hash, so a
    replay crashes the same attempts, and only first and second attempts ever do (a
    retry can succeed)."""
    if attempt > 2 or rate <= 0:
        return False
    digest = hashlib.blake2b(f"{seed}:{x}:{attempt}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64 < rate


def work(params: dict[str, Any], ctx: TaskContext) -> dict[str, Any]:
    """Do ``params["work"]`` rounds of arithmetic, reporting progress half way; die
    with ``os._exit`` in the middle for the seeded subset of (job, attempt) (see
    ``crashes``); else return ``x``, its square and the attempt that computed them."""
    x: int = params["x"]
    rounds: int = params.get("work", 1000)
    total = sum(i * i for i in range(rounds // 2))
    ctx.report(step=0, half=total % 97)
    if crashes(params.get("seed", 0), x, ctx.attempt, params.get("crash_rate", 0.0)):
        os._exit(CRASH_STATUS)
    total += sum(i * i for i in range(rounds // 2, rounds))
    return {"x": x, "y": x * x, "attempt": ctx.attempt, "sum": total % 1_000_003}
