"""The chaos suite: real processes, seeded faults, a TCP proxy, a history checker.

A coordinator, three node agents (behind ``proxy.ChaosProxy``) and a submitter run a
sweep while a seeded ``FaultSchedule`` kills, freezes and restarts processes and
cuts, holds, drops, duplicates and delays their traffic, and the task itself crashes
for a seeded subset of attempts; ``history.chaos_problems`` then holds the store
against the submitter's view (chaos_run.py has the whole story).

The default run has two short seeded runs: plain TCP (the proxy sees whole mabeam
messages, so it drops and duplicates them too) and CurveZMQ (cuts, partitions, drops
and delays). ``--run-slow`` adds the long run (``MABEAM_CHAOS_JOBS``, default 2,000 jobs;
``MABEAM_CHAOS_SEEDS``, a number of seeds or a comma-separated list; about one fault
per 25 jobs, every kind). ``MABEAM_CHAOS_SEED=S`` runs seed ``S`` in place of the
defaults: a failure prints the exact command.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from chaos_run import ChaosConfig, ChaosReport, run_chaos

pytestmark = pytest.mark.chaos

LONG_JOBS = int(os.environ.get("MABEAM_CHAOS_JOBS", "2000"))


def seeds(default: list[int]) -> list[int]:
    """``MABEAM_CHAOS_SEED`` if set, else ``MABEAM_CHAOS_SEEDS`` (a count from the first
    default, or a list), else ``default``."""
    one = os.environ.get("MABEAM_CHAOS_SEED")
    if one:
        return [int(one)]
    many = os.environ.get("MABEAM_CHAOS_SEEDS")
    if many and "," in many:
        return [int(s) for s in many.split(",") if s.strip()]
    if many:
        return [default[0] + i for i in range(int(many))]
    return default


def check(report: ChaosReport) -> None:
    print(report.summary())
    print(report.details())
    config = report.config
    assert not report.problems  # run_chaos raised with the details already
    assert sum(report.injected.values()) + sum(report.skipped.values()) == config.faults
    assert sum(report.injected.values()) >= config.faults // 2, report.summary()


@pytest.mark.parametrize(("mode", "seed"), [("insecure", 1), ("curve", 2)])
def test_a_short_seeded_chaos_run_loses_nothing_and_runs_each_job_once(
    tmp_path: Path, request: pytest.FixtureRequest, mode: str, seed: int
) -> None:
    for s in seeds([seed]):
        config = ChaosConfig(
            seed=s,
            jobs=60,
            faults=8,
            secure=mode == "curve",
            replay=f"pytest '{request.node.nodeid}'",
        )
        check(run_chaos(tmp_path / f"seed-{s}", config))


@pytest.mark.slow
@pytest.mark.timeout(600 + LONG_JOBS * len(seeds([100])) // 2)
@pytest.mark.parametrize("mode", ["insecure", "curve"])
def test_a_long_chaos_run_loses_nothing_and_runs_each_job_once(
    tmp_path: Path, request: pytest.FixtureRequest, mode: str
) -> None:
    for s in seeds([100 if mode == "insecure" else 200]):
        config = ChaosConfig(
            seed=s,
            jobs=LONG_JOBS,
            faults=max(LONG_JOBS // 25, 8),
            secure=mode == "curve",
            chunk=100,
            drain_s=90.0,
            replay=f"pytest --run-slow '{request.node.nodeid}'",
        )
        check(run_chaos(tmp_path / f"seed-{s}", config))
