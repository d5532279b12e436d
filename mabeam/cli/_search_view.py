"""Running searches from the terminal: one ``SearchAgent`` per spec, a live progress bar
per agent, then each run's leaderboard (the table ``mabeam report`` prints).

``run_searches(client, specs, console, run_root)`` starts the agents (several specs share
the cluster through a ``SlotAllocator``), waits for them, prints the leaderboards and
where the run records are, and returns the exit status: 0 when every search finished
with at least one succeeded trial and no trial failed.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.progress import (
    TaskID,
)

from foundation import ActorDead

from ._options import CommandError
from ._sweep_view import format_value, progress_bar

if TYPE_CHECKING:
    from mabeam.cluster.client import Client
    from mabeam.ml import SearchOutcome, SweepSpec, TrialState

__all__ = ("agent_names", "check_run_root", "default_run_root", "run_searches")


def default_run_root(specs: Sequence[SweepSpec]) -> Path:
    """``runs/NAME-YYYYmmdd-HHMMSS`` in the current directory (``NAME+...`` for several)."""
    name = specs[0].name if len(specs) == 1 else "+".join(s.name for s in specs[:3])
    return Path("runs") / f"{name}-{time.strftime('%Y%m%d-%H%M%S')}"


def check_run_root(root: Path, specs: Sequence[SweepSpec]) -> None:
    """``CommandError`` before anything starts when the run cannot be recorded there: a
    file in the way, or a run already recorded (a run log is never overwritten)."""
    dirs = [root] if len(specs) == 1 else [root / name for name in agent_names(specs)]
    for path in [root, *dirs]:
        if path.exists() and not path.is_dir():
            raise CommandError(f"--run-dir: {path} exists and is not a directory")
    for path in dirs:
        if (path / "run.jsonl").exists():
            raise CommandError(
                f"--run-dir: {path} already holds a run (run.jsonl); give a new directory"
            )


def agent_names(specs: Sequence[SweepSpec]) -> list[str]:
    """One agent name per spec: the spec's name, made unique with a suffix."""
    names: list[str] = []
    for spec in specs:
        name, n = spec.name, 2
        while name in names:
            name, n = f"{spec.name}-{n}", n + 1
        names.append(name)
    return names


class _Bars:
    """The progress bars: one per agent, fed with its trial updates."""

    def __init__(self, console: Console) -> None:
        self.progress = progress_bar(
            console,
            "{task.fields[running]} running",
            "{task.fields[stopped]} stopped",
            "{task.fields[failed]} failed",
            "best {task.fields[best]}",
        )
        self.tasks: dict[str, TaskID] = {}
        self.trials: dict[str, dict[str, TrialState]] = {}
        self.best: dict[str, float | None] = {}
        self.modes: dict[str, str] = {}

    def add(self, name: str, spec: SweepSpec) -> None:
        total = spec.num_trials
        self.tasks[name] = self.progress.add_task(
            name, total=total, running=0, stopped=0, failed=0, best="-"
        )
        self.trials[name] = {}
        self.best[name] = None
        self.modes[name] = spec.mode

    def update(self, name: str, trial: TrialState) -> None:
        trials = self.trials[name]
        trials[trial.plan.trial_id] = trial
        states = [t.state for t in trials.values()]
        done = sum(t.terminal for t in trials.values())
        best = self.best[name]
        if trial.state == "succeeded" and trial.score is not None:
            better = best is None or (
                trial.score < best if self.modes[name] == "min" else trial.score > best
            )
            if better:
                self.best[name] = best = trial.score
        task = self.tasks[name]
        total = self.progress.tasks[self.tasks[name]].total or 0
        self.progress.update(
            task,
            total=max(total, len(trials)),
            completed=done,
            running=sum(s in ("queued", "leased", "running") for s in states),
            stopped=states.count("stopped"),
            failed=sum(s in ("failed", "cancelled") for s in states),
            best="-" if best is None else format_value(best),
        )


async def run_searches(
    client: Client,
    specs: Sequence[SweepSpec],
    console: Console,
    run_root: Path,
    *,
    slots: int | None = None,
) -> int:
    """Run one search agent per spec to the end; print the leaderboards; exit status."""
    from mabeam.agents import start_agent
    from mabeam.ml import SearchAgent, SlotAllocator, load_run

    from ._report import leaderboard_table, summary_line

    names = agent_names(specs)
    bars = _Bars(console)
    single = len(specs) == 1
    outcomes: list[SearchOutcome] = []
    with bars.progress:
        allocator = None
        if not single:
            allocator = await start_agent(SlotAllocator, "slots", slots=slots)
        refs = []
        for name, spec in zip(names, specs, strict=True):
            bars.add(name, spec)
            kwargs: dict[str, Any] = {
                "run_dir": run_root if single else run_root / name,
                "on_event": lambda trial, name=name: bars.update(name, trial),
            }
            if allocator is not None:
                kwargs["allocator"] = allocator
            elif slots is not None:
                kwargs["max_parallel"] = slots
            refs.append(await start_agent(SearchAgent, name, spec, client, **kwargs))
        failed: list[str] = []
        for name, ref in zip(names, refs, strict=True):
            try:
                outcomes.append(await ref.call("wait", timeout=None))
            except ActorDead as exc:
                failed.append(f"search {name!r} failed: {exc.reason!r}")
        for ref in refs:
            if ref.is_alive:
                await ref.stop()
        if allocator is not None:
            await allocator.stop()
    status = 1 if failed else 0
    for line in failed:
        console.print(f"[red]{line}[/]", highlight=False)
    for outcome in outcomes:
        record = load_run(outcome.run_dir) if outcome.run_dir else None
        if record is not None:
            console.print(leaderboard_table(record))
            console.print(summary_line(record), highlight=False)
        counts = outcome.counts
        if counts.get("failed") or counts.get("cancelled") or not counts.get("succeeded"):
            status = 1
    where = run_root if single else f"{run_root}/*"
    console.print(
        f"run records in {where}; `mabeam report {run_root}` draws the learning curves"
        + (" and the lineage" if any(o.strategy == "pbt" for o in outcomes) else ""),
        highlight=False,
    )
    return status
