"""What every search strategy promises its driver: the same seed and the same calls give
the same plans; unknown ids, double tells and bad states are errors; failed trials and
results in any order are taken in stride; ask(0) plans nothing."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from strategy_driver import NoisyQuadratic, drive

from mabeam.ml import Strategy, SweepSpec, TrialPlan, make_strategy, parse_spec

HEADER = 'name = "t"\nentrypoint = "pkg.mod:fn"\nmetric = "loss"\nmode = "min"\n'
SPACE = """
[search.space]
lr = { distribution = "loguniform", low = 1e-3, high = 1.5 }
half_life = { distribution = "loguniform", low = 1, high = 1000 }
"""
SEARCHES = {
    "grid": '[search]\nstrategy = "grid"\n[search.grid]\nlr = [0.01, 0.1, 1.0]\n'
    "half_life = [5, 50]\n",
    "random": '[search]\nstrategy = "random"\nn = 10\nseed = 3\n' + SPACE,
    "pbt": "[search]\nstrategy = 'pbt'\n[search.pbt]\npopulation = 4\ninterval = 3\n"
    "max_steps = 10\nseed = 3\n" + SPACE,
    "evolution": "[search]\nstrategy = 'evolution'\n[search.evolution]\npopulation = 4\n"
    "generations = 3\nseed = 3\n" + SPACE,
    "asha": "[search]\nstrategy = 'asha'\n[search.asha]\nn = 12\nmax_steps = 10\neta = 2\n"
    "seed = 3\n" + SPACE,
    "optuna": "[search]\nstrategy = 'optuna'\n[search.optuna]\nn = 8\nseed = 3\n"
    "startup_trials = 3\npruner = 'median'\npruner_startup_trials = 2\n" + SPACE,
}
TASK = NoisyQuadratic(steps=10)


def spec_for(name: str) -> SweepSpec:
    return parse_spec(HEADER + "[params]\nepochs = 10\n" + SEARCHES[name], f"{name}.toml")


def plans_of(name: str, *, seed: int = 0, fail_every: int = 0) -> list[TrialPlan]:
    fail = (
        (lambda plan: int(plan.trial_id[1:]) % fail_every == fail_every - 1)
        if fail_every
        else (lambda plan: False)
    )
    return drive(make_strategy(spec_for(name)), TASK, workers=3, seed=seed, fail=fail).plans


@pytest.mark.parametrize("name", list(SEARCHES))
def test_the_same_seed_and_the_same_tells_give_the_same_plans(name: str) -> None:
    first = plans_of(name, seed=1)
    assert first == plans_of(name, seed=1)
    assert [p.trial_id for p in first] == [f"t{i:04d}" for i in range(len(first))]
    assert all(p.params["epochs"] == 10 for p in first)
    if name == "pbt":  # results steer it: another order of results, other plans
        assert first != plans_of(name, seed=2)
    if name == "evolution":  # a generation is judged once all of it is told
        assert first == plans_of(name, seed=2)


@pytest.mark.parametrize("name", list(SEARCHES))
def test_unknown_ids_double_tells_and_bad_states_are_errors(name: str) -> None:
    strategy = make_strategy(spec_for(name))
    assert strategy.name == name
    assert strategy.ask(0) == []
    with pytest.raises(ValueError, match="limit"):
        strategy.ask(-1)
    (plan,) = strategy.ask(1)
    for call in (
        lambda: strategy.tell("t9999", {"loss": 1.0}),
        lambda: strategy.report("nope", 1, {"loss": 1.0}),
        lambda: strategy.stop_reason("t9999"),
    ):
        with pytest.raises(ValueError, match="unknown trial id"):
            call()
    with pytest.raises(ValueError, match="state must be one of"):
        strategy.tell(plan.trial_id, None, state="exploded")
    strategy.tell(plan.trial_id, {"loss": 0.5})
    with pytest.raises(ValueError, match="already told"):
        strategy.tell(plan.trial_id, {"loss": 0.5})
    assert strategy.report(plan.trial_id, 5, {"loss": 0.1}) is False  # a late progress frame
    assert strategy.best() == (plan.trial_id, 0.5)


@pytest.mark.parametrize("name", list(SEARCHES))
def test_failed_trials_and_results_without_a_score_are_tolerated(name: str) -> None:
    strategy = make_strategy(spec_for(name))
    out = drive(strategy, TASK, workers=3, fail=lambda plan: plan.trial_id in ("t0000", "t0002"))
    assert strategy.finished and len(out.plans) >= 3
    best = strategy.best()
    assert best is not None and best[0] not in ("t0000", "t0002")
    # no score: a missing metric, a bool, nan and a string all count as none
    strategy = make_strategy(spec_for(name))
    plans = strategy.ask(4)
    for plan, result in zip(
        plans, ({}, {"loss": True}, {"loss": float("nan")}, {"loss": "1"}), strict=True
    ):
        strategy.tell(plan.trial_id, result)
    assert strategy.best() is None


@pytest.mark.parametrize("name", list(SEARCHES))
def test_every_strategy_plans_nothing_once_finished_and_counts_its_jobs(name: str) -> None:
    spec = spec_for(name)
    strategy = make_strategy(spec)
    out = drive(strategy, TASK, workers=2)
    assert strategy.finished and strategy.ask(5) == []
    if name == "evolution":
        assert len(out.plans) <= spec.num_trials
    else:
        assert len(out.plans) == spec.num_trials


@pytest.mark.parametrize("name", ["grid", "random"])
def test_grid_and_random_plan_exactly_the_spec_trials_in_order(name: str) -> None:
    spec = spec_for(name)
    strategy = make_strategy(spec)
    plans = strategy.ask(4) + strategy.ask(100)
    assert [p.params for p in plans] == [t.params for t in spec.trials()]
    assert all(p.reason == "initial" and p.parent is None for p in plans)
    assert not strategy.finished
    scores = {p.trial_id: p.params["lr"] * p.params["half_life"] for p in plans}
    for plan in reversed(plans):
        assert strategy.report(plan.trial_id, 1, {"loss": 1.0}) is True
        strategy.tell(plan.trial_id, {"loss": scores[plan.trial_id]})
    best = min(scores, key=scores.__getitem__)
    assert strategy.finished and strategy.best() == (best, scores[best])


@pytest.mark.parametrize("name", ["pbt", "evolution", "asha", "optuna"])
def test_adaptive_searches_need_a_metric_and_have_no_fixed_trial_list(name: str) -> None:
    spec = spec_for(name)
    with pytest.raises(ValueError, match=r"drive it with mabeam\.ml\.make_strategy"):
        spec.trials()
    with pytest.raises(ValueError, match="needs the spec's metric"):
        make_strategy(dataclasses.replace(spec, metric=None))


def _play(strategy: Strategy, picks: list[int], fails: list[bool]) -> list[TrialPlan]:
    """Drive with results told in the order ``picks`` chooses, scoring by a fixed rule."""
    running: list[TrialPlan] = []
    plans: list[TrialPlan] = []
    turn = 0
    while not strategy.finished:
        new = strategy.ask(max(0, 3 - len(running) + turn % 2))
        plans.extend(new)
        running.extend(new)
        assert running, "not finished but planned nothing"
        plan = running.pop(picks[turn % len(picks)] % len(running))
        result: dict[str, Any] | None = {"loss": float(plan.params["lr"]) * (1 + turn % 3)}
        state = "succeeded"
        if fails[turn % len(fails)]:
            result, state = None, "failed"
        if strategy.report(plan.trial_id, 1, {"loss": 1.0 / (1 + turn)}) is False:
            result, state = None, "stopped"
        strategy.tell(plan.trial_id, result, state=state)
        turn += 1
    return plans


@pytest.mark.parametrize("name", ["pbt", "evolution", "asha", "random"])
@settings(max_examples=25, deadline=None)
@given(
    picks=st.lists(st.integers(0, 10), min_size=1, max_size=12),
    fails=st.lists(st.booleans(), min_size=1, max_size=6),
)
def test_any_tell_order_runs_to_the_end_with_unique_ids(
    name: str, picks: list[int], fails: list[bool]
) -> None:
    spec = spec_for(name)
    strategy = make_strategy(spec)
    plans = _play(strategy, picks, fails)
    ids = [p.trial_id for p in plans]
    assert len(set(ids)) == len(ids) <= spec.num_trials
    if name != "evolution":
        assert len(ids) == spec.num_trials
    known = set(ids)
    assert all(p.parent is None or p.parent in known for p in plans)
    assert all(p.checkpoint_from is None or p.checkpoint_from in known for p in plans)
    assert plans == _play(make_strategy(spec), picks, fails)
