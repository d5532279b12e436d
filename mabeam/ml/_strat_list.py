"""Grid and random search as strategies: the spec's expanded trials, in order.

The plans carry the same params, in the same order, as ``SweepSpec.trials()`` (trial
``i`` is "t%04d" % i); nothing is ever stopped and results change nothing but ``best``.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from ._strategy_base import Ledger, check_limit
from .spec import SweepSpec
from .strategy import TrialPlan

__all__ = ("ListStrategy",)


class ListStrategy:
    """Hands out ``spec.iter_trials()`` lazily, as many as each ``ask`` allows."""

    def __init__(self, spec: SweepSpec) -> None:
        self.name: str = "grid" if spec.search is None else spec.search.strategy
        self._ledger = Ledger(spec)
        self._trials: Iterator[dict[str, Any]] = (t.params for t in spec.iter_trials())
        self._total = spec.num_trials

    def ask(self, limit: int) -> list[TrialPlan]:
        plans: list[TrialPlan] = []
        for _ in range(check_limit(limit)):
            params = next(self._trials, None)
            if params is None:
                break
            plan = TrialPlan(self._ledger.next_id(), params)
            self._ledger.plans[plan.trial_id] = plan
            plans.append(plan)
        return plans

    def report(self, trial_id: str, step: int, metrics: Mapping[str, Any]) -> bool:
        return self._ledger.running(trial_id)

    def tell(
        self, trial_id: str, result: Mapping[str, Any] | None, *, state: str = "succeeded"
    ) -> None:
        self._ledger.tell(trial_id, result, state)

    @property
    def finished(self) -> bool:
        return len(self._ledger.plans) == self._total and self._ledger.outstanding == 0

    def stop_reason(self, trial_id: str) -> str | None:
        self._ledger.known(trial_id)
        return None

    def best(self) -> tuple[str, float] | None:
        return self._ledger.best()
