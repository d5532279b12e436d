"""The processes of one chaos run: coordinator, proxy, node agents, submitter.

``ChaosCluster`` reuses tests/mabeam/cluster_harness.py (``Proc``, ``Coordinator``,
``Keys``): every process is ``python -m mabeam ...`` (or the submitter script) with its
output in files. The node agents connect to the coordinator through the ``ChaosProxy``
(one listening port per node, so a fault can target one node) and run from tests/chaos,
so their workers import ``chaos_tasks``. ``secure=False`` runs coordinator, nodes and
submitter with ``--insecure`` on 127.0.0.1 (the proxy then sees NULL-mechanism frames
and can drop or duplicate single mabeam messages); ``secure=True`` uses CurveZMQ keys.

Starting a node does not wait for it to connect (a node restarted during a partition
connects only once it heals); ``wait_connected`` does, where a test needs it.
"""

from __future__ import annotations

import os
import re
import signal
from pathlib import Path
from typing import Any

from cluster_harness import ROOT, Coordinator, Keys, Proc, StoreView, read_store, stop_everything
from proxy import ChaosProxy

CHAOS_DIR = Path(__file__).resolve().parent


class ChaosNode(Proc):
    """``mabeam node start`` run from tests/chaos, connected through the proxy."""

    def __init__(self, node_id: str, args: list[str], work_dir: Path) -> None:
        super().__init__(f"node {node_id}", args, CHAOS_DIR, work_dir.parent / "logs")
        self.node_id = node_id
        self.work_dir = work_dir
        self.stopped = False

    def wait_connected(self, timeout: float = 30.0) -> None:
        self.wait_line(rf"^mabeam node {re.escape(self.node_id)} (re)?connected to ", timeout)


class ChaosCluster:
    """The processes of one run and their cleanup (see the module docstring)."""

    def __init__(self, tmp: Path, *, secure: bool, heartbeat: float, seed: int) -> None:
        self.tmp = tmp
        self.secure = secure
        self.heartbeat = heartbeat
        self.seed = seed
        self.keys = Keys(tmp / "keys") if secure else None
        env = dict(self.keys.client_env) if self.keys is not None else {}
        # Every child imports the mabeam of this tree, whatever the venv's install says.
        env["PYTHONPATH"] = os.pathsep.join(
            [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]
        )
        self._saved_env = {name: os.environ.get(name) for name in env}
        os.environ.update(env)
        self.state = tmp / "coordinator" / "state.db"
        self.state.parent.mkdir(parents=True)
        self.coordinator: Coordinator | None = None
        self.coordinators: list[Coordinator] = []
        self.proxy: ChaosProxy | None = None
        self.nodes: dict[str, ChaosNode] = {}
        self.endpoints: dict[str, str] = {}
        self._all: list[Proc] = []
        self._workers: set[int] = set()

    def __enter__(self) -> ChaosCluster:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def _security(self, node_id: str | None = None) -> list[str]:
        if self.keys is None:
            return ["--insecure"]
        return self.keys.node_args(node_id) if node_id else self.keys.coordinator_args()

    # -- processes ----------------------------------------------------------------------

    def start_coordinator(self) -> Coordinator:
        """Start (or restart, on the same state file and port) the coordinator."""
        previous = self.coordinator
        bind = previous.endpoint if previous is not None else "tcp://127.0.0.1:0"
        coord = Coordinator(
            f"coordinator#{len(self.coordinators) + 1}",
            self.state,
            bind,
            self.heartbeat,
            "info",
            self._security(),
        )
        self._all.append(coord)
        self.coordinators.append(coord)
        self.coordinator = coord
        if self.proxy is None:
            port = int(coord.endpoint.rsplit(":", 1)[1])
            self.proxy = ChaosProxy(port, seed=self.seed)
        return coord

    def start_node(self, node_id: str, *, slots: int = 2) -> ChaosNode:
        """Start (or restart, on the same work dir) node ``node_id`` behind the proxy."""
        assert self.proxy is not None, "start the coordinator first"
        if node_id not in self.endpoints:
            self.endpoints[node_id] = self.proxy.listen(node_id)
        work_dir = self.tmp / "nodes" / node_id
        args = ["node", "start", "--coordinator", self.endpoints[node_id], "--node-id", node_id]
        args += ["--work-dir", str(work_dir), "--gpus", "none", "--slots", str(slots)]
        args += ["--heartbeat", str(self.heartbeat), "--drain-timeout", "2"]
        args += self._security(node_id)
        node = ChaosNode(node_id, args, work_dir)
        self._all.append(node)
        self.nodes[node_id] = node
        return node

    def start_submitter(self, args: list[str], out: Path) -> Proc:
        """The submitter script (submitter.py), connected through the proxy (listener
        ``submitter``), with its view going to ``out``."""
        assert self.proxy is not None
        self.endpoints["submitter"] = endpoint = self.proxy.listen("submitter")
        args = ["--endpoint", endpoint, "--out", str(out), *args]
        if self.keys is None:
            args.append("--insecure")
        proc = Proc(
            "submitter", args, ROOT, self.tmp / "logs", program=[str(CHAOS_DIR / "submitter.py")]
        )
        self._all.append(proc)
        return proc

    def kill(self, proc: Proc) -> None:
        """SIGKILL ``proc`` (stopped or not); its workers are remembered for the cleanup."""
        self._workers.update(p.pid for p in proc.descendants())
        proc.kill()

    def stop(self, node: ChaosNode) -> None:
        node.signal(signal.SIGSTOP)
        node.stopped = True

    def cont(self, node: ChaosNode) -> None:
        node.signal(signal.SIGCONT)
        node.stopped = False

    def close(self) -> None:
        """Kill every process of the run, the workers they left, and the proxy."""
        stop_everything(self._all, self._workers, self._saved_env)
        if self.proxy is not None:
            self.proxy.close()

    # -- what the store and the logs say ------------------------------------------------

    def read(self) -> StoreView:
        """The state file now (a read-only snapshot)."""
        return read_store(self.state)

    def count(self, pattern: str, procs: list[Proc] | None = None) -> int:
        """Lines matching ``pattern`` in the stderr of ``procs`` (default: all)."""
        return sum(proc.count(pattern) for proc in (procs if procs is not None else self._all))

    def logs(self) -> str:
        """Every process's output tail, for a failure message."""
        return "\n".join(proc.tail(25) for proc in self._all)
