"""The task worker process: ``python -m mabeam.cluster.worker [--pool]``.

Protocol (all frames are ``mabeam.cluster.task.pack_frame``: a 4-byte big-endian length
and a msgpack body, never pickle):

- stdin carries job frames from the parent. The worker moves it to a private fd and
  points fd 0 at /dev/null, so a task cannot read the jobs. End of file on it means the
  parent is gone or wants the worker to stop: when idle the worker exits 0, while a task
  runs it kills its own process group (a task must not outlive its node) as soon as the
  main thread takes the SIGIO the kernel sends for it: at once for Python code and
  interruptible waits, after the current call for a long uninterruptible C call.
- stdout carries message frames to the parent: ``{"t": "progress", "step", "metrics"}``
  zero or more times, then exactly one ``{"t": "result", "ok": true, "value"}`` or
  ``{"t": "result", "ok": false, "kind", "error", "traceback"}`` per job. The worker moves
  it to a private fd and points fd 1 at fd 2 (the log file the parent opened), so a
  task's ``print`` cannot corrupt the stream.
- SIGTERM raises ``TaskTerminated`` (a BaseException) in the task, so its ``finally``
  blocks run; the worker then exits 143 without a result (the parent decided the outcome).

Without ``--pool`` the worker runs one job and exits; with it, it runs jobs one after the
other until its stdin closes (reusable workers for short CPU tasks), and what each task
prints goes to that attempt's ``log_path``, a file made on the first write
(``_task_log.AttemptLog``). Jobs may arrive while one runs: they wait their turn. A job
frame may carry a ``seq``; a ``{"skip": seq}`` frame calls that job off: if it has not
started it is answered ``{"t": "skipped"}`` instead of run, and if it is running it is
stopped like SIGTERM would (the worker exits 143).
"""

from __future__ import annotations

import _signal  # type: ignore[import-not-found]  # getsignal without the enum (unwatch)
import argparse
import faulthandler
import fcntl
import os
import select
import signal
import sys
import threading
import traceback
from collections import deque
from types import FrameType
from typing import Any, Final, NoReturn

from foundation import CodecError

from ._task_log import AttemptLog
from .task import (
    EntrypointError,
    FrameBuffer,
    TaskContext,
    job_from_wire,
    load_entrypoint,
    pack_frame,
)

__all__ = ("TaskTerminated", "main")

EXIT_TERMINATED: Final = 128 + signal.SIGTERM
EXIT_BAD_JOB: Final = 2
_SKIPPED: Final = pack_frame({"t": "skipped"})
_READ_CHUNK: Final = 1 << 16


class TaskTerminated(BaseException):
    """Raised in the task when the worker gets SIGTERM (timeout, cancel or drain)."""


class _Channel:
    """The worker's private message pipe to its parent; one frame at a time."""

    def __init__(self, fd: int) -> None:
        self._fd = fd
        self._lock = threading.Lock()

    def send(self, frame: bytes) -> None:
        view = memoryview(frame)
        with self._lock:
            while view:
                try:
                    written = os.write(self._fd, view)
                except BrokenPipeError:
                    _die("the parent closed the message pipe")
                view = view[written:]


class _JobPipe:
    """The job pipe from the parent, read by the main thread.

    The pipe is non-blocking and in O_ASYNC mode from the start (``arm``): the kernel
    sends SIGIO whenever it becomes readable. Between tasks the handler does nothing and
    the worker waits in ``select`` for the next job; while a task runs (``watched``) the
    handler (run by the main thread between bytecodes, or as soon as a blocking call is
    interrupted) drains the pipe, and end of file there kills the worker's process group
    (module doc). Arming once, not per task, keeps a pool task's overhead to a read and a
    poll of the pipe.
    """

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.closed = False  # end of file seen: the parent is gone or wants us to stop
        self.skipped: set[int] = set()  # seqs of queued jobs the parent called off
        self.running: int | None = None  # seq of the job running now
        self._draining = False
        self._missed = False  # a SIGIO came while draining: look once more
        self._watching = False  # a task runs: SIGIO drains the pipe
        self._handler = self._on_sigio  # one bound method, to compare with getsignal
        self._frames = FrameBuffer(walk=False)  # the node checked the jobs (DISPATCH)
        self._pending: deque[dict[str, Any] | Exception] = deque()

    def arm(self) -> None:
        """Non-blocking reads and SIGIO for this process from now on."""
        signal.signal(signal.SIGIO, self._handler)
        fcntl.fcntl(self.fd, fcntl.F_SETOWN, os.getpid())
        flags = fcntl.fcntl(self.fd, fcntl.F_GETFL)
        fcntl.fcntl(self.fd, fcntl.F_SETFL, flags | os.O_ASYNC | os.O_NONBLOCK)

    def next_job(self) -> dict[str, Any] | Exception | None:
        """The next job frame (or the decoding error); None at end of file."""
        while not self._pending and not self.closed:
            if not self._read() and not self.closed:
                # PEP 475 retries the wait after a SIGIO's handler, which between tasks
                # reads nothing: the pipe stays readable and the wait returns.
                select.select([self.fd], [], [])
        return self._pending.popleft() if self._pending else None

    def _read(self) -> bool:
        """Read one chunk; False when nothing is there (non-blocking mode)."""
        try:
            data = os.read(self.fd, _READ_CHUNK)
        except BlockingIOError:
            return False
        except OSError as exc:
            _log(f"reading the job pipe failed: {exc}")
            data = b""
        if not data:
            self.closed = True
            return False
        try:
            for message in self._frames.feed(data):
                if type(message) is dict and type(message.get("skip")) is int:
                    self.skipped.add(message["skip"])
                else:
                    self._pending.append(message)
        except CodecError as exc:
            self._pending.append(exc)
            self.closed = True  # the stream is broken: read no further
        return True

    def _on_sigio(self, signum: int, frame: FrameType | None) -> None:
        if self._draining:
            self._missed = True
        elif self._watching:
            self._drain()

    def _drain(self) -> None:
        # Not reentrant: a SIGIO can interrupt this very loop (or the drain that opens
        # a watch) between bytecodes, and a nested read would tear the frame buffer
        # apart. The interrupted loop reads on while the pipe is readable; since the
        # signal it swallowed may announce the end of file, it goes round once more.
        # Polled before each read: a read of an empty pipe raises (one per task).
        if self._draining:
            return
        fd = self.fd
        while True:
            self._draining, self._missed = True, False
            try:
                while not self.closed and select.select([fd], [], [], 0)[0] and self._read():
                    pass
            finally:
                self._draining = False
            if self.closed or not self._missed:
                break
        if self.closed:
            _die("the job pipe closed while a task was running")
        if self.running is not None and self.running in self.skipped:
            raise TaskTerminated("called off by the parent")  # too late to skip it

    def watch(self) -> None:
        """From now until ``unwatch`` (a task runs): end of file on the pipe stops the
        worker at once. Reads what arrived since the last task first."""
        self._watching = True
        self._drain()

    def unwatch(self) -> None:
        """The task is over. One that replaced the SIGIO handler (SIG_DFL would kill
        the idle worker at the next job, SIG_IGN would hide an end of file) gets it put
        back. ``_signal.getsignal``: ``signal.getsignal`` first tries the handler as an
        enum member, an exception per task for a bound method (~3 us)."""
        self._watching = False
        if _signal.getsignal(signal.SIGIO) != self._handler:
            signal.signal(signal.SIGIO, self._handler)


class _Worker:
    """Runs the jobs the pipe brings, one at a time, in the main thread."""

    def __init__(self, jobs: _JobPipe, channel: _Channel) -> None:
        self.jobs = jobs
        self.channel = channel
        self.log: AttemptLog | None = None

    def run(self, pool: bool) -> int:
        """Run jobs until stdin closes (pool) or after one job."""
        if pool:  # print() of each task goes to its attempt's log (module doc)
            self.log = AttemptLog(sys.stderr)
            sys.stdout = sys.stderr = self.log
        while True:
            job = self.jobs.next_job()
            if job is None:
                return 0
            if isinstance(job, Exception):
                _log(f"bad job frame from the parent: {job}")
                return EXIT_BAD_JOB
            try:
                fields = job_from_wire(job)
            except ValueError as exc:
                _log(f"bad job from the parent: {exc}")
                return EXIT_BAD_JOB
            seq = fields.get("seq")
            if not self._run_job(fields, seq) or not pool:
                return 0
            self.jobs.skipped.discard(seq)  # answered, or a call-off that came too late

    def _run_job(self, fields: dict[str, Any], seq: int | None) -> bool:
        """Run one job (or skip it: called off just now) and send its end; False when the
        parent is already gone."""
        if self.jobs.closed:
            return False
        log = self.log
        if log is not None:
            log.begin(fields["log_path"])
        jobs = self.jobs
        jobs.watch()  # its first drain reads a call-off that came already
        try:
            if seq is not None and seq in jobs.skipped:
                frame = _SKIPPED
            else:
                jobs.running = seq  # from here a call-off stops it
                try:
                    frame = _execute(fields, self.channel)
                finally:
                    jobs.running = None
                _flush()
        finally:
            jobs.unwatch()
        if log is not None:
            log.end()  # complete on disk before the parent hears of the end
        # Sent after the watch ends: the parent may close our stdin as soon as it reads.
        self.channel.send(frame)
        return True


def _execute(job: dict[str, Any], channel: _Channel) -> bytes:
    """Run one job in this thread; return its final result frame (never raises, but
    lets TaskTerminated through)."""
    entrypoint = job["entrypoint"]
    try:
        function = load_entrypoint(entrypoint)
    except EntrypointError as exc:
        cause = exc.__cause__
        tb = "".join(traceback.format_exception(cause)) if cause is not None else ""
        return _failure("bad_entrypoint", str(exc), tb)
    ctx = TaskContext(
        job_id=job["job_id"],
        attempt=job["attempt"],
        gpus=tuple(job["gpus"]),
        output_dir=job["work_dir"],
        send=channel.send,
    )
    try:
        value = function(job["params"], ctx)
    except TaskTerminated:
        raise
    except BaseException as exc:  # SystemExit and KeyboardInterrupt in a task are failures too
        frames = exc.__traceback__
        skip = frames.tb_next if frames is not None else None  # drop this function's frame
        text = "".join(traceback.format_exception(type(exc), exc, skip))
        line = traceback.format_exception_only(type(exc), exc)[-1].strip()
        return _failure("exception", f"{entrypoint} raised {line}", text)
    try:  # the task's streams are flushed by the caller, once, before the frame goes
        return pack_frame({"t": "result", "ok": True, "value": value})
    except CodecError as exc:
        return _failure(
            "bad_result",
            f"result is not encodable: {exc} (return msgpack types: None, bool, int, float, "
            "str, bytes, list, tuple, dict with str keys; write big artefacts to "
            "ctx.output_dir)",
            "",
        )


def _failure(kind: str, error: str, tb: str) -> bytes:
    return pack_frame({"t": "result", "ok": False, "kind": kind, "error": error, "traceback": tb})


def _flush() -> None:
    for stream in (sys.stdout, sys.stderr):
        try:  # not contextlib.suppress: this runs twice per task
            stream.flush()
        except (OSError, ValueError):
            continue


def _log(text: str) -> None:
    _flush()
    os.write(2, f"mabeam worker {os.getpid()}: {text}\n".encode(errors="replace"))


def _die(reason: str) -> NoReturn:
    """Stop now: kill this worker's process group (the task's children too), or just exit."""
    _log(f"{reason}; stopping")
    if os.getpgid(0) == os.getpid():  # we lead our own group: take the task's children along
        os.killpg(os.getpid(), signal.SIGKILL)
    os._exit(EXIT_TERMINATED)


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise TaskTerminated(f"terminated by signal {signum}")


def main(argv: list[str] | None = None) -> NoReturn:
    """Entry point of ``python -m mabeam.cluster.worker``; never returns."""
    parser = argparse.ArgumentParser(prog="python -m mabeam.cluster.worker")
    parser.add_argument("--pool", action="store_true", help="run jobs until stdin closes")
    args = parser.parse_args(argv)

    job_fd, message_fd = os.dup(0), os.dup(1)  # os.dup makes them non-inheritable
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    os.dup2(2, 1)
    faulthandler.enable()
    signal.signal(signal.SIGTERM, _on_sigterm)
    jobs = _JobPipe(job_fd)
    jobs.arm()
    worker = _Worker(jobs, _Channel(message_fd))
    try:
        code = worker.run(args.pool)
    except TaskTerminated:
        code = EXIT_TERMINATED
    _flush()
    # os._exit: a task's leftover non-daemon threads or atexit hooks must not keep the
    # worker (and its GPU memory) alive after the result is sent.
    os._exit(code)


if __name__ == "__main__":
    main()
