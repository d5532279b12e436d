"""``mabeam demo``: a short local run that shows the runtime at work.

First the kernel: it spawns a few actors, links and monitors them, crashes one on
purpose and prints what each observer saw: the linked partner died with the same
reason, the trapping guardian got an ``Exit`` message, the monitor got exactly one
``Down``.

Then supervision: an ``Application`` runs a three-level tree (``ingest`` rest_for_one,
``training`` one_for_all, ``jobs`` a DynamicSupervisor) while a ``ChaosMonkey`` kills
random workers; the tree survives, and the demo prints it with its restart counts and
a summary of the crashes injected and the restarts telemetry observed.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from typing import Any

from rich.console import Console
from rich.table import Table

import foundation
from foundation import Actor, Caller, Down, Exit, telemetry
from supervision import (
    Application,
    DynamicSupervisor,
    Supervisor,
    child_spec,
    tree,
    tree_renderable,
)
from supervision.testing import ChaosMonkey


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
        rows.append(
            (
                "partner (linked, no trap)",
                f"exit signal; died with {partner_exit.metadata['reason']!r}",
                "dead",
            )
        )
        exits = len(events.named("foundation.actor.exit"))
        spawns = len(events.named("foundation.actor.spawn"))

    table = Table(title="foundation demo: a crash, seen from every side")
    table.add_column("observer")
    table.add_column("what it saw")
    table.add_column("state")
    for row in rows:
        table.add_row(*row)
    console.print(table)
    console.print(f"telemetry: {spawns} spawn and {exits} exit events; runtime {rt.statistics()}")
    ok = not partner.is_alive and guardian.is_alive and not worker.is_alive
    return 0 if ok else 1


# -- supervision: a three-level tree under chaos ------------------------------------------

CRASHES = 40  # injected by the chaos monkey
RATE = 200.0  # crashes per second (runtime clock): the chaos part takes about 0.2 s
SEED = 1
JOBS = 4
# Each subtree tolerates 50 restarts in 5 s: enough for every crash landing on one of them.
MAX_RESTARTS, MAX_SECONDS = 50, 5.0


class Stage(Actor):
    """A worker of the demo tree (a reader, a trainer, a job): it counts what it gets."""

    async def init(self, role: str) -> None:
        self.role = role
        self.handled = 0

    async def handle_cast(self, msg: Any) -> None:
        self.handled += 1

    async def handle_call(self, request: Any, caller: Caller) -> Any:
        return self.handled


def demo_application() -> Application:
    """demo (one_for_one) -> ingest (rest_for_one), training (one_for_all), jobs."""
    ingest = Supervisor.child_spec(
        [child_spec(Stage, role, id=role) for role in ("reader", "parser")],
        id="ingest",
        name="ingest",
        strategy="rest_for_one",
        max_restarts=MAX_RESTARTS,
        max_seconds=MAX_SECONDS,
    )
    training = Supervisor.child_spec(
        [child_spec(Stage, "trainer", id=f"trainer-{i}") for i in range(3)],
        id="training",
        name="training",
        strategy="one_for_all",
        max_restarts=MAX_RESTARTS,
        max_seconds=MAX_SECONDS,
    )
    jobs = DynamicSupervisor.child_spec(
        id="jobs", name="jobs", max_restarts=MAX_RESTARTS, max_seconds=MAX_SECONDS
    )
    return Application("demo", children=[ingest, training, jobs])


async def _tree_scenario(console: Console) -> int:
    rt = foundation.current_runtime()
    app = demo_application()
    async with telemetry.capture("supervision") as events, app.running():
        for i in range(JOBS):
            await DynamicSupervisor.start_child("jobs", child_spec(Stage, "job", id=f"job-{i}"))
        console.print(
            f"\n[bold]supervision[/]: a chaos monkey kills {CRASHES} random workers of a "
            f"three-level tree at {RATE:g}/s (seed {SEED})"
        )
        began = time.perf_counter()
        monkey = await ChaosMonkey.start("demo", rate=RATE, seed=SEED, max_kills=CRASHES)
        await rt.monitor(monkey).wait(timeout=60)
        await rt.wait_idle()  # every supervisor has handled its exits: restarts are done
        elapsed = time.perf_counter() - began
        stats = await ChaosMonkey.stats(monkey)
        node = await tree("demo")
        kills = events.named("supervision.chaos.kill")
        restarts = events.named("supervision.child.restart")
    console.print(tree_renderable(node))

    subtree_of = {n.pid: n.id for n in node.children if n.kind == "supervisor"}
    crashed = Counter(subtree_of.get(repr(e.metadata["supervisor"]), "?") for e in kills)
    restarted = Counter(subtree_of.get(repr(e.metadata["supervisor"]), "?") for e in restarts)
    table = Table(title=f"chaos: {stats.kills} crashes injected in {elapsed:.2f} s")
    for column in ("subtree", "strategy", "crashes injected", "restarts observed"):
        table.add_column(column, justify="left" if column in ("subtree", "strategy") else "right")
    for sub in node.children:
        counts = (str(crashed[sub.id]), str(restarted[sub.id]))
        table.add_row(str(sub.id), str(sub.strategy), *counts)
    table.add_row("[bold]total", "", f"[bold]{len(kills)}", f"[bold]{len(restarts)}")
    console.print(table)

    workers = [n for n in node.walk() if n.kind == "worker"]
    alive = sum(1 for n in workers if n.status == "running")
    in_tree = sum(n.restarts for n in node.walk())
    console.print(
        f"{alive} of {len(workers)} workers alive; restart counts in the tree add up to "
        f"{in_tree}, telemetry saw {len(restarts)} restarts; application exit status "
        f"{app.exit_status.code if app.exit_status else '?'}"
    )
    ok = (
        stats.kills == CRASHES == len(kills)
        and alive == len(workers) == 2 + 3 + JOBS
        and in_tree == len(restarts)
        and app.exit_status is not None
        and app.exit_status.code == 0
    )
    return 0 if ok else 1


async def _main(console: Console) -> int:
    first = await _scenario(console)
    second = await _tree_scenario(console)
    return first or second


def run_demo() -> int:
    """Run the demo and return the process exit status."""
    console = Console()
    # The crashes below are intended; keep their tracebacks out of the demo's output.
    logging.getLogger("foundation").setLevel(logging.CRITICAL)
    logging.getLogger("supervision").setLevel(logging.CRITICAL)
    console.print("[bold]mabeam demo[/]: actors, a link, a monitor and a crash being observed")
    return foundation.run(_main, console)
