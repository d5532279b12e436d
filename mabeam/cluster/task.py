"""The task model: what an entrypoint is, what it is handed, and what comes back.

An entrypoint ``package.module:function`` is called as ``function(params, ctx)`` in a
worker process (``mabeam.cluster.worker``). ``ctx`` is a ``TaskContext``; the return value
is the result and must be msgpack-encodable by ``foundation.codec``; an exception becomes
a failure carrying its traceback text. ``TaskOutcome`` is the one result type every
runner reports, whatever went wrong. See docs/tasks.md.

The module also holds the worker wire format (length-prefixed msgpack frames) shared by
the worker and its parent, so both sides use one definition and one set of limits.
"""

from __future__ import annotations

import fnmatch
import functools
import importlib
import inspect
import os
import re
import signal
import struct
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Literal, TypeAlias, get_args

from foundation import CodecError
from foundation.codec import Codec

from ._attempt_files import published_dir

__all__ = (
    "ENTRYPOINT_PATTERN",
    "MAX_MESSAGE_BYTES",
    "TASK_CODEC",
    "EntrypointError",
    "EntrypointNotAllowed",
    "ErrorKind",
    "TaskFunction",
    "FrameBuffer",
    "Progress",
    "TaskContext",
    "TaskJob",
    "TaskOutcome",
    "check_entrypoint_allowed",
    "entrypoint_allowed",
    "job_from_wire",
    "job_to_wire",
    "load_entrypoint",
    "pack_frame",
    "parse_entrypoint",
)

#: Largest frame (job, progress or result) between a worker and its parent, in bytes.
#: A bigger result fails as ``bad_result``: write big artefacts to ``ctx.output_dir``.
MAX_MESSAGE_BYTES: Final = 1 << 20
#: The codec for every worker frame (msgpack, str map keys, no pickle).
TASK_CODEC: Final = Codec(max_size=MAX_MESSAGE_BYTES)
#: Wire version of the job and message frames.
WIRE_VERSION: Final = 1

#: How a task can fail. ``exception``: the function raised; ``bad_entrypoint``: it could
#: not be imported or called; ``bad_result``: the return value is not encodable;
#: ``timeout`` / ``cancelled``: the runner stopped it; ``crashed``: the worker died
#: without a result (exit code or signal); ``publish_failed``: the outputs could not be
#: renamed into place; ``memory_limit`` / ``disk_limit``: the node stopped it for using
#: more memory than its limit, or for writing more outputs than the node allows.
ErrorKind: TypeAlias = Literal[
    "exception",
    "bad_entrypoint",
    "bad_result",
    "timeout",
    "cancelled",
    "crashed",
    "publish_failed",
    "memory_limit",
    "disk_limit",
]
ERROR_KINDS: Final[frozenset[str]] = frozenset(get_args(ErrorKind))

_IDENT = r"[A-Za-z_][A-Za-z0-9_]*"
#: ``package.module:function`` (the function may be ``Class.method``-style dotted too).
ENTRYPOINT_PATTERN: Final = re.compile(rf"^({_IDENT}(?:\.{_IDENT})*):({_IDENT}(?:\.{_IDENT})*)$")


class EntrypointError(ValueError):
    """An entrypoint is malformed, cannot be imported, or cannot be called as a task."""


class EntrypointNotAllowed(EntrypointError):
    """An entrypoint matches none of a node's allow-list patterns."""


# --------------------------------------------------------------------------- entrypoints


def parse_entrypoint(entrypoint: object) -> tuple[str, str]:
    """Split ``"package.module:function"`` into (module, function), or raise EntrypointError."""
    if not isinstance(entrypoint, str):
        raise EntrypointError(
            f"an entrypoint must be a string 'package.module:function', "
            f"got {type(entrypoint).__name__}: {entrypoint!r}"
        )
    match = ENTRYPOINT_PATTERN.match(entrypoint)
    if match is None:
        raise EntrypointError(
            f"malformed entrypoint {entrypoint!r}: expected 'package.module:function' "
            "(dotted Python identifiers, one colon)"
        )
    return match.group(1), match.group(2)


TaskFunction: TypeAlias = Callable[[dict[str, Any], "TaskContext"], Any]


def load_entrypoint(entrypoint: str) -> TaskFunction:
    """Import and return the task function, checked to accept ``(params, ctx)``.

    Raises EntrypointError naming what failed: the syntax, the import (with the
    original exception), a missing attribute, a non-callable, or a signature that
    cannot take two positional arguments.
    """
    module_name, attr_path = parse_entrypoint(entrypoint)
    try:
        target: Any = importlib.import_module(module_name)  # sys.modules after the first
    except Exception as exc:  # any import-time failure of user code, reported as-is
        raise EntrypointError(
            f"cannot import module {module_name!r} for entrypoint {entrypoint!r}: "
            f"{type(exc).__name__}: {exc}"
        ) from exc
    for part in attr_path.split("."):
        try:
            target = getattr(target, part)
        except AttributeError:
            raise EntrypointError(
                f"entrypoint {entrypoint!r}: {module_name!r} has no attribute "
                f"{attr_path!r} (missing {part!r})"
            ) from None
    known = _CHECKED.get(entrypoint)
    if known is not None and known is target:  # a pool worker's next task: checked already
        checked: TaskFunction = known
        return checked
    if not callable(target):
        raise EntrypointError(
            f"entrypoint {entrypoint!r} is a {type(target).__name__}, not a function"
        )
    try:
        signature = inspect.signature(target)
    except (TypeError, ValueError):
        signature = None  # builtins without a signature: let the call itself decide
    try:
        if signature is not None:
            signature.bind({}, None)
    except TypeError as exc:
        raise EntrypointError(
            f"entrypoint {entrypoint!r} has signature {attr_path}{signature}; a task "
            f"function must accept (params, ctx): {exc}"
        ) from None
    if inspect.iscoroutinefunction(target):
        raise EntrypointError(
            f"entrypoint {entrypoint!r} is an async function; a task function must be "
            "synchronous (call anyio.run inside it if it needs an event loop)"
        )
    if len(_CHECKED) >= _MAX_CHECKED:
        _CHECKED.clear()
    _CHECKED[entrypoint] = target
    function: TaskFunction = target
    return function


_CHECKED: dict[str, Any] = {}
"""Entrypoint -> the function that passed ``load_entrypoint``'s checks (``inspect``
costs more than a trivial task); a changed attribute is checked again."""
_MAX_CHECKED: Final = 1024


def entrypoint_allowed(entrypoint: str, patterns: Iterable[str]) -> bool:
    """Whether ``entrypoint`` matches one of the fnmatch-style ``patterns`` (case-sensitive).

    ``"mypkg.*"`` allows every entrypoint under ``mypkg``; ``"*"`` allows everything; an
    empty list allows nothing.
    """
    if type(patterns) is tuple and type(entrypoint) is str:
        return _allowed(entrypoint, patterns)  # a node's own list: asked for every task
    return any(fnmatch.fnmatchcase(entrypoint, pattern) for pattern in patterns)


@functools.lru_cache(maxsize=4096)
def _allowed(entrypoint: str, patterns: tuple[str, ...]) -> bool:
    return any(fnmatch.fnmatchcase(entrypoint, pattern) for pattern in patterns)


def check_entrypoint_allowed(entrypoint: str, patterns: Iterable[str]) -> None:
    """Raise EntrypointNotAllowed, with a message fit for the client, unless allowed."""
    patterns = list(patterns)
    if entrypoint_allowed(entrypoint, patterns):
        return
    shown = ", ".join(repr(p) for p in patterns) if patterns else "none (the list is empty)"
    raise EntrypointNotAllowed(
        f"entrypoint {entrypoint!r} is not allowed on this node; allowed patterns: {shown}"
    )


# --------------------------------------------------------------------------- job and results


@dataclass(frozen=True, slots=True)
class TaskJob:
    """One attempt of one job, as a runner receives it.

    ``output_dir`` is where the outputs end up once the attempt succeeds; the task
    itself writes into a temporary sibling (``ctx.output_dir``) that is renamed here.
    """

    entrypoint: str
    params: dict[str, Any]
    job_id: str
    attempt: int = 1
    output_dir: Path | None = None

    def __post_init__(self) -> None:
        parse_entrypoint(self.entrypoint)
        if not isinstance(self.params, dict):
            raise TypeError(f"params must be a dict, got {type(self.params).__name__}")
        if not isinstance(self.job_id, str) or not self.job_id:
            raise ValueError(f"job_id must be a non-empty string, got {self.job_id!r}")
        if type(self.attempt) is not int or self.attempt < 1:
            raise ValueError(f"attempt must be an int >= 1, got {self.attempt!r}")


def job_to_wire(
    job: TaskJob,
    *,
    work_dir: str | Path,
    gpus: Sequence[str],
    log_path: str | Path | None = None,
    seq: int | None = None,
) -> dict[str, Any]:
    """The job frame's body for a worker: ``work_dir`` is where the task writes; ``seq``
    names it for a later ``{"skip": seq}`` (pool workers)."""
    wire = {
        "v": WIRE_VERSION,
        "entrypoint": job.entrypoint,
        "params": job.params,
        "job_id": job.job_id,
        "attempt": job.attempt,
        "work_dir": str(work_dir),
        "gpus": list(gpus),
        "log_path": None if log_path is None else str(log_path),
    }
    if seq is not None:
        wire["seq"] = seq
    return wire


_JOB_FIELDS: Final[dict[str, type | tuple[type, ...]]] = {
    "entrypoint": str,
    "params": dict,
    "job_id": str,
    "attempt": int,
    "work_dir": str,
    "gpus": list,
    "log_path": (str, type(None)),
}


def job_from_wire(wire: object) -> dict[str, Any]:
    """Check a decoded job frame (``job_to_wire``'s shape); ValueError naming the bad field."""
    if not isinstance(wire, dict):
        raise ValueError(f"a job must be a map, got {type(wire).__name__}")
    if wire.get("v") != WIRE_VERSION:
        raise ValueError(f"unsupported job wire version {wire.get('v')!r} (want {WIRE_VERSION})")
    for name, kind in _JOB_FIELDS.items():
        if not isinstance(wire.get(name), kind):
            raise ValueError(f"job field {name!r} is missing or mistyped: {wire.get(name)!r}")
    if not all(isinstance(gpu, str) for gpu in wire["gpus"]):
        raise ValueError(f"job field 'gpus' must list strings: {wire['gpus']!r}")
    if "seq" in wire and type(wire["seq"]) is not int:
        raise ValueError(f"job field 'seq' must be an int: {wire['seq']!r}")
    return wire


@dataclass(frozen=True, slots=True)
class Progress:
    """One ``ctx.report(step=..., **metrics)`` call, as the parent receives it."""

    step: int | None
    metrics: dict[str, Any]


@dataclass(frozen=True, slots=True)
class TaskOutcome:
    """How one attempt ended: ``ok`` with ``value``, or a failure of a given ``kind``.

    ``error`` is one readable line; ``traceback`` the task's traceback text (or the tail
    of the log for a crash); ``exit_code`` / ``signal`` say how the worker process ended
    when that matters; ``output_dir`` is the published directory of a success.
    """

    ok: bool
    value: Any = None
    kind: ErrorKind | None = None
    error: str = ""
    traceback: str = ""
    exit_code: int | None = None
    signal: int | None = None
    log_path: str | None = None
    output_dir: str | None = None

    @classmethod
    def success(cls, value: Any, **extra: Any) -> TaskOutcome:
        """A successful outcome with its result value."""
        return cls(ok=True, value=value, **extra)

    @classmethod
    def failure(cls, kind: ErrorKind, error: str, **extra: Any) -> TaskOutcome:
        """A failed outcome of ``kind`` with a one-line ``error``."""
        if kind not in ERROR_KINDS:
            raise ValueError(f"unknown error kind {kind!r}; expected one of {sorted(ERROR_KINDS)}")
        return cls(ok=False, kind=kind, error=error, **extra)

    @classmethod
    def crashed(cls, returncode: int, traceback: str = "") -> TaskOutcome:
        """A worker that ended with ``returncode`` (Popen's: ``-N`` for signal N) and no result."""
        if returncode < 0:
            try:
                name = signal.Signals(-returncode).name
            except ValueError:
                name = "signal"
            what = f"worker killed by {name} ({-returncode}) before sending a result"
            return cls.failure("crashed", what, signal=-returncode, traceback=traceback)
        what = f"worker exited with code {returncode} before sending a result"
        return cls.failure("crashed", what, exit_code=returncode, traceback=traceback)

    def to_wire(self) -> dict[str, Any]:
        """A msgpack-able dict (for a RESULT frame or the outbox)."""
        if self.ok:
            wire: dict[str, Any] = {"ok": True, "value": self.value}
            names: tuple[str, ...] = ("output_dir", "log_path")
        else:
            wire = {
                "ok": False,
                "kind": self.kind,
                "error": self.error,
                "traceback": self.traceback,
            }
            names = ("exit_code", "signal", "log_path")
        for name in names:
            value = getattr(self, name)
            if value is not None:
                wire[name] = value
        return wire

    @classmethod
    def from_wire(cls, wire: Mapping[str, Any]) -> TaskOutcome:
        """Rebuild an outcome from ``to_wire``'s dict; ValueError on anything else."""
        ok = wire.get("ok")
        paths = {name: wire.get(name) for name in ("output_dir", "log_path")}
        for name, path in paths.items():
            if path is not None and not isinstance(path, str):
                raise ValueError(f"outcome {name} must be a string, got {path!r}")
        if ok is True:
            return cls.success(wire.get("value"), **paths)
        if ok is not False:
            raise ValueError(f"an outcome needs ok: true or false, got {ok!r}")
        kind, error, tb = wire.get("kind"), wire.get("error"), wire.get("traceback", "")
        if kind not in ERROR_KINDS:
            raise ValueError(f"unknown error kind {kind!r}; expected one of {sorted(ERROR_KINDS)}")
        if not isinstance(error, str) or not isinstance(tb, str):
            raise ValueError("a failed outcome needs string 'error' and 'traceback' fields")
        extra: dict[str, Any] = {}
        for name in ("exit_code", "signal"):
            value = wire.get(name)
            if value is not None and type(value) is not int:
                raise ValueError(f"outcome {name} must be an int, got {value!r}")
            extra[name] = value
        return cls.failure(kind, error, traceback=tb, log_path=paths["log_path"], **extra)


# --------------------------------------------------------------------------- the context


class TaskContext:
    """What a task function receives as ``ctx``: identity, device, outputs, progress.

    ``device`` is ``"cpu"`` or the assigned GPU UUIDs joined with commas (also in
    ``gpus``); the process sees exactly those GPUs through ``CUDA_VISIBLE_DEVICES``, so
    inside the task they are ``cuda:0``, ``cuda:1``, ... ``output_dir`` is a fresh
    directory (made on first use), published by an atomic rename only if the task
    succeeds.
    """

    __slots__ = ("_lock", "_output_dir", "_path", "_send", "attempt", "device", "gpus", "job_id")

    def __init__(
        self,
        *,
        job_id: str,
        attempt: int,
        gpus: tuple[str, ...],
        output_dir: str | os.PathLike[str],
        send: Callable[[bytes], None],
    ) -> None:
        self.job_id = job_id
        self.attempt = attempt
        self.gpus = gpus
        self.device = ",".join(gpus) if gpus else "cpu"
        self._output_dir = output_dir
        self._path: Path | None = None  # made (and created) on first use: most never ask
        self._send = send
        self._lock = threading.Lock()

    @property
    def output_dir(self) -> Path:
        """The attempt's output directory, created on first use (a task that writes no
        outputs costs no directory)."""
        path = self._path
        if path is None:
            path = Path(self._output_dir)
            path.mkdir(parents=True, exist_ok=True)
            self._path = path
        return path

    @property
    def published_dir(self) -> Path:
        """Where ``output_dir`` will be once the attempt succeeds: the lasting path of
        its outputs, to name in the result (a PBT checkpoint a later trial starts from).
        Nothing is there before the task returns."""
        return published_dir(Path(self._output_dir))

    def report(self, step: int | None = None, **metrics: Any) -> None:
        """Stream one progress record (``step`` and named metrics) to the node.

        Safe to call from any thread of the task. Raises TypeError for a non-int step
        and ValueError when the metrics cannot be encoded (msgpack types only).
        """
        if step is not None and type(step) is not int:
            raise TypeError(f"ctx.report: step must be an int or None, got {step!r}")
        try:
            frame = pack_frame({"t": "progress", "step": step, "metrics": metrics})
        except CodecError as exc:
            raise ValueError(f"ctx.report: metrics are not encodable: {exc}") from None
        with self._lock:
            self._send(frame)

    def __repr__(self) -> str:
        return (
            f"TaskContext(job_id={self.job_id!r}, attempt={self.attempt}, "
            f"device={self.device!r}, output_dir={str(self._output_dir)!r})"
        )


# --------------------------------------------------------------------------- frames

_HEADER: Final = struct.Struct(">I")


def pack_frame(message: Any, *, walk: bool = True) -> bytes:
    """One frame: a 4-byte big-endian length, then the msgpack body. Raises CodecError.
    ``walk=False``: the caller checked ``message`` against the codec's limits already
    (``Codec.encode``)."""
    body = TASK_CODEC.encode(message, walk=walk)
    return _HEADER.pack(len(body)) + body


class FrameBuffer:
    """Reassembles frames from a byte stream read in arbitrary chunks. ``walk=False``
    leaves the codec's walk of each message (str keys, depth) to a sender that made
    them under the same limits: a worker reading its own node's job frames."""

    __slots__ = ("_buffer", "_walk")

    def __init__(self, *, walk: bool = True) -> None:
        self._buffer = bytearray()
        self._walk = walk

    def feed(self, data: bytes) -> list[Any]:
        """Add ``data``; return every complete message. Raises CodecError on a bad frame."""
        self._buffer += data
        messages: list[Any] = []
        while len(self._buffer) >= _HEADER.size:
            (size,) = _HEADER.unpack_from(self._buffer)
            if size > MAX_MESSAGE_BYTES:
                raise CodecError(
                    f"frame of {size} bytes exceeds the {MAX_MESSAGE_BYTES}-byte limit"
                )
            end = _HEADER.size + size
            if len(self._buffer) < end:
                break
            body = bytes(self._buffer[_HEADER.size : end])
            del self._buffer[:end]
            messages.append(TASK_CODEC.decode(body, walk=self._walk))
        return messages

    @property
    def pending(self) -> int:
        """Bytes of an incomplete frame still buffered."""
        return len(self._buffer)
