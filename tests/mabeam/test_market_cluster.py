"""The auction policy on a real local cluster: a coordinator with ``policy="auction"``,
three node agents (real ZeroMQ on 127.0.0.1, real pool workers, a real SQLite store;
each node's one GPU is declared, since this machine has none) and two budgeted teams.

The team whose budget makes its GPU-hours worth more gets the GPUs first; both spend
within budget; every hold is settled and the ledger's money is conserved.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import anyio
import pytest

from mabeam.cluster.client import connect
from mabeam.cluster.coordinator import CoordinatorConfig, start_coordinator
from mabeam.cluster.gpus import Gpu
from mabeam.cluster.node import NodeConfig, start_node
from mabeam.cluster.protocol import JobSpec, Resources
from mabeam.economics import MICRO

ROOT = Path(__file__).resolve().parents[2]
TESTS = Path(__file__).resolve().parent
JOBS = 6

pytestmark = pytest.mark.anyio


def _specs(team: str) -> list[JobSpec]:
    return [
        JobSpec(
            "task_entrypoints:echo",
            {"team": team, "i": i},
            Resources.of(1, 1, 0),
            timeout_s=60.0,
            isolation="pool",
            team=team,
        )
        for i in range(JOBS)
    ]


async def test_the_higher_valued_team_gets_the_gpus_first_and_both_stay_in_budget(
    tmp_path: Path,
) -> None:
    config = CoordinatorConfig(
        bind="tcp://127.0.0.1:0", state=tmp_path / "jobs.db", synchronous="NORMAL",
        insecure=True, heartbeat_s=0.2, policy="auction",
    )  # fmt: skip
    async with (
        start_coordinator(config) as coord,
        contextlib.AsyncExitStack() as stack,
        connect(coord.endpoint, insecure=True, timeout=20) as client,
    ):
        # Budgets first, then every job, then the nodes: all of it is queued when
        # the first GPU is offered.
        await client.set_budget("vision", 200)
        await client.set_budget("nlp", 50)
        submitted = {
            team: (await client.submit(_specs(team), idempotency_key=f"{team}-sweep")).job_ids
            for team in ("nlp", "vision")  # the lower-valued team submits first
        }
        nodes = []
        for i in range(3):
            gpu = Gpu(0, f"GPU-sim-{i}", "Simulated GPU", 1024, 1024)
            node = await stack.enter_async_context(
                start_node(
                    NodeConfig(
                        coordinator=coord.endpoint, node_id=f"n{i}", slots=1,
                        work_dir=tmp_path / f"node{i}", pythonpath=(str(TESTS), str(ROOT)),
                        insecure=True, heartbeat_s=0.2, inventory_gpus=(gpu,),
                        owner=f"lab-{i}", price=1.0,
                    )
                )
            )  # fmt: skip
            nodes.append(node)
        with anyio.fail_after(40):
            for team, ids in submitted.items():
                for job_id in ids:
                    result = await client.result(job_id)
                    assert result["params"]["team"] == team
                    assert result["device"].startswith("GPU-sim-")
        market = await client.market(log=1000)
    # The order of the holds is the order the GPUs were won: vision's 6 before nlp's.
    holds = [line for line in market.log if line.op == "hold"]
    team_of = {j: t for t, ids in submitted.items() for j in ids}
    order = [team_of[line.job] for line in holds]
    assert order == ["vision"] * JOBS + ["nlp"] * JOBS, order
    assert {line.counterparty for line in holds} <= {"lab-0", "lab-1", "lab-2"}
    accounts = {a.name: a for a in market.accounts}
    budgets = {"vision": 200 * MICRO, "nlp": 50 * MICRO}
    for team, budget in budgets.items():
        acc = accounts[team]
        assert acc.held == 0  # every hold settled
        assert acc.available + acc.spent == budget  # spent within budget, nothing lost
        assert acc.spent > 0 or team == "nlp"  # nlp may win at the 1-credit reserve
    earned = sum(a.earned for a in market.accounts if a.kind == "owner")
    assert earned == sum(accounts[t].spent for t in budgets)
    settles = [line for line in market.log if line.op == "settle"]
    assert len(settles) == 2 * JOBS
    # Each vision hold is priced by nlp's bid (Vickrey), above the 1-credit reserve.
    listing = {item.node_id: item for item in market.listings}
    assert all(item.price == MICRO and item.gpus == 1 for item in listing.values())
    assert market.policy == "auction"
