"""Faults with real processes: a node SIGKILLed mid-task, the coordinator SIGKILLed
mid-sweep, ACKs held back while a node dies with results in its outbox.

Tasks that must stay running are ``gate`` tasks (task_entrypoints.py): they block on a
FIFO per attempt until the test writes to it. Every test ends with the history checker:
whatever path recovery took, each job finished exactly once.
"""

from __future__ import annotations

import signal
import sqlite3
from pathlib import Path

from cluster_harness import (
    check_history,
    ep,
    running_cluster,
    submit,
    wait_until,
)

from mabeam.cluster import protocol
from mabeam.cluster._node_outbox import Outbox, OutboxEntry


def outbox_rows(path: Path) -> int:
    """Un-ACKed results in a node's outbox file (read-only; 0 when there is none)."""
    if not path.exists():
        return 0
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10.0)
    try:
        rows: int = conn.execute("SELECT count(*) FROM results").fetchone()[0]
    finally:
        conn.close()
    return rows


def test_a_killed_nodes_jobs_finish_elsewhere_and_its_late_result_is_stale(
    tmp_path: Path,
) -> None:
    with running_cluster(tmp_path) as cluster:
        cluster.start_coordinator()
        n1 = cluster.start_node("n1", slots=2)
        job_ids = submit(cluster.endpoint, [cluster.gate(1), cluster.gate(2)])
        view = cluster.wait_waiting(job_ids, node="n1")
        old_leases = {job_id: str(view.jobs[job_id].token) for job_id in job_ids}
        assert all(view.jobs[job_id].token for job_id in job_ids)
        cluster.start_node("n2", slots=2)
        cluster.kill(n1)
        # n1 is lost within 3 heartbeats: the attempts count as failed and rerun on n2
        # (attempt 2 of a gate with block=[1] runs through).
        view = cluster.wait_terminal(job_ids)
        check_history(cluster.state)
        for job_id in job_ids:
            job = view.jobs[job_id]
            assert job.state == "succeeded" and job.succeeded_on() == "n2"
            assert (job.attempt, job.failures) == (2, 1)
            assert job.result["attempt"] == 2 and job.result["gate"] == "open"
        # As if n1 had finished the first job just before it died: its RESULT under the
        # old lease waits in n1's outbox (the real outbox class writes it).
        late = job_ids[0]
        forged = protocol.Result(late, old_leases[late], 1, True, {"x": -1}, duration_s=0.5)
        outbox = Outbox(n1.work_dir)
        try:
            outbox.write([OutboxEntry(late, old_leases[late], 1, protocol.encode(forged))])
        finally:
            outbox.close()
        assert outbox_rows(n1.outbox) == 1
        coord = cluster.coordinator
        assert coord is not None
        stale_before = coord.count(r"stale RESULT from node n1 refused")
        n1 = cluster.start_node("n1", slots=2)  # same work dir: HELLO lists, then resends
        coord.wait_line(r"stale RESULT from node n1 refused", 20, stderr=True)
        assert coord.count(r"stale RESULT from node n1 refused") > stale_before
        # SIGTERM drains: BYE once nothing is un-ACKed, and the ACKed rows leave the file.
        assert n1.terminate() == 0
        assert outbox_rows(n1.outbox) == 0
        view = check_history(cluster.state)
        job = view.jobs[late]
        assert job.state == "succeeded" and job.kinds().count("succeeded") == 1
        assert job.succeeded_on() == "n2" and job.result["x"] == 1  # not the forged -1


def test_a_coordinator_killed_mid_sweep_restarts_and_loses_nothing(tmp_path: Path) -> None:
    # Heartbeats of 0.2 s and retries to spare: on a loaded machine a node may also be
    # declared lost now and then, which costs an attempt, never a job.
    with running_cluster(tmp_path, heartbeat=0.2) as cluster:
        coord = cluster.start_coordinator()
        for node_id in ("n1", "n2", "n3"):
            cluster.start_node(node_id, slots=2)
        gates = submit(cluster.endpoint, [cluster.gate(x, max_retries=20) for x in range(6)])
        cluster.wait_waiting(gates)  # all six slots busy
        quick = submit(
            cluster.endpoint,
            [
                protocol.JobSpec(ep("square"), {"x": x}, isolation="pool", max_retries=20)
                for x in range(40)
            ],
        )
        cluster.kill(coord)
        # Finish the gates while no coordinator runs: their results wait in the outboxes
        # (or the nodes fence them first and the restarted coordinator requeues them).
        for job_id in gates:
            cluster.release(job_id, 1)
        restarted = cluster.start_coordinator()
        for node_id, node in cluster.nodes.items():  # every node came back: HELLO again
            restarted.wait_line(rf"node {node_id} said HELLO", 30, stderr=True)
            node.wait_line(rf"mabeam node {node_id} reconnected to ", 30)
        view = cluster.wait_terminal(gates + quick, timeout=45)
        check_history(cluster.state)
        assert len(view.jobs) == 46 and view.by_state() == {"succeeded": 46}
        for x, job_id in enumerate(gates):
            assert view.jobs[job_id].result["x"] == x
        for x, job_id in enumerate(quick):
            assert view.jobs[job_id].result["y"] == x * x
        # A node that noticed the loss printed "reconnected"; one whose socket zmq
        # reconnected before it noticed re-HELLOs on the coordinator's hello_first.
        for node in cluster.nodes.values():
            assert node.alive, node.tail()


def test_results_held_in_a_dead_nodes_outbox_are_delivered_once(tmp_path: Path) -> None:
    # Heartbeats of 0.5 s: the node stays greeted while the test stops the coordinator.
    with running_cluster(tmp_path, heartbeat=0.5) as cluster:
        coord = cluster.start_coordinator()
        n1 = cluster.start_node("n1", slots=2)
        gates = submit(cluster.endpoint, [cluster.gate(x) for x in range(2)])
        cluster.wait_waiting(gates, node="n1")
        coord.signal(signal.SIGSTOP)  # no ACK can come now
        try:
            for job_id in gates:
                assert cluster.release(job_id, 1)
            wait_until(lambda: outbox_rows(n1.outbox) == 2, [n1.work_dir], 20, "2 results")
            cluster.kill(n1)
        finally:
            coord.signal(signal.SIGCONT)
        assert outbox_rows(n1.outbox) == 2
        n1 = cluster.start_node("n1", slots=2, heartbeat=0.5)  # the outbox goes out again
        view = cluster.wait_terminal(gates, timeout=30)
        assert n1.terminate() == 0  # drained: every result ACKed, the rows gone from the file
        assert outbox_rows(n1.outbox) == 0
        check_history(cluster.state)
        for x, job_id in enumerate(gates):
            job = view.jobs[job_id]
            assert job.state == "succeeded" and job.kinds().count("succeeded") == 1
            assert job.result["x"] == x
            # Either the held result counted (attempt 1) or the coordinator had requeued
            # the lost node's attempt first and attempt 2 ran; never both.
            assert job.result["attempt"] == job.attempt
