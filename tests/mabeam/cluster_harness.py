"""A cluster of real processes for end-to-end tests, and a checker of its job history.

``ClusterHarness`` starts ``python -m mabeam coordinator start`` and ``python -m mabeam
node start`` as subprocesses on 127.0.0.1 with their stdout and stderr in files (a
test waits for a printed line with a deadline, woken by inotify, never sleeps), signals them
(SIGKILL, SIGTERM, SIGSTOP, SIGCONT), restarts them on the same state file / work dir
and port, and kills whatever is left (workers included) when the test ends, passed or
not. A failure message carries the tail of every process's stderr.

Waiting on durable state is event driven too: ``wait_until`` re-checks a predicate each
time inotify reports a write in the watched directories (the coordinator's SQLite WAL,
a node's outbox), so a wait costs nothing while nothing changes.

``check_history`` reads the coordinator's state file through a read-only connection and
proves the store's history is sound: at most one terminal event per job (one
``succeeded`` per succeeded job), nothing after it, attempts that only grow, one lease
per attempt, the success recorded for the attempt and node that held the lease, and the
per-state counts equal to the rows.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import itertools
import os
import re
import select
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import anyio
import msgpack
import psutil  # type: ignore[import-untyped]

from mabeam.cluster import protocol
from mabeam.cluster._store_types import CODEC
from mabeam.cluster.keys import generate_keys

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
TERMINAL = frozenset({"succeeded", "failed", "cancelled"})
T = TypeVar("T")


def ep(name: str) -> str:
    """An entrypoint of tests/mabeam/task_entrypoints.py."""
    return f"task_entrypoints:{name}"


# -- waiting on files: inotify ----------------------------------------------------------

_IN_MODIFY, _IN_CLOSE_WRITE, _IN_MOVED_TO, _IN_CREATE, _IN_DELETE = 0x2, 0x8, 0x80, 0x100, 0x200
_MASK = _IN_MODIFY | _IN_CLOSE_WRITE | _IN_MOVED_TO | _IN_CREATE | _IN_DELETE


class DirWatch:
    """inotify on some directories: ``wait(timeout)`` returns once a file in one of
    them was written, created, moved in or deleted (or the timeout passed)."""

    def __init__(self, dirs: Iterable[Path]) -> None:
        self._libc = ctypes.CDLL(None, use_errno=True)
        self.fd = self._libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
        if self.fd < 0:
            raise OSError(ctypes.get_errno(), "inotify_init1 failed")
        for directory in dirs:
            if self._libc.inotify_add_watch(self.fd, os.fsencode(directory), _MASK) < 0:
                os.close(self.fd)
                raise OSError(ctypes.get_errno(), f"cannot watch {directory}")

    def wait(self, timeout: float, *, also: int | None = None) -> None:
        """Wait for a change (or for ``also``, e.g. a pidfd, to become readable)."""
        fds = [self.fd] if also is None else [self.fd, also]
        ready, _, _ = select.select(fds, [], [], max(timeout, 0.0))
        if self.fd in ready:
            with contextlib.suppress(BlockingIOError):
                while os.read(self.fd, 65536):
                    pass

    def close(self) -> None:
        os.close(self.fd)


def wait_until(
    predicate: Callable[[], T], dirs: Iterable[Path], timeout: float, what: str = "a condition"
) -> T:
    """Re-check ``predicate`` whenever a file in ``dirs`` changes; return its first
    truthy value, or fail after ``timeout`` seconds."""
    watch = DirWatch(dirs)
    try:
        deadline = time.monotonic() + timeout
        while True:
            value = predicate()
            if value:
                return value
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no {what} within {timeout} s (last: {value!r})")
            watch.wait(left)
    finally:
        watch.close()


# -- one subprocess ---------------------------------------------------------------------


class Proc:
    """A ``python -m mabeam ...`` subprocess whose stdout and stderr go to files;
    ``wait_line`` waits for a line in one of them with a deadline, woken by inotify on
    the files' directory and by the process's pidfd (no reader threads, no polling)."""

    _serial = itertools.count(1)

    def __init__(
        self,
        name: str,
        args: Sequence[str],
        cwd: Path,
        log_dir: Path,
        *,
        program: Sequence[str] = ("-m", "mabeam"),
    ) -> None:
        """``python PROGRAM ARGS`` (``program``: ``-m mabeam`` unless a script is given)."""
        self.name = name
        self.args = list(args)
        log_dir.mkdir(parents=True, exist_ok=True)
        self.log_dir = log_dir
        stem = f"{next(Proc._serial):03d}-{re.sub(r'[^A-Za-z0-9#-]+', '_', name)}"
        self._paths = (log_dir / f"{stem}.out", log_dir / f"{stem}.err")
        with open(self._paths[0], "wb") as out, open(self._paths[1], "wb") as err:
            self.proc = subprocess.Popen(
                [sys.executable, *program, *args],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                cwd=cwd,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )
        self.pid = self.proc.pid
        self._pidfd = os.pidfd_open(self.pid)

    def _lines(self, index: int) -> list[str]:
        return self._paths[index].read_text(errors="replace").splitlines()

    @property
    def out(self) -> list[str]:
        """Its stdout lines so far."""
        return self._lines(0)

    @property
    def err(self) -> list[str]:
        """Its stderr lines so far."""
        return self._lines(1)

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None

    @property
    def pidfd(self) -> int:
        """A pidfd of the process: readable once it has ended (for ``select``)."""
        return self._pidfd

    def wait_line(
        self, pattern: str, timeout: float = 20.0, *, start: int = 0, stderr: bool = False
    ) -> re.Match[str]:
        """The first line (from index ``start``) matching ``pattern``; fails with the
        process's stderr if it ends or the deadline passes first."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        watch = DirWatch([self.log_dir])
        try:
            while True:
                ended = not self.alive  # read after this: nothing more can come then
                for line in self._lines(1 if stderr else 0)[start:]:
                    found = regex.search(line)
                    if found:
                        return found
                left = deadline - time.monotonic()
                if ended or left <= 0:
                    why = "ended" if ended else f"printed none within {timeout} s"
                    raise AssertionError(
                        f"{self.name} {why} waiting for {pattern!r}\n{self.tail()}"
                    )
                watch.wait(left, also=self._pidfd)
        finally:
            watch.close()

    def count(self, pattern: str, *, stderr: bool = True) -> int:
        """Lines so far matching ``pattern``."""
        regex = re.compile(pattern)
        return sum(1 for line in (self.err if stderr else self.out) if regex.search(line))

    def tail(self, n: int = 40) -> str:
        lines = [*self.out[-10:], "--- stderr ---", *self.err[-n:]]
        return f"=== {self.name} (pid {self.pid}, rc {self.proc.poll()}) ===\n" + "\n".join(lines)

    def descendants(self) -> list[psutil.Process]:
        """Its worker processes (children and their children) now."""
        with contextlib.suppress(psutil.Error):
            return list(psutil.Process(self.pid).children(recursive=True))
        return []

    def signal(self, sig: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            self.proc.send_signal(sig)

    def kill(self) -> int:
        """SIGKILL, as a crash or the OOM killer would; its return code."""
        self.signal(signal.SIGKILL)
        return self.proc.wait(timeout=10)

    def terminate(self, timeout: float = 20.0) -> int:
        """SIGCONT (in case it is stopped), SIGTERM, and its exit status; SIGKILL after
        ``timeout``."""
        self.signal(signal.SIGCONT)
        self.signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return self.kill()

    def close(self) -> None:
        """Kill it if it still runs, and reap it."""
        if self.alive:
            self.signal(signal.SIGCONT)
            self.kill()
        with contextlib.suppress(OSError):
            os.close(self._pidfd)


# -- coordinator and nodes ----------------------------------------------------------------


class Coordinator(Proc):
    """``mabeam coordinator start``; ``endpoint`` comes from its listening line."""

    def __init__(
        self,
        name: str,
        state: Path,
        bind: str,
        heartbeat: float,
        log_level: str,
        security: Sequence[str],
    ):
        args = ["coordinator", "start", "--bind", bind, "--state", str(state)]
        args += ["--heartbeat", str(heartbeat), "--log-level", log_level, *security]
        super().__init__(name, args, ROOT, state.parent / "logs")
        self.state = state
        found = self.wait_line(r"^mabeam coordinator listening on (tcp://\S+) \(state ")
        self.endpoint = found.group(1)


class Node(Proc):
    """``mabeam node start`` run from tests/mabeam (its workers import task_entrypoints),
    waited for by its "connected" line."""

    def __init__(self, node_id: str, endpoint: str, work_dir: Path, options: Sequence[str]):
        args = ["node", "start", "--coordinator", endpoint, "--node-id", node_id]
        args += ["--work-dir", str(work_dir), "--gpus", "none", *options]
        super().__init__(f"node {node_id}", args, HERE, work_dir.parent / "logs")
        self.node_id = node_id
        self.work_dir = work_dir
        self.wait_line(rf"^mabeam node {re.escape(node_id)} connected to ")

    def wait_reconnected(self, timeout: float = 20.0) -> None:
        self.wait_line(rf"^mabeam node {re.escape(self.node_id)} reconnected to ", timeout)

    @property
    def outbox(self) -> Path:
        return self.work_dir / "outbox.sqlite3"


def stop_everything(
    procs: Sequence[Proc], workers: set[int], saved_env: dict[str, str | None]
) -> None:
    """Restore the environment, close ``procs`` (last started first) and kill every
    worker process they left (those known in ``workers`` and their descendants now)."""
    for name, value in saved_env.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
    for proc in procs:
        workers.update(p.pid for p in proc.descendants())
    for proc in reversed(procs):
        proc.close()
    for pid in workers:
        with contextlib.suppress(psutil.Error):
            worker = psutil.Process(pid)
            worker.kill()
            worker.wait(timeout=5)


class Keys:
    """CurveZMQ key files of one test cluster, written with the real key code: the
    coordinator's pair, the allow-lists ``nodes/`` and ``clients/`` (one client key,
    ``tester``), a node's pair made when first asked for."""

    def __init__(self, root: Path) -> None:
        self.root = root
        generate_keys(root, "coordinator", "coordinator")
        generate_keys(root / "clients", "client", "tester")
        (root / "nodes").mkdir()
        self.coordinator_public = root / "coordinator.key"
        self.client_secret = root / "clients" / "tester.key_secret"

    def coordinator_args(self) -> list[str]:
        root = self.root
        return [
            "--key", str(root / "coordinator.key_secret"),
            "--allow-nodes", str(root / "nodes"),
            "--allow-clients", str(root / "clients"),
        ]  # fmt: skip

    def node_args(self, node_id: str) -> list[str]:
        secret = self.root / "nodes" / f"{node_id}.key_secret"
        if not secret.exists():
            generate_keys(self.root / "nodes", "node", node_id)
        return ["--key", str(secret), "--coordinator-key", str(self.coordinator_public)]

    @property
    def client_env(self) -> dict[str, str]:
        """What a client process (or this one) needs in its environment."""
        return {
            "MABEAM_KEY": str(self.client_secret),
            "MABEAM_COORDINATOR_KEY": str(self.coordinator_public),
        }


class ClusterHarness:
    """The processes of one test: a coordinator, nodes, and their cleanup.

    ``heartbeat`` is passed to every process (tests use 0.1 s: a node lost in 0.3 s).
    Security is the default one, CurveZMQ: key files under ``keys/`` (a node's key is
    made when it first starts), the coordinator's allow-lists ``keys/nodes`` and
    ``keys/clients``; this process's clients (``submit``, ``client_call``,
    ``mabeam_cli``) find the client key in ``$MABEAM_KEY`` / ``$MABEAM_COORDINATOR_KEY``,
    set while the harness lives.
    """

    def __init__(self, tmp_path: Path, *, heartbeat: float = 0.1) -> None:
        self.tmp = tmp_path
        self.heartbeat = heartbeat
        self.keys = Keys(tmp_path / "keys")
        self._env = self.keys.client_env
        self._saved_env = {name: os.environ.get(name) for name in self._env}
        os.environ.update(self._env)
        self.state = tmp_path / "coordinator" / "state.db"
        self.state.parent.mkdir()
        self.gates = tmp_path / "gates"
        self.gates.mkdir()
        self.coordinator: Coordinator | None = None
        self.nodes: dict[str, Node] = {}
        self._all: list[Proc] = []
        self._workers: set[int] = set()
        self._starts = 0

    # -- processes ---------------------------------------------------------------------

    def start_coordinator(
        self,
        *,
        heartbeat: float | None = None,
        log_level: str = "info",
        options: Sequence[str] = (),
    ) -> Coordinator:
        """Start (or restart, on the same state file and port) the coordinator."""
        bind = self.coordinator.endpoint if self.coordinator is not None else "tcp://127.0.0.1:0"
        self._starts += 1
        coord = Coordinator(
            f"coordinator#{self._starts}",
            self.state,
            bind,
            heartbeat or self.heartbeat,
            log_level,
            [*self.keys.coordinator_args(), *options],
        )
        self._all.append(coord)
        self.coordinator = coord
        return coord

    @property
    def endpoint(self) -> str:
        assert self.coordinator is not None, "no coordinator started"
        return self.coordinator.endpoint

    def start_node(
        self,
        node_id: str,
        *,
        slots: int = 2,
        heartbeat: float | None = None,
        options: Sequence[str] = (),
    ) -> Node:
        """Start (or restart, on the same work dir) node ``node_id``; returns once it
        printed its "connected" line."""
        work_dir = self.tmp / "nodes" / node_id
        hb = str(heartbeat or self.heartbeat)
        opts = ["--slots", str(slots), "--heartbeat", hb, "--drain-timeout", "2", *options]
        opts += self.keys.node_args(node_id)
        node = Node(node_id, self.endpoint, work_dir, opts)
        self._all.append(node)
        self.nodes[node_id] = node
        return node

    def kill(self, proc: Proc) -> None:
        """SIGKILL ``proc``; its workers are remembered for the cleanup."""
        self._workers.update(p.pid for p in proc.descendants())
        proc.kill()

    def close(self) -> None:
        """Kill every process this harness started, and the workers they left."""
        stop_everything(self._all, self._workers, self._saved_env)

    def logs(self) -> str:
        """Every process's output tail, for a failure message."""
        return "\n".join(proc.tail() for proc in self._all)

    # -- gates (tests/mabeam/task_entrypoints.py:gate) ---------------------------------

    def gate(self, x: int, block: Sequence[int] = (1,), **spec: Any) -> protocol.JobSpec:
        """A job that blocks its attempts in ``block`` until ``release``d."""
        params = {"x": x, "dir": str(self.gates), "block": list(block)}
        return protocol.JobSpec(ep("gate"), params, **spec)

    def release(self, job_id: str, attempt: int, text: str = "released") -> bool:
        """Let attempt ``attempt`` of a gate job finish; False when no task waits on it."""
        path = self.gates / f"{job_id}.{attempt}"
        try:
            fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK)
        except OSError as exc:
            if exc.errno in (errno.ENXIO, errno.ENOENT):
                return False
            raise
        try:
            os.write(fd, f"{text}\n".encode())
        finally:
            os.close(fd)
        return True

    # -- waiting on the store ------------------------------------------------------------

    def wait_store(
        self, predicate: Callable[[StoreView], T], timeout: float = 30.0, what: str = ""
    ) -> T:
        """Wait until ``predicate(view of the state file)`` is truthy (re-read at every
        commit of the coordinator)."""
        try:
            return wait_until(
                lambda: predicate(read_store(self.state)),
                [self.state.parent],
                timeout,
                what or "store condition",
            )
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{self.logs()}") from None

    def wait_terminal(self, job_ids: Iterable[str], timeout: float = 40.0) -> StoreView:
        """Wait until every job of ``job_ids`` is succeeded, failed or cancelled."""
        wanted = set(job_ids)

        def done(view: StoreView) -> StoreView | None:
            states = {j: view.jobs[j].state for j in wanted if j in view.jobs}
            finished = len(states) == len(wanted) and all(s in TERMINAL for s in states.values())
            return view if finished else None

        view = self.wait_store(done, timeout, f"end of {len(wanted)} jobs")
        assert view is not None
        return view

    def wait_waiting(self, job_ids: Iterable[str], node: str | None = None) -> StoreView:
        """Wait until the gate tasks of ``job_ids`` are running (on ``node``) and
        reported step 0 (their FIFOs are open)."""
        wanted = set(job_ids)

        def waiting(view: StoreView) -> StoreView | None:
            rows = [view.jobs.get(j) for j in wanted]
            ok = all(
                r is not None and r.state == "running" and r.progress and (node in (None, r.node))
                for r in rows
            )
            return view if ok else None

        view = self.wait_store(waiting, 30.0, f"gate tasks waiting on {node or 'any node'}")
        assert view is not None
        return view


@contextlib.contextmanager
def running_cluster(tmp_path: Path, **options: Any) -> Iterator[ClusterHarness]:
    """A ``ClusterHarness`` that kills everything on the way out (logs on failure)."""
    harness = ClusterHarness(tmp_path, **options)
    try:
        yield harness
    except BaseException:
        sys.stderr.write(harness.logs() + "\n")
        raise
    finally:
        harness.close()


# -- clients (the real client API, in a runtime of their own) -----------------------------


def submit(
    endpoint: str, specs: Sequence[Any], key: str | None = None, *, insecure: bool = False
) -> tuple[str, ...]:
    """Submit ``specs`` (one SUBMIT per 1,000) and return the job ids (the client's
    keys from the environment, as a harness sets it; ``insecure``: plain TCP)."""
    from mabeam.cluster.client import connect

    async def go() -> tuple[str, ...]:
        async with connect(endpoint, timeout=20.0, insecure=insecure) as client:
            return (await client.submit(list(specs), idempotency_key=key)).job_ids

    return anyio.run(go)


def client_call(endpoint: str, fn: Callable[[Any], Any], *, insecure: bool = False) -> Any:
    """``await fn(client)`` on a fresh client connected to ``endpoint``."""
    from mabeam.cluster.client import connect

    async def go() -> Any:
        async with connect(endpoint, timeout=20.0, insecure=insecure) as client:
            return await fn(client)

    return anyio.run(go)


def mabeam_cli(
    *args: str, cwd: Path = ROOT, timeout: float = 50.0, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """``python -m mabeam ARGS`` to the end, with its output (200 columns for tables)."""
    return subprocess.run(
        [sys.executable, "-m", "mabeam", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        cwd=cwd,
        env={**os.environ, "COLUMNS": "200", **(env or {})},
    )


# -- reading the store ------------------------------------------------------------------


@dataclass(frozen=True)
class StoredEvent:
    """One row of the store's ``events`` table."""

    seq: int
    kind: str
    attempt: int
    detail: dict[str, Any]


@dataclass
class StoredJob:
    """One job as the state file holds it, with its events in order."""

    job_id: str
    seq: int
    entrypoint: str
    params: dict[str, Any]
    max_retries: int
    state: str
    attempt: int
    failures: int
    node: str | None
    token: str | None
    cancel_requested: bool
    result: Any
    error: str | None
    progress: Any
    events: list[StoredEvent] = field(default_factory=list)

    def kinds(self) -> list[str]:
        return [e.kind for e in self.events]

    def succeeded_on(self) -> str | None:
        """The node named by the ``succeeded`` event."""
        for event in self.events:
            if event.kind == "succeeded":
                node: str | None = event.detail.get("node")
                return node
        return None


@dataclass
class StoreView:
    """The whole state file at one moment."""

    jobs: dict[str, StoredJob]
    counts: dict[str, int]

    def by_state(self) -> Counter[str]:
        return Counter(job.state for job in self.jobs.values())


def _decode(blob: bytes | None) -> Any:
    return None if blob is None else CODEC.decode(blob)


def read_store(path: Path) -> StoreView:
    """Every job with its events and the per-state counts, from a read-only connection."""
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10.0)
    try:
        conn.execute("BEGIN")  # one snapshot for all three reads
        store_id = conn.execute("SELECT value FROM meta WHERE key = 'store_id'").fetchone()[0]
        rows = conn.execute(
            "SELECT seq, spec, max_retries, state, attempt, failures, node, token,"
            " cancel_requested, result, error, progress FROM jobs ORDER BY seq"
        ).fetchall()
        events = conn.execute(
            "SELECT seq, job, kind, attempt, detail FROM events ORDER BY seq"
        ).fetchall()
        counts = dict(conn.execute("SELECT state, n FROM state_counts").fetchall())
        conn.execute("COMMIT")
    finally:
        conn.close()
    jobs: dict[str, StoredJob] = {}
    by_seq: dict[int, StoredJob] = {}
    for seq, spec, retries, state, attempt, failures, node, token, cancel, res, err, prog in rows:
        spec_dict = _decode(spec)
        job = StoredJob(
            job_id=f"j-{store_id}-{seq}",
            seq=seq,
            entrypoint=spec_dict["entrypoint"],
            params=spec_dict.get("params", {}),
            max_retries=retries,
            state=state,
            attempt=attempt,
            failures=failures,
            node=node,
            token=token,
            cancel_requested=bool(cancel),
            result=_decode(res),
            error=err,
            progress=_decode(prog),
        )
        jobs[job.job_id] = by_seq[seq] = job
    for seq, job_seq, kind, attempt, detail in events:
        by_seq[job_seq].events.append(
            StoredEvent(seq, kind, attempt, msgpack.unpackb(detail, raw=False))
        )
    return StoreView(jobs, counts)


# -- the history checker ----------------------------------------------------------------


def check_history(path: Path, *, all_terminal: bool = True) -> StoreView:
    """Read the state file at ``path`` and assert its history is sound (see the module
    docstring); with ``all_terminal`` every job must also have ended. Returns the view."""
    view = read_store(path)
    problems = history_problems(view, all_terminal=all_terminal)
    assert not problems, "job history is not sound:\n" + "\n".join(problems[:50])
    return view


def history_problems(view: StoreView, *, all_terminal: bool = True) -> list[str]:
    """What ``check_history`` finds wrong in ``view``, one line per problem."""
    problems: list[str] = []
    for job in view.jobs.values():
        problems += [f"{job.job_id}: {p}" for p in _job_problems(job, all_terminal)]
    actual = view.by_state()
    for state in set(actual) | set(view.counts):
        if actual.get(state, 0) != view.counts.get(state, 0):
            problems.append(
                f"state_counts[{state}] = {view.counts.get(state, 0)}, rows: {actual.get(state, 0)}"
            )
    return problems


def _job_problems(job: StoredJob, all_terminal: bool) -> list[str]:
    problems: list[str] = []
    kinds = job.kinds()
    terminal = [e for e in job.events if e.kind in TERMINAL]
    if len(terminal) > 1:
        problems.append(f"{len(terminal)} terminal events: {kinds}")
    if job.state in TERMINAL:
        if not terminal or terminal[0].kind != job.state:
            problems.append(f"state {job.state} but events {kinds}")
        elif job.events[-1] is not terminal[0]:
            problems.append(f"events after the {job.state} event: {kinds}")
    elif all_terminal:
        problems.append(f"not finished: {job.state} (events {kinds})")
    if not job.events or job.events[0].kind != "submitted":
        problems.append(f"history does not start with submitted: {kinds}")
    leases: dict[int, str | None] = {}
    last_attempt = 0
    for event in job.events:
        if event.attempt < last_attempt:
            problems.append(f"attempt went back to {event.attempt}: {kinds}")
        last_attempt = max(last_attempt, event.attempt)
        if event.kind == "leased":
            if event.attempt in leases:
                problems.append(f"attempt {event.attempt} leased twice")
            leases[event.attempt] = event.detail.get("node")
        elif event.kind in ("running", "succeeded") and "cached_from" not in event.detail:
            holder = leases.get(event.attempt, "<none>")
            if holder != event.detail.get("node"):
                problems.append(
                    f"{event.kind} on {event.detail.get('node')} for attempt {event.attempt} "
                    f"leased to {holder}"
                )
        elif event.kind in ("retry", "requeued") and event.attempt - 1 not in leases:
            problems.append(f"{event.kind} to attempt {event.attempt} without a lease")
    if job.attempt != last_attempt:
        problems.append(f"row attempt {job.attempt}, events up to {last_attempt}")
    if job.failures > job.max_retries + 1:
        problems.append(f"{job.failures} failures with max_retries {job.max_retries}")
    if job.state == "succeeded" and kinds.count("succeeded") != 1:
        problems.append(f"succeeded {kinds.count('succeeded')} times")
    return problems
