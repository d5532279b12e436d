"""What every search strategy shares: the ledger of planned and told trials (ids,
states, scores, the best so far), seeded draws, and perturbation of parameters.

Randomness comes from ``_search.draw_bits`` (SHA-256 of seed, counter and a label), as
random search does, so plans are the same on every Python version and platform.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, Literal

from . import _search
from .spec import Choice, Distribution, IntUniform, LogUniform, SweepSpec, Uniform
from .strategy import TRIAL_STATES, TrialPlan

__all__ = ("Draws", "Ledger", "check_limit", "mutate", "perturb", "sample_config")


class Ledger:
    """The trials a strategy planned and what it was told about them.

    Scores are ``result[metric]`` when that is a finite int or float (not a bool);
    anything else means "no score". ``better`` compares scores under ``mode``.
    """

    def __init__(self, spec: SweepSpec) -> None:
        self.metric = spec.metric
        self.mode: Literal["max", "min"] = spec.mode
        self.fixed = dict(spec.params)
        self.plans: dict[str, TrialPlan] = {}
        self.states: dict[str, str] = {}
        self.scores: dict[str, float] = {}
        self._best: tuple[str, float] | None = None

    def next_id(self) -> str:
        return f"t{len(self.plans):04d}"

    def plan(self, searched: Mapping[str, Any], **lineage: Any) -> TrialPlan:
        """Record and return the next plan: fixed params, then the searched ones."""
        params = {name: _search.fresh(value) for name, value in self.fixed.items()}
        params.update({name: _search.fresh(value) for name, value in searched.items()})
        plan = TrialPlan(self.next_id(), params, **lineage)
        self.plans[plan.trial_id] = plan
        return plan

    def known(self, trial_id: str) -> TrialPlan:
        plan = self.plans.get(trial_id)
        if plan is None:
            raise ValueError(f"unknown trial id {trial_id!r}: this strategy never planned it")
        return plan

    def running(self, trial_id: str) -> bool:
        """Whether a known trial is still waiting for its tell (unknown ids raise)."""
        self.known(trial_id)
        return trial_id not in self.states

    @property
    def outstanding(self) -> int:
        return len(self.plans) - len(self.states)

    def score(self, metrics: Mapping[str, Any] | None) -> float | None:
        return metric_score(metrics, self.metric)

    def better(self, a: float, b: float) -> bool:
        """Whether score ``a`` beats score ``b`` (strictly)."""
        return a > b if self.mode == "max" else a < b

    def rank_key(self, score: float) -> float:
        """A key that sorts the best score first."""
        return -score if self.mode == "max" else score

    def tell(self, trial_id: str, result: Mapping[str, Any] | None, state: str) -> float | None:
        """Record a finished trial; returns its score (only a succeeded trial has one)."""
        self.known(trial_id)
        if state not in TRIAL_STATES:
            raise ValueError(f"state must be one of {', '.join(TRIAL_STATES)}, got {state!r}")
        if trial_id in self.states:
            raise ValueError(f"trial {trial_id} was already told ({self.states[trial_id]})")
        if result is not None and not isinstance(result, Mapping):
            raise TypeError(f"result must be a mapping or None, got {type(result).__name__}")
        self.states[trial_id] = state
        score = self.score(result) if state == "succeeded" else None
        if score is not None:
            self.scores[trial_id] = score
            if self._best is None or self.better(score, self._best[1]):
                self._best = (trial_id, score)
        return score

    def best(self) -> tuple[str, float] | None:
        return self._best


def check_limit(limit: int) -> int:
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 0:
        raise ValueError(f"limit must be an int >= 0, got {limit!r}")
    return limit


class Draws:
    """A seeded stream of random numbers: draw ``k`` is ``draw_bits(seed, k, label)``."""

    def __init__(self, seed: int, label: str) -> None:
        self.seed = seed
        self.label = label
        self.count = 0

    def bits(self) -> int:
        bits = _search.draw_bits(self.seed, self.count, self.label)
        self.count += 1
        return bits

    def unit(self) -> float:
        """A float in [0, 1)."""
        return _search.unit_float(self.bits())

    def below(self, n: int) -> int:
        """An int in 0..n-1."""
        return (self.bits() * n) >> 64

    def sample(self, dist: Distribution) -> Any:
        return _search.fresh(dist.sample(self.bits()))


def sample_config(space: Mapping[str, Distribution], seed: int, index: int) -> dict[str, Any]:
    """Draw ``index`` of the space: the same values random search draws for its trial
    ``index`` with the same seed."""
    return {
        name: _search.fresh(dist.sample(_search.draw_bits(seed, index, name)))
        for name, dist in space.items()
    }


def perturb(
    space: Mapping[str, Distribution],
    params: Mapping[str, Any],
    draws: Draws,
    factors: Sequence[float],
    resample_probability: float,
) -> tuple[dict[str, Any], list[str]]:
    """Perturbed copies of the searched ``params`` and a note per change.

    A float or int is multiplied by one of ``factors`` (drawn), rounded for ints (moved
    by one when rounding undoes the change) and clamped to its distribution's range; a
    choice is redrawn with ``resample_probability`` (PBT's explore step).
    """
    out: dict[str, Any] = {}
    notes: list[str] = []
    for name, dist in space.items():
        value = params[name]
        numeric = isinstance(dist, Uniform | LogUniform | IntUniform)
        if not numeric and draws.unit() < resample_probability:
            out[name] = draws.sample(dist)
            notes.append(f"{name} resampled")
            continue
        if not numeric or isinstance(value, bool) or not isinstance(value, int | float):
            out[name] = _search.fresh(value)
            continue
        factor = factors[draws.below(len(factors))]
        out[name] = _scale(dist, value, factor)
        notes.append(f"{name}*{factor:g}")
    return out, notes


def _scale(dist: Uniform | LogUniform | IntUniform | Choice, value: float, factor: float) -> Any:
    if isinstance(dist, IntUniform):
        scaled = round(value * factor)
        if scaled == value and factor != 1:
            scaled = int(value) + (1 if (factor > 1) == (value >= 0) else -1)
        return min(max(scaled, dist.low), dist.high)
    if isinstance(dist, Uniform | LogUniform):
        moved = value * factor
        if moved >= dist.high:
            return math.nextafter(dist.high, dist.low)
        return max(moved, dist.low)
    return value


def mutate(
    space: Mapping[str, Distribution],
    params: Mapping[str, Any],
    draws: Draws,
    scale: float,
    resample_probability: float,
) -> tuple[dict[str, Any], list[str]]:
    """A mutated copy of the searched ``params`` and a note per change (evolution).

    Each parameter is redrawn from its distribution with ``resample_probability``; else a
    number moves by a uniform draw in +-``scale`` of its range (of the log range for a
    loguniform), reflected at the ends, and a choice is kept.
    """
    out: dict[str, Any] = {}
    notes: list[str] = []
    for name, dist in space.items():
        value = params[name]
        if draws.unit() < resample_probability:
            out[name] = draws.sample(dist)
            notes.append(f"{name} resampled")
        elif isinstance(dist, Choice) or isinstance(value, bool) or not _is_number(value):
            out[name] = _search.fresh(value)
        else:
            shift = (2.0 * draws.unit() - 1.0) * scale
            out[name] = _shift(dist, value, shift)
            notes.append(f"{name}{shift:+.3f}")
    return out, notes


class LedgerStrategy:
    """What every strategy shares: its ``Ledger``, the reasons it stopped trials, and the
    calls that only consult them (``report`` keeps a running trial going, ``tell``
    records, ``stop_reason``, ``best``). A strategy adds ``ask`` and ``finished`` and
    overrides what its algorithm decides on."""

    name: str

    def __init__(self, spec: SweepSpec) -> None:
        self._ledger = Ledger(spec)
        self._stopped: dict[str, str] = {}

    def report(self, trial_id: str, step: int, metrics: Mapping[str, Any]) -> bool:
        return self._ledger.running(trial_id)

    def tell(
        self, trial_id: str, result: Mapping[str, Any] | None, *, state: str = "succeeded"
    ) -> None:
        self._ledger.tell(trial_id, result, state)

    def stop_reason(self, trial_id: str) -> str | None:
        self._ledger.known(trial_id)
        return self._stopped.get(trial_id)

    def best(self) -> tuple[str, float] | None:
        return self._ledger.best()


def metric_score(metrics: Mapping[str, Any] | None, metric: str | None) -> float | None:
    """``metrics[metric]`` as a score: a finite int or float (not a bool), else None."""
    if metrics is None or metric is None:
        return None
    value = metrics.get(metric)
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and math.isfinite(value)


def _shift(dist: Uniform | LogUniform | IntUniform, value: float, shift: float) -> Any:
    """Move ``value`` by ``shift`` (a fraction of the range), reflecting at the ends."""
    if isinstance(dist, LogUniform):
        low, high, x = math.log(dist.low), math.log(dist.high), math.log(max(value, dist.low))
    elif isinstance(dist, IntUniform):
        low, high, x = dist.low - 0.5, dist.high + 0.5, float(value)
    else:
        low, high, x = dist.low, dist.high, float(value)
    u = (x - low) / (high - low) + shift
    u = -u if u < 0 else (2.0 - u if u > 1 else u)
    u = min(max(u, 0.0), 1.0)
    moved = low + u * (high - low)
    if isinstance(dist, IntUniform):
        return min(max(round(moved), dist.low), dist.high)
    if isinstance(dist, LogUniform):
        moved = math.exp(moved)
    if moved >= dist.high:
        return math.nextafter(dist.high, dist.low)
    return max(moved, dist.low)
