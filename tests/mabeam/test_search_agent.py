"""The SearchAgent against a real local cluster: it submits what its strategy plans,
feeds progress and results back, cancels what the strategy stops, hands checkpoints on,
and answers ``wait`` with the outcome."""

from __future__ import annotations

import itertools
from pathlib import Path

import anyio
import pytest
from search_cluster import local_cluster

from foundation import current_runtime
from foundation.testing import until
from mabeam.agents import start_agent
from mabeam.ml import SlotAllocator, SlotAward, load_run, parse_spec
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
        allocator = await start_agent(SlotAllocator, "slots", client=client)
        refs = [
            await start_agent(
                SearchAgent, s.name, s, client, allocator=allocator, run_dir=tmp_path / s.name
            )
            for s in specs
        ]
        with anyio.fail_after(50):
            outcomes = [await ref.call("wait", timeout=None) for ref in refs]
        # The last award ends just after its trial: the allocator hears it last.
        await until(lambda: len(awards) == 9, on=SLOT_EVENT, timeout=10)
        assert await allocator.call("awards") == awards
        for ref in [*refs, allocator]:
            await ref.stop()
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
        allocator = await start_agent(SlotAllocator, "slots", client=client, stop_vote=(2, 0.5))
        refs = [
            await start_agent(
                SearchAgent, s.name, s, client, allocator=allocator, run_dir=tmp_path / s.name
            )
            for s in specs
        ]
        with anyio.fail_after(50):
            outcomes = [await ref.call("wait", timeout=None) for ref in refs]
        for ref in [*refs, allocator]:
            await ref.stop()
    good, also, bad = outcomes
    assert good.counts == {"succeeded": 6} and also.counts == {"succeeded": 6}
    assert sum(bad.counts.values()) < 6  # it stopped before planning every trial
    notes = load_run(tmp_path / "bad").notes
    assert [n["kind"] for n in notes] == ["stop_vote"]
    assert notes[0]["accepted"] is True
    assert "2 yes, 1 no" in notes[0]["reason"]
    stopped = [t for t in bad.trials if t.state == "stopped"]
    assert all(t.stop_reason == notes[0]["reason"] for t in stopped)
