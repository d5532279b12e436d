"""Evolution of hyperparameters, generation by generation.

Generation 0 is ``population`` genomes drawn from the space. When every trial of a
generation is told, the survivors are the ``population`` best scored genomes so far
(parents and children compete: "mu + lambda"); each child of the next generation comes
from one parent picked by ``selection`` among the survivors and mutated: each searched
parameter is redrawn from its distribution with ``resample_probability``, else a number
moves by up to ``mutation_scale`` of its range (log range for a loguniform), reflected
at the ends, and a choice is kept. A genome already planned is never planned again: a mutation
that lands on one is retried, then a fresh draw from the space; a space too small to
give ``population`` new genomes ends the run early.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Mapping
from typing import Any

from . import _search
from ._strategy_base import Draws, LedgerStrategy, check_limit, mutate, sample_config
from .spec import EvolutionSearch, SweepSpec
from .strategy import TrialPlan

__all__ = ("Evolution",)

#: Mutations tried for a child before it falls back to fresh draws, and fresh draws tried
#: before the child is given up (the space has no unseen genome left near there).
_TRIES = 20


class Evolution(LedgerStrategy):
    """The ``evolution`` strategy; built by ``make_strategy`` from an ``EvolutionSearch``."""

    name = "evolution"

    def __init__(self, spec: SweepSpec, search: EvolutionSearch) -> None:
        super().__init__(spec)
        self._search = search
        self._draws = Draws(search.seed, "evolution")
        self._fresh = 0  # how many genomes were drawn from the space so far
        self._seen: set[bytes] = set()
        self._genomes: dict[str, dict[str, Any]] = {}  # trial id -> searched params
        self._survivors: list[str] = []
        self._generation = 0
        self._current: list[str] = []  # trial ids of the generation being trained
        self._queue: deque[tuple[dict[str, Any], str | None, str]] = deque()
        for _ in range(search.population):
            genome = self._new_genome()
            if genome is not None:
                self._queue.append((genome, None, "initial"))

    # -- the driver's side --------------------------------------------------------------

    def ask(self, limit: int) -> list[TrialPlan]:
        limit = check_limit(limit)
        plans: list[TrialPlan] = []
        while self._queue and len(plans) < limit:
            genome, parent, reason = self._queue.popleft()
            plan = self._ledger.plan(
                genome, parent=parent, reason=reason, generation=self._generation
            )
            self._genomes[plan.trial_id] = genome
            self._current.append(plan.trial_id)
            plans.append(plan)
        return plans

    def tell(
        self, trial_id: str, result: Mapping[str, Any] | None, *, state: str = "succeeded"
    ) -> None:
        self._ledger.tell(trial_id, result, state)
        if not self._queue and self._ledger.outstanding == 0:
            self._next_generation()

    @property
    def finished(self) -> bool:
        return not self._queue and self._ledger.outstanding == 0

    # -- the algorithm ------------------------------------------------------------------

    def _next_generation(self) -> None:
        """Select survivors, then queue the next generation's children (if any is left)."""
        scores = self._ledger.scores
        pool = [t for t in (*self._survivors, *self._current) if t in scores]
        pool.sort(key=lambda t: (self._ledger.rank_key(scores[t]), t))
        self._survivors = pool[: self._search.population]
        self._current = []
        if self._generation + 1 >= self._search.generations:
            return
        self._generation += 1
        for _ in range(self._search.population):
            child = self._child()
            if child is not None:
                self._queue.append(child)

    def _child(self) -> tuple[dict[str, Any], str | None, str] | None:
        if self._survivors:
            parent = self._select()
            for _ in range(_TRIES):
                genome, notes = mutate(
                    self._search.space,
                    self._genomes[parent],
                    self._draws,
                    self._search.mutation_scale,
                    self._search.resample_probability,
                )
                if self._claim(genome):
                    return genome, parent, f"mutation of {parent}: {', '.join(notes)}"
        fresh = self._new_genome()
        if fresh is None:
            return None
        reason = "fresh draw (no scored parent)" if not self._survivors else "fresh draw"
        return fresh, None, reason

    def _select(self) -> str:
        """A parent among the survivors (best first): the best of ``tournament_size``
        drawn with replacement, or one drawn from the best ``truncation`` of them."""
        survivors = self._survivors
        if self._search.selection == "tournament":
            picks = [self._draws.below(len(survivors)) for _ in range(self._search.tournament_size)]
            return survivors[min(picks)]
        count = max(1, math.ceil(self._search.truncation * len(survivors)))
        return survivors[self._draws.below(count)]

    def _new_genome(self) -> dict[str, Any] | None:
        for _ in range(_TRIES):
            genome = sample_config(self._search.space, self._search.seed, self._fresh)
            self._fresh += 1
            if self._claim(genome):
                return genome
        return None

    def _claim(self, genome: dict[str, Any]) -> bool:
        """Mark a genome as planned; False when it was planned before."""
        key = _search.canonical_bytes(genome)
        if key in self._seen:
            return False
        self._seen.add(key)
        return True
