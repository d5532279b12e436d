"""``mabeam demo``: a short local run that shows the runtime at work.

It spawns a few actors, links and monitors them, crashes one on purpose and prints what
each observer saw: the linked partner died with the same reason, the trapping guardian
got an ``Exit`` message, the monitor got exactly one ``Down``.
"""

from __future__ import annotations

import logging
from typing import Any

from rich.console import Console
from rich.table import Table

import foundation
from foundation import Actor, Caller, Down, Exit, telemetry


class Worker(Actor):
    """A counter that crashes when asked to."""

    async def init(self, label: str) -> None:
        self.label = label
        self.count = 0

    async def handle_cast(self, msg: Any) -> None:
        self.count += 1

    async def handle_call(self, request: Any, caller: Caller) -> Any:
        if request == "crash":
            raise RuntimeError(f"{self.label} was asked to crash")
        return self.count


class Guardian(Actor):
    """Traps exits: a crash of its linked worker arrives as a message, not a death."""

    async def init(self) -> None:
        self.trap_exits = True
        self.seen: list[Exit] = []
        self.worker = await self.spawn_link(Worker, "guarded worker")

    async def handle_info(self, msg: Any) -> None:
        if isinstance(msg, Exit):
            self.seen.append(msg)

    async def handle_call(self, request: Any, caller: Caller) -> Any:
        if request == "worker":
            return self.worker
        return list(self.seen)


class Partner(Actor):
    """Links to a worker without trapping exits: it shares the worker's fate."""

    async def init(self, worker: foundation.ActorRef) -> None:
        self.link(worker)


async def _scenario(console: Console) -> int:
    rows: list[tuple[str, str, str]] = []
    async with telemetry.capture("foundation.actor") as events:
        rt = foundation.current_runtime()
        guardian = await rt.spawn(Guardian, name="guardian")
        worker: foundation.ActorRef = await guardian.call("worker")
        partner = await rt.spawn(Partner, worker)
        monitor = rt.monitor(worker)
        for _ in range(1000):
            worker.cast("tick")
        handled = await worker.call("count")
        rows.append(("worker", f"handled {handled} casts, then a crashing call", "dead"))

        try:
            await worker.call("crash")
        except foundation.ActorDead as exc:
            rows.append(("caller of the crashing call", f"ActorDead: {exc.reason!r}", "alive"))
        down: Down = await monitor.wait(timeout=5)
        rows.append(("monitor", f"one Down, reason {down.reason!r}", "-"))
        partner_exit = await events.wait(
            "foundation.actor.exit", match=lambda e: e.metadata["pid"] == partner.pid
        )
        seen = await guardian.call("seen")
        rows.append(("guardian (traps exits)", f"Exit message: {seen[0].reason!r}", "alive"))
        rows.append((
            "partner (linked, no trap)",
            f"exit signal; died with {partner_exit.metadata['reason']!r}",
            "dead",
        ))
        exits = len(events.named("foundation.actor.exit"))
        spawns = len(events.named("foundation.actor.spawn"))

    table = Table(title="foundation demo: a crash, seen from every side")
    table.add_column("observer")
    table.add_column("what it saw")
    table.add_column("state")
    for row in rows:
        table.add_row(*row)
    console.print(table)
    console.print(
        f"telemetry: {spawns} spawn and {exits} exit events; runtime {rt.statistics()}"
    )
    ok = not partner.is_alive and guardian.is_alive and not worker.is_alive
    return 0 if ok else 1


def run_demo() -> int:
    """Run the demo and return the process exit status."""
    console = Console()
    # The crash below is intended; keep its traceback out of the demo's output.
    logging.getLogger("foundation").setLevel(logging.CRITICAL)
    console.print("[bold]mabeam demo[/]: actors, a link, a monitor and a crash being observed")
    return foundation.run(_scenario, console)
