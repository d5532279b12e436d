"""The SearchAgent against a real local cluster: it submits what its strategy plans,
feeds progress and results back, cancels what the strategy stops, hands checkpoints on,
and answers ``wait`` with the outcome."""

from __future__ import annotations

import itertools
import os
from pathlib import Path

import anyio
import pytest
from search_cluster import local_cluster

from foundation import ActorRef, current_runtime
from foundation.testing import until
from mabeam.agents import start_agent
from mabeam.ml import SlotAllocator, SlotAward, TrialState, load_run, parse_spec
from mabeam.ml._allocator import SLOT_EVENT
from mabeam.ml._search_agent import SearchAgent, SearchOutcome

pytestmark = pytest.mark.anyio

GRID = """
name = "curve-grid"
entrypoint = "search_tasks:curve"
metric = "score"
isolation = "pool"
[params]
steps = 3
[search]
strategy = "grid"
[search.grid]
x = [0.0, 0.1, 0.2, 0.3, 0.5, 0.9]
"""


async def run_agent(spec, client, **kwargs) -> SearchOutcome:
    ref = await start_agent(SearchAgent, "searcher", spec, client, **kwargs)
    with anyio.fail_after(40):
        outcome = await ref.call("wait", timeout=40)
    await ref.stop()
    return outcome


async def test_grid_search_through_the_agent_finds_the_best_trial(tmp_path: Path) -> None:
    spec = parse_spec(GRID)
    seen: list[tuple[str, str]] = []
    async with local_cluster(tmp_path, nodes=1, slots=2) as client:
        outcome = await run_agent(
            spec,
            client,
            max_parallel=2,
            run_dir=tmp_path / "run",
            on_event=lambda t: seen.append((t.plan.trial_id, t.state)),
        )
    assert outcome.counts == {"succeeded": 6}
    assert outcome.best == "t0003"  # x = 0.3
    assert outcome.best_score == pytest.approx(1.0 * (1 - 0.5**3))
    by_id = {t.plan.trial_id: t for t in outcome.trials}
    assert by_id["t0000"].result["score"] == pytest.approx((1 - 0.09) * (1 - 0.5**3))
    assert by_id["t0005"].job_id and by_id["t0005"].node_id == "n0"
    assert ("t0005", "succeeded") in seen
    run = load_run(tmp_path / "run")
    assert run.finished and run.best == "t0003" and run.strategy == "grid"
    assert [t.trial_id for t in run.leaderboard()][:2] == ["t0003", "t0002"]
    assert run.trials["t0001"].params == {"steps": 3, "x": 0.1}
    assert all(t.state == "succeeded" for t in run.trials.values())


def curve_spec(name: str, xs: list[float], intervals: Path, priority: int = 0) -> str:
    return f"""
name = "{name}"
entrypoint = "search_tasks:curve"
metric = "score"
isolation = "pool"
priority = {priority}
[params]
steps = 2
intervals = "{intervals}"
[search]
strategy = "grid"
[search.grid]
x = {xs!r}
"""


async def run_shared(
    specs: list, client, tmp_path: Path, on_done=None, **allocator_options
) -> list[SearchOutcome]:
    """One search agent per spec behind one SlotAllocator, to the end; ``on_done``
    (given the allocator) runs before the agents stop."""
    allocator = await start_agent(SlotAllocator, "slots", client=client, **allocator_options)
    refs = [
        await start_agent(
            SearchAgent, s.name, s, client, allocator=allocator, run_dir=tmp_path / s.name
        )
        for s in specs
    ]
    with anyio.fail_after(50):
        outcomes = [await ref.call("wait", timeout=None) for ref in refs]
    if on_done is not None:
        await on_done(allocator)
    for ref in [*refs, allocator]:
        await ref.stop()
    return outcomes


def max_overlap(spans: list[tuple[float, float]]) -> int:
    points = sorted([(a, 1) for a, _ in spans] + [(b, -1) for _, b in spans])
    level = peak = 0
    for _, step in points:
        level += step
        peak = max(peak, level)
    return peak


async def test_two_sweeps_share_three_nodes_by_contract_net(tmp_path: Path) -> None:
    import json

    intervals = tmp_path / "intervals.jsonl"
    specs = [
        parse_spec(curve_spec("a", [0.0, 0.1, 0.2, 0.3, 0.4], intervals)),
        parse_spec(curve_spec("b", [0.5, 0.6, 0.7, 0.8], intervals)),
    ]
    awards: list[SlotAward] = []
    async with local_cluster(tmp_path, nodes=3, slots=1) as client:
        current_runtime().telemetry.attach(
            SLOT_EVENT, lambda ev, m, meta: awards.append(SlotAward(**meta))
        )

        async def all_awards_in(allocator: ActorRef) -> None:
            # The last award ends just after its trial: the allocator hears it last.
            await until(lambda: len(awards) == 9, on=SLOT_EVENT, timeout=10)
            assert await allocator.call("awards") == awards

        outcomes = await run_shared(specs, client, tmp_path, all_awards_in)
    assert [o.counts for o in outcomes] == [{"succeeded": 5}, {"succeeded": 4}]
    assert outcomes[0].best == "t0003"
    # Every trial ran on a slot awarded to its agent; no slot held two trials at once.
    assert sorted((a.agent, a.trial) for a in awards) == sorted(
        [("a", f"t{i:04d}") for i in range(5)] + [("b", f"t{i:04d}") for i in range(4)]
    )
    for slot in range(3):
        spans = sorted((a.start, a.end) for a in awards if a.slot == slot)
        assert all(end <= nxt for (_, end), (nxt, _) in itertools.pairwise(spans))
    # The tasks themselves: never two at once on a node with one slot.
    node_of = {t.job_id: t.node_id for o in outcomes for t in o.trials}
    lines = [json.loads(line) for line in intervals.read_text().splitlines()]
    assert len(lines) == 9
    for node in ("n0", "n1", "n2"):
        spans = [(b, e) for job, b, e in lines if node_of[job] == node]
        assert max_overlap(spans) <= 1


async def test_a_trailing_sweep_is_stopped_by_vote(tmp_path: Path) -> None:
    intervals = tmp_path / "intervals.jsonl"
    specs = [
        parse_spec(curve_spec("good", [0.3, 0.25, 0.35, 0.2, 0.4, 0.33], intervals)),
        parse_spec(curve_spec("also-good", [0.28, 0.32, 0.3, 0.31, 0.29, 0.27], intervals)),
        parse_spec(curve_spec("bad", [3.0, 3.5, 4.0, 4.5, 5.0, 5.5], intervals)),
    ]
    async with local_cluster(tmp_path, nodes=2, slots=1) as client:
        outcomes = await run_shared(specs, client, tmp_path, stop_vote=(2, 0.5))
    good, also, bad = outcomes
    assert good.counts == {"succeeded": 6} and also.counts == {"succeeded": 6}
    assert sum(bad.counts.values()) < 6  # it stopped before planning every trial
    notes = load_run(tmp_path / "bad").notes
    assert [n["kind"] for n in notes] == ["stop_vote"]
    assert notes[0]["accepted"] is True
    assert "2 yes, 0 no, of 2 voters" in notes[0]["reason"]  # the candidate is not asked
    stopped = [t for t in bad.trials if t.state == "stopped"]
    assert all(t.stop_reason == notes[0]["reason"] for t in stopped)


ASHA = """
name = "curve-asha"
entrypoint = "search_tasks:curve"
metric = "score"
isolation = "pool"
max_retries = 0
[params]
steps = 4
fifo = "{fifo}"
[search]
strategy = "asha"
[search.asha]
n = 6
min_steps = 1
max_steps = 4
eta = 3
seed = 3
[search.space]
x = {{ distribution = "uniform", low = -1.0, high = 1.0 }}
"""


def asha_reference(scores: list[tuple[str, float]], eta: int) -> set[str]:
    """The trials ASHA stops at its first rung, given the scores in arrival order."""
    stopped, seen = set(), []
    for trial, score in scores:
        rank = 1 + sum(1 for other in seen if other > score)
        seen.append(score)
        if rank > -(-len(seen) // eta):
            stopped.add(trial)
    return stopped


async def test_asha_stops_trials_through_cancel_as_its_rule_says(tmp_path: Path) -> None:
    fifo = tmp_path / "release"
    os.mkfifo(fifo)
    spec = parse_spec(ASHA.format(fifo=fifo))
    first: list[tuple[str, float]] = []
    ended: set[str] = set()
    all_in, stops_landed = anyio.Event(), anyio.Event()
    expected: set[str] = set()

    def on_event(trial: TrialState) -> None:
        tid = trial.plan.trial_id
        if trial.step == 1 and tid not in dict(first):
            first.append((tid, trial.score))
            if len(first) == 6:
                expected.update(asha_reference(first, eta=3))
                all_in.set()
        if trial.terminal:
            ended.add(tid)
        if all_in.is_set() and expected <= ended:
            stops_landed.set()

    async with local_cluster(tmp_path, nodes=3, slots=2) as client:
        ref = await start_agent(
            SearchAgent, "asha", spec, client, max_parallel=6, on_event=on_event
        )
        with anyio.fail_after(40):
            await all_in.wait()  # every trial reported step 1 and waits on the FIFO
            await stops_landed.wait()  # the stopped ones ended (cancelled while held)
            writer = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
            try:
                outcome = await ref.call("wait", timeout=None)
            finally:
                os.close(writer)
        await ref.stop()
        ids = [t.job_id for t in outcome.trials]
        jobs = {j.job_id: j.state for j in (await client.status(ids)).jobs}
    at_rung_0 = {
        t.plan.trial_id for t in outcome.trials if t.stop_reason and "rung 0" in t.stop_reason
    }
    # Whatever order the first reports came in (with eta 3, all six are kept only if
    # each came in the top third so far: under 1 % of orders), the rule decided.
    assert at_rung_0 == expected
    for trial in outcome.trials:
        if trial.plan.trial_id in expected:
            # Stopped while held at the FIFO: the job was cancelled, never finished.
            assert trial.state == "stopped" and jobs[trial.job_id] == "cancelled"
    assert outcome.best is not None and outcome.best not in expected


PBT = """
name = "curve-pbt"
entrypoint = "search_tasks:curve"
metric = "score"
isolation = "pool"
[search]
strategy = "pbt"
[search.pbt]
population = 4
interval = 2
max_steps = 6
seed = 1
[search.space]
x = { distribution = "uniform", low = -1.0, high = 1.0 }
"""


async def test_pbt_segments_hand_their_checkpoints_on(tmp_path: Path) -> None:
    spec = parse_spec(PBT)
    async with local_cluster(tmp_path, nodes=3, slots=1) as client:
        outcome = await run_agent(spec, client, run_dir=tmp_path / "run")
    trials = {t.plan.trial_id: t for t in outcome.trials}
    assert len(trials) == 4 * 3 and outcome.counts == {"succeeded": 12}
    record = load_run(tmp_path / "run")
    for trial in trials.values():
        plan = trial.plan
        checkpoint = record.trials[plan.trial_id].params.get("checkpoint")
        if plan.checkpoint_from is None:
            assert checkpoint is None and trial.result["step"] == 2
        else:
            parent = trials[plan.checkpoint_from]
            # The segment started from its parent's published checkpoint...
            assert checkpoint == parent.result["checkpoint"]
            # ...and carried its step count on (steps join up across segments).
            assert trial.result["step"] == parent.result["step"] + 2
    # Each member trains its own 6 steps (3 segments); a model's age is its chain of
    # checkpoints, checked above segment by segment.
    assert sorted(t.plan.generation for t in trials.values()) == [0] * 4 + [1] * 4 + [2] * 4
    assert any(t.plan.reason.startswith("exploit") for t in trials.values())
    assert record.lineage()  # parent -> child edges with their reasons
