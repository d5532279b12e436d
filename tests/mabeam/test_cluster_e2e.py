"""End to end: a coordinator and node agents as real processes run sweeps to the end.

Each test starts ``mabeam coordinator start`` and ``mabeam node start`` subprocesses on
127.0.0.1 (``cluster_harness``), submits through the real client or CLI, waits on the
store (inotify on its WAL, never a sleep), and proves with the history checker that
every job ended exactly once with the documented state and a clear message.
"""

from __future__ import annotations

import random
import re
import signal
from pathlib import Path
from typing import Any

import pytest
from cluster_harness import (
    StoreView,
    check_history,
    client_call,
    ep,
    mabeam_cli,
    running_cluster,
    submit,
)

from mabeam.cluster import protocol
from mabeam.cluster.client import JobFailed


def square_specs(n: int, start: int = 0, **spec: Any) -> list[protocol.JobSpec]:
    """``n`` jobs of task_entrypoints:square in the node's reusable pool workers."""
    spec.setdefault("isolation", "pool")
    return [protocol.JobSpec(ep("square"), {"x": x}, **spec) for x in range(start, start + n)]


def check_squares(view: Any, job_ids: tuple[str, ...], first: int = 0) -> None:
    """Each job succeeded once with the square of its own ``x``."""
    for offset, job_id in enumerate(job_ids):
        job = view.jobs[job_id]
        assert job.state == "succeeded", (job_id, job.state, job.error)
        assert job.params["x"] == first + offset
        assert job.result["x"] == first + offset and job.result["y"] == (first + offset) ** 2


def test_three_nodes_run_a_200_trial_sweep_each_trial_once(tmp_path: Path) -> None:
    with running_cluster(tmp_path) as cluster:
        cluster.start_coordinator()
        for node_id, prefetch in (("n1", 0), ("n2", 4), ("n3", 8)):  # 4, 8: pipelined
            cluster.start_node(node_id, slots=2, options=["--prefetch", str(prefetch)])
        job_ids = submit(cluster.endpoint, square_specs(200), key="sweep-200")
        assert len(job_ids) == 200 and len(set(job_ids)) == 200
        cluster.wait_terminal(job_ids, timeout=50)
        view = check_history(cluster.state)
        check_squares(view, job_ids)
        assert view.by_state() == {"succeeded": 200}
        assert all(job.attempt == 1 and job.failures == 0 for job in view.jobs.values())
        used = {job.succeeded_on() for job in view.jobs.values()}
        assert used == {"n1", "n2", "n3"}
        # The same key again: the same jobs, nothing new to run.
        assert submit(cluster.endpoint, square_specs(200), key="sweep-200") == job_ids
        assert len(check_history(cluster.state).jobs) == 200
        for node in cluster.nodes.values():
            assert node.terminate() == 0, node.tail()
        assert cluster.coordinator is not None and cluster.coordinator.terminate() == 0


def test_failures_end_in_their_documented_states_with_clear_messages(tmp_path: Path) -> None:
    with running_cluster(tmp_path) as cluster:
        cluster.start_coordinator()
        limits = ["--task-disk-mb", "2"]
        cluster.start_node("n1", slots=4, options=["--allow", "task_entrypoints:*", *limits])
        hog = {"mb": 200, "hold": True}
        specs = {
            "timeout": protocol.JobSpec(ep("block"), {}, timeout_s=0.5, max_retries=0),
            "exception": protocol.JobSpec(ep("fail"), {"lr": -1}, max_retries=1),
            "crash": protocol.JobSpec(ep("exit_hard"), {"code": 7}, max_retries=0),
            "refused": protocol.JobSpec("json:dumps", {}, max_retries=3),
            "not_found": protocol.JobSpec(ep("no_such_function"), {}, max_retries=3),
            "memory": protocol.JobSpec(
                ep("hog"), hog, resources=protocol.Resources(memory_mb=100), max_retries=3
            ),
            "disk": protocol.JobSpec(ep("write_mb"), {"mb": 3}, max_retries=3),
        }
        ids = dict(zip(specs, submit(cluster.endpoint, list(specs.values())), strict=True))
        view = cluster.wait_terminal(ids.values(), timeout=40)
        check_history(cluster.state)
        jobs = {name: view.jobs[job_id] for name, job_id in ids.items()}
        assert {name: job.state for name, job in jobs.items()} == dict.fromkeys(specs, "failed")
        # Retries as documented: one retry for max_retries=1, none for the permanent kinds.
        assert (jobs["exception"].attempt, jobs["exception"].failures) == (2, 2)
        assert "ValueError: bad learning rate -1" in (jobs["exception"].error or "")
        assert jobs["exception"].kinds().count("retry") == 1
        for name in ("timeout", "crash", "refused", "not_found", "memory", "disk"):
            assert (jobs[name].attempt, jobs[name].failures) == (1, 1), name
        assert re.search(r"time(d )?out|timeout", jobs["timeout"].error or "", re.I)
        assert "0.5" in (jobs["timeout"].error or "")
        assert re.search(r"exit|crash|died", jobs["crash"].error or "", re.I)
        assert "7" in (jobs["crash"].error or "")
        assert "json:dumps" in (jobs["refused"].error or "")
        assert re.search(r"allow", jobs["refused"].error or "", re.I)
        assert "no_such_function" in (jobs["not_found"].error or "")
        assert "over its memory limit of 100 MiB (resources.memory_mb)" in (
            jobs["memory"].error or ""
        )
        assert "over the node's limit of 2 MiB for task outputs (--task-disk-mb)" in (
            jobs["disk"].error or ""
        )

        async def failed_results(client: Any) -> list[JobFailed]:
            failures = []
            for name in ("exception", "memory"):
                with pytest.raises(JobFailed) as info:
                    await client.result(ids[name], timeout=10)
                failures.append(info.value)
            return failures

        failure, memory = client_call(cluster.endpoint, failed_results)
        assert failure.state == "failed" and "bad learning rate -1" in str(failure)
        assert memory.state == "failed" and "over its memory limit" in str(memory)


def test_cancel_from_the_cli_stops_a_running_job(tmp_path: Path) -> None:
    with running_cluster(tmp_path) as cluster:
        cluster.start_coordinator()
        cluster.start_node("n1", slots=2)
        running, queued = submit(cluster.endpoint, [cluster.gate(1), cluster.gate(2)])
        cluster.wait_waiting([running])  # slots 2: both run; cancel one, keep the other
        result = mabeam_cli("cancel", running, "--coordinator", cluster.endpoint)
        assert result.returncode == 0, result.stdout + result.stderr
        assert re.fullmatch(rf"{running}: (running|leased|cancelled)", result.stdout.strip())
        view = cluster.wait_terminal([running])
        assert view.jobs[running].state == "cancelled"
        again = mabeam_cli("cancel", running, "--coordinator", cluster.endpoint)
        assert again.stdout.strip() == f"{running}: cancelled"
        cluster.wait_waiting([queued])
        assert cluster.release(queued, 1)
        view = cluster.wait_terminal([queued])
        assert view.jobs[queued].result == {"x": 2, "attempt": 1, "gate": "released"}
        check_history(cluster.state)
        unknown = mabeam_cli("cancel", "j-0000-1", "--coordinator", cluster.endpoint)
        assert unknown.returncode == 1 and "j-0000-1" in unknown.stderr
        assert len(unknown.stderr.strip().splitlines()) == 1


def test_a_bad_spec_file_is_one_line_and_exit_1(tmp_path: Path) -> None:
    spec = tmp_path / "bad.toml"
    spec.write_text('name = "bad"\nentrypoint = "not an entrypoint"\n')
    result = mabeam_cli("submit", str(spec), "--coordinator", "tcp://127.0.0.1:9")
    assert result.returncode == 1, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("mabeam: error: "), result.stderr
    assert "bad.toml" in lines[0] and "entrypoint" in lines[0]
    assert "Traceback" not in result.stdout + result.stderr


@pytest.mark.slow
@pytest.mark.timeout(150)
def test_a_2000_trial_sweep_survives_node_kills_and_a_coordinator_restart(
    tmp_path: Path,
) -> None:
    rng = random.Random(2024)
    with running_cluster(tmp_path) as cluster:
        cluster.start_coordinator()
        prefetch = ["--prefetch", "4"]  # attempts queued in pipes die with their node too
        for node_id in ("n1", "n2", "n3"):
            cluster.start_node(node_id, slots=2, options=prefetch)
        job_ids = submit(cluster.endpoint, square_specs(2000), key="soak")
        done = 0
        for round_ in range(4):
            done += 300

            def progressed(view: StoreView, target: int = done) -> bool:
                return view.by_state()["succeeded"] >= target

            cluster.wait_store(progressed, 60, f"{done} jobs done")
            if round_ == 2:
                assert cluster.coordinator is not None
                cluster.kill(cluster.coordinator)
                cluster.start_coordinator()
                for node in cluster.nodes.values():
                    node.wait_reconnected()
            else:
                victim = cluster.nodes[rng.choice(sorted(cluster.nodes))]
                cluster.kill(victim)
                cluster.start_node(victim.node_id, slots=2, options=prefetch)
        view = cluster.wait_terminal(job_ids, timeout=100)
        check_history(cluster.state)
        check_squares(view, job_ids)
        for node in cluster.nodes.values():
            node.signal(signal.SIGTERM)
