"""What a ``SearchAgent`` knows of its trials, and the outcome it answers ``wait`` with."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from .strategy import TrialPlan

__all__ = ("SearchOutcome", "TrialState", "count_states")


@dataclass
class TrialState:
    """What the agent knows of one trial (``SearchAgent.trials``)."""

    plan: TrialPlan
    job_id: str
    state: str = "queued"
    node_id: str | None = None
    step: int | None = None
    score: float | None = None
    result: Any = None
    error: str | None = None
    stop_reason: str | None = None
    cached: bool = False

    @property
    def terminal(self) -> bool:
        """Whether the trial is over (its strategy was told)."""
        return self.state in ("succeeded", "failed", "cancelled", "stopped")


@dataclass(frozen=True)
class SearchOutcome:
    """The end of a search: the best trial, and every trial's state."""

    name: str
    strategy: str
    best: str | None
    best_score: float | None
    trials: tuple[TrialState, ...] = field(repr=False)
    run_dir: str | None = None

    @property
    def counts(self) -> dict[str, int]:
        """How many trials ended in each state."""
        return count_states(self.trials)


def count_states(trials: Iterable[TrialState]) -> dict[str, int]:
    """How many of ``trials`` are in each state."""
    return dict(Counter(trial.state for trial in trials))
