"""Grid and random search as strategies: the spec's expanded trials, in order.

The plans carry the same params, in the same order, as ``SweepSpec.trials()`` (trial
``i`` is "t%04d" % i); nothing is ever stopped and results change nothing but ``best``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from ._strategy_base import LedgerStrategy, check_limit
from .spec import SweepSpec
from .strategy import TrialPlan

__all__ = ("ListStrategy",)


class ListStrategy(LedgerStrategy):
    """Hands out ``spec.iter_trials()`` lazily, as many as each ``ask`` allows."""

    def __init__(self, spec: SweepSpec) -> None:
        self.name: str = "grid" if spec.search is None else spec.search.strategy
        super().__init__(spec)
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

    @property
    def finished(self) -> bool:
        return len(self._ledger.plans) == self._total and self._ledger.outstanding == 0
