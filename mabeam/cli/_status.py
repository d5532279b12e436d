"""``mabeam status``: the coordinator's nodes, queue and jobs as rich tables.

One STATUS request; three tables: the connected nodes (GPUs, CPUs, memory, slots,
credit, running tasks, last heard of), the number of jobs in each state, and jobs: the
ones named on the command line (or the sweep's with ``--sweep``), else the most recent
ones with the unfinished first.
"""

from __future__ import annotations

import argparse
from collections import Counter
from typing import Any

from rich.console import Console
from rich.table import Table

import foundation

from ._options import add_client_options, client_security

__all__ = ("add_parser", "jobs_table", "nodes_table", "run")

STATE_ORDER = ("queued", "leased", "dispatched", "running", "succeeded", "failed", "cancelled")


def add_parser(commands: Any) -> None:
    """Add ``status`` to the top-level subparsers."""
    parser = commands.add_parser(
        "status",
        help="show a coordinator's nodes, queue and jobs",
        description="Show the nodes connected to a coordinator, its queue and its jobs.",
    )
    parser.add_argument("jobs", metavar="JOB", nargs="*", help="show these jobs")
    parser.add_argument("--sweep", metavar="ID", default=None, help="show this sweep's jobs")
    parser.add_argument(
        "--ledger", action="store_true", help="also show the market: accounts, listings, log"
    )
    add_client_options(parser)


def run(args: argparse.Namespace) -> int:
    """Print the status tables; 0, or 1 when the coordinator cannot be reached."""
    return foundation.run(_status, args, Console())


async def _status(args: argparse.Namespace, console: Console) -> int:
    from mabeam.cluster.client import connect

    async with connect(args.coordinator, timeout=args.timeout, **client_security(args)) as client:
        status = await client.status(args.jobs or None, sweep_id=args.sweep)
        market = await client.market(log=10) if args.ledger else None
        address = client.address
    console.print(nodes_table(status.nodes, address))
    console.print(counts_table(status.counts))
    jobs = list(status.jobs)
    if args.sweep:
        jobs = [job for job in jobs if job.sweep_id == args.sweep]
    if jobs:
        title = "jobs" if args.jobs or args.sweep else "jobs (recent, unfinished first)"
        console.print(jobs_table(jobs, title))
    elif args.jobs or args.sweep:
        console.print("no such jobs")
    if market is not None:
        from ._market_view import accounts_table, listings_table, log_table

        console.print(accounts_table(market))
        console.print(listings_table(market))
        if market.log:
            console.print(log_table(market))
    return 0


def nodes_table(nodes: Any, address: str) -> Table:
    """One row per connected node."""
    table = Table(title=f"nodes of {address}")
    for column in ("node", "GPUs", "CPUs", "memory", "slots", "credit", "running", "last seen"):
        table.add_column(column, justify="left" if column in ("node", "GPUs") else "right")
    for info in sorted(nodes, key=lambda n: n.inventory.node_id):
        inv = info.inventory
        table.add_row(
            inv.node_id,
            gpu_summary(inv.gpus),
            str(inv.cpus),
            f"{inv.ram_mb / 1024:.1f} GiB" if inv.ram_mb else "-",
            str(inv.slots),
            str(info.credit),
            str(info.running),
            f"{info.last_seen_s:.1f} s ago",
        )
    if not nodes:
        table.caption = "no node connected"
    return table


def gpu_summary(gpus: Any) -> str:
    """``2 x NVIDIA A100 (80 GiB)``; ``-`` for none."""
    if not gpus:
        return "-"
    kinds = Counter((gpu.model or "GPU", gpu.memory_mb) for gpu in gpus)
    parts = []
    for (model, memory_mb), count in kinds.items():
        size = f" ({memory_mb / 1024:.0f} GiB)" if memory_mb else ""
        parts.append(f"{count} x {model}{size}")
    return ", ".join(parts)


def counts_table(counts: dict[str, int]) -> Table:
    """One row: jobs per state, then the total."""
    table = Table(title="jobs by state")
    states = [s for s in STATE_ORDER if s in counts] + sorted(set(counts) - set(STATE_ORDER))
    if not states:
        states = ["queued", "running", "succeeded", "failed"]
    for state in states:
        table.add_column(state, justify="right")
    table.add_column("total", justify="right", style="bold")
    table.add_row(*(str(counts.get(s, 0)) for s in states), str(sum(counts.values())))
    return table


def jobs_table(jobs: Any, title: str) -> Table:
    """One row per job: state, attempt, node, sweep, duration, result or error."""
    from mabeam.cluster._client_errors import last_line

    from ._sweep_view import format_value

    table = Table(title=title)
    # Ids, states and numbers are never cut; the result shrinks to what is left.
    width = max((len(job.job_id) for job in jobs), default=3)
    table.add_column("job", no_wrap=True, min_width=width)
    table.add_column("state", no_wrap=True, min_width=9)
    table.add_column("attempt", justify="right", no_wrap=True, min_width=7)
    table.add_column("node", no_wrap=True, min_width=6)
    table.add_column("sweep", no_wrap=True, overflow="ellipsis", max_width=20)
    table.add_column("duration", justify="right", no_wrap=True, min_width=8)
    table.add_column("result / error", no_wrap=True, overflow="ellipsis")
    for job in jobs:
        if job.state == "succeeded":
            outcome = format_value(job.value, 32)
        elif job.error:
            outcome = format_value(last_line(job.error), 32)
        else:
            outcome = ""
        table.add_row(
            job.job_id,
            job.state,
            str(job.attempt),
            job.node_id or "-",
            job.sweep_id or "-",
            "-" if job.duration_s is None else f"{job.duration_s:.2f} s",
            outcome,
        )
    return table
