"""Search strategies: pure, deterministic planners of trials, driven from outside.

A driver (the cluster's search agent, or a loop in a test) asks a strategy for trials
that may start, runs each as a job, forwards its progress and tells it the result::

    strategy = make_strategy(spec)
    while not strategy.finished:
        for plan in strategy.ask(free_slots):     # [] = wait for reports/results
            start(plan)
        ...
        if not strategy.report(trial_id, step, metrics):
            cancel(trial_id)                      # stop_reason(trial_id) says why
        ...
        strategy.tell(trial_id, result)           # or tell(trial_id, None, state="failed")

Strategies do no I/O, read no clock and draw their randomness from the spec's seed, so
the same spec and the same sequence of calls give the same plans. The strategies and
their rules are in docs/search.md.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from .spec import (
    ASHASearch,
    EvolutionSearch,
    GridSearch,
    OptunaSearch,
    PBTSearch,
    RandomSearch,
    SweepSpec,
)

__all__ = ("TRIAL_STATES", "Strategy", "TrialPlan", "make_strategy")

#: The states ``Strategy.tell`` accepts.
TRIAL_STATES = ("succeeded", "failed", "cancelled", "stopped")


@dataclass(frozen=True)
class TrialPlan:
    """One trial a strategy wants run: its id, full parameters and lineage.

    ``trial_id`` is unique in the run ("t0000", "t0001", ... in ask order); ``params``
    holds the fixed ``[params]`` merged with the searched ones (msgpack-able);
    ``parent``/``reason`` record where it came from ("initial", "continue",
    "exploit t0003; explore lr*1.2", "mutation of t0002: ..."); ``generation`` is the PBT
    segment or the evolution generation; ``checkpoint_from`` names the trial whose
    checkpoint it starts from; ``steps`` is how many steps it trains (PBT segment, ASHA
    maximum), ``None`` where the task decides.
    """

    trial_id: str
    params: dict[str, Any]
    parent: str | None = None
    reason: str = "initial"
    generation: int = 0
    checkpoint_from: str | None = None
    steps: int | None = None


class Strategy(Protocol):
    """What a driver needs from a search strategy (see the module docstring)."""

    name: str

    def ask(self, limit: int) -> list[TrialPlan]:
        """Up to ``limit`` trials that may start now; ``[]`` means wait for reports or
        results (or, when ``finished``, that nothing is left)."""
        ...

    def report(self, trial_id: str, step: int, metrics: Mapping[str, Any]) -> bool:
        """Progress of a running trial; ``False`` means stop it now."""
        ...

    def tell(
        self, trial_id: str, result: Mapping[str, Any] | None, *, state: str = "succeeded"
    ) -> None:
        """A trial finished: its result (scored by ``spec.metric``), or ``None`` with state
        "failed", "cancelled" or "stopped". Raises ``ValueError`` for an id it never
        planned or one already told."""
        ...

    @property
    def finished(self) -> bool:
        """True once nothing more will be asked and every planned trial was told."""
        ...

    def stop_reason(self, trial_id: str) -> str | None:
        """Why the strategy stopped a trial through ``report``, or ``None``."""
        ...

    def best(self) -> tuple[str, float] | None:
        """The best (trial_id, score) among the trials that succeeded with a score."""
        ...


def make_strategy(spec: SweepSpec) -> Strategy:
    """The strategy ``spec.search`` selects, ready for its first ``ask``. Raises
    ``ValueError`` when an adaptive search has no ``metric`` and ``ImportError`` (with
    the install hint) when optuna or its chosen sampler's package is missing."""
    search = spec.search
    if search is None or isinstance(search, GridSearch | RandomSearch):
        from ._strat_list import ListStrategy

        return ListStrategy(spec)
    if spec.metric is None:
        raise ValueError(
            f"strategy {search.strategy!r} needs the spec's metric: the result key that "
            "ranks trials"
        )
    if isinstance(search, PBTSearch):
        from ._pbt import PBT

        return PBT(spec, search)
    if isinstance(search, EvolutionSearch):
        from ._evolution import Evolution

        return Evolution(spec, search)
    if isinstance(search, ASHASearch):
        from ._asha import ASHA

        return ASHA(spec, search)
    if isinstance(search, OptunaSearch):
        from ._optuna import OptunaStrategy

        return OptunaStrategy(spec, search)
    raise TypeError(f"unknown search {search!r}")
