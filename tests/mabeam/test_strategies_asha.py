"""ASHA: the rung rule on a hand-worked table of scores, jumps over rungs, reports
without a score, and stop reasons."""

from __future__ import annotations

import pytest
from strategy_driver import NoisyQuadratic, drive

from mabeam.ml import SweepSpec, make_strategy, parse_spec
from mabeam.ml._asha import rungs

HEADER = 'name = "t"\nentrypoint = "pkg.mod:fn"\nmetric = "loss"\n'
LR = '[search.space]\nlr = { distribution = "loguniform", low = 1e-3, high = 1.5 }\n'


def asha_spec(
    *, n: int = 6, mode: str = "min", min_steps: int = 1, max_steps: int = 9, eta: int = 3
) -> SweepSpec:
    return parse_spec(
        HEADER + f'mode = "{mode}"\n[search]\nstrategy = "asha"\n[search.asha]\nn = {n}\n'
        f"min_steps = {min_steps}\nmax_steps = {max_steps}\neta = {eta}\n" + LR
    )


def test_rungs_are_min_steps_times_powers_of_eta_below_max_steps() -> None:
    assert rungs(1, 27, 3) == [1, 3, 9]
    assert rungs(1, 28, 3) == [1, 3, 9, 27]
    assert rungs(2, 20, 2) == [2, 4, 8, 16]
    assert rungs(5, 6, 4) == [5]
    assert make_strategy(asha_spec()).rungs == [1, 3]


# (trial, step, loss, goes on?) in arrival order; rungs at 1 and 3 steps, eta = 3. At a
# rung with n scores recorded (this one included) a trial goes on iff its rank, 1 + the
# number of earlier scores strictly better, is <= ceil(n / 3).
TABLE = [
    ("t0000", 1, 0.5, True),  # n=1, keep 1: rank 1
    ("t0001", 1, 0.7, False),  # n=2, keep 1: rank 2 (0.5 is better)
    ("t0002", 1, 0.3, True),  # n=3, keep 1: rank 1
    ("t0003", 1, 0.4, True),  # n=4, keep 2: rank 2 (0.3)
    ("t0004", 1, 0.4, True),  # n=5, keep 2: rank 2 (0.3; the tie with t0003 goes its way)
    ("t0005", 1, 0.6, False),  # n=6, keep 2: rank 5 (0.5, 0.3, 0.4, 0.4)
    ("t0002", 2, 0.25, True),  # between rungs: no judgement
    ("t0002", 3, 0.2, True),  # rung 3, n=1, keep 1: rank 1
    ("t0000", 3, 0.45, False),  # n=2, keep 1: rank 2
    ("t0003", 3, 0.1, True),  # n=3, keep 1: rank 1
    ("t0004", 3, 0.25, False),  # n=4, keep 2: rank 3 (0.2, 0.1)
    ("t0003", 8, 0.05, True),  # past the last rung: never judged again
]


@pytest.mark.parametrize("mode", ["min", "max"])
def test_the_rung_rule_stops_exactly_the_trials_it_says(mode: str) -> None:
    sign = 1.0 if mode == "min" else -1.0  # the same ranking either way
    strategy = make_strategy(asha_spec(mode=mode))
    plans = strategy.ask(6)
    assert [p.steps for p in plans] == [9] * 6
    for trial_id, step, loss, goes_on in TABLE:
        assert strategy.report(trial_id, step, {"loss": sign * loss}) is goes_on, (trial_id, step)
    stopped = {p.trial_id for p in plans if strategy.stop_reason(p.trial_id) is not None}
    assert stopped == {"t0001", "t0005", "t0000", "t0004"}
    assert strategy.report("t0001", 2, {"loss": 0.0}) is False  # stays stopped
    assert strategy.stop_reason("t0004") == (
        f"stopped at rung 1 (3 steps): loss {sign * 0.25:g} ranks 3 of 4 there; only the top "
        "1/3 (2) go on"
    )
    assert strategy.stop_reason("t0002") is None


def test_a_report_past_several_rungs_is_judged_at_the_highest_only() -> None:
    strategy = make_strategy(asha_spec(n=3, max_steps=27))  # rungs 1, 3, 9
    strategy.ask(3)
    assert strategy.report("t0000", 1, {"loss": 0.1}) is True
    assert strategy.report("t0001", 1, {"loss": 0.2}) is False
    # t0002 first reports at step 4: judged at rung 3 alone (where it is first), not at 1
    assert strategy.report("t0002", 4, {"loss": 0.9}) is True
    assert strategy.report("t0000", 9, {"other": 1.0}) is True  # no score: nothing judged
    assert strategy.report("t0000", 10, {"loss": 0.05}) is True  # rung 9 (skipping 3)
    assert strategy.report("t0002", 9, {"loss": 0.5}) is False  # rung 9: rank 2 of 2
    assert str(strategy.stop_reason("t0002")).startswith("stopped at rung 2 (9 steps)")


def test_asha_runs_n_trials_from_random_search_draws_and_stops_the_laggards() -> None:
    spec = asha_spec(n=27, max_steps=27, eta=3)
    strategy = make_strategy(spec)
    out = drive(strategy, NoisyQuadratic(steps=27), workers=4)
    random = parse_spec(HEADER + "[search]\nstrategy = 'random'\nn = 27\nseed = 0\n" + LR)
    assert [p.params for p in out.plans] == [t.params for t in random.trials()]
    assert 0 < len(out.stopped) < 27
    assert out.total_steps < 27 * 27 * 0.6  # successive halving saves most of the steps
    assert all(reason.startswith("stopped at rung") for reason in out.stopped.values())
    best = strategy.best()
    assert best is not None and best[0] not in out.stopped


def test_a_stopped_trial_that_still_finished_counts_for_best() -> None:
    strategy = make_strategy(asha_spec(n=2))
    strategy.ask(2)
    assert strategy.report("t0000", 1, {"loss": 0.1}) is True
    assert strategy.report("t0001", 1, {"loss": 0.2}) is False
    strategy.tell("t0001", {"loss": 0.01})  # its result raced the cancel
    strategy.tell("t0000", None, state="failed")
    assert strategy.best() == ("t0001", 0.01) and strategy.finished
