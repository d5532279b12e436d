"""Population-based training (Jaderberg et al. 2017, "Population Based Training of
Neural Networks"), asynchronous: each member decides alone when its segment ends.

A member trains in segments of ``interval`` steps, each segment one trial that starts
from the checkpoint of the member's previous segment. When a segment succeeds the
member's latest score is ranked among the population's latest scores; a member in the
bottom ``truncation`` exploits a member of the top ``truncation`` (copies its params
and continues from its latest checkpoint) and explores (multiplies each searched number
by a drawn factor, clamped to the space; redraws each choice with
``resample_probability``). Every member trains ``ceil(max_steps / interval)`` segments
of its own, so the run is exactly ``population`` times that many trials.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ._strategy_base import Draws, LedgerStrategy, check_limit, perturb, sample_config
from .spec import PBTSearch, SweepSpec
from .strategy import TrialPlan

__all__ = ("PBT",)


@dataclass
class _Member:
    """One member of the population: its budget and latest good segment."""

    index: int
    initial: dict[str, Any]
    segments: int = 0  # segments planned so far, the member's own budget
    latest: str | None = None  # its latest succeeded segment: the checkpoint to go on from
    score: float | None = None  # that segment's score


@dataclass
class _Next:
    """A segment decided but not yet asked for (its id is given at ask time)."""

    member: _Member
    params: dict[str, Any]
    parent: str | None
    reason: str
    checkpoint_from: str | None


class PBT(LedgerStrategy):
    """The ``pbt`` strategy; built by ``make_strategy`` from a ``PBTSearch``."""

    name = "pbt"

    def __init__(self, spec: SweepSpec, search: PBTSearch) -> None:
        super().__init__(spec)
        self._search = search
        self._segments = math.ceil(search.max_steps / search.interval)
        self._draws = Draws(search.seed, "pbt")
        self._members = [
            _Member(i, sample_config(search.space, search.seed, i))
            for i in range(search.population)
        ]
        self._of: dict[str, _Member] = {}
        self._params: dict[str, dict[str, Any]] = {}  # trial id -> its searched params
        self._queue: deque[_Next] = deque(
            _Next(member, member.initial, None, "initial", None) for member in self._members
        )

    # -- the driver's side --------------------------------------------------------------

    def ask(self, limit: int) -> list[TrialPlan]:
        limit = check_limit(limit)
        plans: list[TrialPlan] = []
        while self._queue and len(plans) < limit:
            plans.append(self._start(self._queue.popleft()))
        return plans

    def tell(
        self, trial_id: str, result: Mapping[str, Any] | None, *, state: str = "succeeded"
    ) -> None:
        score = self._ledger.tell(trial_id, result, state)
        member = self._of[trial_id]
        if score is not None:
            member.latest, member.score = trial_id, score
        if member.segments < self._segments:
            self._queue.append(self._decide(member, trial_id, failed=score is None))

    @property
    def finished(self) -> bool:
        return not self._queue and self._ledger.outstanding == 0

    # -- the algorithm ------------------------------------------------------------------

    def _start(self, nxt: _Next) -> TrialPlan:
        member = nxt.member
        steps = min(
            self._search.interval, self._search.max_steps - member.segments * self._search.interval
        )
        searched = {**nxt.params, "pbt_steps": steps, "checkpoint": None}
        plan = self._ledger.plan(
            searched,
            parent=nxt.parent,
            reason=nxt.reason,
            generation=member.segments,
            checkpoint_from=nxt.checkpoint_from,
            steps=steps,
        )
        self._params[plan.trial_id] = nxt.params
        member.segments += 1
        self._of[plan.trial_id] = member
        return plan

    def _decide(self, member: _Member, trial_id: str, *, failed: bool) -> _Next:
        """The member's next segment: continue, or exploit and explore."""
        top, bottom = self._quantiles()
        donors = [m for m in top if m is not member]
        if (failed or member in bottom) and donors:
            donor = donors[self._draws.below(len(donors))]
            source = donor.latest or ""  # ranked members always have a scored segment
            params, notes = perturb(
                self._search.space,
                self._params[source],  # the params its checkpoint was trained with
                self._draws,
                self._search.perturb,
                self._search.resample_probability,
            )
            why = f"exploit {source}"
            if failed:
                why += f" (after {trial_id} ended without a score)"
            explore = f"; explore {', '.join(notes)}" if notes else ""
            return _Next(member, params, source, why + explore, source)
        if failed:  # no member to copy from yet: run the same segment again
            plan = self._ledger.plans[trial_id]
            reason = f"retry of {trial_id}, which ended without a score"
            return _Next(member, self._params[trial_id], plan.parent, reason, plan.checkpoint_from)
        return _Next(member, self._params[trial_id], trial_id, "continue", trial_id)

    def _quantiles(self) -> tuple[list[_Member], list[_Member]]:
        """The top and bottom ``truncation`` of the members with a score, by their latest
        score (ties by member index); each holds ``ceil(truncation * n)`` members, at
        most half of them."""
        ranked = sorted(
            (m for m in self._members if m.score is not None),
            key=lambda m: (self._ledger.rank_key(m.score or 0.0), m.index),
        )
        count = min(math.ceil(self._search.truncation * len(ranked)), len(ranked) // 2)
        if count == 0:
            return [], []
        return ranked[:count], ranked[-count:]
