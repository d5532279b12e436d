"""Reusable workers for ``isolation="pool"``: one long-lived worker process per slot.

A ``PoolWorker`` actor owns one ``python -m mabeam.cluster.worker --pool`` and runs the
attempts the connection actor hands it, for short CPU tasks where a fresh interpreter
per task (~150 ms) would cost more than the task. The per-task path stays on the event
loop, with no thread hop: the job frame is written to the worker's stdin (what does not
fit the pipe is finished by a linked ``PipeWriter``, so this actor never blocks), and a
linked ``PipeReader`` casts what the worker writes to its stdout; this actor
reassembles the frames (``task.FrameBuffer``), forwards progress and reports each end
(``TaskEnded``).

Attempts may be handed over while one runs (the node's prefetch): they are written into
the pipe at once and the worker runs them in order, so it goes from one short task to
the next without waiting for the node, and one wake-up of either side carries several
jobs or results. The worker may be ahead of what this actor has read, so only the
worker's own messages settle an attempt: the head of the queue (the oldest without a
result) is taken to run; its timeout starts and ``TaskStarted`` goes out when the one
ahead of it has reported. Stopping the head (timeout, cancel, hand-back, fencing)
sends SIGTERM to the worker's group, SIGKILL after the grace period (at once for a
task over its memory or outputs limit: the node's watchdog); a queued attempt
is called off in the pipe instead (``{"skip": seq}``): the worker answers ``skipped``,
or stops it as SIGTERM would if it had already begun, or it had finished it and its
result counts. After a SIGTERM the worker takes nothing more, the results still in the
pipe are reported, and at its end of file what never reported comes back to the node
unstarted (``TaskEnded.unstarted``) to run elsewhere.

A pool worker is replaced (this actor exits and the next pool task starts a new one)
when its process dies (``crashed``), after a stop that needed a signal, when it sent a
malformed message, and once it has been handed ``max_tasks_per_worker`` attempts. Tasks
in a pool worker share its environment, so they get no GPU
(``CUDA_VISIBLE_DEVICES=""``), and a child process a task leaves behind lives on until
the worker is replaced.
"""

from __future__ import annotations

import contextlib
import functools
import os
import shutil
import signal
import subprocess
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from foundation import Actor, ActorRef, CodecError, TimerRef

from ._attempt_files import log_tail
from ._node_link import stop_reader
from ._node_pipes import Chunk, Eof, Output, PipeReader, PipeWriter, Written
from ._node_setup import TaskSettings
from ._node_tasks import Attempt, Key, TaskEnded, TaskProgress, TaskStarted, unstarted
from ._task_limits import LIMIT_KINDS
from ._worker_proc import (
    SKIPPED,
    clear_dir,
    conclude,
    failed,
    kill_group,
    parse_message,
    signal_group,
    spawn_worker,
    worker_environment,
)
from .task import ErrorKind, FrameBuffer, Progress, TaskOutcome, job_to_wire, pack_frame

__all__ = ("RETIRE", "PoolWorker", "RunAttempt", "StopAttempt")

_BOOT: Final = "boot"
_FLUSH: Final = "flush"
_STOP_KINDS: Final[dict[str, ErrorKind]] = {
    "timeout": "timeout",
    "memory_limit": "memory_limit",
    "disk_limit": "disk_limit",
}
"""How an attempt stopped for one of these reasons ends (any other stop: cancelled)."""
RETIRE: Final = "retire"
"""Connection -> PoolWorker: run what you were given, then exit (your code is stale)."""


@dataclass(frozen=True, slots=True)
class RunAttempt:
    """Connection -> PoolWorker: run this attempt (after those already handed over)."""

    attempt: Attempt


@dataclass(frozen=True, slots=True)
class StopAttempt:
    """Connection -> PoolWorker: stop the attempt ``key`` (``reason``: why)."""

    key: Key
    reason: str


@dataclass(frozen=True, slots=True)
class _Deadline:
    seq: int


@dataclass(frozen=True, slots=True)
class _Kill:
    seq: int


@dataclass(slots=True)
class _Entry:
    """An attempt written to the worker's pipe that has not reported its end yet."""

    attempt: Attempt
    seq: int
    timer: TimerRef | None = None
    stopping: str | None = None  # why it is being stopped
    what: str = ""  # the stop, as the error says it
    sigkilled: bool = False
    called_off: bool = False  # stopped while queued: a skip frame went after it


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
        self._writer: ActorRef | None = None
        self._unwritten = 0  # bytes handed to the writer and not out yet
        self._outgoing: list[bytes] = []  # frames of this wake-up, written in one go
        self._frames = FrameBuffer()
        self._queue: deque[_Entry] = deque()  # in the pipe, in order; [0] runs
        self._seq = 0
        self._taken = 0  # attempts handed over, as the node counts them
        self._signalled = False  # SIGTERM went to the group: it takes nothing more
        self._retiring = False  # told to exit once what it was given has reported
        self.ref.cast(_BOOT)

    # -- messages ------------------------------------------------------------------------

    async def handle_cast(self, msg: Any) -> None:
        cls = type(msg)
        if cls is Output:
            self._on_output(msg.data)
        elif cls is Written:
            self._unwritten -= msg.size
        elif cls is RunAttempt:
            await self._run(msg.attempt)
        elif cls is StopAttempt:
            await self._stop(msg.key, msg.reason)
        elif cls is Eof:
            await self._on_eof()
        elif msg == _FLUSH:
            await self._flush()
        elif msg == _BOOT:
            await self._boot()
        elif msg == RETIRE:
            self._retiring = True
            if not self._queue:
                self.stop()
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
            self._signalled = True
            kill_group(self._pgid)
        # Exits of the linked pipe actors (they end at end of file): nothing to do.

    async def terminate(self, reason: Any) -> None:
        proc = self._popen
        if proc is None:
            return
        if self._queue:
            kill_group(proc.pid)  # the node is going away: the tasks go with it
        for name in ("_reader", "_writer"):
            helper = getattr(self, name)
            setattr(self, name, None)
            if helper is not None:
                await stop_reader(self, helper)  # before its fd closes
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

    def _write(self, frame: bytes) -> None:
        """Queue ``frame`` for the pipe; the frames of one wake-up go in one write (each
        write wakes the worker: a cost as large as a trivial task)."""
        if not self._outgoing:
            self.ref.cast(_FLUSH)  # runs after the messages queued now
        self._outgoing.append(frame)

    async def _flush(self) -> None:
        """Write without blocking; what the pipe does not take now goes to the writer
        (and so does everything after it, to keep the order)."""
        frame = b"".join(self._outgoing)
        self._outgoing.clear()
        proc = self._popen
        if not frame or proc is None or proc.stdin is None or proc.stdin.closed:
            return
        fd = proc.stdin.fileno()
        written = 0
        if not self._unwritten:
            try:
                written = os.write(fd, frame)
            except BlockingIOError:
                pass
            except OSError:
                return  # the worker died: its end of file reports it
        if written < len(frame):
            if self._writer is None:
                self._writer = await self.spawn_link(PipeWriter, fd, self.ref)
            self._unwritten += len(frame) - written
            self._writer.cast(Chunk(frame[written:]))

    # -- attempts ------------------------------------------------------------------------

    async def _run(self, attempt: Attempt) -> None:
        """Write the attempt into the worker's pipe; it starts when those ahead end."""
        self._taken += 1
        if self._popen is None:
            why = self._boot_error or "the pool worker is not running"
            self._report(attempt, TaskOutcome.failure("crashed", why), reusable=False)
            self.stop()
            return
        if self._signalled:  # the worker is on its way out: this one never started
            self._give_back_one(attempt, "its pool worker was stopping")
            return
        try:
            work_dir = attempt.work_dir
            clear_dir(work_dir)
            self._seq += 1
            frame = pack_frame(
                job_to_wire(
                    attempt.job,
                    work_dir=work_dir,
                    gpus=[],
                    log_path=attempt.log_path,
                    seq=self._seq,
                ),
                walk=False,  # its params came in a DISPATCH, checked under tighter limits
            )
        except (OSError, CodecError) as exc:
            what = "prepare" if isinstance(exc, OSError) else "encode"
            outcome = TaskOutcome.failure("crashed", f"could not {what} the job: {exc}")
            self._report(attempt, outcome)
            self._ended()
            return
        entry = _Entry(attempt, self._seq)
        self._queue.append(entry)
        if len(self._queue) == 1:
            self._started(entry)
        self._write(frame)

    def _started(self, head: _Entry) -> None:
        """``head`` runs now (all ahead of it reported): its timeout starts."""
        if head.called_off:  # the worker skips it, or stops it if it had begun
            head.timer = self.send_after(self._settings.grace_s, _Kill(head.seq))
            return
        timeout = head.attempt.timeout_s
        if timeout is not None:
            head.timer = self.send_after(timeout, _Deadline(head.seq))
        self._owner.cast(TaskStarted(head.attempt.key, self._pgid))

    def _ended(self) -> None:
        """An attempt reported: start the next, or retire after the last one handed over."""
        if self._signalled:
            return  # its end of file settles what is left
        if self._queue:
            self._started(self._queue[0])
        elif self._retiring or self._taken >= self._settings.max_tasks_per_worker:
            self.stop()

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
                if head.stopping is None and not self._signalled:
                    key = head.attempt.key
                    self._owner.cast(TaskProgress(key, parsed.step, parsed.metrics))
                continue
            self._queue.popleft()
            if head.timer is not None:
                head.timer.cancel()
            if parsed == SKIPPED:
                self._report(head.attempt, unstarted(head.stopping or "called off"))
            else:
                assert isinstance(parsed, TaskOutcome)
                self._report(head.attempt, self._outcome(head, parsed))
            self._ended()

    def _outcome(
        self, head: _Entry, final: TaskOutcome | None, code: int | None = None
    ) -> TaskOutcome:
        """The head's end from its result (one that beat its stop still counts), or from
        the worker's exit status when it died without one."""
        attempt = head.attempt
        return conclude(
            final,
            code,
            work_dir=attempt.work_dir,
            output_dir=attempt.output_dir,
            log_path=attempt.log_path,
            disk_mb=self._settings.disk_mb,
        )

    async def _stop(self, key: Key, reason: str, what: str = "") -> None:
        entry = next((e for e in self._queue if e.attempt.key == key), None)
        if entry is None or entry.stopping is not None:
            return
        entry.stopping = reason
        entry.what = what or ("cancelled" if reason == "cancelled" else f"stopped ({reason})")
        if entry is not self._queue[0]:  # still queued: called off in the pipe
            entry.called_off = True
            self._write(pack_frame({"skip": entry.seq}))
            return
        if entry.timer is not None:
            entry.timer.cancel()
        self._signalled = True
        if reason in LIMIT_KINDS:  # over its limit (the node's watchdog): no grace
            entry.sigkilled = True
            kill_group(self._pgid)
            return
        signal_group(self._pgid, signal.SIGTERM)
        entry.timer = self.send_after(self._settings.grace_s, _Kill(entry.seq))

    def _broken(self, why: str) -> None:
        """The worker broke the protocol: kill it; the running attempt crashed."""
        kill_group(self._pgid)
        self._signalled = True
        if self._queue:
            head = self._queue.popleft()
            if head.timer is not None:
                head.timer.cancel()
            outcome = failed(
                TaskOutcome.failure("crashed", why),
                None,
                work_dir=head.attempt.work_dir,
                log_path=head.attempt.log_path,
            )
            self._report(head.attempt, outcome, reusable=False)
        self._give_back()
        self.stop()

    async def _on_eof(self) -> None:
        """The worker's stdout closed: it exited. The first attempt without a report was
        running (or about to); the ones behind it never started."""
        self._reader = None
        code = await self._reap()
        if self._queue:
            head = self._queue.popleft()
            if head.timer is not None:
                head.timer.cancel()
            attempt = head.attempt
            log_path = attempt.log_path
            if head.stopping is not None:
                kind: ErrorKind = _STOP_KINDS.get(head.stopping, "cancelled")
                grace = self._settings.grace_s
                how = f"SIGKILL after {grace:g} s grace" if head.sigkilled else "SIGTERM"
                if kind in LIMIT_KINDS:
                    how = "SIGKILL"
                stopped = TaskOutcome.failure(
                    kind, f"{head.what}; stopped with {how}", traceback=log_tail(log_path)
                )
                outcome = failed(stopped, code, work_dir=attempt.work_dir, log_path=log_path)
                self._report(attempt, outcome, reusable=False)
            elif self._signalled:  # our signal for an attempt ahead of it reached it
                self._queue.appendleft(head)
            else:
                self._report(attempt, self._outcome(head, None, code), reusable=False)
        self._give_back()
        self.stop()

    def _give_back(self) -> None:
        """The worker is gone: what never reported goes back to the node, in order (one
        called off ends as cancelled)."""
        while self._queue:
            rest = self._queue.popleft()
            if rest.timer is not None:
                rest.timer.cancel()
            shutil.rmtree(rest.attempt.work_dir, ignore_errors=True)  # what a begun task left
            if rest.stopping is not None:
                self._report(rest.attempt, unstarted(rest.stopping), reusable=False)
            else:
                self._give_back_one(rest.attempt, "its pool worker stopped first")

    def _give_back_one(self, attempt: Attempt, why: str) -> None:
        outcome = TaskOutcome.failure("crashed", why)
        self._owner.cast(TaskEnded(attempt.key, outcome, reusable=False, unstarted=True))

    def _report(self, attempt: Attempt, outcome: TaskOutcome, *, reusable: bool = True) -> None:
        self._owner.cast(TaskEnded(attempt.key, outcome, reusable and not self._signalled))


def _start_worker(settings: TaskSettings, log_path: Path) -> subprocess.Popen[bytes]:
    """Start one pool worker process (in a thread: a fork costs milliseconds)."""
    settings.log_dir.mkdir(parents=True, exist_ok=True)
    env = worker_environment([], settings.env)
    return spawn_worker(env, log_path, python=settings.python, pool=True)
