"""One attempt as a node agent runs it, what its runner reports, and the frames for it.

The connection actor turns a DISPATCH into an ``Attempt`` and hands it to a runner (a
fresh worker process) or a pool worker; they report ``TaskStarted``, ``TaskProgress``
and exactly one ``TaskEnded`` back to it. ``result_payload`` turns the ``TaskOutcome``
into the RESULT frame the coordinator gets, mapping the task's error kinds onto the
protocol's (``bad_entrypoint`` becomes ``not_found``: a permanent failure).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from ._attempt_files import LOG_NAME
from ._limits import MAX_TEXT_LEN
from .protocol import ErrorKind as WireKind
from .protocol import Progress, ProtocolError, Result, clip, encode
from .task import TaskJob, TaskOutcome

__all__ = (
    "Attempt",
    "Key",
    "TaskEnded",
    "TaskProgress",
    "TaskStarted",
    "attempt_dir",
    "unstarted",
    "progress_payload",
    "result_payload",
)

Key = tuple[str, str]
"""(job_id, lease): how every frame about an attempt names it."""

_WIRE_KINDS: Final[dict[str, WireKind]] = {
    "exception": "exception",
    "bad_entrypoint": "not_found",
    "bad_result": "exception",
    "timeout": "timeout",
    "cancelled": "cancelled",
    "crashed": "crashed",
    "publish_failed": "crashed",
    "memory_limit": "memory_limit",
    "disk_limit": "disk_limit",
}
_UNSTARTED: Final = {"handed_back": "handed back", "shutdown": "the node stopped"}
_MAX_METRIC_TEXT: Final = 1024
_MAX_DURATION_S: Final = 1e9


def unstarted(reason: str) -> TaskOutcome:
    """How an attempt stopped before it ever ran ends (``reason``: the stop's reason)."""
    return TaskOutcome.failure("cancelled", f"{_UNSTARTED.get(reason, reason)} before it started")


def attempt_dir(work_dir: Path, job_id: str, attempt: int) -> str:
    """``<work_dir>/jobs/<job_id>/<attempt>``: the attempt's log and outputs. A job id
    may hold "/" (ids allow it), which is escaped so the path stays under work_dir.
    A str: the node makes these paths for every task, and pathlib's parsing of them
    cost more than a trivial task's whole run."""
    escaped = job_id.replace("/", "%2F")
    return f"{work_dir}/jobs/{escaped}/{attempt}"


@dataclass(frozen=True, slots=True)
class Attempt:
    """One dispatched attempt: the job for the worker, its lease, GPUs and limits."""

    job: TaskJob
    lease: str
    gpus: tuple[str, ...]
    timeout_s: float | None
    directory: str  # attempt_dir

    @property
    def key(self) -> Key:
        """(job_id, lease)."""
        return (self.job.job_id, self.lease)

    @property
    def output_dir(self) -> str:
        """Where the outputs are published when the attempt succeeds."""
        return f"{self.directory}/output"

    @property
    def work_dir(self) -> str:
        """Where the task writes its outputs first (``partial_dir`` of ``output_dir``)."""
        return f"{self.directory}/.output.partial"

    @property
    def log_path(self) -> str:
        """The attempt's log (there only if the task wrote to it)."""
        return f"{self.directory}/{LOG_NAME}"


@dataclass(frozen=True, slots=True)
class TaskStarted:
    """Runner -> connection: the worker (``pid``) runs the task (the node sends ACCEPT)."""

    key: Key
    pid: int = 0


@dataclass(frozen=True, slots=True)
class TaskProgress:
    """Runner -> connection: the task called ``ctx.report`` (the node sends PROGRESS)."""

    key: Key
    step: int | None
    metrics: dict[str, Any]


@dataclass(frozen=True, slots=True)
class TaskEnded:
    """Runner -> connection, once per attempt: how it ended. ``reusable``: a pool worker
    that can take the next job (False for runners and for retiring pool workers).
    ``unstarted``: a pool worker gave back an attempt queued in its pipe that it never
    started (it failed or was stopped first); the node places it again."""

    key: Key
    outcome: TaskOutcome
    reusable: bool = False
    unstarted: bool = False


def result_payload(
    key: Key,
    attempt: int,
    outcome: TaskOutcome,
    duration_s: float,
    *,
    kind: WireKind | None = None,
) -> bytes:
    """The encoded RESULT for an attempt's outcome (``kind`` overrides a failure's kind,
    as for a task handed back while draining).

    A value the protocol cannot carry (over the frame limit, say) becomes a failure
    naming why, so the coordinator always gets an answer.
    """
    job_id, lease = key
    if not math.isfinite(duration_s):
        duration_s = 0.0
    duration = min(max(duration_s, 0.0), _MAX_DURATION_S)
    if outcome.ok and kind is None:
        try:
            return encode(Result(job_id, lease, attempt, True, outcome.value, duration_s=duration))
        except ProtocolError as exc:
            return failure_payload(
                key,
                attempt,
                "exception",
                f"the result cannot be sent to the coordinator: {exc.message}",
                duration,
            )
    wire_kind = kind or _WIRE_KINDS.get(outcome.kind or "", "crashed")
    text = outcome.error or f"the attempt ended as {outcome.kind}"
    if outcome.traceback:
        text = f"{text}\n{outcome.traceback}"
    return failure_payload(key, attempt, wire_kind, text, duration)


def failure_payload(
    key: Key, attempt: int, kind: WireKind, error: str, duration_s: float = 0.0
) -> bytes:
    """The encoded RESULT of a failed attempt (the error text clipped to the limit)."""
    job_id, lease = key
    return encode(
        Result(
            job_id,
            lease,
            attempt,
            False,
            error=clip(error, MAX_TEXT_LEN),
            error_kind=kind,
            duration_s=duration_s,
        )
    )


def progress_payload(key: Key, step: int | None, metrics: dict[str, Any]) -> bytes | None:
    """The encoded PROGRESS for a ``ctx.report``; None when nothing of it can be sent.

    The protocol wants a step >= 0 (a missing step is sent as 0) and flat metrics:
    a value that is not a scalar (a list, a dict) is sent as its ``repr``, clipped.
    """
    job_id, lease = key
    wire_step = step if step is not None and step >= 0 else 0
    try:
        return encode(Progress(job_id, lease, wire_step, metrics))
    except ProtocolError:
        pass
    flat: dict[str, Any] = {}
    for name, value in list(metrics.items())[:256]:
        label = "".join(c for c in str(name) if c.isprintable())[:256]
        if value is None or isinstance(value, bool | int | float):
            flat[label] = value
        else:
            flat[label] = clip(value if isinstance(value, str) else repr(value), _MAX_METRIC_TEXT)
    try:
        return encode(Progress(job_id, lease, wire_step, flat))
    except ProtocolError:
        return None
