"""Child processes of the cluster benchmark: coordinator and node agents as real
``python -m mabeam ... start`` subprocesses, their ready lines, CPU time, clean-up.

Each child prints one line once it serves (``mabeam coordinator listening on ...``,
``mabeam node ID connected to ...``); the parent waits for that line (a select on the
pipe, bounded by a deadline) instead of sleeping. With ``MABEAM_BENCH_PROFILE=DIR`` in
the environment each child runs under ``cProfile`` timed by its main thread's CPU clock
(``benchmarks._cpuprofile``) and writes ``DIR/<name>.prof`` when it stops (SIGTERM is a
graceful exit), for ``python -m pstats``.
"""

from __future__ import annotations

import os
import re
import selectors
import signal
import subprocess
import sys
import time
from collections.abc import Iterable, Sequence
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import psutil

from ._common import REPO_ROOT

PROFILE_ENV = "MABEAM_BENCH_PROFILE"
_ENDPOINT = re.compile(r"listening on (tcp://\S+)")


class ChildFailed(RuntimeError):
    """A benchmark child process exited or printed nothing in time."""


def child_env() -> dict[str, str]:
    """The environment of the children: the repository on ``PYTHONPATH`` (the pool
    workers import ``benchmarks._cluster_tasks`` from it)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH", "")) if p)
    env["PYTHONUNBUFFERED"] = "1"
    return env


@dataclass
class Child:
    """One started child: its process, log file and name."""

    name: str
    proc: subprocess.Popen[bytes]
    log_path: Path
    lines: list[str] = field(default_factory=list)
    _buf: bytes = b""

    @property
    def pid(self) -> int:
        return self.proc.pid

    def read_line(self, timeout: float) -> str:
        """The next stdout line; ``ChildFailed`` (with the log tail) at EOF or after
        ``timeout`` seconds. Reads the pipe itself (no buffered reader that could hold
        a second line where ``select`` does not see it)."""
        out = self.proc.stdout
        assert out is not None
        deadline = time.monotonic() + timeout
        with selectors.DefaultSelector() as sel:
            sel.register(out, selectors.EVENT_READ)
            while b"\n" not in self._buf:
                left = deadline - time.monotonic()
                if left <= 0 or not sel.select(left):
                    raise ChildFailed(f"{self.name}: no output in {timeout:.0f} s; {self.tail()}")
                chunk = os.read(out.fileno(), 65536)
                if not chunk:
                    raise ChildFailed(f"{self.name} exited (rc={self.proc.poll()}); {self.tail()}")
                self._buf += chunk
        line, _, self._buf = self._buf.partition(b"\n")
        text = line.decode(errors="replace").strip()
        self.lines.append(text)
        return text

    def tail(self, n: int = 3) -> str:
        try:
            lines = self.log_path.read_text(errors="replace").strip().splitlines()
        except OSError:
            return "no log"
        return " | ".join(lines[-n:]) or "empty log"


def start_child(name: str, argv: Sequence[str], log_dir: Path, *, stdin: bool = False) -> Child:
    """Start ``python [-m benchmarks._cpuprofile OUT] -m <argv>`` from the repository
    root, stdout piped (read by ``Child.read_line``), stderr to ``log_dir/<name>.log``;
    with ``stdin``, a pipe to its stdin (closed by ``stop_all``), else /dev/null."""
    prefix: list[str] = []
    profile_dir = os.environ.get(PROFILE_ENV)
    if profile_dir:
        Path(profile_dir).mkdir(parents=True, exist_ok=True)
        prefix = ["-m", "benchmarks._cpuprofile", str(Path(profile_dir) / f"{name}.prof")]
    log_path = log_dir / f"{name}.log"
    with log_path.open("w") as log:
        proc = subprocess.Popen(
            [sys.executable, *prefix, "-m", *argv],
            cwd=REPO_ROOT,
            env=child_env(),
            stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=log,
        )
    return Child(name, proc, log_path)


def make_keys(root: Path) -> Path:
    """CurveZMQ keys for a benchmark cluster under ``root``: the coordinator's pair, an
    empty ``nodes/`` allow-list (``start_nodes`` adds each node's key) and one client
    key, ``clients/bench``. Returns ``root``."""
    from mabeam.cluster.keys import generate_keys

    generate_keys(root, "coordinator", "coordinator")
    generate_keys(root / "clients", "client", "bench")
    (root / "nodes").mkdir(exist_ok=True)
    return root


def client_keys(keys: Path | None) -> dict[str, Any]:
    """``connect``'s security keywords for a benchmark client (``insecure`` without keys)."""
    if keys is None:
        return {"insecure": True}
    return {
        "key": keys / "clients" / "bench.key_secret",
        "coordinator_key": keys / "coordinator.key",
    }


def start_coordinator(
    state: Path, log_dir: Path, heartbeat_s: float = 1.0, *, keys: Path | None = None
) -> tuple[Child, str]:
    """A ``mabeam coordinator start`` on a free port; the child and its endpoint. With
    ``keys`` (``make_keys``) it runs CurveZMQ, the default; without, ``--insecure``."""
    security = ["--insecure"]
    if keys is not None:
        security = ["--key", str(keys / "coordinator.key_secret")]
        security += ["--allow-nodes", str(keys / "nodes"), "--allow-clients", str(keys / "clients")]
    child = start_child(
        "coordinator",
        [
            "mabeam",
            "coordinator",
            "start",
            "--bind",
            "tcp://127.0.0.1:0",
            "--state",
            str(state),
            "--heartbeat",
            str(heartbeat_s),
            "--log-level",
            "warning",
            *security,
        ],
        log_dir,
    )
    try:
        line = child.read_line(60.0)
        match = _ENDPOINT.search(line)
        if match is None:
            raise ChildFailed(f"coordinator printed {line!r}, not its endpoint")
    except BaseException:
        stop_all([child])
        raise
    return child, match.group(1)


def start_nodes(
    endpoint: str,
    count: int,
    slots: int,
    work: Path,
    log_dir: Path,
    heartbeat_s: float = 1.0,
    prefetch: int = 0,
    keys: Path | None = None,
    nice: int = 0,
) -> list[Child]:
    """``count`` ``mabeam node start`` agents (``--gpus none``, pool workers never
    recycled: ``--max-tasks-per-worker 1000000``, ``--prefetch``, ``--nice``), each
    connected before returning. With ``keys`` each node gets its own key, else
    ``--insecure``."""
    from mabeam.cluster.keys import generate_keys

    nodes: list[Child] = []
    try:
        for i in range(count):
            node_id = f"bench-n{i}"
            security = ["--insecure"]
            if keys is not None:
                secret = keys / "nodes" / f"{node_id}.key_secret"
                if not secret.exists():
                    generate_keys(keys / "nodes", "node", node_id)
                security = [
                    "--key",
                    str(secret),
                    "--coordinator-key",
                    str(keys / "coordinator.key"),
                ]
            nodes.append(
                start_child(
                    node_id,
                    [
                        "mabeam",
                        "node",
                        "start",
                        "--coordinator",
                        endpoint,
                        "--node-id",
                        node_id,
                        "--slots",
                        str(slots),
                        "--prefetch",
                        str(prefetch),
                        "--gpus",
                        "none",
                        "--work-dir",
                        str(work / node_id),
                        "--max-tasks-per-worker",
                        "1000000",
                        "--heartbeat",
                        str(heartbeat_s),
                        "--drain-timeout",
                        "5",
                        "--log-level",
                        "warning",
                        *(["--nice", str(nice)] if nice else []),
                        *security,
                    ],
                    log_dir,
                )
            )
        for node in nodes:
            line = node.read_line(60.0)
            if "connected to" not in line:
                raise ChildFailed(f"{node.name} printed {line!r}")
    except BaseException:
        stop_all(nodes)
        raise
    return nodes


def cpu_seconds(pids: Iterable[int], children: bool = False) -> float:
    """User + system CPU seconds of these processes (all threads; with ``children``, of
    their live descendants too); processes that are gone count 0."""
    total = 0.0
    for pid in pids:
        with suppress(psutil.Error):
            proc = psutil.Process(pid)
            procs = [proc, *(proc.children(recursive=True) if children else [])]
            for p in procs:
                with suppress(psutil.Error):
                    t = p.cpu_times()
                    total += t.user + t.system
    return total


def cpu_breakdown(coord: int, nodes: Iterable[int]) -> dict[str, float]:
    """CPU seconds by role: the coordinator's main thread, its other Python threads (the
    SQLite store), ZeroMQ I/O threads (all processes), node agents' own threads, their
    pool workers, and this process (the client); from ``/proc/PID/task/TID/stat``."""
    out = dict.fromkeys(
        ("coord_main", "coord_store", "node_agent", "pool_worker", "zmq", "client"), 0.0
    )
    for tid, name, cpu in _threads(coord):
        key = "zmq" if name.startswith("ZMQbg") else "coord_main" if tid == coord else "coord_store"
        out[key] += cpu
    for pid in nodes:
        with suppress(psutil.Error):
            workers = [p.pid for p in psutil.Process(pid).children(recursive=True)]
            for who, role in [(pid, "node_agent"), *((w, "pool_worker") for w in workers)]:
                for _tid, name, cpu in _threads(who):
                    out["zmq" if name.startswith("ZMQbg") else role] += cpu
    for _tid, name, cpu in _threads(os.getpid()):
        out["zmq" if name.startswith("ZMQbg") else "client"] += cpu
    return out


def _threads(pid: int) -> list[tuple[int, str, float]]:
    """(tid, name, user + system CPU seconds) of each thread of ``pid`` still alive."""
    tick = os.sysconf("SC_CLK_TCK")
    rows = []
    with suppress(OSError):
        for tid in os.listdir(f"/proc/{pid}/task"):
            with suppress(OSError):
                stat = Path(f"/proc/{pid}/task/{tid}/stat").read_text()
                name, rest = (
                    stat[stat.index("(") + 1 : stat.rindex(")")],
                    stat[stat.rindex(")") + 2 :],
                )
                fields = rest.split()
                rows.append((int(tid), name, (int(fields[11]) + int(fields[12])) / tick))
    return rows


def stop_all(children: Sequence[Child], grace: float = 10.0) -> None:
    """SIGTERM every child (a graceful stop), wait up to ``grace`` s in all, then
    SIGKILL what is left, descendants (pool workers in their own sessions) included."""
    descendants: list[psutil.Process] = []
    for child in children:
        _close(child.proc.stdin)
        with suppress(psutil.Error):
            descendants.extend(psutil.Process(child.pid).children(recursive=True))
        if child.proc.poll() is None:
            with suppress(ProcessLookupError):
                child.proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + grace
    for child in children:
        with suppress(subprocess.TimeoutExpired):
            child.proc.wait(max(0.1, deadline - time.monotonic()))
        if child.proc.poll() is None:
            with suppress(ProcessLookupError):
                child.proc.kill()
            child.proc.wait()
        _close(child.proc.stdout)
        _close(child.proc.stdin)
    for proc in descendants:
        with suppress(psutil.Error):
            if proc.is_running():
                proc.kill()


def _close(stream: IO[Any] | None) -> None:
    if stream is not None:
        with suppress(OSError):
            stream.close()
