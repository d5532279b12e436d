"""Asynchronous successive halving (Li et al. 2018, "A System for Massively Parallel
Hyperparameter Tuning"), in its stopping form: every trial is one job of up to
``max_steps`` steps that reports its score as it trains, and is stopped at a rung when
it falls behind.

Rungs sit at ``min_steps * eta**k`` steps, for every k with a rung below ``max_steps``.
When a trial first reports a score at or past a rung, that score is recorded at the
rung and judged against the scores recorded there so far, its own included (n of
them): the trial goes on only if its rank is within ``ceil(n / eta)``, its rank being
1 + the number of earlier scores strictly better than it (so a tie goes its way, and the
first trial at a rung always goes on). A report that jumps past several rungs is judged
at the highest of them only. New trials are drawn from the space as random search
draws them (same seed, same configurations), ``n`` in all.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from ._strategy_base import LedgerStrategy, check_limit, sample_config
from .spec import ASHASearch, SweepSpec
from .strategy import TrialPlan

__all__ = ("ASHA", "rungs")


def rungs(min_steps: int, max_steps: int, eta: int) -> list[int]:
    """The rung steps: ``min_steps * eta**k`` below ``max_steps``."""
    out: list[int] = []
    step = min_steps
    while step < max_steps:
        out.append(step)
        step *= eta
    return out


class ASHA(LedgerStrategy):
    """The ``asha`` strategy; built by ``make_strategy`` from an ``ASHASearch``."""

    name = "asha"

    def __init__(self, spec: SweepSpec, search: ASHASearch) -> None:
        super().__init__(spec)
        self._search = search
        self.rungs = rungs(search.min_steps, search.max_steps, search.eta)
        self._recorded: list[list[float]] = [[] for _ in self.rungs]
        self._next_rung: dict[str, int] = {}  # trial id -> index of its next rung

    # -- the driver's side --------------------------------------------------------------

    def ask(self, limit: int) -> list[TrialPlan]:
        limit = check_limit(limit)
        plans: list[TrialPlan] = []
        while len(self._ledger.plans) < self._search.n and len(plans) < limit:
            index = len(self._ledger.plans)
            searched = sample_config(self._search.space, self._search.seed, index)
            plan = self._ledger.plan(searched, steps=self._search.max_steps)
            self._next_rung[plan.trial_id] = 0
            plans.append(plan)
        return plans

    def report(self, trial_id: str, step: int, metrics: Mapping[str, Any]) -> bool:
        if not self._ledger.running(trial_id) or trial_id in self._stopped:
            return False
        score = self._ledger.score(metrics)
        first = self._next_rung[trial_id]
        if score is None or first >= len(self.rungs) or step < self.rungs[first]:
            return True
        rung = max(k for k in range(first, len(self.rungs)) if self.rungs[k] <= step)
        self._next_rung[trial_id] = rung + 1
        return self._judge(trial_id, rung, score)

    @property
    def finished(self) -> bool:
        return len(self._ledger.plans) >= self._search.n and self._ledger.outstanding == 0

    # -- the rule -----------------------------------------------------------------------

    def _judge(self, trial_id: str, rung: int, score: float) -> bool:
        """Record ``score`` at ``rung``; False (and a stop reason) when it is not in the
        top ``1/eta`` of the scores recorded there."""
        earlier = self._recorded[rung]
        rank = 1 + sum(1 for other in earlier if self._ledger.better(other, score))
        earlier.append(score)
        kept = math.ceil(len(earlier) / self._search.eta)
        if rank <= kept:
            return True
        self._stopped[trial_id] = (
            f"stopped at rung {rung} ({self.rungs[rung]} steps): {self._ledger.metric} "
            f"{score:g} ranks {rank} of {len(earlier)} there; only the top "
            f"1/{self._search.eta} ({kept}) go on"
        )
        return False
