"""Reusable workers for ``isolation="pool"``: one long-lived worker process per slot.

A ``PoolWorker`` actor owns one ``python -m mabeam.cluster.worker --pool`` and runs the
attempts the connection actor hands it, for short CPU tasks where a fresh interpreter
per task (~150 ms) would cost more than the task. The per-task path stays on the event
loop, with no thread hop: the job frame is written to the worker's stdin, and a linked
``PipeReader`` waits on the worker's stdout with ``anyio.wait_readable`` and casts what
it reads to the PoolWorker, which reassembles frames (``task.FrameBuffer``), forwards
progress and reports the end (``TaskEnded``).

Attempts may be handed over while one runs (the node's prefetch): they are written
into the pipe at once and the worker runs them in order, so it goes from one short
task to the next without waiting for the node, and one wake-up of either side carries
several jobs or results. The head of that queue is the one running: its timeout
starts, and ``TaskStarted`` goes out, when the one ahead of it ends. One queued
attempt that is stopped is called off in the pipe (``{"skip": seq}``: the worker
answers ``skipped``, or stops it if it had just begun) and ends at once.

A pool worker is replaced (this actor exits and the next pool task starts a new one)
when its process dies (``crashed``), when its running task must be stopped (timeout,
cancel, hand-back, fencing: SIGTERM to its group, SIGKILL after the grace period), when
it sent a malformed message, and after ``max_tasks_per_worker`` tasks; what was queued
behind comes back to the node unstarted (``TaskEnded.unstarted``) and runs elsewhere.
Tasks in a pool worker share its environment, so they get no GPU
(``CUDA_VISIBLE_DEVICES=""``), and a child process a task leaves behind lives on until
the worker is replaced.
"""

from __future__ import annotations

import contextlib
import functools
import os
import signal
import subprocess
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import anyio

from foundation import Actor, ActorRef, CodecError, TimerRef

from ._attempt_files import LOG_NAME, log_tail
from ._node_link import stop_reader
from ._node_setup import TaskSettings
from ._node_tasks import Attempt, Key, TaskEnded, TaskProgress, TaskStarted, unstarted
from ._worker_proc import (
    SKIPPED,
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
    """An attempt written to the worker's pipe: running once it is the head."""

    attempt: Attempt
    seq: int
    work_dir: Path
    timer: TimerRef | None = None
    stopping: str | None = None  # why it is being stopped
    what: str = ""  # the stop, as the error says it
    sigkilled: bool = False
    reported: bool = False  # its TaskEnded went out already (called off while queued)


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
        self._queue: deque[_Current] = deque()  # in the pipe, in order; [0] runs
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
            await self._stop(msg.key, msg.reason)
        elif cls is _Eof:
            await self._on_eof()
        elif msg == _BOOT:
            await self._boot()
        else:
            raise ValueError(f"PoolWorker got an unknown message {msg!r}")

    async def handle_info(self, msg: Any) -> None:
        cls = type(msg)
        head = self._queue[0] if self._queue else None
        if cls is _Deadline and head is not None and head.seq == msg.seq:
            timeout = head.attempt.timeout_s
            await self._stop(head.attempt.key, "timeout", f"timed out after {timeout:g} s")
        elif cls is _Kill and head is not None and head.seq == msg.seq:
            head.sigkilled = True
            kill_group(self._pgid)
        # Exit of the reader (it ends at end of file): nothing to do.

    async def terminate(self, reason: Any) -> None:
        proc = self._popen
        if proc is None:
            return
        if self._queue:
            kill_group(proc.pid)  # the node is going away: the tasks go with it
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

    # -- attempts ------------------------------------------------------------------------

    async def _run(self, attempt: Attempt) -> None:
        """Write the attempt into the worker's pipe; it starts when those ahead end."""
        if self._popen is None:
            why = self._boot_error or "the pool worker is not running"
            self._report(attempt, TaskOutcome.failure("crashed", why), reusable=False)
            self.stop()
            return
        try:
            work_dir = fresh_work_dir(attempt.output_dir)
        except OSError as exc:
            why = f"could not prepare {attempt.directory}: {exc}"
            self._report(attempt, TaskOutcome.failure("crashed", why), reusable=True)
            return
        self._seq += 1
        try:
            frame = pack_frame(
                job_to_wire(
                    attempt.job,
                    work_dir=work_dir,
                    gpus=[],
                    log_path=attempt.directory / LOG_NAME,
                    seq=self._seq,
                )
            )
        except CodecError as exc:
            outcome = TaskOutcome.failure("exception", f"the job cannot be sent: {exc}")
            self._report(attempt, outcome, reusable=True)
            return
        current = _Current(attempt, self._seq, work_dir)
        self._queue.append(current)
        if len(self._queue) == 1:
            self._started(current)
        await self._write(frame)

    def _started(self, head: _Current) -> None:
        """``head`` runs now (what was ahead of it ended): its timeout starts."""
        if head.stopping is not None:
            return  # called off: the worker answers "skipped" (or is stopping)
        timeout = head.attempt.timeout_s
        if timeout is not None:
            head.timer = self.send_after(timeout, _Deadline(head.seq))
        self._owner.cast(TaskStarted(head.attempt.key))

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
            if not self._queue:
                continue  # a stray report between jobs (a task's leftover thread)
            head = self._queue[0]
            try:
                parsed = parse_message(message)
            except ValueError as exc:
                self._broken(f"worker sent a malformed message: {exc}")
                return
            if isinstance(parsed, Progress):
                if head.stopping is None:
                    key = head.attempt.key
                    self._owner.cast(TaskProgress(key, parsed.step, parsed.metrics))
            elif parsed == SKIPPED:
                self._queue.popleft()
                if not head.reported:
                    self._report(head.attempt, unstarted(head.stopping or "called off"))
                self._next()
            else:
                assert isinstance(parsed, TaskOutcome)
                if not self._finished(head, parsed):
                    return

    def _next(self) -> None:
        if self._queue:
            self._started(self._queue[0])

    def _finished(self, head: _Current, final: TaskOutcome) -> bool:
        """The worker sent the head's result: publish, report, maybe retire; False when
        this actor stops (the rest of the output is not for it)."""
        self._queue.popleft()
        if head.timer is not None:
            head.timer.cancel()
        attempt = head.attempt
        if head.reported:  # called off too late to skip, ended anyway: nothing to say
            failed(final, None, work_dir=head.work_dir, log_path=attempt.directory / LOG_NAME)
            self._next()
            return True
        outcome = conclude(
            final,
            None,
            work_dir=head.work_dir,
            output_dir=attempt.output_dir,
            log_path=attempt.directory / LOG_NAME,
        )
        self._done += 1
        # A worker that was signalled may die any moment: it does not take another job.
        reusable = head.stopping is None and self._done < self._settings.max_tasks_per_worker
        self._report(attempt, outcome, reusable=reusable)
        if not reusable:
            self._give_back()
            self.stop()
            return False
        self._next()
        return True

    async def _stop(self, key: Key, reason: str, what: str = "") -> None:
        found = [i for i, c in enumerate(self._queue) if c.attempt.key == key]
        if not found or self._queue[found[0]].stopping is not None:
            return
        index = found[0]
        current = self._queue[index]
        current.stopping = reason
        current.what = what or ("cancelled" if reason == "cancelled" else f"stopped ({reason})")
        if index:  # still queued in the pipe: called off there, and it ends now
            current.reported = True
            self._report(current.attempt, unstarted(reason))
            await self._write(pack_frame({"skip": current.seq}))
            return
        if current.timer is not None:
            current.timer.cancel()
        signal_group(self._pgid, signal.SIGTERM)
        current.timer = self.send_after(self._settings.grace_s, _Kill(current.seq))

    def _give_back(self) -> None:
        """This worker stops: what is queued behind the head never started; the node
        places it again (one called off ends as cancelled)."""
        while self._queue:
            rest = self._queue.popleft()
            if rest.reported:
                continue
            if rest.stopping is not None:
                self._report(rest.attempt, unstarted(rest.stopping))
            else:
                outcome = TaskOutcome.failure("crashed", "its pool worker stopped first")
                self._owner.cast(TaskEnded(rest.attempt.key, outcome, unstarted=True))

    def _broken(self, why: str) -> None:
        """The worker broke the protocol: kill it, the attempt crashed."""
        kill_group(self._pgid)
        if self._queue and not self._queue[0].reported:
            head = self._queue.popleft()
            if head.timer is not None:
                head.timer.cancel()
            outcome = failed(
                TaskOutcome.failure("crashed", why),
                None,
                work_dir=head.work_dir,
                log_path=head.attempt.directory / LOG_NAME,
            )
            self._report(head.attempt, outcome, reusable=False)
        self._give_back()
        self.stop()

    async def _on_eof(self) -> None:
        """The worker's stdout closed: it exited (or is exiting)."""
        self._reader = None
        code = await self._reap()
        if self._queue and not self._queue[0].reported:
            head = self._queue.popleft()
            if head.timer is not None:
                head.timer.cancel()
            attempt = head.attempt
            log_path = attempt.directory / LOG_NAME
            if head.stopping is not None:
                kind: ErrorKind = "timeout" if head.stopping == "timeout" else "cancelled"
                grace = self._settings.grace_s
                how = f"SIGKILL after {grace:g} s grace" if head.sigkilled else "SIGTERM"
                stopped = TaskOutcome.failure(
                    kind, f"{head.what}; stopped with {how}", traceback=log_tail(log_path)
                )
                outcome = failed(stopped, code, work_dir=head.work_dir, log_path=log_path)
            else:
                outcome = conclude(
                    None,
                    code,
                    work_dir=head.work_dir,
                    output_dir=attempt.output_dir,
                    log_path=log_path,
                )
            self._report(attempt, outcome, reusable=False)
        self._give_back()
        self.stop()

    def _report(self, attempt: Attempt, outcome: TaskOutcome, *, reusable: bool = True) -> None:
        self._owner.cast(TaskEnded(attempt.key, outcome, reusable))


def _start_worker(settings: TaskSettings, log_path: Path) -> subprocess.Popen[bytes]:
    """Start one pool worker process (in a thread: a fork costs milliseconds)."""
    settings.log_dir.mkdir(parents=True, exist_ok=True)
    env = worker_environment([], settings.env)
    return spawn_worker(env, log_path, python=settings.python, pool=True)
