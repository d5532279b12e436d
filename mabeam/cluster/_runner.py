"""Start and control one task worker subprocess (synchronous; no event loop, no sleeps).

``TaskProcess.start`` spawns ``python -m mabeam.cluster.worker`` in a new session (so its
process group holds the task and everything it spawns), with the assigned GPUs in the
environment and its stdout/stderr in ``<log_dir>/task.log``, and sends the job on stdin.
Waiting is done with ``poll(2)`` on the message pipe, a pidfd for the worker's exit and a
wake-up pipe for ``cancel()``, so nothing sleeps. ``run_to_end`` enforces a timeout and
cancellation (SIGTERM to the group, SIGKILL after a grace period) and returns a
``TaskOutcome``; on success it publishes the outputs by renaming the attempt's temporary
directory into place. The node agent wraps this in a supervised actor (``rt.to_thread``).
"""

from __future__ import annotations

import contextlib
import errno
import os
import select
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Final, Literal

from foundation import CodecError

from ._attempt_files import LOG_NAME, log_tail, partial_dir
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
from .gpus import Gpu, device_uuids
from .task import FrameBuffer, Progress, TaskJob, TaskOutcome, job_to_wire, pack_frame

__all__ = ("LOG_NAME", "TaskProcess", "partial_dir")

_READ_CHUNK: Final = 1 << 16
_READABLE: Final = select.POLLIN | select.POLLHUP | select.POLLERR

Message = Progress | TaskOutcome


class TaskProcess:
    """One worker subprocess running one job. Use as a context manager (``close``)."""

    def __init__(
        self,
        job: TaskJob,
        proc: subprocess.Popen[bytes],
        *,
        log_path: Path,
        output_dir: Path,
        work_dir: Path,
        job_frame: bytes,
        disk_mb: int | None = None,
    ) -> None:
        self.job = job
        self.disk_mb = disk_mb
        self.log_path = log_path
        self.output_dir = output_dir
        self.work_dir = work_dir
        self._proc = proc
        self._pgid = proc.pid  # start_new_session: the worker leads its own group
        stdin, stdout = proc.stdin, proc.stdout
        assert stdin is not None and stdout is not None
        self._stdin: IO[bytes] | None = stdin
        self._stdout: IO[bytes] | None = stdout
        self._out_fd = stdout.fileno()
        self._in_fd = stdin.fileno()
        os.set_blocking(self._out_fd, False)
        os.set_blocking(self._in_fd, False)
        self._pending_input = memoryview(job_frame)
        self._wake_r, self._wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._pidfd: int | None = None
        with contextlib.suppress(AttributeError, OSError):  # pidfd needs Linux >= 5.3
            self._pidfd = os.pidfd_open(proc.pid)
        self._poller = select.poll()
        self._poller.register(self._out_fd, select.POLLIN)
        self._poller.register(self._wake_r, select.POLLIN)
        if self._pidfd is not None:
            self._poller.register(self._pidfd, select.POLLIN)
        self._poller.register(self._in_fd, select.POLLOUT)
        self._frames = FrameBuffer()
        self._inbox: deque[Message] = deque()
        self._final: TaskOutcome | None = None
        self._eof = False
        self._exited = False
        self._protocol_error: str | None = None
        self._cancel = threading.Event()
        self._fd_lock = threading.Lock()
        self._sigkilled = False
        self._closed = False
        self._outcome: TaskOutcome | None = None
        self._write_input()

    # ----------------------------------------------------------------- starting

    @classmethod
    def start(
        cls,
        job: TaskJob,
        device: Sequence[Gpu | str] | str,
        log_dir: Path,
        env: Mapping[str, str] | None = None,
        *,
        python: str | None = None,
        cwd: Path | None = None,
        disk_mb: int | None = None,
    ) -> TaskProcess:
        """Spawn the worker for ``job`` on ``device`` ("cpu" or GPU UUIDs) and send the job.

        ``env`` is added to this process's environment; the GPU variables and
        ``PYTHONUNBUFFERED=1`` are set on top. With ``disk_mb``, outputs over that many
        MiB are not published (the attempt fails with ``disk_limit``). Raises ValueError
        when the job cannot be encoded (params must be msgpack types) and OSError when
        the worker cannot start.
        """
        gpus = device_uuids(device)
        child_env = worker_environment(gpus, env)  # ValueError for a malformed UUID
        log_dir = Path(log_dir)
        output_dir = Path(job.output_dir) if job.output_dir is not None else log_dir / "output"
        work_dir = partial_dir(output_dir)
        try:
            frame = pack_frame(job_to_wire(job, work_dir=work_dir, gpus=gpus))
        except CodecError as exc:
            raise ValueError(f"job {job.job_id!r} cannot be sent to a worker: {exc}") from None
        log_dir.mkdir(parents=True, exist_ok=True)
        fresh_work_dir(output_dir)
        log_path = log_dir / LOG_NAME
        try:
            proc = spawn_worker(child_env, log_path, python=python or sys.executable, cwd=cwd)
        except BaseException:
            shutil.rmtree(work_dir, ignore_errors=True)
            raise
        try:
            return cls(
                job,
                proc,
                log_path=log_path,
                output_dir=output_dir,
                work_dir=work_dir,
                job_frame=frame,
                disk_mb=disk_mb,
            )
        except BaseException:
            kill_group(proc.pid)
            proc.wait()
            shutil.rmtree(work_dir, ignore_errors=True)
            raise

    # ----------------------------------------------------------------- state

    @property
    def pid(self) -> int:
        """The worker's pid (also its process group id)."""
        return self._proc.pid

    @property
    def returncode(self) -> int | None:
        """The worker's exit status once reaped: ``-N`` for signal N, like Popen."""
        return self._proc.returncode

    @property
    def result(self) -> TaskOutcome | None:
        """The final message from the worker, once received (not yet published)."""
        return self._final

    @property
    def ended(self) -> bool:
        """True once the worker sent its final message or stopped sending anything."""
        return self._final is not None or self._eof or self._exited or bool(self._protocol_error)

    # ----------------------------------------------------------------- messages

    def poll(self, timeout: float | None = 0.0) -> Message | None:
        """The next message, waiting up to ``timeout`` s (None: until one comes or the
        stream ends). None when nothing came in time or the stream has ended."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self._inbox:
            if self.ended or self._cancel.is_set():
                return None
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            self._pump(remaining)
            if not self._inbox and remaining == 0:
                return None
        return self._inbox.popleft()

    def messages(self, timeout: float | None = None) -> Iterator[Message]:
        """Yield progress messages, then the final outcome; stop when the stream ends.

        Raises TimeoutError if the stream has not ended within ``timeout`` seconds.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            remaining = None if deadline is None else deadline - time.monotonic()
            message = self.poll(remaining)
            if message is not None:
                yield message
                continue
            if self.ended and not self._inbox:
                return
            if self._cancel.is_set():
                return
            if deadline is not None and time.monotonic() >= deadline:
                raise TimeoutError(f"job {self.job.job_id!r}: no end of stream in {timeout} s")

    def cancel(self) -> None:
        """Ask ``run_to_end`` (in whatever thread it runs) to stop the task; thread-safe."""
        self._cancel.set()
        with self._fd_lock:  # never write to a closed (maybe reused) fd number
            if not self._closed:
                with contextlib.suppress(BlockingIOError):
                    os.write(self._wake_w, b"x")

    # ----------------------------------------------------------------- running to the end

    def run_to_end(
        self,
        timeout_s: float | None = None,
        on_progress: Callable[[Progress], None] | None = None,
        *,
        grace_s: float = 5.0,
    ) -> TaskOutcome:
        """Drive the task to its end and return the outcome (see ``TaskOutcome``).

        A second call returns the same outcome.

        ``timeout_s`` counts from this call: when it passes, or on ``cancel()``, the group
        gets SIGTERM and, after ``grace_s``, SIGKILL. ``on_progress`` sees every progress
        message in order; if it raises, the task is stopped and the error propagates.
        """
        if self._outcome is not None:
            return self._outcome
        self._outcome = self._drive(timeout_s, on_progress, grace_s)
        return self._outcome

    def _drive(
        self,
        timeout_s: float | None,
        on_progress: Callable[[Progress], None] | None,
        grace_s: float,
    ) -> TaskOutcome:
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        try:
            while True:
                if self._inbox:
                    message = self._inbox.popleft()
                    if isinstance(message, TaskOutcome):
                        break  # the final result wins over a deadline that passes now
                    if on_progress is not None:
                        on_progress(message)
                    continue
                if self.ended:
                    break
                if self._cancel.is_set():
                    return self._stopped("cancelled", "cancelled", grace_s)
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    self._pump(0)  # a last look: what already arrived still counts
                    if self._inbox or self.ended:
                        continue
                    return self._stopped("timeout", f"timed out after {timeout_s:g} s", grace_s)
                self._pump(remaining)
        except BaseException:
            self.terminate(grace_s)
            shutil.rmtree(self.work_dir, ignore_errors=True)
            raise
        return self._finish(grace_s)

    def _finish(self, grace_s: float) -> TaskOutcome:
        """The stream ended: reap the worker, clear its group, publish or clean up."""
        if self._protocol_error is not None:
            self.terminate(0)
            return self._failed(
                TaskOutcome.failure(
                    "crashed", f"worker sent a malformed message: {self._protocol_error}"
                )
            )
        try:
            code = self._proc.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            code = self.terminate(grace_s)
        self._kill_group()
        return conclude(
            self._final,
            code,
            work_dir=self.work_dir,
            output_dir=self.output_dir,
            log_path=self.log_path,
            disk_mb=self.disk_mb,
        )

    def _stopped(
        self, kind: Literal["timeout", "cancelled"], what: str, grace: float
    ) -> TaskOutcome:
        self.terminate(grace)
        how = f"SIGKILL after {grace:g} s grace" if self._sigkilled else "SIGTERM"
        return self._failed(
            TaskOutcome.failure(
                kind, f"{what}; stopped with {how}", traceback=log_tail(self.log_path)
            )
        )

    def _failed(self, outcome: TaskOutcome) -> TaskOutcome:
        """Attach the log path and the exit status, and drop the partial outputs."""
        return failed(
            outcome, self._proc.returncode, work_dir=self.work_dir, log_path=self.log_path
        )

    # ----------------------------------------------------------------- stopping

    def terminate(self, grace_s: float = 5.0) -> int:
        """SIGTERM the whole group, SIGKILL it if the worker outlives ``grace_s``; reap it.

        Returns the worker's exit status (``-N`` for signal N). Idempotent.
        """
        if self._proc.returncode is None:
            self._signal_group(signal.SIGTERM)
            try:
                self._proc.wait(timeout=grace_s)
            except subprocess.TimeoutExpired:
                self._sigkilled = True
                self._signal_group(signal.SIGKILL)
                self._proc.wait()
        self._kill_group()
        return self._proc.returncode

    def kill(self) -> int:
        """SIGKILL the whole group now and reap the worker."""
        return self.terminate(0)

    def wait(self, timeout: float | None = None) -> int:
        """Wait for the worker to exit (TimeoutExpired after ``timeout``); its status."""
        return self._proc.wait(timeout=timeout)

    def _kill_group(self) -> None:
        """SIGKILL what is left of the group (the task's own children)."""
        kill_group(self._pgid)

    def _signal_group(self, signum: int) -> None:
        signal_group(self._pgid, signum)

    def close(self) -> None:
        """Stop the worker if it still runs and release every fd. Idempotent."""
        with self._fd_lock:
            if self._closed:
                return
            self._closed = True
        try:
            self.terminate(0)
        finally:
            for stream in (self._stdin, self._stdout):
                if stream is not None:
                    with contextlib.suppress(OSError):
                        stream.close()
            self._stdin = self._stdout = None
            for fd in (self._wake_r, self._wake_w, self._pidfd):
                if fd is not None:
                    with contextlib.suppress(OSError):
                        os.close(fd)

    def __enter__(self) -> TaskProcess:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # ----------------------------------------------------------------- the pump

    def _pump(self, timeout: float | None) -> None:
        """Wait up to ``timeout`` s for anything, then handle every ready fd once."""
        ms = None if timeout is None else max(0, int(timeout * 1000 + 0.999))
        for fd, events in self._poller.poll(ms):
            if fd == self._out_fd:
                self._read_output()
            elif fd == self._in_fd:
                if events & (select.POLLERR | select.POLLHUP):
                    self._stop_input()
                else:
                    self._write_input()
            elif fd == self._wake_r:
                with contextlib.suppress(BlockingIOError):
                    os.read(self._wake_r, 4096)
            elif fd == self._pidfd and events & _READABLE:
                self._poller.unregister(fd)
                self._read_output()  # what the worker wrote before it exited
                self._exited = True

    def _read_output(self) -> None:
        while not self._eof:
            try:
                data = os.read(self._out_fd, _READ_CHUNK)
            except BlockingIOError:
                return
            if not data:
                self._eof = True
                self._poller.unregister(self._out_fd)
                return
            if self._final is not None:
                continue  # after the final result nothing counts (a task thread's late report)
            try:
                messages = self._frames.feed(data)
            except CodecError as exc:
                self._protocol_error = str(exc)
                return
            for message in messages:
                self._accept(message)

    def _accept(self, message: Any) -> None:
        if self._protocol_error is not None or self._final is not None:
            return  # nothing after a final result or a broken stream counts
        try:
            parsed = parse_message(message)
        except ValueError as exc:
            self._protocol_error = str(exc)
            return
        if isinstance(parsed, str):  # "skipped": this worker was never asked to skip
            self._protocol_error = f"unexpected {parsed!r} message"
            return
        if isinstance(parsed, TaskOutcome):
            self._final = parsed
        self._inbox.append(parsed)

    def _write_input(self) -> None:
        while self._pending_input:
            try:
                written = os.write(self._in_fd, self._pending_input)
            except BlockingIOError:
                return
            except OSError as exc:
                if exc.errno not in (errno.EPIPE, errno.EBADF):
                    raise
                self._stop_input()
                return
            self._pending_input = self._pending_input[written:]
        # Sent: keep stdin open (its end of file tells the worker we are gone) but
        # stop polling it, or POLLOUT would wake every poll.
        with contextlib.suppress(KeyError):
            self._poller.unregister(self._in_fd)

    def _stop_input(self) -> None:
        """The worker stopped reading (it died): drop what was not sent."""
        self._pending_input = memoryview(b"")
        with contextlib.suppress(KeyError):
            self._poller.unregister(self._in_fd)
