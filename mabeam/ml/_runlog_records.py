"""What ``load_run`` reads back from a run log: one ``RunRecord`` with its ``TrialRecord``s,
and the two views ``mabeam report`` draws, the leaderboard and the lineage."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = ("FINISHED_STATES", "RunRecord", "TrialRecord", "as_score")

#: The states ``RunLog.trial_finished`` accepts; a trial without one is ``running``.
FINISHED_STATES = frozenset({"succeeded", "failed", "cancelled", "stopped"})


def as_score(value: Any) -> float | None:
    """``value`` as a finite float, or None (not a number, a bool, NaN or infinite)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


@dataclass
class TrialRecord:
    """One trial of a run: how it started, what it reported and how it ended.

    ``curve`` is ``(step, metrics)`` in step order (a step reported twice keeps its
    last report); ``state`` is ``running`` until ``trial_finished``; ``stop_reason``
    says why a trial was stopped or failed; ``started_at``/``finished_at`` are wall
    times (``time.time()``) of those records.
    """

    trial_id: str
    params: dict[str, Any] = field(default_factory=dict)
    job_id: str = ""
    parent: str | None = None
    reason: str = "initial"
    generation: int = 0
    agent: str | None = None
    curve: list[tuple[int, dict[str, Any]]] = field(default_factory=list)
    state: str = "running"
    score: float | None = None
    result: Any = None
    stop_reason: str | None = None
    cached: bool = False
    started_at: float | None = None
    finished_at: float | None = None

    def points(self, metric: str) -> list[tuple[int, float]]:
        """The curve of ``metric``: ``(step, value)`` for each report with a finite number."""
        out = []
        for step, metrics in self.curve:
            value = as_score(metrics.get(metric))
            if value is not None:
                out.append((step, value))
        return out

    def final(self, metric: str | None) -> float | None:
        """The trial's final ``metric``: the logged score when ``metric`` is None, else the
        result's ``metric`` entry, else the last reported value."""
        if metric is None:
            return as_score(self.score)
        if isinstance(self.result, dict) and metric in self.result:
            return as_score(self.result[metric])
        points = self.points(metric)
        return points[-1][1] if points else None

    def metric_names(self) -> set[str]:
        """Every metric name this trial reported or returned."""
        names = {name for _, metrics in self.curve for name in metrics}
        if isinstance(self.result, dict):
            names.update(str(name) for name in self.result)
        return names


@dataclass
class RunRecord:
    """One search run, as logged: its settings, trials (in start order), notes
    (``{"kind": ..., "t": ..., **data}``), whether ``run_finished`` was logged and the
    best trial it named. ``skipped_lines`` counts unreadable lines (a crash mid-write
    leaves a truncated last line); ``resumed`` counts reopenings with ``resume=True``."""

    name: str
    strategy: str
    metric: str | None
    mode: Literal["min", "max"]
    directory: str = ""
    spec: Any = None
    agent: str | None = None
    trials: dict[str, TrialRecord] = field(default_factory=dict)
    notes: list[dict[str, Any]] = field(default_factory=list)
    finished: bool = False
    best: str | None = None
    started_at: float | None = None
    finished_at: float | None = None
    skipped_lines: int = 0
    resumed: int = 0

    def leaderboard(
        self, metric: str | None = None, mode: Literal["min", "max"] | None = None
    ) -> list[TrialRecord]:
        """Trials best first: by the logged score (or by ``metric``'s final value, see
        ``TrialRecord.final``) under ``mode`` (default: the run's); trials without a
        score follow in start order."""
        sign = 1.0 if (mode or self.mode) == "min" else -1.0
        order = {trial_id: index for index, trial_id in enumerate(self.trials)}

        def key(trial: TrialRecord) -> tuple[int, float, int]:
            score = trial.final(metric)
            index = order[trial.trial_id]
            return (0, sign * score, index) if score is not None else (1, 0.0, index)

        return sorted(self.trials.values(), key=key)

    def lineage(self) -> list[tuple[str, str, str]]:
        """``(parent, child, reason)`` for every trial started from another, in the
        children's start order; empty for grid and random runs."""
        return [
            (trial.parent, trial.trial_id, trial.reason)
            for trial in self.trials.values()
            if trial.parent is not None
        ]

    def metric_names(self) -> set[str]:
        """Every metric any trial reported or returned (and the run's own ``metric``)."""
        names = {self.metric} if self.metric else set()
        for trial in self.trials.values():
            names |= trial.metric_names()
        return names

    def counts(self) -> dict[str, int]:
        """How many trials are in each state."""
        out: dict[str, int] = {}
        for trial in self.trials.values():
            out[trial.state] = out.get(trial.state, 0) + 1
        return out
