"""Task entrypoints of the search-agent tests: synthetic training with progress reports
and checkpoints, cheap enough to run many of in a test.

``curve``: the score after step ``s`` is ``quality * (1 - 0.5 ** s)`` with ``quality``
from ``x`` (best at 0.3); it reports every step and returns the last score. With
``pbt_steps`` it trains that many steps from ``checkpoint`` (a JSON file an earlier
segment wrote) and publishes its own. With ``fifo`` it waits after step 1 until a
writer opens that FIFO. Each call appends ``(node, start, end)`` to
``params["intervals"]`` (a file) when given, so a test can check slot use.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

from mabeam.cluster.task import TaskContext


def _quality(x: float) -> float:
    return 1.0 - (x - 0.3) ** 2


def curve(params: dict[str, Any], ctx: TaskContext) -> dict[str, Any]:
    began = time.time()
    x = float(params["x"])
    start = 0
    if params.get("pbt_steps") is not None:
        steps = int(params["pbt_steps"])
        if params.get("checkpoint"):
            with open(params["checkpoint"]) as f:
                start = int(json.load(f)["step"])
    else:
        steps = int(params.get("steps", 4))
    score = 0.0
    for step in range(start + 1, start + steps + 1):
        score = _quality(x) * (1.0 - 0.5**step)
        ctx.report(step=step, score=score)
        if step == 1 and params.get("fifo"):
            # Hold here until the test opens the FIFO for writing (or the job is
            # cancelled): every trial's first report is in before any goes on.
            os.close(os.open(params["fifo"], os.O_RDONLY))
    out: dict[str, Any] = {"score": score, "step": start + steps}
    if params.get("pbt_steps") is not None:
        path = ctx.output_dir / "ckpt.json"
        path.write_text(json.dumps({"step": start + steps}))
        out["checkpoint"] = str(ctx.published_dir / "ckpt.json")
    if params.get("intervals"):
        with open(params["intervals"], "a") as f:
            f.write(json.dumps([ctx.job_id, began, time.time()]) + "\n")
    return out
