"""Optuna's samplers (and, optionally, a pruner) as a strategy, through Optuna's
ask/tell interface: ``study.ask(fixed_distributions)`` proposes each trial's params,
``trial.report``/``should_prune`` judge progress, ``study.tell`` records the outcome.

Optuna is imported when a spec selects it (``pip install 'mabeam[ml]'``). Its INFO
logging is turned down to warnings and its ``ExperimentalWarning`` is ignored around
the calls into it, so a run prints nothing and tests under ``-W error`` pass.
"""

from __future__ import annotations

import importlib.util
import warnings
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from ._strategy_base import LedgerStrategy, check_limit
from .spec import Choice, Distribution, IntUniform, LogUniform, OptunaSearch, SweepSpec, Uniform
from .strategy import TrialPlan

if TYPE_CHECKING:
    import optuna

__all__ = ("OptunaStrategy",)

_SCALARS = (type(None), bool, int, float, str)


def _import_optuna() -> Any:
    try:
        import optuna
    except ImportError as exc:
        raise ImportError("strategy = \"optuna\" needs optuna: pip install 'mabeam[ml]'") from exc
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna


@contextmanager
def _quiet(optuna: Any) -> Iterator[None]:
    """Ignore Optuna's ExperimentalWarning (QMC and others are marked experimental)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        yield


class OptunaStrategy(LedgerStrategy):
    """The ``optuna`` strategy; built by ``make_strategy`` from an ``OptunaSearch``."""

    name = "optuna"

    def __init__(self, spec: SweepSpec, search: OptunaSearch) -> None:
        self._optuna = _import_optuna()
        super().__init__(spec)
        self._search = search
        self._distributions = {
            name: _distribution(self._optuna, dist) for name, dist in search.space.items()
        }
        with _quiet(self._optuna):
            self._study = self._optuna.create_study(
                direction="maximize" if spec.mode == "max" else "minimize",
                sampler=self._sampler(),
                pruner=self._pruner(),
            )
        self._trials: dict[str, optuna.trial.Trial] = {}
        self._last_step: dict[str, int] = {}

    # -- the driver's side --------------------------------------------------------------

    def ask(self, limit: int) -> list[TrialPlan]:
        limit = check_limit(limit)
        plans: list[TrialPlan] = []
        while len(self._ledger.plans) < self._search.n and len(plans) < limit:
            with _quiet(self._optuna):
                trial = self._study.ask(dict(self._distributions))
            searched = {
                name: _value(self._search.space[name], trial.params[name])
                for name in self._search.space
            }
            plan = self._ledger.plan(searched, reason=f"optuna trial {trial.number}")
            self._trials[plan.trial_id] = trial
            plans.append(plan)
        return plans

    def report(self, trial_id: str, step: int, metrics: Mapping[str, Any]) -> bool:
        if not self._ledger.running(trial_id) or trial_id in self._stopped:
            return False
        score = self._ledger.score(metrics)
        if score is None or self._search.pruner == "none" or step < 0:
            return True
        if step <= self._last_step.get(trial_id, -1):
            return True  # Optuna keeps the first value reported for a step
        self._last_step[trial_id] = step
        trial = self._trials[trial_id]
        with _quiet(self._optuna):
            trial.report(score, step)
            prune = trial.should_prune()
        if not prune:
            return True
        self._stopped[trial_id] = (
            f"pruned by optuna's {self._search.pruner} pruner at step {step} "
            f"({self._ledger.metric} {score:g})"
        )
        return False

    def tell(
        self, trial_id: str, result: Mapping[str, Any] | None, *, state: str = "succeeded"
    ) -> None:
        score = self._ledger.tell(trial_id, result, state)
        states = self._optuna.trial.TrialState
        with _quiet(self._optuna):
            if score is not None:
                self._study.tell(self._trials[trial_id], score)
            elif state == "stopped" and trial_id in self._last_step:
                self._study.tell(self._trials[trial_id], state=states.PRUNED)
            else:
                self._study.tell(self._trials[trial_id], state=states.FAIL)
        del self._trials[trial_id]

    @property
    def finished(self) -> bool:
        return len(self._ledger.plans) >= self._search.n and self._ledger.outstanding == 0

    # -- construction -------------------------------------------------------------------

    def _sampler(self) -> Any:
        samplers = self._optuna.samplers
        search = self._search
        if search.sampler == "tpe":
            return samplers.TPESampler(seed=search.seed, n_startup_trials=search.startup_trials)
        if search.sampler == "random":
            return samplers.RandomSampler(seed=search.seed)
        if search.sampler == "qmc":
            return samplers.QMCSampler(
                seed=search.seed, scramble=True, warn_independent_sampling=False
            )
        if importlib.util.find_spec("cmaes") is None:
            raise ImportError(
                'sampler = "cmaes" needs the cmaes package next to optuna: pip install cmaes'
            )
        return samplers.CmaEsSampler(seed=search.seed, warn_independent_sampling=False)

    def _pruner(self) -> Any:
        pruners = self._optuna.pruners
        if self._search.pruner == "median":
            return pruners.MedianPruner(
                n_startup_trials=self._search.pruner_startup_trials,
                n_warmup_steps=self._search.pruner_warmup_steps,
            )
        if self._search.pruner == "successive_halving":
            return pruners.SuccessiveHalvingPruner()
        return pruners.NopPruner()


def _distribution(optuna: Any, dist: Distribution) -> Any:
    """The Optuna distribution for one of the spec's (Optuna's float ranges include
    ``high``; a choice of arrays or tables is searched by its index)."""
    distributions = optuna.distributions
    if isinstance(dist, Uniform):
        return distributions.FloatDistribution(dist.low, dist.high)
    if isinstance(dist, LogUniform):
        return distributions.FloatDistribution(dist.low, dist.high, log=True)
    if isinstance(dist, IntUniform):
        return distributions.IntDistribution(dist.low, dist.high)
    if _by_value(dist):
        return distributions.CategoricalDistribution(dist.values)
    return distributions.CategoricalDistribution(tuple(range(len(dist.values))))


def _value(dist: Distribution, value: Any) -> Any:
    """Optuna's value back as the spec's (a choice's index back to its value)."""
    if isinstance(dist, Choice) and not _by_value(dist):
        return dist.values[value]
    return value


def _by_value(dist: Choice) -> bool:
    """Whether Optuna can hold the choice's values themselves: scalars, no two equal
    (``1`` and ``true`` are different values in a spec but equal in Python)."""
    values = dist.values
    if not all(isinstance(value, _SCALARS) for value in values):
        return False
    return all(a != b for i, a in enumerate(values) for b in values[i + 1 :])
