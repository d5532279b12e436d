"""Following a submitted sweep in the terminal: a live progress bar, then a results table.

``follow(client, spec, submission, console)`` reads the sweep's WATCH events (no
polling): the bar shows trials done out of total, how many run and how many failed,
and the best ``metric`` so far. When every trial is finished, one STATUS brings each
job's duration, and the table lists the trials best first (by the spec's ``metric``
and ``mode``) with their searched params, metric, state and duration; failed and
cancelled trials follow, and each failure is listed with the last line of its error.
Returns the exit status: 0 when every trial succeeded, else 1.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table
from rich.text import Text

from mabeam.cluster._client_errors import last_line
from mabeam.cluster.client import Client, JobEvent, Submission
from mabeam.ml.spec import SweepSpec

__all__ = ("TrialRow", "follow", "format_value", "progress_bar", "rank", "results_table")

_TERMINAL = frozenset({"succeeded", "failed", "cancelled"})


@dataclass
class TrialRow:
    """What the table shows of one trial."""

    index: int
    job_id: str
    params: dict[str, Any]
    state: str = "queued"
    value: Any = None
    error: str | None = None
    duration_s: float | None = None
    started: float | None = None
    ended: float | None = None

    def metric(self, name: str | None) -> float | None:
        """The trial's ``name`` result as a number, if it succeeded with one."""
        if name is None or self.state != "succeeded" or not isinstance(self.value, dict):
            return None
        number = self.value.get(name)
        if isinstance(number, bool) or not isinstance(number, int | float):
            return None
        return float(number) if math.isfinite(number) else None


def searched_names(spec: SweepSpec, rows: Sequence[TrialRow]) -> list[str]:
    """The params that tell trials apart (all of them for a one-trial spec)."""
    if spec.search is not None:
        names = list(getattr(spec.search, "grid", None) or getattr(spec.search, "space", {}))
        if names:
            return names
    return list(rows[0].params) if rows else []


def progress_bar(console: Console, *fields: str) -> Progress:
    """A live progress display: spinner, name, bar, done/total, then each of ``fields``
    (templates over a task's fields, e.g. ``"{task.fields[running]} running"``), then
    the time elapsed."""
    return Progress(
        SpinnerColumn(),
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        *(TextColumn(field) for field in fields),
        TimeElapsedColumn(),
        console=console,
    )


class _Bar:
    """The live progress bar of one sweep, fed with its events."""

    def __init__(self, spec: SweepSpec, rows: dict[str, TrialRow], console: Console) -> None:
        self.spec = spec
        self.rows = rows
        self.best: float | None = None
        best = [f"best {spec.metric} {{task.fields[best]}}"] if spec.metric else []
        self.progress = progress_bar(
            console, "{task.fields[running]} running", "{task.fields[failed]} failed", *best
        )
        self.task = self.progress.add_task(
            spec.name, total=len(rows), running=0, failed=0, best="-"
        )

    def update(self, event: JobEvent, now: float) -> None:
        row = self.rows.get(event.job_id)
        if row is None or row.state in _TERMINAL:
            return
        row.state = "running" if event.is_progress else event.state
        if event.state == "running" and row.started is None:
            row.started = now
        if event.terminal:
            row.ended = now
            row.value, row.error = event.value, event.error
            score = row.metric(self.spec.metric)
            if score is not None and (self.best is None or self._better(score, self.best)):
                self.best = score
        states = [r.state for r in self.rows.values()]
        self.progress.update(
            self.task,
            completed=sum(s in _TERMINAL for s in states),
            running=states.count("running"),
            failed=sum(s in ("failed", "cancelled") for s in states),
            best="-" if self.best is None else format_value(self.best),
        )

    def _better(self, a: float, b: float) -> bool:
        return a < b if self.spec.mode == "min" else a > b


async def follow(client: Client, spec: SweepSpec, submission: Submission, console: Console) -> int:
    """Show the sweep's progress until every trial finished, then its results table."""
    from foundation import current_time

    trials = spec.iter_trials()
    rows = {
        job_id: TrialRow(trial.index, job_id, trial.params)
        for job_id, trial in zip(submission.job_ids, trials, strict=False)
    }
    bar = _Bar(spec, rows, console)
    with bar.progress:
        async for event in client.watch(submission.job_ids):
            bar.update(event, current_time())
    status = await client.status(list(rows))
    for job in status.jobs:
        row = rows.get(job.job_id)
        if row is not None:
            row.duration_s = job.duration_s
            if job.state in ("succeeded", "failed", "cancelled"):
                row.state, row.value, row.error = job.state, job.value, job.error
    ordered = rank(spec, list(rows.values()))
    console.print(results_table(spec, ordered))
    failures = [r for r in ordered if r.state != "succeeded"]
    for row in failures:
        console.print(
            f"[red]trial {row.index}[/] ({row.job_id}) {row.state}: {last_line(row.error)}",
            highlight=False,
        )
    ok = len(ordered) - len(failures)
    console.print(f"{ok} of {len(ordered)} trials succeeded; sweep {submission.sweep_id}")
    return 0 if not failures else 1


def rank(spec: SweepSpec, rows: list[TrialRow]) -> list[TrialRow]:
    """Best first by ``spec.metric``/``mode``; then succeeded rows without the metric
    (trial order); then the failed and cancelled ones."""
    sign = 1.0 if spec.mode == "min" else -1.0

    def key(row: TrialRow) -> tuple[int, float, int]:
        score = row.metric(spec.metric)
        if score is not None:
            return 0, sign * score, row.index
        return (1 if row.state == "succeeded" else 2), 0.0, row.index

    return sorted(rows, key=key)


def results_table(spec: SweepSpec, rows: Sequence[TrialRow]) -> Table:
    """The results table of ``rows`` (already ranked)."""
    names = searched_names(spec, rows)
    title = f"{spec.name}: {len(rows)} trials"
    if spec.metric:
        title += f", best {spec.metric} ({spec.mode}) first"
    table = Table(title=title)
    table.add_column("#", justify="right")
    table.add_column("trial", justify="right")
    for name in names:
        table.add_column(name, justify="right")
    if spec.metric:
        table.add_column(spec.metric, justify="right", style="bold")
    else:
        table.add_column("result")
    table.add_column("state")
    table.add_column("duration", justify="right")
    table.add_column("job")
    for rank_no, row in enumerate(rows, 1):
        metric = row.metric(spec.metric)
        if spec.metric:
            shown = "-" if metric is None else format_value(metric)
        else:
            shown = format_value(row.value) if row.state == "succeeded" else "-"
        state = Text(row.state, style="green" if row.state == "succeeded" else "red")
        table.add_row(
            str(rank_no),
            str(row.index),
            *(format_value(row.params.get(name)) for name in names),
            shown,
            state,
            _duration(row),
            row.job_id,
        )
    return table


def _duration(row: TrialRow) -> str:
    seconds = row.duration_s
    if seconds is None and row.started is not None and row.ended is not None:
        seconds = row.ended - row.started
    if seconds is None:
        # Succeeded without an attempt of its own: the result cache answered.
        return "cached" if row.state == "succeeded" and row.started is None else "-"
    return f"{seconds:.2f} s"


def format_value(value: Any, width: int = 40) -> str:
    """A short rendering of a param, metric or result for a table cell: floats to 4
    significant digits, a result dict as ``key=value`` pairs, cut at ``width``."""
    text = _compact(value, top=True)
    return text if len(text) <= width else text[: width - 3] + "..."


def _compact(value: Any, *, top: bool = False) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if value is None:
        return "-"
    if isinstance(value, dict):
        pairs = [f"{key}={_compact(item)}" for key, item in value.items()]
        return " ".join(pairs) if top else "{" + ", ".join(pairs) + "}"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_compact(item) for item in value) + "]"
    return str(value)
