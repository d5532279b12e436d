"""One chaos run: start the cluster, inject the seeded faults while the jobs run, check.

``run_chaos(tmp_path, ChaosConfig(seed=...))`` starts a coordinator, the proxy, the
node agents and the submitter (``ChaosCluster``), then walks the ``FaultSchedule``: a
fault fires once enough jobs have ended (or ``max_gap_s`` passed); the ones that last
(a stopped node, a partition, a node or coordinator down) are undone on a timer. Every
wait is a ``select`` on something real (inotify on the submitter's output, its pidfd),
never a sleep. After the last fault the cluster is healed and must drain the queue on
its own within ``drain_s``. Then:

- every node agent must be connected with its whole credit (the coordinator may send
  it work again: a node whose credit was lost would never run a job again);
- ``history.chaos_problems`` holds the store against the submitter's view.

``ChaosReport.summary()`` is the one-line account; a failure raises ``AssertionError``
with the problems, the seed and the command that replays it, the schedule and the logs.
"""

from __future__ import annotations

import heapq
import itertools
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from chaos_cluster import ChaosCluster
from cluster_harness import DirWatch, client_call, read_store
from history import Problem, SubmitterView, chaos_problems, figures
from schedule import CURVE_KINDS, KINDS, Fault, FaultSchedule


@dataclass(frozen=True)
class ChaosConfig:
    """One run's size and settings; ``replay`` is the command line that runs it again."""

    seed: int
    jobs: int = 60
    faults: int = 8
    nodes: int = 3
    slots: int = 2
    secure: bool = False
    heartbeat: float = 0.2
    crash_rate: float = 0.08
    work: int = 30_000
    chunk: int = 20
    process_every: int = 10
    max_retries: int = 12
    max_gap_s: float = 3.0
    drain_s: float = 40.0
    replay: str = "pytest tests/chaos -m chaos"

    @property
    def kinds(self) -> tuple[str, ...]:
        return CURVE_KINDS if self.secure else KINDS

    @property
    def lease_s(self) -> float:
        """A node silent this long is lost (3 heartbeats)."""
        return 3 * self.heartbeat


@dataclass
class ChaosReport:
    """What a run did and found."""

    config: ChaosConfig
    schedule: FaultSchedule
    injected: Counter[str] = field(default_factory=Counter)
    skipped: Counter[str] = field(default_factory=Counter)
    proxy: Counter[str] = field(default_factory=Counter)
    history: Counter[str] = field(default_factory=Counter)
    stale_refused: int = 0
    coordinator_starts: int = 0
    wall_s: float = 0.0
    problems: list[Problem] = field(default_factory=list)

    def summary(self) -> str:
        c = self.config
        faults = ", ".join(f"{k} {n}" for k, n in sorted(self.injected.items()))
        return (
            f"chaos seed={c.seed} {'curve' if c.secure else 'insecure'}: {c.jobs} jobs,"
            f" {sum(self.injected.values())} faults ({faults});"
            f" worker crashes {self.history['worker crashes']},"
            f" attempts {self.history['attempts']}, stale results refused {self.stale_refused};"
            f" lost {self.count('lost')}, duplicated {self.count('duplicated')},"
            f" stale accepted {self.count('stale')}; {self.wall_s:.1f} s"
            + (f"; {len(self.problems)} PROBLEMS" if self.problems else "")
        )

    def details(self) -> str:
        """The run's figures beyond the summary: what the proxy did, what the store saw."""
        proxy = self.proxy
        dropped = {k.split(" ", 1)[1]: n for k, n in proxy.items() if k.startswith("dropped ")}
        duplicated = {k.split(" ", 1)[1]: n for k, n in proxy.items() if k.startswith("duplicated")}
        lines = [
            f"  coordinator starts {self.coordinator_starts}; skipped faults {dict(self.skipped)}",
            f"  proxy: {proxy['connections']} connections, {proxy['cut_connections']} reset,"
            f" {proxy['delayed units']} units delayed; dropped {dropped}; duplicated {duplicated}",
            f"  store: {dict(sorted(self.history.items()))}",
        ]
        return "\n".join(lines)

    def count(self, kind: str) -> int:
        return sum(1 for p in self.problems if p.kind == kind)


class Injector:
    """Applies faults to the cluster and undoes the lasting ones on time."""

    def __init__(self, cluster: ChaosCluster, config: ChaosConfig, report: ChaosReport) -> None:
        self.cluster = cluster
        self.config = config
        self.report = report
        self._undo: list[tuple[float, int, Callable[[], None]]] = []
        self._serial = itertools.count()
        self._latest: dict[tuple[str, str], int] = {}  # (target, proxy field) -> fault
        self.dead: set[str] = set()
        self.coordinator_down = False

    def due(self) -> float | None:
        return self._undo[0][0] if self._undo else None

    def run_due(self, now: float) -> None:
        while self._undo and self._undo[0][0] <= now:
            heapq.heappop(self._undo)[2]()

    def heal_all(self) -> None:
        """Undo every lasting fault now (in due order) and clear the proxy."""
        while self._undo:
            heapq.heappop(self._undo)[2]()
        proxy = self.cluster.proxy
        assert proxy is not None
        proxy.heal(list(self.cluster.endpoints))

    def _later(self, delay: float, action: Callable[[], None]) -> None:
        heapq.heappush(self._undo, (time.monotonic() + delay, next(self._serial), action))

    def apply(self, fault: Fault) -> None:
        apply = getattr(self, f"_{fault.kind}")
        if apply(fault) is False:
            self.report.skipped[fault.kind] += 1
        else:
            self.report.injected[fault.kind] += 1

    # -- processes ----------------------------------------------------------------------

    def _node_kill(self, fault: Fault) -> bool:
        node_id = fault.targets[0]
        if node_id in self.dead:
            return False
        self.cluster.kill(self.cluster.nodes[node_id])
        self.dead.add(node_id)

        def restart() -> None:
            self.dead.discard(node_id)
            self.cluster.start_node(node_id, slots=self.config.slots)

        self._later(fault.duration_s, restart)
        return True

    def _node_stop(self, fault: Fault) -> bool:
        node_id = fault.targets[0]
        node = self.cluster.nodes[node_id]
        if node_id in self.dead or node.stopped:
            return False
        self.cluster.stop(node)

        def cont() -> None:
            if node.stopped and self.cluster.nodes[node_id] is node:
                self.cluster.cont(node)

        self._later(fault.duration_s, cont)
        return True

    def _coordinator_kill(self, fault: Fault) -> bool:
        coord = self.cluster.coordinator
        if self.coordinator_down or coord is None:
            return False
        self.cluster.kill(coord)
        self.coordinator_down = True

        def restart() -> None:
            self.coordinator_down = False
            self.cluster.start_coordinator()

        self._later(fault.duration_s, restart)
        return True

    # -- the proxy ----------------------------------------------------------------------

    def _cut(self, fault: Fault) -> bool:
        assert self.cluster.proxy is not None
        self.cluster.proxy.cut(list(fault.targets))
        return True

    def _proxy_fault(self, fault: Fault, on: dict[str, Any], off: dict[str, Any]) -> bool:
        proxy = self.cluster.proxy
        assert proxy is not None
        targets = list(fault.targets)
        proxy.set_faults(targets, **on)
        for target in targets:
            for name in on:
                self._latest[(target, name)] = fault.index

        def undo() -> None:
            for target in targets:  # a later fault on the same field stays in force
                for name, value in off.items():
                    if self._latest.get((target, name)) == fault.index:
                        proxy.set_faults([target], **{name: value})

        self._later(fault.duration_s, undo)
        return True

    def _partition(self, fault: Fault) -> bool:
        return self._proxy_fault(fault, {"partitioned": True}, {"partitioned": False})

    def _drop(self, fault: Fault) -> bool:
        return self._proxy_fault(fault, {"drop_p": fault.amount}, {"drop_p": 0.0})

    def _duplicate(self, fault: Fault) -> bool:
        return self._proxy_fault(fault, {"dup_p": fault.amount}, {"dup_p": 0.0})

    def _delay(self, fault: Fault) -> bool:
        on = {"delay_s": fault.amount, "jitter_s": fault.amount / 2}
        return self._proxy_fault(fault, on, {"delay_s": 0.0, "jitter_s": 0.0})


def run_chaos(tmp_path: Path, config: ChaosConfig) -> ChaosReport:
    """Run one seeded chaos run to its end; its report (``problems`` empty: sound)."""
    node_ids = tuple(f"n{i + 1}" for i in range(config.nodes))
    schedule = FaultSchedule(
        config.seed,
        jobs=config.jobs,
        faults=config.faults,
        nodes=node_ids,
        lease_s=config.lease_s,
        kinds=config.kinds,
        max_gap_s=config.max_gap_s,
    )
    report = ChaosReport(config, schedule)
    started = time.monotonic()
    with ChaosCluster(
        tmp_path, secure=config.secure, heartbeat=config.heartbeat, seed=config.seed
    ) as cluster:
        try:
            _run(cluster, config, schedule, report)
        except AssertionError as exc:  # a process did not start, or a wait failed
            report.problems.append(Problem("run", str(exc)))
        report.wall_s = time.monotonic() - started
        report.stale_refused = cluster.count(r"stale RESULT from node \S+ refused")
        report.coordinator_starts = len(cluster.coordinators)
        if cluster.proxy is not None:
            report.proxy = Counter(cluster.proxy.stats)
            if cluster.proxy.error is not None:
                report.problems.append(Problem("run", f"the proxy failed: {cluster.proxy.error!r}"))
        if report.problems:
            raise AssertionError(_failure(report, cluster))
    return report


def _run(
    cluster: ChaosCluster, config: ChaosConfig, schedule: FaultSchedule, report: ChaosReport
) -> None:
    cluster.start_coordinator()
    for node_id in (f"n{i + 1}" for i in range(config.nodes)):
        cluster.start_node(node_id, slots=config.slots)
    for node in cluster.nodes.values():
        node.wait_connected()
    out = cluster.tmp / "submitter" / "view.jsonl"
    out.parent.mkdir()
    args = ["--jobs", str(config.jobs), "--seed", str(config.seed), "--chunk", str(config.chunk)]
    args += ["--crash-rate", str(config.crash_rate), "--work", str(config.work)]
    args += ["--max-retries", str(config.max_retries)]
    args += ["--process-every", str(config.process_every)]
    submitter = cluster.start_submitter(args, out)
    seen = SubmitterView(out)
    injector = Injector(cluster, config, report)
    watch = DirWatch([out.parent])
    try:
        _inject(injector, schedule, seen, submitter, watch)
        while (due := injector.due()) is not None and submitter.alive:  # the last undos
            injector.run_due(time.monotonic())
            watch.wait(due - time.monotonic(), also=submitter.pidfd)
        injector.heal_all()
        deadline = time.monotonic() + config.drain_s
        while submitter.alive and time.monotonic() < deadline:
            watch.wait(deadline - time.monotonic(), also=submitter.pidfd)
    finally:
        watch.close()
    seen.refresh()
    if submitter.alive:
        store = read_store(cluster.state)
        stuck = [f"{j.job_id} {j.state} on {j.node}: {j.kinds()}" for j in store.jobs.values()
                 if j.state not in ("succeeded", "failed", "cancelled")]  # fmt: skip
        report.problems.append(Problem(
            "undrained",
            f"the queue did not drain within {config.drain_s:g} s after the last fault:"
            f" {seen.ended} of {config.jobs} jobs ended; not finished in the store"
            f" ({len(stuck)}):\n  " + "\n  ".join(stuck[:20]),
        ))  # fmt: skip
        return
    if submitter.proc.returncode != 0 or not seen.done:
        rc = submitter.proc.returncode
        text = f"the submitter failed (rc {rc}): {seen.error}\n{submitter.tail()}"
        report.problems.append(Problem("run", text))
    report.problems += _node_problems(cluster, config)
    store = read_store(cluster.state)
    report.history = figures(store)
    report.problems += chaos_problems(store, seen, config.jobs)


def _inject(
    injector: Injector, schedule: FaultSchedule, seen: SubmitterView, submitter: Any, watch: Any
) -> None:
    """Fire the faults in order (see the module docstring) until the last one fired or
    the submitter ended (the faults it ended before count as skipped); run the undos
    that come due meanwhile."""
    pending = list(schedule.faults)
    mark_jobs, mark_time = 0, time.monotonic()
    while pending and submitter.alive:
        now = time.monotonic()
        injector.run_due(now)
        seen.refresh()
        fault = pending[0]
        if seen.ended - mark_jobs >= fault.after_jobs or now - mark_time >= schedule.max_gap_s:
            injector.apply(pending.pop(0))
            mark_jobs, mark_time = seen.ended, time.monotonic()
            continue
        wake = min(filter(None, [injector.due(), mark_time + schedule.max_gap_s]))
        watch.wait(wake - now, also=submitter.pidfd)
    for fault in pending:  # the workload finished first
        injector.report.skipped[fault.kind] += 1


def _node_problems(cluster: ChaosCluster, config: ChaosConfig) -> list[Problem]:
    """Every node agent connected again with its whole credit, and still running."""
    problems = [Problem("node", f"{proc.name} exited (rc {proc.proc.returncode})")
                for proc in (cluster.coordinator, *cluster.nodes.values())
                if proc is not None and not proc.alive]  # fmt: skip
    if problems:
        return problems
    assert cluster.coordinator is not None
    endpoint = cluster.coordinator.endpoint
    want = set(cluster.nodes)
    last: dict[str, tuple[int, int]] = {}

    def in_step() -> bool:
        status = client_call(endpoint, lambda c: c.status(), insecure=not config.secure)
        last.clear()
        for node in status.nodes:
            last[node.inventory.node_id] = (node.credit, node.running)
        return all(last.get(n, (0, 0))[0] >= config.slots for n in want)

    # A node that reconnects says HELLO and READY: its log shows it, which wakes us.
    watch = DirWatch([cluster.tmp / "nodes" / "logs", cluster.state.parent / "logs"])
    try:
        deadline = time.monotonic() + 8.0  # past the longest reconnect back-off (5 s)
        while not in_step() and time.monotonic() < deadline:
            watch.wait(deadline - time.monotonic())
    finally:
        watch.close()
    return [
        Problem(
            "node",
            f"node {n}: credit {last[n][0]} of {config.slots} at the coordinator"
            f" once idle (running {last[n][1]}): it would never get enough work again",
        )
        if n in last
        else Problem("node", f"node {n}: not connected to the coordinator at the end")
        for n in sorted(want)
        if last.get(n, (0, 0))[0] < config.slots
    ]


def _failure(report: ChaosReport, cluster: ChaosCluster) -> str:
    c = report.config
    lines = [
        f"chaos run FAILED, seed {c.seed}: {len(report.problems)} problems",
        *map(str, report.problems[:40]),
        "",
        f"replay: MABEAM_CHAOS_SEED={c.seed} {c.replay}",
        report.summary(),
        f"proxy: {dict(report.proxy)}",
        "schedule:",
        report.schedule.describe(),
        "",
        cluster.logs(),
    ]
    return "\n".join(lines)
