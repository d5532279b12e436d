"""The auction policy without sockets or actors: who wins a freed GPU, what they pay,
what the lease's escrow holds, and how budgets and reserves bound the bids."""

from __future__ import annotations

import pytest

from mabeam.cluster._coord_market import AuctionPolicy, valuation
from mabeam.cluster._coord_policy import NodeCapacity, ReadyJob, make_policy
from mabeam.economics import MICRO, Reputation


def gjob(
    seq: int, team: str, value: float | None = None, gpus: int = 1, priority: int = 0,
    timeout_s: float | None = 3600.0,
) -> ReadyJob:  # fmt: skip
    return ReadyJob(f"j-x-{seq}", seq, priority, gpus, 1.0, 0, team, value, timeout_s)


def gnode(name: str, gpus: int, credit: int | None = None) -> NodeCapacity:
    credit = gpus if credit is None else credit
    return NodeCapacity(name, credit=credit, gpus=gpus, cpus=64.0, memory_mb=1 << 20)


def market(**balances: float) -> AuctionPolicy:
    policy = AuctionPolicy(clock=lambda: 0.0)
    for team, credits in balances.items():
        policy.set_balance(team, int(credits * MICRO))
    return policy


def test_the_highest_value_wins_and_pays_the_second_price() -> None:
    policy = market(a=100, b=100)
    policy.add(gjob(1, "b", value=3.0))
    policy.add(gjob(2, "a", value=5.0))
    policy.list_node("n1", "owner-1", 0.0)
    node = gnode("n1", 1)
    picks = policy.assign([node])
    assert [j.job_id for j, _ in picks] == ["j-x-2"]
    terms = policy.terms("j-x-2")
    assert terms is not None and (terms.team, terms.payee) == ("a", "owner-1")
    assert terms.rate == 3 * MICRO  # Vickrey: the second bid
    assert terms.hold == 3 * MICRO  # one hour (the job's timeout) at that rate
    assert policy.balances["a"] == 97 * MICRO  # the pick's hold, before the store says
    assert (node.credit, node.gpus, len(policy)) == (0, 0, 1)
    assert policy.rounds[-1].bidders == 2


def test_the_reserve_is_the_floor_and_a_bid_under_it_loses() -> None:
    policy = market(a=100, b=100)
    policy.add(gjob(1, "a", value=5.0))
    policy.add(gjob(2, "b", value=3.0))
    policy.list_node("n1", "o", 4.0)
    picks = policy.assign([gnode("n1", 1)])
    terms = policy.terms("j-x-1")
    assert [j.seq for j, _ in picks] == [1] and terms is not None and terms.rate == 4 * MICRO
    policy.list_node("n1", "o", 6.0)  # b's 3 is under any reserve of 6: no sale
    assert policy.assign([gnode("n1", 1)]) == [] and len(policy) == 1


def test_bundles_clear_by_vcg_on_one_node() -> None:
    policy = market(a=1000, b=1000, c=1000)
    policy.add(gjob(1, "a", value=10.0, gpus=4))  # 40 for the whole node
    policy.add(gjob(2, "b", value=12.0, gpus=2))  # 24
    policy.add(gjob(3, "c", value=11.0, gpus=2))  # 22: with b, 46 > 40
    node = gnode("n1", 4)
    picks = policy.assign([node])
    assert sorted(j.seq for j, _ in picks) == [2, 3]
    # Each pays its externality: without b, a's 40 beats c's 22 alone -> 40 - 22 = 18.
    b, c = policy.terms("j-x-2"), policy.terms("j-x-3")
    assert b is not None and c is not None
    assert (b.rate, c.rate) == (18 * MICRO, 16 * MICRO)


def test_a_team_never_bids_more_than_it_can_hold() -> None:
    policy = market(rich=1000, poor=2)
    policy.add(gjob(1, "poor", value=50.0))  # states 50/h but has 2 for a 1 h hold
    policy.add(gjob(2, "rich", value=10.0))
    picks = policy.assign([gnode("n1", 1)])
    assert [j.seq for j, _ in picks] == [2]
    terms = policy.terms("j-x-2")
    assert terms is not None and terms.rate == 2 * MICRO  # poor's capped bid


def test_the_default_valuation_spreads_the_budget_and_weighs_priority() -> None:
    job = gjob(1, "t", priority=0)
    spread = valuation(job, available=100 * MICRO, demand_hours=50.0, reputation=1.0,
                       hold_s=3600.0)  # fmt: skip
    assert spread == 2 * MICRO  # 100 credits over 50 GPU-hours
    urgent = valuation(gjob(2, "t", priority=10), available=100 * MICRO, demand_hours=50.0,
                       reputation=1.0, hold_s=3600.0)  # fmt: skip
    assert urgent == 4 * MICRO
    shaky = valuation(job, available=100 * MICRO, demand_hours=50.0, reputation=0.5,
                      hold_s=3600.0)  # fmt: skip
    assert shaky == MICRO
    assert valuation(gjob(3, ""), available=10**9, demand_hours=1.0, reputation=1.0,
                     hold_s=3600.0) == 0  # fmt: skip


def test_reputation_lowers_bids_on_a_node_that_fails() -> None:
    rep = Reputation(half_life_s=3600.0)
    for _ in range(8):
        rep.record("flaky", False, 0.0)
    policy = AuctionPolicy(reputation=rep, clock=lambda: 0.0)
    policy.set_balance("a", 100 * MICRO)
    policy.add(gjob(1, "a", value=8.0))
    policy.list_node("flaky", "o", 2.0)
    assert policy.assign([gnode("flaky", 1)]) == []  # worth < 2/h there
    picks = policy.assign([gnode("steady", 1)])
    assert [j.seq for j, _ in picks] == [1]


def test_credit_caps_the_winners_and_the_losers_wait_in_order() -> None:
    policy = market(a=100, b=100)
    for seq in range(1, 5):
        policy.add(gjob(seq, "a" if seq % 2 else "b", value=float(seq)))
    picks = policy.assign([gnode("n1", 4, credit=2)])
    assert sorted(j.seq for j, _ in picks) == [3, 4]
    assert len(policy) == 2 and "j-x-1" in policy and "j-x-2" in policy
    picks = policy.assign([gnode("n1", 4, credit=4)])
    assert sorted(j.seq for j, _ in picks) == [1, 2]


def test_jobs_without_gpus_run_by_priority_and_free() -> None:
    policy = market()
    policy.add(ReadyJob("j-x-1", 1, 0))
    policy.add(ReadyJob("j-x-2", 2, 5))
    cpu = NodeCapacity("c", credit=1, cpus=8.0, memory_mb=1 << 20)
    picks = policy.assign([cpu])
    assert [j.seq for j, _ in picks] == [2] and policy.terms("j-x-2") is None
    assert policy.remove("j-x-1") is not None and len(policy) == 0


def test_a_removed_job_leaves_its_team_demand() -> None:
    policy = market(a=100)
    policy.add(gjob(1, "a"))
    policy.add(gjob(2, "a"))
    assert policy.remove("j-x-1") is not None
    policy.add(gjob(2, "a"))  # again: replaces, not doubles
    assert policy._demand["a"] == pytest.approx(1.0)


def test_auction_is_a_policy_name() -> None:
    assert make_policy("auction").name == "auction"
