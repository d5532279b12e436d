"""Task entrypoints for tests/mabeam/test_task_worker.py, run inside real worker processes.

Importable as ``task_entrypoints`` when tests/mabeam is on the child's PYTHONPATH. Tasks
that must block wait on an Event or a pipe, never on a sleep.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from typing import Any

from mabeam.cluster.task import TaskContext


def echo(params: dict[str, Any], ctx: TaskContext) -> dict[str, Any]:
    """Return the params and the context's identity unchanged."""
    return {
        "params": params,
        "job_id": ctx.job_id,
        "attempt": ctx.attempt,
        "device": ctx.device,
        "output_dir": str(ctx.output_dir),
    }


def count(params: dict[str, Any], ctx: TaskContext) -> int:
    """Report ``n`` progress steps with a loss metric, then return the sum of the steps."""
    total = 0
    for step in range(params["n"]):
        ctx.report(step=step, loss=1.0 / (step + 1), tag=f"s{step}")
        total += step
    return total


def fail(params: dict[str, Any], ctx: TaskContext) -> None:
    """Raise with a recognizable message on a recognizable line."""
    raise ValueError(f"bad learning rate {params['lr']}")  # the raising line


def exit_hard(params: dict[str, Any], ctx: TaskContext) -> None:
    """Die without a result, as a segfault or an os._exit in user code would."""
    ctx.report(step=0)
    os._exit(params.get("code", 3))


def block(params: dict[str, Any], ctx: TaskContext) -> None:
    """Never return on its own; optionally ignore SIGTERM, optionally write a marker."""
    if params.get("ignore_sigterm"):
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    (ctx.output_dir / "partial.txt").write_text("half done")
    ctx.report(step=0, ready=True)
    threading.Event().wait()


def spawn_grandchild(params: dict[str, Any], ctx: TaskContext) -> int:
    """Start a grandchild that blocks forever and report its pid; then block or return."""
    child = subprocess.Popen(
        [sys.executable, "-c", "import threading; threading.Event().wait()"],
        stdin=subprocess.DEVNULL,
    )
    ctx.report(step=0, grandchild=child.pid)
    if params.get("block"):
        threading.Event().wait()
    return child.pid


def kill_self(params: dict[str, Any], ctx: TaskContext) -> None:
    """Die by SIGKILL, as the OOM killer would do it."""
    os.kill(os.getpid(), signal.SIGKILL)


def unencodable(params: dict[str, Any], ctx: TaskContext) -> object:
    """Return something msgpack cannot carry."""
    return {"model": object()}


def big(params: dict[str, Any], ctx: TaskContext) -> str:
    """Return a string of ``n`` bytes (over the frame limit when n is large)."""
    size: int = params["n"]
    return "x" * size


def noisy(params: dict[str, Any], ctx: TaskContext) -> str:
    """Print to stdout and stderr (which must land in the log, not the message stream)."""
    print("hello from the task stdout")
    print("hello from the task stderr", file=sys.stderr)
    os.write(1, b"raw bytes on fd 1\n")
    ctx.report(step=1, after_print=True)
    return "quiet result"


def write_output(params: dict[str, Any], ctx: TaskContext) -> str:
    """Write a file into the output dir, then succeed or fail as asked."""
    (ctx.output_dir / "model.txt").write_text(params["text"])
    if params.get("fail"):
        raise RuntimeError("failing after writing outputs")
    return "written"


def cuda_env(params: dict[str, Any], ctx: TaskContext) -> dict[str, Any]:
    """Return the GPU variables the process sees and what the context says."""
    return {
        "CUDA_VISIBLE_DEVICES": os.environ.get("CUDA_VISIBLE_DEVICES"),
        "CUDA_DEVICE_ORDER": os.environ.get("CUDA_DEVICE_ORDER"),
        "device": ctx.device,
        "gpus": list(ctx.gpus),
    }


def read_stdin(params: dict[str, Any], ctx: TaskContext) -> str:
    """Read the task's stdin: it must be /dev/null (empty), not the job pipe."""
    return sys.stdin.read()


def three_args(params: dict[str, Any], ctx: TaskContext, extra: int) -> None:
    """A function with the wrong signature for a task."""


not_callable = 42


def pid(params: dict[str, Any], ctx: TaskContext) -> int:
    """Return the worker's pid (a pool worker keeps it across tasks)."""
    return os.getpid()


def niceness(params: dict[str, Any], ctx: TaskContext) -> int:
    """The task process's CPU niceness (``os.nice(0)`` changes nothing)."""
    return os.nice(0)


def wait_fifo(params: dict[str, Any], ctx: TaskContext) -> str:
    """Report step 0, then block reading the FIFO ``params["path"]`` until its writer
    closes it (a test writes to let the task finish); return what was written."""
    ctx.report(step=0, waiting=True)
    with open(params["path"]) as fifo:
        return fifo.read()


def reset_sigio(params: dict[str, Any], ctx: TaskContext) -> int:
    """Replace the worker's SIGIO handler with SIG_DFL or SIG_IGN (``params["to"]``), as
    a careless task might; return the worker's pid."""
    signal.signal(signal.SIGIO, signal.SIG_DFL if params["to"] == "default" else signal.SIG_IGN)
    return os.getpid()


def block_pid(params: dict[str, Any], ctx: TaskContext) -> None:
    """Report the worker's pid, then never return on its own."""
    ctx.report(step=0, pid=os.getpid())
    threading.Event().wait()


def square(params: dict[str, Any], ctx: TaskContext) -> dict[str, Any]:
    """A tiny bit of work: return ``x`` and its square (checked by the sweep tests)."""
    x: int = params["x"]
    checksum = sum(i * i for i in range(2_000)) % 7
    return {"x": x, "y": x * x, "checksum": checksum, "attempt": ctx.attempt}


def gate(params: dict[str, Any], ctx: TaskContext) -> dict[str, Any]:
    """Block the attempts listed in ``params["block"]`` until a line is written to the
    FIFO ``<params["dir"]>/<job_id>.<attempt>``; other attempts return at once.

    The FIFO is opened read-write before the step-0 report, so once the report is in
    the store a test's non-blocking open for writing finds a reader, and the read
    blocks until the line arrives (never on end of file). One FIFO per attempt, so a
    worker of a killed node can never take the line meant for a later attempt.
    """
    text = "open"
    if ctx.attempt in params.get("block", ()):
        path = os.path.join(params["dir"], f"{ctx.job_id}.{ctx.attempt}")
        if not os.path.exists(path):  # a rerun of the same attempt finds it
            os.mkfifo(path)
        fd = os.open(path, os.O_RDWR)
        ctx.report(step=0, waiting=True)
        data = b""
        try:
            while not data.endswith(b"\n"):
                data += os.read(fd, 4096)
        finally:
            os.close(fd)
        text = data.decode().strip()
    return {"x": params["x"], "attempt": ctx.attempt, "gate": text}


def notify_fifo(params: dict[str, Any], ctx: TaskContext) -> int:
    """Write a line to the FIFO ``params["path"]`` (a test blocked reading it goes on
    knowing this task ran); return the worker's pid."""
    with open(params["path"], "w") as fifo:
        fifo.write("ran\n")
    return os.getpid()


def notify_fifo_then_block(params: dict[str, Any], ctx: TaskContext) -> None:
    """``notify_fifo``, then never return: a test that read the line knows every attempt
    before this one has sent its result (the worker runs them in turn)."""
    with open(params["path"], "w") as fifo:
        fifo.write("ran\n")
    threading.Event().wait()


def spin_in_c(params: dict[str, Any], ctx: TaskContext) -> int:
    """Report step 0, then sum ``range(params["n"])`` in one C call: no Python signal
    handler runs until it returns (only SIGKILL stops it)."""
    ctx.report(step=0)
    return sum(range(params["n"]))


def pid_then_wait(params: dict[str, Any], ctx: TaskContext) -> str:
    """Report the worker's pid, then read the FIFO ``params["path"]`` to its end."""
    ctx.report(step=0, pid=os.getpid())
    with open(params["path"]) as fifo:
        return fifo.read()


_MIB = 1024 * 1024
_CHILD_HOG = (
    "import sys, threading\n"
    "sys.stdin.readline()\n"
    "held = [b'x' * (1 << 20) for _ in range(int(sys.argv[1]))]\n"
    "try:\n"
    "    print('ready', flush=True)\n"
    "except OSError:\n"
    "    pass  # its task is gone: it stays, as a stray process would\n"
    "threading.Event().wait()\n"
)


def _write_pids(path: str | None, *pids: int) -> None:
    """Write ``pids`` to ``path`` (whole or not at all: a rename)."""
    if path:
        with open(f"{path}.tmp", "w") as file:
            file.write(" ".join(map(str, pids)))
        os.replace(f"{path}.tmp", path)


def hog(params: dict[str, Any], ctx: TaskContext) -> int:
    """Take ``mb`` MiB (written, so resident), and have a child in its own session take
    ``child_mb`` MiB; then report (step 0) and block if ``hold`` (until killed) or until
    the FIFO ``params["gate"]`` is written, else return the MiB taken.

    The worker's and the child's pids go to the file ``params["pids"]`` before any
    memory is taken (a task killed for its memory may never get to report)."""
    child = None
    if params.get("child_mb"):
        child = subprocess.Popen(
            [sys.executable, "-c", _CHILD_HOG, str(params["child_mb"])],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            start_new_session=True,  # outside the task's process group: only a tree kill
        )
    _write_pids(params.get("pids"), os.getpid(), child.pid if child else 0)
    held = [b"x" * _MIB for _ in range(params.get("mb", 0))]
    if child is not None:
        assert child.stdin is not None and child.stdout is not None
        child.stdin.write(b"go\n")
        child.stdin.flush()
        assert child.stdout.readline() == b"ready\n"  # it holds its memory now
    ctx.report(step=0, pid=os.getpid(), mb=len(held))
    if params.get("gate"):
        with open(params["gate"]) as fifo:
            fifo.read()
    elif params.get("hold"):
        threading.Event().wait()
    return len(held)


def write_mb(params: dict[str, Any], ctx: TaskContext) -> int:
    """Write ``mb`` files of 1 MiB into the output directory (the worker's pid first to
    the file ``params["pids"]``); block after if ``hold``."""
    _write_pids(params.get("pids"), os.getpid())
    for i in range(params["mb"]):
        (ctx.output_dir / f"part-{i}.bin").write_bytes(b"\0" * _MIB)
    if params.get("hold"):
        threading.Event().wait()
    return int(params["mb"])
