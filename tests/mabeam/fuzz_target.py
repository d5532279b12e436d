"""A coordinator or a node agent in a process of its own, for the fuzz tests' long runs
(fuzz_peers.TargetProcess starts it), so that its RSS is its own::

    python fuzz_target.py coordinator STATE_FILE
    python fuzz_target.py node COORDINATOR_ENDPOINT WORK_DIR

It prints one JSON line once it serves (``{"endpoint": ...}`` for a coordinator), then
answers each ``stats`` line on its stdin with one JSON line: its statistics and its
RSS. EOF on stdin stops it the graceful way (a node drains first). Logs go to stderr at
WARNING.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio
import psutil  # type: ignore[import-untyped]

from mabeam.cluster.coordinator import CoordinatorConfig, start_coordinator
from mabeam.cluster.node import NodeConfig, start_node


def _say(answer: dict[str, Any]) -> None:
    answer["rss"] = psutil.Process().memory_info().rss
    sys.stdout.write(json.dumps(answer, default=list) + "\n")
    sys.stdout.flush()


async def _serve(statistics: Callable[[], Awaitable[Any]], ready: dict[str, Any]) -> None:
    _say(ready)
    while True:
        line = await anyio.to_thread.run_sync(sys.stdin.readline)
        if not line:
            return
        if line.strip() == "stats":
            _say(dataclasses.asdict(await statistics()))
        else:
            _say({"error": f"unknown command {line.strip()!r}"})


async def coordinator(state: str) -> None:
    config = CoordinatorConfig(  # plain TCP on loopback: the fuzz streams are raw sockets
        bind="tcp://127.0.0.1:0", state=Path(state), synchronous="NORMAL", insecure=True
    )
    async with start_coordinator(config) as handle:
        await _serve(handle.statistics, {"endpoint": handle.endpoint})


async def node(endpoint: str, work_dir: str) -> None:
    config = NodeConfig(
        coordinator=endpoint,
        node_id="n1",
        slots=1,
        gpus="none",
        allow=("task_entrypoints:*",),
        work_dir=Path(work_dir),
        heartbeat_s=0.1,
        liveness=10,  # silent for 1 s: reopen (how it recovers from a frame over the limit)
        drain_timeout_s=1.0,
        insecure=True,
    )
    async with start_node(config) as handle:

        async def statistics() -> Any:
            return handle.statistics()

        await _serve(statistics, {"node_id": handle.node_id})


def main(argv: list[str]) -> None:
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    if len(argv) == 2 and argv[0] == "coordinator":
        anyio.run(coordinator, argv[1])
    elif len(argv) == 3 and argv[0] == "node":
        anyio.run(node, argv[1], argv[2])
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main(sys.argv[1:])
