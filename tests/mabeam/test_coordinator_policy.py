"""Scheduling policies and the scheduler's job book, without sockets or actors."""

from __future__ import annotations

import pytest

from mabeam.cluster._coord_config import CoordinatorConfig
from mabeam.cluster._coord_policy import (
    POLICIES,
    FifoPolicy,
    NodeCapacity,
    PriorityPolicy,
    ReadyJob,
    make_policy,
)
from mabeam.cluster._coord_queue import JobBook
from mabeam.cluster.keys import KeyPair


def job(seq: int, priority: int = 0, gpus: int = 0, cpus: float = 1.0, mem: int = 0) -> ReadyJob:
    return ReadyJob(f"j-x-{seq}", seq, priority, gpus, cpus, mem)


def node(
    name: str, credit: int, gpus: int = 0, cpus: float = 64.0, mem: int = 1 << 20
) -> NodeCapacity:
    return NodeCapacity(name, credit=credit, gpus=gpus, cpus=cpus, memory_mb=mem)


def ids(pairs: list[tuple[ReadyJob, NodeCapacity]]) -> list[tuple[int, str]]:
    return [(j.seq, n.node_id) for j, n in pairs]


def test_fifo_goes_in_submission_order_and_spreads_over_nodes() -> None:
    policy = FifoPolicy()
    for seq in (3, 1, 2, 4):
        policy.add(job(seq))
    a, b = node("a", 2), node("b", 1)
    assert ids(policy.assign([a, b])) == [(1, "a"), (2, "b"), (3, "a")]
    assert (a.credit, b.credit, len(policy)) == (0, 0, 1)


def test_priority_goes_highest_first_then_in_submission_order() -> None:
    policy = PriorityPolicy()
    for seq, prio in ((1, 0), (2, 5), (3, 9), (4, 5)):
        policy.add(job(seq, prio))
    assert [j.seq for j, _ in policy.assign([node("a", 10)])] == [3, 2, 4, 1]


def test_a_job_no_node_fits_never_blocks_the_ones_behind_it() -> None:
    policy = FifoPolicy()
    policy.add(job(1, gpus=4))
    policy.add(job(2, gpus=1))
    policy.add(job(3, mem=500))
    small = node("small", 5, gpus=1, cpus=2, mem=400)
    assert ids(policy.assign([small])) == [(2, "small")]
    assert (small.gpus, small.cpus, small.credit) == (0, 1.0, 4)
    big = node("big", 5, gpus=4, mem=1000)
    assert ids(policy.assign([big])) == [(1, "big"), (3, "big")]


def test_removed_and_requeued_jobs() -> None:
    policy = FifoPolicy()
    for seq in (1, 2, 3):
        policy.add(job(seq))
    assert policy.remove("j-x-2") is not None and policy.remove("j-x-2") is None
    assert "j-x-1" in policy and "j-x-2" not in policy
    policy.add(job(2))  # back again (requeued)
    assert [j.seq for j, _ in policy.assign([node("a", 9)])] == [1, 2, 3]


def test_capacity_gives_back_what_it_took() -> None:
    cap = node("a", 1, gpus=2, cpus=4, mem=100)
    j = job(1, gpus=2, cpus=1.5, mem=100)
    assert cap.fits(j.shape)
    cap.take(j)
    assert not cap.fits(job(2, gpus=0, cpus=0.5).shape)  # no credit left
    cap.give_back(j, credit=True)
    assert (cap.credit, cap.gpus, cap.cpus, cap.memory_mb) == (1, 2, 4.0, 100)


def test_the_policy_table_is_what_the_config_and_cli_accept() -> None:
    assert sorted(POLICIES) == ["auction", "fifo", "priority"]
    assert make_policy("priority").name == "priority"
    with pytest.raises(ValueError, match="fifo"):
        make_policy("lottery")
    with pytest.raises(ValueError, match="policy must be one of auction, fifo, priority"):
        CoordinatorConfig(policy="lottery")


def test_config_refuses_bad_values_with_the_field_named() -> None:
    for kw, field in [
        ({"bind": "http://x:1"}, "bind"),
        ({"bind": "tcp://h:70000"}, "bind"),
        ({"heartbeat_s": 0}, "heartbeat_s"),
        ({"liveness": 0}, "liveness"),
        ({"retry_backoff_s": 2.0, "retry_backoff_cap_s": 1.0}, "retry_backoff_cap_s"),
        ({"synchronous": "OFF"}, "synchronous"),
        ({"max_tracked_peers": 0}, "max_tracked_peers"),
        ({"handshake_s": 0}, "handshake_s"),
        ({"handshake_s": 1e9}, "handshake_s"),
        ({"connection_idle_s": float("nan")}, "connection_idle_s"),
        ({"max_watches_per_client": 0}, "max_watches_per_client"),
    ]:
        with pytest.raises(ValueError, match=field):
            CoordinatorConfig(**kw)  # type: ignore[arg-type]
    keys = {
        "key": KeyPair.generate("coordinator", "c"),
        "allow_keys": [KeyPair.generate("node", "n")],
    }
    cfg = CoordinatorConfig(bind="tcp://*:0", heartbeat_s=0.5, liveness=4, **keys)
    assert (cfg.peer_timeout_s, cfg.lease_timeout_s) == (2.0, 2.0)


def test_the_job_book_defers_backing_off_jobs_on_one_timer() -> None:
    now = [100.0]
    armed: list[float] = []
    book = JobBook(FifoPolicy(), armed.append, clock=lambda: now[0])
    book.queue(job(1), not_before=105.0)
    book.queue(job(2), not_before=103.0)
    book.queue(job(3))
    assert armed == [5.0, 3.0] and len(book.policy) == 1 and book.deferred == 2
    now[0] = 103.5
    book.wake()
    assert "j-x-2" in book.policy and armed[-1] == pytest.approx(1.5)
    book.forget("j-x-1")  # cancelled while backing off
    now[0] = 106.0
    book.wake()
    assert "j-x-1" not in book.policy and book.deferred == 0
    follower = job(9)
    book.follow(follower, leader="j-x-3")
    assert book.leader_cancelled("j-x-3", "j-x-9") == []
    assert "j-x-9" in book.policy
