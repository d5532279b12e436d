"""A local cluster for the search tests: a coordinator and N node agents in this
process (real ZeroMQ sockets on 127.0.0.1, plain TCP on loopback, a real SQLite store,
real pool worker processes), and a client connected to it."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import anyio

from mabeam.cluster.client import Client, connect
from mabeam.cluster.coordinator import CoordinatorConfig, start_coordinator
from mabeam.cluster.node import NodeConfig, start_node

ROOT = Path(__file__).resolve().parents[2]
TESTS = Path(__file__).resolve().parent


@contextlib.asynccontextmanager
async def local_cluster(tmp_path: Path, *, nodes: int = 1, slots: int = 2) -> AsyncIterator[Client]:
    """Yield a client of a coordinator with ``nodes`` connected node agents."""
    config = CoordinatorConfig(
        bind="tcp://127.0.0.1:0",
        state=tmp_path / "jobs.db",
        synchronous="NORMAL",
        insecure=True,
        heartbeat_s=0.2,
    )
    async with start_coordinator(config) as coord, contextlib.AsyncExitStack() as stack:
        for i in range(nodes):
            node = await stack.enter_async_context(
                start_node(
                    NodeConfig(
                        coordinator=coord.endpoint,
                        node_id=f"n{i}",
                        slots=slots,
                        work_dir=tmp_path / f"node{i}",
                        pythonpath=(str(TESTS), str(ROOT)),
                        insecure=True,
                        heartbeat_s=0.2,
                    )
                )
            )
            with anyio.fail_after(20):
                await node.connected.wait()
        async with connect(coord.endpoint, insecure=True, timeout=20) as client:
            yield client
