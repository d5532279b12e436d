"""The runner of one attempt in ``isolation="process"``: a fresh worker process per task.

``TaskRunner`` is a temporary child of the node's runner supervisor. It drives a
``TaskProcess`` (``_runner.py``: its own session and process group, GPU variables,
timeout with SIGTERM then SIGKILL) to its end in a worker thread (``run_to_end`` waits
with ``poll(2)``, never on the event loop), forwards each progress record to the
connection actor, reports ``TaskStarted`` once the worker runs and one ``TaskEnded``,
then exits.

While the thread runs, the actor handles no message, so stopping goes around the
mailbox: the connection holds the attempt's ``StopSwitch`` and calls ``request(why)``
(a cancel, a hand-back while draining, self-fencing, shutdown), which calls the
thread-safe ``TaskProcess.cancel()``; a request made before the worker exists takes
effect as soon as it does. If the runner itself is killed, it flips the switch on its
way out, so a task never outlives its runner by more than the stop grace.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any, Final

import anyio

from foundation import Actor, ActorRef, Runtime

from ._node_setup import TaskSettings
from ._node_tasks import Attempt, TaskEnded, TaskProgress, TaskStarted
from ._runner import TaskProcess
from .task import Progress, TaskOutcome

__all__ = ("StopSwitch", "TaskRunner")

_RUN: Final = "run"


class StopSwitch:
    """Asks a process-mode attempt to stop, from any thread; the first reason wins."""

    __slots__ = ("_lock", "_task", "reason")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._task: TaskProcess | None = None
        self.reason: str | None = None

    def request(self, reason: str) -> None:
        """Stop the attempt (SIGTERM to its group, SIGKILL after the grace period)."""
        with self._lock:
            if self.reason is None:
                self.reason = reason
            task = self._task
        if task is not None:
            task.cancel()

    def attach(self, task: TaskProcess | None) -> None:
        """The runner's thread: this is the worker to stop (None once it is closed)."""
        with self._lock:
            self._task = task
            pending = task is not None and self.reason is not None
        if pending:
            assert task is not None
            task.cancel()


class TaskRunner(Actor):
    """Runs one attempt in a fresh worker process and reports to ``owner``."""

    async def init(
        self, owner: ActorRef, attempt: Attempt, switch: StopSwitch, settings: TaskSettings
    ) -> None:
        self._owner = owner
        self._attempt = attempt
        self._switch = switch
        self._settings = settings
        self.ref.cast(_RUN)

    async def handle_cast(self, msg: Any) -> None:
        if msg != _RUN:
            raise ValueError(f"TaskRunner takes no messages, got {msg!r}")
        rt = self.runtime
        try:
            outcome = await anyio.to_thread.run_sync(self._run, rt, abandon_on_cancel=True)
        except BaseException:
            # Killed (or the runtime is closing): stop the task on the way out; the
            # abandoned thread reaps the worker within the grace period.
            self._switch.request("shutdown")
            raise
        self._owner.cast(TaskEnded(self._attempt.key, outcome))
        self.stop()

    def _run(self, rt: Runtime) -> TaskOutcome:
        """In a worker thread: start the worker, drive it to its end."""
        attempt, owner, settings = self._attempt, self._owner, self._settings
        key = attempt.key

        def on_progress(progress: Progress) -> None:
            rt.call_soon_threadsafe(owner.cast, TaskProgress(key, progress.step, progress.metrics))

        try:
            task = TaskProcess.start(
                attempt.job,
                list(attempt.gpus) or "cpu",
                Path(attempt.directory),
                settings.env,
                python=settings.python,
                disk_mb=settings.disk_mb,
            )
        except (OSError, ValueError) as exc:
            return TaskOutcome.failure(
                "crashed", f"could not start a worker for {attempt.job.entrypoint}: {exc}"
            )
        with task:
            self._switch.attach(task)
            try:
                rt.call_soon_threadsafe(owner.cast, TaskStarted(key, task.pid))
                return task.run_to_end(attempt.timeout_s, on_progress, grace_s=settings.grace_s)
            finally:
                self._switch.attach(None)
