"""Reusable workers for ``isolation="pool"``: one long-lived worker process per slot.

A ``PoolWorker`` actor owns one ``python -m mabeam.cluster.worker --pool`` and runs the
attempts the connection actor hands it, one at a time, for short CPU tasks where a
fresh interpreter per task (~150 ms) would cost more than the task. The per-task path
stays on the event loop, with no thread hop: the job frame is written to the worker's
stdin, and a linked ``PipeReader`` waits on the worker's stdout with
``anyio.wait_readable`` and casts what it reads to the PoolWorker, which reassembles
frames (``task.FrameBuffer``), forwards progress and reports the end (``TaskEnded``).

A pool worker is replaced (this actor exits and the next pool task starts a new one)
when its process dies (``crashed``), when a task must be stopped (timeout, cancel,
hand-back, fencing: SIGTERM to its group, SIGKILL after the grace period), when it
sent a malformed message, and after ``max_tasks_per_worker`` tasks. Tasks in a pool
worker share its environment, so they get no GPU (``CUDA_VISIBLE_DEVICES=""``), and a
child process a task leaves behind lives on until the worker is replaced.
"""

from __future__ import annotations

import contextlib
import functools
import os
import signal
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import anyio

from foundation import Actor, ActorRef, CodecError, TimerRef

from ._attempt_files import LOG_NAME, log_tail
from ._node_link import stop_reader
from ._node_setup import TaskSettings
from ._node_tasks import Attempt, Key, TaskEnded, TaskProgress
from ._worker_proc import (
    conclude,
    failed,
    fresh_work_dir,
    kill_group,
    parse_message,
    signal_group,
    spawn_worker,
    worker_environment,
)
from .task import ErrorKind, FrameBuffer, Progress, TaskOutcome, job_to_wire, pack_frame

__all__ = ("PipeReader", "PoolWorker", "RunAttempt", "StopAttempt")

_READ_CHUNK: Final = 1 << 16
_BOOT: Final = "boot"
_READ: Final = "read"


@dataclass(frozen=True, slots=True)
class RunAttempt:
    """Connection -> PoolWorker: run this attempt (the worker is idle)."""

    attempt: Attempt


@dataclass(frozen=True, slots=True)
class StopAttempt:
    """Connection -> PoolWorker: stop the attempt ``key`` (``reason``: why)."""

    key: Key
    reason: str


@dataclass(frozen=True, slots=True)
class _Output:
    data: bytes


@dataclass(frozen=True, slots=True)
class _Eof:
    pass


@dataclass(frozen=True, slots=True)
class _Deadline:
    seq: int


@dataclass(frozen=True, slots=True)
class _Kill:
    seq: int


class PipeReader(Actor):
    """Reads a pipe for its owner: casts ``_Output`` chunks, then ``_Eof``, then exits.

    Spawn it linked; the owner kills it before closing the fd.
    """

    async def init(self, fd: int, owner: ActorRef) -> None:
        self._fd = fd
        self._owner = owner
        self.ref.cast(_READ)

    async def handle_cast(self, msg: Any) -> None:
        fd, owner = self._fd, self._owner
        while True:
            await anyio.wait_readable(fd)
            chunks: list[bytes] = []
            eof = False
            while True:
                try:
                    data = os.read(fd, _READ_CHUNK)
                except BlockingIOError:
                    break
                except OSError:
                    eof = True
                    break
                if not data:
                    eof = True
                    break
                chunks.append(data)
            if chunks:
                owner.cast(_Output(b"".join(chunks)))
            if eof:
                owner.cast(_Eof())
                self.stop()
                return


@dataclass(slots=True)
class _Current:
    """The attempt a pool worker is running."""

    attempt: Attempt
    seq: int
    work_dir: Path
    timer: TimerRef | None = None
    stopping: str | None = None  # why it is being stopped
    what: str = ""  # the stop, as the error says it
    sigkilled: bool = False


class PoolWorker(Actor):
    """One reusable worker process; see the module docstring."""

    async def init(self, owner: ActorRef, settings: TaskSettings, index: int) -> None:
        self.trap_exits = True
        self._owner = owner
        self._settings = settings
        self._index = index
        self._popen: subprocess.Popen[bytes] | None = None
        self._boot_error = ""
        self._reader: ActorRef | None = None
        self._frames = FrameBuffer()
        self._current: _Current | None = None
        self._seq = 0
        self._done = 0
        self.ref.cast(_BOOT)

    # -- messages ------------------------------------------------------------------------

    async def handle_cast(self, msg: Any) -> None:
        cls = type(msg)
        if cls is _Output:
            self._on_output(msg.data)
        elif cls is RunAttempt:
            await self._run(msg.attempt)
        elif cls is StopAttempt:
            self._stop(msg.key, msg.reason)
        elif cls is _Eof:
            await self._on_eof()
        elif msg == _BOOT:
            await self._boot()
        else:
            raise ValueError(f"PoolWorker got an unknown message {msg!r}")

    async def handle_info(self, msg: Any) -> None:
        cls = type(msg)
        current = self._current
        if cls is _Deadline and current is not None and current.seq == msg.seq:
            timeout = current.attempt.timeout_s
            self._stop(current.attempt.key, "timeout", f"timed out after {timeout:g} s")
        elif cls is _Kill and current is not None and current.seq == msg.seq:
            current.sigkilled = True
            kill_group(self._pgid)
        # Exit of the reader (it ends at end of file): nothing to do.

    async def terminate(self, reason: Any) -> None:
        proc = self._popen
        if proc is None:
            return
        if self._current is not None:
            kill_group(proc.pid)  # the node is going away: the task goes with it
        reader, self._reader = self._reader, None
        if reader is not None:
            await stop_reader(self, reader)  # before its fd closes
        with contextlib.suppress(OSError):
            assert proc.stdin is not None
            proc.stdin.close()  # an idle worker exits at the end of its job pipe
        await self._reap()
        with contextlib.suppress(OSError):
            assert proc.stdout is not None
            proc.stdout.close()

    # -- the worker process --------------------------------------------------------------

    @property
    def _pgid(self) -> int:
        assert self._popen is not None
        return self._popen.pid

    async def _boot(self) -> None:
        settings = self._settings
        log_dir = settings.log_dir
        start = functools.partial(
            _start_worker, settings, log_dir / f"pool-worker-{self._index}.log"
        )
        try:
            proc = await self.runtime.to_thread(start)
        except OSError as exc:
            self._boot_error = f"could not start a pool worker: {exc}"
            return
        self._popen = proc
        assert proc.stdout is not None and proc.stdin is not None
        os.set_blocking(proc.stdout.fileno(), False)
        os.set_blocking(proc.stdin.fileno(), False)
        self._reader = await self.spawn_link(PipeReader, proc.stdout.fileno(), self.ref)

    async def _reap(self) -> int:
        """Wait for the worker to exit (SIGKILL past the grace period); its status."""
        proc = self._popen
        assert proc is not None
        code = proc.poll()
        if code is None:
            try:
                code = await self.runtime.to_thread(proc.wait, self._settings.grace_s)
            except subprocess.TimeoutExpired:
                kill_group(proc.pid)
                code = await self.runtime.to_thread(proc.wait)
        kill_group(proc.pid)  # what the last task left running in the group
        return code

    # -- one attempt ---------------------------------------------------------------------

    async def _run(self, attempt: Attempt) -> None:
        if self._popen is None or self._current is not None:
            why = self._boot_error or "the pool worker is busy or not running"
            self._report(attempt, TaskOutcome.failure("crashed", why), reusable=False)
            self.stop()
            return
        log_path = attempt.directory / LOG_NAME
        try:
            work_dir = fresh_work_dir(attempt.output_dir)
        except OSError as exc:
            why = f"could not prepare {attempt.directory}: {exc}"
            outcome = TaskOutcome.failure("crashed", why)
            self._report(attempt, outcome, reusable=True)
            return
        try:
            frame = pack_frame(
                job_to_wire(attempt.job, work_dir=work_dir, gpus=[], log_path=log_path)
            )
        except CodecError as exc:
            outcome = TaskOutcome.failure("exception", f"the job cannot be sent: {exc}")
            self._report(attempt, outcome, reusable=True)
            return
        self._seq += 1
        current = self._current = _Current(attempt, self._seq, work_dir)
        if attempt.timeout_s is not None:
            current.timer = self.send_after(attempt.timeout_s, _Deadline(current.seq))
        await self._write(frame)

    async def _write(self, frame: bytes) -> None:
        proc = self._popen
        assert proc is not None and proc.stdin is not None
        fd = proc.stdin.fileno()
        view = memoryview(frame)
        while view:
            try:
                view = view[os.write(fd, view) :]
            except BlockingIOError:
                await anyio.wait_writable(fd)
            except OSError:
                return  # the worker died: its end of file reports it

    def _on_output(self, data: bytes) -> None:
        try:
            messages = self._frames.feed(data)
        except CodecError as exc:
            self._broken(f"worker sent a malformed message: {exc}")
            return
        for message in messages:
            current = self._current
            if current is None:
                continue  # a stray report between jobs (a task's leftover thread)
            try:
                parsed = parse_message(message)
            except ValueError as exc:
                self._broken(f"worker sent a malformed message: {exc}")
                return
            if isinstance(parsed, Progress):
                if current.stopping is None:
                    key = current.attempt.key
                    self._owner.cast(TaskProgress(key, parsed.step, parsed.metrics))
            else:
                self._finished(current, parsed)

    def _finished(self, current: _Current, final: TaskOutcome) -> None:
        """The worker sent the attempt's result: publish, report, maybe retire."""
        self._current = None
        if current.timer is not None:
            current.timer.cancel()
        attempt = current.attempt
        outcome = conclude(
            final,
            None,
            work_dir=current.work_dir,
            output_dir=attempt.output_dir,
            log_path=attempt.directory / LOG_NAME,
        )
        self._done += 1
        # A worker that was signalled may die any moment: it does not take another job.
        reusable = current.stopping is None and self._done < self._settings.max_tasks_per_worker
        self._report(attempt, outcome, reusable=reusable)
        if not reusable:
            self.stop()

    def _stop(self, key: Key, reason: str, what: str = "") -> None:
        current = self._current
        if current is None or current.attempt.key != key or current.stopping is not None:
            return
        if current.timer is not None:
            current.timer.cancel()
        current.stopping = reason
        current.what = what or ("cancelled" if reason == "cancelled" else f"stopped ({reason})")
        signal_group(self._pgid, signal.SIGTERM)
        current.timer = self.send_after(self._settings.grace_s, _Kill(current.seq))

    def _broken(self, why: str) -> None:
        """The worker broke the protocol: kill it, the attempt crashed."""
        kill_group(self._pgid)
        current, self._current = self._current, None
        if current is not None:
            if current.timer is not None:
                current.timer.cancel()
            outcome = failed(
                TaskOutcome.failure("crashed", why),
                None,
                work_dir=current.work_dir,
                log_path=current.attempt.directory / LOG_NAME,
            )
            self._report(current.attempt, outcome, reusable=False)
        self.stop()

    async def _on_eof(self) -> None:
        """The worker's stdout closed: it exited (or is exiting)."""
        self._reader = None
        code = await self._reap()
        current, self._current = self._current, None
        if current is not None:
            if current.timer is not None:
                current.timer.cancel()
            attempt = current.attempt
            log_path = attempt.directory / LOG_NAME
            if current.stopping is not None:
                kind: ErrorKind = "timeout" if current.stopping == "timeout" else "cancelled"
                grace = self._settings.grace_s
                how = f"SIGKILL after {grace:g} s grace" if current.sigkilled else "SIGTERM"
                stopped = TaskOutcome.failure(
                    kind, f"{current.what}; stopped with {how}", traceback=log_tail(log_path)
                )
                outcome = failed(stopped, code, work_dir=current.work_dir, log_path=log_path)
            else:
                outcome = conclude(
                    None,
                    code,
                    work_dir=current.work_dir,
                    output_dir=attempt.output_dir,
                    log_path=log_path,
                )
            self._report(attempt, outcome, reusable=False)
        self.stop()

    def _report(self, attempt: Attempt, outcome: TaskOutcome, *, reusable: bool) -> None:
        self._owner.cast(TaskEnded(attempt.key, outcome, reusable))


def _start_worker(settings: TaskSettings, log_path: Path) -> subprocess.Popen[bytes]:
    """Start one pool worker process (in a thread: a fork costs milliseconds)."""
    settings.log_dir.mkdir(parents=True, exist_ok=True)
    env = worker_environment([], settings.env)
    return spawn_worker(env, log_path, python=settings.python, pool=True)
