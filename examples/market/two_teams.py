"""Two teams buy GPU time in an auction market on a local cluster.

A coordinator with the ``auction`` policy and three node agents run in this process
(real ZeroMQ sockets on 127.0.0.1, a real SQLite ledger). Each node declares two GPUs
(``--gpus`` on a GPU machine; declared here so the example runs anywhere) at a reserve
of 1 credit per GPU-hour, paid to its owner. Team ``vision`` has 300 credits, team
``nlp`` 60; each submits 12 one-GPU trials (a short numpy training step, 5 minute
timeout, so each hold covers 5 GPU-minutes). Run: ``python examples/market/two_teams.py``.
"""

from __future__ import annotations

import contextlib
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

import anyio
from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from mabeam.cli._market_view import accounts_table, listings_table  # noqa: E402
from mabeam.cluster.client import connect  # noqa: E402
from mabeam.cluster.coordinator import CoordinatorConfig, start_coordinator  # noqa: E402
from mabeam.cluster.gpus import Gpu  # noqa: E402
from mabeam.cluster.node import NodeConfig, start_node  # noqa: E402
from mabeam.cluster.protocol import JobSpec, Resources  # noqa: E402
from mabeam.economics import format_amount  # noqa: E402

TEAMS = {"vision": 300, "nlp": 60}
TRIALS = 12
TIMEOUT_S = 300.0


def trials(team: str) -> list[JobSpec]:
    return [
        JobSpec(
            "examples.market.work:train_step",
            {"team": team, "seed": i},
            Resources.of(1, 1, 0),
            timeout_s=TIMEOUT_S,
            isolation="pool",
            team=team,
        )
        for i in range(TRIALS)
    ]


async def main(work: Path, console: Console) -> None:
    config = CoordinatorConfig(
        bind="tcp://127.0.0.1:0", state=work / "jobs.db", insecure=True, policy="auction"
    )
    async with (
        start_coordinator(config) as coord,
        contextlib.AsyncExitStack() as stack,
        connect(coord.endpoint, insecure=True, timeout=20) as client,
    ):
        for team, budget in TEAMS.items():
            await client.set_budget(team, budget)
        jobs = {}
        for team in ("nlp", "vision"):  # nlp submits first: FIFO would serve it first
            for job_id in (await client.submit(trials(team))).job_ids:
                jobs[job_id] = team
        for i in range(3):
            gpus = tuple(Gpu(g, f"GPU-node{i}-{g}", "Simulated GPU", 16384, 16384) for g in (0, 1))
            await stack.enter_async_context(
                start_node(
                    NodeConfig(
                        coordinator=coord.endpoint,
                        node_id=f"node{i}",
                        slots=2,
                        work_dir=work / f"node{i}",
                        pythonpath=(str(ROOT),),
                        insecure=True,
                        inventory_gpus=gpus,
                        owner=f"owner{i}",
                        price=1.0,
                    )
                )
            )
        results = {job_id: await client.result(job_id) for job_id in jobs}
        market = await client.market(log=1000)
    holds = [line for line in market.log if line.op == "hold"]
    settles = {line.job: line.amount for line in market.log if line.op == "settle"}
    table = Table(title="who got which GPUs, in the order they were won")
    columns = ("#", "team", "job", "GPU", "price / GPU-h", "hold", "paid")
    for column in columns:
        table.add_column(column, justify="left" if column in ("team", "job", "GPU") else "right")
    per_team: dict[str, list[int]] = defaultdict(list)
    for n, line in enumerate(holds, 1):
        team = jobs[line.job]
        per_team[team].append(n)
        price = round(line.amount * 36 / TIMEOUT_S) * 100  # the hold covers the timeout
        paid = settles.get(line.job, 0)
        table.add_row(str(n), team, line.job, results[line.job]["device"], format_amount(price),
                      format_amount(line.amount), format_amount(paid))  # fmt: skip
    console.print(table)
    for team, ranks in per_team.items():
        console.print(f"{team}: won GPUs #{ranks[0]}..#{ranks[-1]} of {len(holds)}")
    console.print(accounts_table(market))
    console.print(listings_table(market))


if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as tmp:
        anyio.run(main, Path(tmp), Console(width=110))
