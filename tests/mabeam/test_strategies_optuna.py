"""The optuna strategy: TPE (seeded) finds the optimum of a 1-D quadratic, a pruner
stops trials through report(), every sampler runs quietly, and a missing package is
a clear ImportError."""

from __future__ import annotations

import importlib.util
import sys

import pytest

from mabeam.ml import SweepSpec, make_strategy, parse_spec
from mabeam.ml.strategy import Strategy

HEADER = 'name = "t"\nentrypoint = "pkg.mod:fn"\nmetric = "loss"\nmode = "min"\n'
X = '[search.space]\nx = { distribution = "uniform", low = -2.0, high = 2.0 }\n'


def optuna_spec(options: str, space: str = X) -> SweepSpec:
    return parse_spec(
        HEADER + f"[search]\nstrategy = 'optuna'\n[search.optuna]\n{options}\n" + space
    )


def run_quadratic(strategy: Strategy, batch: int = 1) -> list[float]:
    """Minimise (x - 0.3)^2, ``batch`` trials in flight at a time; returns the xs tried."""
    xs: list[float] = []
    while not strategy.finished:
        plans = strategy.ask(batch)
        for plan in plans:
            x = plan.params["x"]
            xs.append(x)
            strategy.tell(plan.trial_id, {"loss": (x - 0.3) ** 2})
    return xs


def test_tpe_finds_the_optimum_of_a_quadratic(capsys: pytest.CaptureFixture[str]) -> None:
    strategy = make_strategy(optuna_spec("n = 40\nseed = 1\nstartup_trials = 8"))
    xs = run_quadratic(strategy)
    best = strategy.best()
    assert best is not None and best[1] < 0.02**2  # |x - 0.3| < 0.02 in 40 trials
    # random draws alone, 40 of them, do worse: TPE is doing the work
    randomly = make_strategy(optuna_spec("n = 40\nseed = 1\nsampler = 'random'"))
    run_quadratic(randomly)
    other = randomly.best()
    assert other is not None and other[1] > best[1]
    assert xs == run_quadratic(make_strategy(optuna_spec("n = 40\nseed = 1\nstartup_trials = 8")))
    out, err = capsys.readouterr()
    assert (out, err) == ("", "")  # optuna's per-trial INFO lines are silenced


@pytest.mark.parametrize("sampler", ["tpe", "random", "qmc"])
def test_every_sampler_runs_seeded_with_warnings_as_errors(sampler: str) -> None:
    space = X + 'n = { distribution = "int", low = 1, high = 4 }\nact = ["relu", "tanh"]\n'
    space += 'lr = { distribution = "loguniform", low = 1e-4, high = 1.0 }\n'
    space += "shape = [[1, 2], [3, 4]]\n"  # arrays go through optuna as indices
    spec = optuna_spec(f"n = 12\nseed = 3\nsampler = '{sampler}'", space)
    strategy = make_strategy(spec)
    xs = run_quadratic(strategy, batch=3)
    assert len(xs) == 12 and strategy.finished
    again = make_strategy(spec)
    plans = again.ask(3)
    assert [p.params["x"] for p in plans] == xs[:3]
    for plan in plans:
        params = plan.params
        assert -2.0 <= params["x"] <= 2.0 and params["n"] in (1, 2, 3, 4)
        assert params["act"] in ("relu", "tanh") and params["shape"] in ([1, 2], [3, 4])
        assert 1e-4 <= params["lr"] <= 1.0


def test_the_median_pruner_stops_trials_through_report() -> None:
    options = "n = 8\nseed = 0\npruner = 'median'\npruner_startup_trials = 2\nstartup_trials = 8"
    strategy = make_strategy(optuna_spec(options))
    curves = {}
    while not strategy.finished:
        for plan in strategy.ask(1):
            x = plan.params["x"]
            final = (x - 0.3) ** 2
            for step in range(1, 6):
                loss = final + 1.0 / step
                if not strategy.report(plan.trial_id, step, {"loss": loss}):
                    curves[plan.trial_id] = step
                    strategy.tell(plan.trial_id, None, state="stopped")
                    break
            else:
                strategy.tell(plan.trial_id, {"loss": final})
    assert curves, "some trial is worse than the median at some step"
    for trial_id, step in curves.items():
        reason = strategy.stop_reason(trial_id)
        assert reason is not None
        assert reason.startswith(f"pruned by optuna's median pruner at step {step} (loss ")
    assert strategy.stop_reason("t0000") is None  # the first trials set the median
    assert strategy.report("t0000", 9, {"loss": 0.0}) is False  # finished: stop
    best = strategy.best()
    assert best is not None and best[0] not in curves


def test_a_repeated_step_and_a_report_without_a_score_are_ignored() -> None:
    strategy = make_strategy(optuna_spec("n = 2\npruner = 'median'\npruner_startup_trials = 0"))
    (plan,) = strategy.ask(1)
    assert strategy.report(plan.trial_id, 1, {"loss": 1.0}) is True
    assert strategy.report(plan.trial_id, 1, {"loss": 2.0}) is True  # no optuna warning
    assert strategy.report(plan.trial_id, 2, {"accuracy": 2.0}) is True
    strategy.tell(plan.trial_id, None, state="cancelled")


def test_a_missing_optuna_or_cmaes_is_a_clear_import_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    if importlib.util.find_spec("cmaes") is None:
        with pytest.raises(ImportError, match="pip install cmaes"):
            make_strategy(optuna_spec("n = 2\nsampler = 'cmaes'"))
    else:
        make_strategy(optuna_spec("n = 2\nsampler = 'cmaes'")).ask(1)
    monkeypatch.setitem(sys.modules, "optuna", None)
    with pytest.raises(ImportError, match=r"pip install 'mabeam\[ml\]'"):
        make_strategy(optuna_spec("n = 2"))
