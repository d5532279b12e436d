"""SearchAgent overhead per trial against submitting the same jobs directly.

One in-process cluster (coordinator, one node agent with pool workers, plain TCP on
loopback) runs ``n`` trivial trials three ways, interleaved, best of ``reps``:

- ``direct``: ``client.submit`` of every job at once, then one watch until all are done;
- ``agent``: a ``SearchAgent`` over a grid of the same ``n`` trials (it asks for them all
  at once, submits them, follows them through its pump, tells the strategy, logs nothing);
- ``paced``: the same agent held to ``slots`` trials at a time (what an adaptive search
  does: ask, submit and watch again after every result).

The figure is the agent's extra wall time per trial, and the ratio direct / agent.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

import anyio

import foundation

SLOTS = 2
ROOT = str(Path(__file__).resolve().parents[1])


def _spec(n: int) -> Any:
    from mabeam.ml import parse_spec

    xs = ", ".join(str(i) for i in range(n))
    return parse_spec(
        f"""
name = "bench-search"
entrypoint = "benchmarks._cluster_tasks:echo"
code_version = "bench"
isolation = "pool"
max_retries = 0
[search]
strategy = "grid"
[search.grid]
x = [{xs}]
"""
    )


async def _direct(client: Any, spec: Any, tag: str) -> float:
    from mabeam.cluster._client_specs import trial_job

    began = time.perf_counter()
    jobs = [trial_job(spec, {**trial.params, "tag": tag}) for trial in spec.trials()]
    submission = await client.submit(jobs, idempotency_key=f"direct-{tag}")
    async for _ in client.watch(submission.job_ids):
        pass
    return time.perf_counter() - began


async def _agent(client: Any, spec: Any, tag: str, limit: int | None) -> float:
    import dataclasses

    from mabeam.agents import start_agent
    from mabeam.ml import SearchAgent

    spec = dataclasses.replace(spec, params={"tag": tag})
    began = time.perf_counter()
    ref = await start_agent(SearchAgent, f"search-{tag}", spec, client, max_parallel=limit)
    outcome = await ref.call("wait", timeout=None)
    elapsed = time.perf_counter() - began
    await ref.stop()
    assert outcome.counts == {"succeeded": len(outcome.trials)}, outcome.counts
    return elapsed


async def _measure(n: int, reps: int) -> dict[str, float]:
    from mabeam.cluster.client import connect
    from mabeam.cluster.coordinator import CoordinatorConfig, start_coordinator
    from mabeam.cluster.node import NodeConfig, start_node

    best = {"direct": float("inf"), "agent": float("inf"), "paced": float("inf")}
    with tempfile.TemporaryDirectory(prefix="mabeam-bench-search-") as scratch:
        config = CoordinatorConfig(
            bind="tcp://127.0.0.1:0",
            state=Path(scratch) / "jobs.db",
            synchronous="NORMAL",
            insecure=True,
        )
        async with start_coordinator(config) as coord:
            node_config = NodeConfig(
                coordinator=coord.endpoint,
                node_id="bench",
                slots=SLOTS,
                work_dir=Path(scratch) / "node",
                pythonpath=(ROOT,),
                insecure=True,
            )
            async with start_node(node_config) as node:
                with anyio.fail_after(30):
                    await node.connected.wait()
                async with connect(coord.endpoint, insecure=True) as client:
                    spec = _spec(n)
                    await _direct(client, spec, "warm")  # start the pool workers
                    for rep in range(reps):
                        best["direct"] = min(best["direct"], await _direct(client, spec, f"d{rep}"))
                        best["agent"] = min(
                            best["agent"], await _agent(client, spec, f"a{rep}", None)
                        )
                        best["paced"] = min(
                            best["paced"], await _agent(client, spec, f"p{rep}", SLOTS)
                        )
    return best


def measure(n: int, reps: int) -> dict[str, float]:
    """Seconds for ``n`` trials each way (best of ``reps``); see the module docstring."""
    result: dict[str, float] = foundation.run(_measure, n, reps)
    return result
