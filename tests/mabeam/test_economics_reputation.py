"""Node reputation: a decayed, smoothed success rate on the clock values given."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mabeam.economics import Reputation


def test_a_node_never_seen_scores_the_prior() -> None:
    assert Reputation().score("n1", 0.0) == 1.0
    assert Reputation(prior_successes=1.0, prior_trials=2.0).score("n1", 5.0) == 0.5
    assert Reputation().snapshot(0.0) == {}


def test_the_weight_of_an_outcome_halves_every_half_life() -> None:
    rep = Reputation(half_life_s=10.0)  # prior 1 of 1
    rep.record("n1", False, now=0.0)
    assert rep.score("n1", 0.0) == pytest.approx(1 / 2)  # (0 + 1) / (1 + 1)
    assert rep.score("n1", 10.0) == pytest.approx(1 / 1.5)  # the failure weighs 0.5
    assert rep.score("n1", 20.0) == pytest.approx(1 / 1.25)  # ... then 0.25
    rep.record("n1", True, now=10.0)
    ((node, successes, trials, updated),) = rep.rows()
    assert (node, updated) == ("n1", 10.0)
    assert (successes, trials) == pytest.approx((1.0, 1.5))
    assert rep.score("n1", 1e6) == pytest.approx(1.0)  # long quiet: back to the prior


def test_a_node_that_fails_ranks_below_one_that_succeeds() -> None:
    rep = Reputation(half_life_s=60.0, prior_successes=1.0, prior_trials=2.0)
    for t in range(5):
        rep.record("good", True, now=float(t))
        rep.record("flaky", t % 2 == 1, now=float(t))  # 2 of 5
        rep.record("bad", False, now=float(t))
    scores = rep.snapshot(5.0)
    assert scores["good"] > rep.score("fresh", 5.0) > scores["flaky"] > scores["bad"]
    assert list(scores) == ["bad", "flaky", "good"]


def test_recent_outcomes_count_more_than_old_ones() -> None:
    early, late = Reputation(half_life_s=10.0), Reputation(half_life_s=10.0)
    early.record("n", False, 0.0)
    early.record("n", True, 30.0)
    late.record("n", True, 0.0)
    late.record("n", False, 30.0)
    assert early.score("n", 30.0) > late.score("n", 30.0)


def test_a_clock_that_goes_back_does_not_inflate_the_weight() -> None:
    rep = Reputation(half_life_s=10.0)
    rep.record("n", False, 100.0)
    assert rep.score("n", 50.0) == rep.score("n", 100.0)
    rep.record("n", True, 90.0)
    assert rep.rows() == [("n", 1.0, 2.0, 100.0)]


def test_rows_round_trip_and_bad_rows_are_named() -> None:
    rep = Reputation(half_life_s=30.0)
    rep.record("a", True, 1.0)
    rep.record("b", False, 2.0)
    again = Reputation.from_rows(rep.rows(), half_life_s=30.0)
    assert again.snapshot(40.0) == rep.snapshot(40.0)
    for bad in (
        [("a", 2.0, 1.0, 0.0)],
        [("a", -1.0, 1.0, 0.0)],
        [("a", 0.0, math.nan, 0.0)],
        [("a", 0.0, 1.0, 0.0), ("a", 0.0, 1.0, 0.0)],
        [("a", 1.0)],
        [("", 0.0, 1.0, 0.0)],
    ):
        with pytest.raises(ValueError, match=r"row|node"):
            Reputation.from_rows(bad)  # type: ignore[arg-type]


def test_bad_arguments_are_refused() -> None:
    for kwargs in (
        {"half_life_s": 0.0},
        {"half_life_s": math.inf},
        {"prior_trials": 0.0},
        {"prior_successes": 2.0, "prior_trials": 1.0},
        {"prior_successes": -1.0},
    ):
        with pytest.raises(ValueError):
            Reputation(**kwargs)
    rep = Reputation()
    with pytest.raises(ValueError, match="ok must be a bool"):
        rep.record("n", 1, 0.0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="finite clock value"):
        rep.record("n", True, math.nan)
    with pytest.raises(ValueError, match="a node is a str"):
        rep.score(None, 0.0)  # type: ignore[arg-type]


@given(
    st.lists(st.tuples(st.sampled_from("abc"), st.booleans(), st.floats(0, 1e6)), max_size=30),
    st.floats(0, 2e6),
)
def test_scores_stay_in_zero_to_one(events: list[tuple[str, bool, float]], now: float) -> None:
    rep = Reputation(half_life_s=100.0, prior_successes=0.5, prior_trials=1.0)
    for node, ok, t in events:
        rep.record(node, ok, t)
    assert all(0.0 <= s <= 1.0 for s in rep.snapshot(now).values())
