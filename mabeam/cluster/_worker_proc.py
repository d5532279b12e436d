"""Process control shared by everything that runs task workers (no event loop here).

A per-task ``TaskProcess`` (``_runner.py``) and the node's reusable pool workers
(``_node_pool.py``) start the same ``python -m mabeam.cluster.worker`` the same way:
in a new session (its process group holds the task and what it spawns), with the GPU
variables and ``PYTHONUNBUFFERED=1`` in the environment and stderr on a log file.
Both read the same messages from its stdout and end an attempt the same way: publish
the outputs by a rename on success, drop them and attach the exit status on failure.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Final

from ._attempt_files import log_tail, partial_dir, publish
from ._env import PRIVATE_ENV
from ._task_limits import outputs_over
from .gpus import visible_devices_env
from .task import Progress, TaskOutcome

__all__ = (
    "PARENT_KINDS",
    "SKIPPED",
    "clear_dir",
    "conclude",
    "failed",
    "fresh_work_dir",
    "kill_group",
    "parse_message",
    "signal_group",
    "spawn_worker",
    "worker_environment",
)

PARENT_KINDS = frozenset(
    {"timeout", "cancelled", "crashed", "publish_failed", "memory_limit", "disk_limit"}
)
"""Outcome kinds only the parent decides; a worker that reports one is broken."""


def worker_environment(gpus: Sequence[str], env: Mapping[str, str] | None = None) -> dict[str, str]:
    """This process's environment plus ``env``, the GPU variables for ``gpus`` (none:
    ``CUDA_VISIBLE_DEVICES=""``) and ``PYTHONUNBUFFERED=1``."""
    child_env = dict(os.environ)
    for name in PRIVATE_ENV:  # the agent's own key files are not the task's business
        child_env.pop(name, None)
    child_env.update(env or {})
    child_env.update(visible_devices_env(gpus))
    child_env["PYTHONUNBUFFERED"] = "1"
    return child_env


def spawn_worker(
    env: Mapping[str, str],
    log_path: Path,
    *,
    python: str,
    cwd: Path | None = None,
    pool: bool = False,
) -> subprocess.Popen[bytes]:
    """Start a worker with stdin/stdout pipes and stderr appended to ``log_path``, in a
    new session (its pid is its process group id). Raises OSError when it cannot start."""
    argv = [python, "-m", "mabeam.cluster.worker", *(["--pool"] if pool else [])]
    log_fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o644)
    try:
        return subprocess.Popen(
            argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=log_fd,
            env=dict(env),
            cwd=cwd,
            start_new_session=True,
            close_fds=True,
        )
    finally:
        os.close(log_fd)


def signal_group(pgid: int, signum: int) -> None:
    """Send ``signum`` to a worker's process group; an empty group is not an error."""
    try:
        os.killpg(pgid, signum)
    except ProcessLookupError:
        pass  # the group is empty
    except PermissionError:  # pragma: no cover - the pgid was reused by another user
        pass


def kill_group(pgid: int) -> None:
    """SIGKILL what is left of a worker's group (the task's own children)."""
    signal_group(pgid, signal.SIGKILL)


def fresh_work_dir(output_dir: Path) -> Path:
    """The temporary directory an attempt writes its outputs into, made by the task on
    first use (``ctx.output_dir``); what an earlier run of the same attempt left there is
    removed."""
    work_dir = partial_dir(output_dir)
    clear_dir(work_dir)
    return work_dir


def clear_dir(work_dir: str | Path) -> None:
    """Remove what an earlier run of the same attempt left in ``work_dir`` (an attempt's
    temporary output directory). Costs one ``stat`` when there is nothing to remove."""
    if os.path.lexists(work_dir):
        shutil.rmtree(work_dir)


SKIPPED: Final = "skipped"
"""``parse_message``'s answer to a pool worker's ``{"t": "skipped"}``: the job it was
called off before it started."""


def parse_message(message: Any) -> Progress | TaskOutcome | str:
    """One decoded worker message as ``Progress``, the final ``TaskOutcome``, or
    ``SKIPPED``.

    Raises ValueError for anything a well-behaved worker does not send (the parent then
    treats the worker as crashed).
    """
    if not isinstance(message, dict):
        raise ValueError(f"expected a map, got {type(message).__name__}")
    kind = message.get("t")
    if kind == "progress":
        step, metrics = message.get("step"), message.get("metrics")
        if (step is not None and type(step) is not int) or not isinstance(metrics, dict):
            raise ValueError(f"bad progress message {message!r}")
        return Progress(step, metrics)
    if kind == "result":
        outcome = TaskOutcome.from_wire(message)
        if outcome.kind in PARENT_KINDS:
            raise ValueError(f"a worker cannot report kind {outcome.kind!r}")
        return outcome
    if kind == SKIPPED:
        return SKIPPED
    raise ValueError(f"unknown message type {kind!r}")


def failed(
    outcome: TaskOutcome, returncode: int | None, *, work_dir: str | Path, log_path: str | Path
) -> TaskOutcome:
    """A failure with the log path and the worker's exit status attached; the partial
    outputs are dropped."""
    shutil.rmtree(work_dir, ignore_errors=True)
    exit_code, signum = outcome.exit_code, outcome.signal
    if returncode is not None and exit_code is None and signum is None:
        exit_code, signum = (returncode, None) if returncode >= 0 else (None, -returncode)
    assert outcome.kind is not None
    return TaskOutcome.failure(
        outcome.kind,
        outcome.error,
        traceback=outcome.traceback,
        exit_code=exit_code,
        signal=signum,
        log_path=str(log_path) if os.path.exists(log_path) else None,
    )


def conclude(
    final: TaskOutcome | None,
    returncode: int | None,
    *,
    work_dir: str | Path,
    output_dir: str | Path,
    log_path: str | Path,
    disk_mb: int | None = None,
) -> TaskOutcome:
    """How an attempt ended, from the worker's final message (None: it died without
    one): a success publishes ``work_dir`` as ``output_dir`` (if the task made it and it
    is within ``disk_mb`` MiB, else the attempt fails with ``disk_limit``), anything
    else drops it. The outcome names the log only if there is one (a pool task that
    printed nothing has none)."""
    if final is None:
        code = -signal.SIGKILL if returncode is None else returncode
        crash = TaskOutcome.crashed(code, traceback=log_tail(log_path))
        return failed(crash, returncode, work_dir=work_dir, log_path=log_path)
    if not final.ok:
        return failed(final, returncode, work_dir=work_dir, log_path=log_path)
    published: str | None = None
    if os.path.isdir(work_dir):
        over = outputs_over(Path(work_dir), disk_mb)
        if over is not None:
            outcome = TaskOutcome.failure("disk_limit", over)
            return failed(outcome, returncode, work_dir=work_dir, log_path=log_path)
        try:
            publish(Path(work_dir), Path(output_dir))
        except OSError as exc:
            outcome = TaskOutcome.failure(
                "publish_failed", f"could not publish outputs to {output_dir}: {exc}"
            )
            return failed(outcome, returncode, work_dir=work_dir, log_path=log_path)
        published = str(output_dir)
    log = str(log_path) if os.path.exists(log_path) else None
    return TaskOutcome.success(final.value, log_path=log, output_dir=published)
