"""Evolution: generations of mutated survivors, never the same genome twice, and a
better best than random search for the same number of trials on per-layer learning
rates of the noisy quadratic model."""

from __future__ import annotations

import statistics

from strategy_driver import NoisyQuadratic, drive

from mabeam.ml import SweepSpec, make_strategy, parse_spec
from mabeam.ml._search import canonical_bytes

HEADER = 'name = "t"\nentrypoint = "pkg.mod:fn"\nmetric = "loss"\nmode = "min"\n'
LAYER_RATES = "[search.space]\n" + "".join(
    f'lr{i} = {{ distribution = "loguniform", low = 1e-3, high = 3 }}\n' for i in range(4)
)


def evolution_spec(*, seed: int = 0, extra: str = "", space: str = LAYER_RATES) -> SweepSpec:
    return parse_spec(
        HEADER + f"[search]\nstrategy = 'evolution'\n[search.evolution]\nseed = {seed}\n"
        f"{extra}" + space
    )


def test_generations_select_the_best_so_far_and_mutate_them() -> None:
    extra = "population = 4\ngenerations = 3\nselection = 'truncation'\ntruncation = 0.5\n"
    strategy = make_strategy(evolution_spec(extra=extra))
    first = strategy.ask(10)
    assert len(first) == 4 and strategy.ask(10) == []  # the generation must be told first
    losses = {"t0000": 4.0, "t0001": 1.0, "t0002": 3.0, "t0003": 2.0}
    for trial_id in ("t0003", "t0001", "t0000"):
        strategy.tell(trial_id, {"loss": losses[trial_id]})
    assert strategy.ask(10) == []
    strategy.tell("t0002", {"loss": losses["t0002"]})
    second = strategy.ask(10)
    assert len(second) == 4 and all(p.generation == 1 for p in second)
    # truncation 0.5 of the four survivors: parents among the best two, t0001 and t0003
    assert {p.parent for p in second} <= {"t0001", "t0003"}
    genomes = {p.trial_id: p.params for p in first}
    for plan in second:
        assert plan.reason.startswith(f"mutation of {plan.parent}: ")
        assert plan.params != genomes[plan.parent]
    # mu + lambda: a child beats a parent only by scoring better
    for plan, loss in zip(second, (0.5, 5.0, 5.0, 5.0), strict=True):
        strategy.tell(plan.trial_id, {"loss": loss})
    third = strategy.ask(10)
    assert {p.parent for p in third} <= {second[0].trial_id, "t0001"}
    for plan in third:
        strategy.tell(plan.trial_id, {"loss": 9.0})
    assert strategy.finished and strategy.ask(1) == []
    assert strategy.best() == (second[0].trial_id, 0.5)


def test_a_genome_is_never_planned_twice_and_a_small_space_ends_early() -> None:
    space = "[search.space]\na = [1, 2]\nb = [1, 2, 3]\n"  # six genomes in all
    extra = "population = 4\ngenerations = 5\nresample_probability = 0.5\n"
    spec = evolution_spec(extra=extra, space=space)
    strategy = make_strategy(spec)
    plans = []
    while not strategy.finished:
        batch = strategy.ask(3)
        plans += batch
        for plan in batch:
            strategy.tell(plan.trial_id, {"loss": plan.params["a"] * 10 + plan.params["b"]})
    keys = [canonical_bytes({"a": p.params["a"], "b": p.params["b"]}) for p in plans]
    assert len(keys) == len(set(keys)) == 6 < spec.num_trials
    assert strategy.finished


def test_a_generation_without_scores_starts_again_from_fresh_draws() -> None:
    strategy = make_strategy(evolution_spec(extra="population = 3\ngenerations = 2\n"))
    for plan in strategy.ask(3):
        strategy.tell(plan.trial_id, None, state="failed")
    second = strategy.ask(3)
    assert [p.reason for p in second] == ["fresh draw (no scored parent)"] * 3
    assert all(p.parent is None and p.generation == 1 for p in second)


def test_mutations_stay_in_the_space() -> None:
    space = (
        '[search.space]\nx = { distribution = "uniform", low = -1.0, high = 1.0 }\n'
        'n = { distribution = "int", low = 0, high = 2 }\nact = ["relu", "tanh"]\n'
    )
    extra = "population = 6\ngenerations = 6\nmutation_scale = 1.0\nresample_probability = 0.3\n"
    strategy = make_strategy(evolution_spec(extra=extra, space=space))
    plans = []
    while not strategy.finished:
        batch = strategy.ask(100)
        plans += batch
        for plan in batch:
            strategy.tell(plan.trial_id, {"loss": plan.params["x"] ** 2})
    assert all(-1.0 <= p.params["x"] < 1.0 and p.params["n"] in (0, 1, 2) for p in plans)
    assert all(p.params["act"] in ("relu", "tanh") for p in plans)
    assert any("act resampled" in p.reason for p in plans)


def _ratio(seed: int) -> float:
    """Random search's best loss over evolution's, 40 trials each."""
    task = NoisyQuadratic(steps=40)
    extra = "population = 8\ngenerations = 5\nselection = 'truncation'\nmutation_scale = 0.2\n"
    evolution = make_strategy(evolution_spec(seed=seed, extra=extra))
    assert len(drive(evolution, task, workers=8, seed=seed).plans) == 40
    random = make_strategy(
        parse_spec(HEADER + f"[search]\nstrategy = 'random'\nn = 40\nseed = {seed}\n" + LAYER_RATES)
    )
    drive(random, task, workers=8, seed=seed)
    ours, theirs = evolution.best(), random.best()
    assert ours and theirs
    return theirs[1] / ours[1]


def test_evolution_beats_random_search_with_the_same_number_of_trials() -> None:
    # docs/search.md gives these numbers (and the same over 20 seeds)
    ratios = [_ratio(seed) for seed in range(10)]
    assert statistics.mean(ratios) > 1.5, ratios
    assert sum(r > 1.0 for r in ratios) >= 7, ratios
    assert min(ratios) > 0.8, ratios  # its first generation is random search's first draws
