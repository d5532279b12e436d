"""``TaskSupervisor``: Elixir's ``Task.Supervisor``; async functions run as supervised actors.

    ts = await TaskSupervisor.start(name="tasks")
    await TaskSupervisor.start_child("tasks", send_report, user)    # fire and forget
    task = await TaskSupervisor.async_nolink("tasks", fetch, url)
    page = await task.result(timeout=5.0)                           # or raises TaskFailed
    async for r in TaskSupervisor.async_stream("tasks", urls, fetch, max_concurrency=8):
        ...                                                         # StreamResult per url

A task supervisor is a ``DynamicSupervisor`` (``max_children``, restart intensity,
``which_children``, telemetry) whose children are tasks: each task is one actor that
runs ``await fn(*args)`` once and exits ``"normal"`` with its value, or crashes with the
exception. The function starts from the task's first message, never in ``init``: ``init``
runs in the spawner's task, here the supervisor's, which would be blocked for as long as
the function runs.

- ``start_child``: fire and forget; ``restart="temporary"`` (default: never restarted),
  ``"transient"`` (run again after a crash) or ``"permanent"`` (run again whenever it
  ends), and ``shutdown`` (5 s) as for any child.
- ``async_nolink``: returns a ``Task``; ``await task.result(timeout)`` gives the value,
  raises ``TaskFailed`` (the exit reason; ``__cause__`` the exception) or, when the task
  is slow, ``TimeoutError`` while the task keeps running (Elixir's ``Task.yield``).
  The caller is not linked: a crash of the task does not reach it, nor does the
  caller's exit stop the task.
- ``async_stream``: see ``supervision._stream``.

Where this differs from Elixir, and why:

- Functions are ``async``; a sync function is refused with ``TypeError`` instead of
  blocking the event loop (run it with ``rt.to_thread`` inside an async function).
  Arguments are positional; use ``functools.partial`` for keywords.
- There is no linked ``Task.Supervisor.async``: tasks are never linked to their
  caller (Elixir's ``async_nolink`` and ``async_stream_nolink``). A caller that must
  die with its task links itself to ``task.ref``.
- A result is read through the ``Task`` handle (any task or actor may await it), not
  received as ``{ref, result}`` and ``:DOWN`` messages by the owner.
- ``async_stream``'s ``on_timeout`` defaults to ``"kill_task"`` (Elixir: ``:exit``): one
  slow item should not end a batch; ``max_concurrency`` defaults to ``os.cpu_count()``
  as Elixir's defaults to ``System.schedulers_online()``.
- A task whose function runs in a worker thread (``rt.to_thread``) can only be killed
  once the thread returns: Python cannot stop a thread.
"""

from __future__ import annotations

import inspect
import math
import os
from collections.abc import AsyncIterable, Iterable
from typing import Any, Literal, final

from foundation import Actor, ActorRef, Exit, NoReply, current_runtime
from foundation._pid import _NoPublicConstructor

from ._calls import Failed as _Failed
from ._calls import Request as _DynamicReq
from ._dynamic import DynamicSupervisor
from ._exceptions import TaskFailed
from ._spec import ChildSpec, Restart, Shutdown
from ._stream import ResultSlot, StreamPark, StreamSpawn, TaskStream, Watch

_RUN = object()  # a task's first message: run the function now
ON_TIMEOUT = ("kill_task", "exit")


class TaskWorker(Actor):
    """One task: runs ``fn(*args)`` once, leaves the value in ``slot`` and exits normally;
    an exception crashes it with that reason."""

    async def init(self, fn: Any, args: tuple[Any, ...], slot: ResultSlot | None) -> None:
        self._fn = fn
        self._args = args
        self._slot = slot
        self.ref.send(_RUN)

    async def handle_info(self, msg: Any) -> None:
        if msg is not _RUN:
            await super().handle_info(msg)
            return
        value = await self._fn(*self._args)
        if self._slot is not None:
            self._slot.set(value)
        self.stop("normal")


class _Async:
    """Request: start a task and monitor it (inside the supervisor, so the monitor is
    in place before the task can run)."""

    __slots__ = ("spec",)

    def __init__(self, spec: ChildSpec) -> None:
        self.spec = spec


class _StreamTimeout:
    """A stream task's timer fired."""

    __slots__ = ("ref",)

    def __init__(self, ref: ActorRef) -> None:
        self.ref = ref


def check_async_fn(fn: Any, where: str) -> None:
    """Refuse what is not an async function (nor an object with ``async def __call__``)."""
    if inspect.iscoroutinefunction(fn):
        return
    if (
        callable(fn)
        and not isinstance(fn, type)
        and not inspect.isroutine(fn)
        and inspect.iscoroutinefunction(type(fn).__call__)
    ):
        return
    raise TypeError(
        f"{where} runs async functions, got: {fn!r}. A sync function would hold the "
        "event loop; wrap it: 'async def job(*args): return await "
        "current_runtime().to_thread(fn, *args)'"
    )


def _task_spec(
    fn: Any, args: tuple[Any, ...], slot: ResultSlot | None, restart: Restart, shutdown: Shutdown
) -> ChildSpec:
    name = getattr(fn, "__qualname__", None) or type(fn).__qualname__
    return ChildSpec(name, (TaskWorker, (fn, args, slot), {}), restart=restart, shutdown=shutdown)


@final
class Task(metaclass=_NoPublicConstructor):
    """A task started by ``TaskSupervisor.async_nolink``; ``await task`` is
    ``await task.result()``.

    Attributes:
        ref: the task's actor.
    """

    __slots__ = ("_mon", "_outcome", "_slot", "ref")

    def __init__(self, ref: ActorRef, slot: ResultSlot, mon: Any) -> None:
        self.ref = ref
        self._slot = slot
        self._mon = mon  # taken when the task started: it records how the task exited
        self._outcome: tuple[bool, Any] | None = None

    @property
    def pid(self) -> Any:
        return self.ref.pid

    def done(self) -> bool:
        """Whether the task has exited (with a value or not)."""
        return self._outcome is not None or self._mon.down is not None

    async def result(self, timeout: float | None = 5.0) -> Any:
        """The task's value, waiting up to ``timeout`` runtime seconds (None: forever).

        Awaiting again gives the same outcome.

        Raises:
            TaskFailed: the task crashed (``__cause__`` is the exception) or was stopped.
            TimeoutError: it is still running; it goes on (``shutdown()`` stops it).
        """
        if self._outcome is None:
            if self._mon.down is None:
                # A fresh monitor per wait: a wait that timed out leaves nothing behind.
                mon = current_runtime().monitor(self.ref)
                try:
                    await mon.wait(timeout)
                except TimeoutError:
                    raise TimeoutError(
                        f"task {self.ref.pid} did not finish within {timeout} s; it keeps "
                        "running (task.shutdown() stops it)"
                    ) from None
                finally:
                    if mon.down is None:
                        mon.cancel()
            self._settle()
        assert self._outcome is not None
        ok, value = self._outcome
        if ok:
            return value
        cause = value if isinstance(value, BaseException) else None
        raise TaskFailed(self.ref.pid, value) from cause

    def _settle(self) -> None:
        if self._outcome is not None:
            return
        if self._slot.ok:
            self._outcome = (True, self._slot.value)
        else:
            self._outcome = (False, self._mon.down.reason)

    def __await__(self) -> Any:
        return self.result().__await__()

    def cancel(self) -> None:
        """Kill the task now (reason ``"killed"``), unless it has already exited."""
        if self.ref.is_alive:
            self.ref.kill()

    async def shutdown(self, timeout: float | Literal["brutal_kill"] = 5.0) -> None:
        """Stop the task as Elixir's ``Task.shutdown``: the ``"shutdown"`` exit signal,
        then a kill after ``timeout`` seconds (``"brutal_kill"``: kill at once).

        Afterwards ``result()`` answers at once: the value if the task finished first,
        else ``TaskFailed`` with the reason (``"shutdown"`` or ``"killed"``).
        """
        rt = current_runtime()
        if self.ref.is_alive:
            mon = rt.monitor(self.ref)
            if timeout == "brutal_kill":
                rt.exit(self.ref, "kill")
            else:
                rt.exit(self.ref, "shutdown")
                try:
                    await mon.wait(timeout)
                except TimeoutError:
                    rt.exit(self.ref, "kill")
            await mon.wait(None)
        if self._mon.down is not None:
            self._settle()

    def __repr__(self) -> str:
        if self._outcome is not None:
            state = "returned" if self._outcome[0] else f"failed: {self._outcome[1]!r}"
        else:
            state = "done" if self.done() else "running"
        return f"<Task {self.ref.pid!r} {state}>"


class TaskSupervisor(DynamicSupervisor):
    """Supervises tasks (see the module docstring). Options of ``start``: those of
    ``DynamicSupervisor`` (``max_children``, ``max_restarts``, ``max_seconds``)."""

    async def init(
        self,
        *,
        max_children: int | None = None,
        max_restarts: int = 3,
        max_seconds: float = 5.0,
    ) -> None:
        await super().init(
            max_children=max_children, max_restarts=max_restarts, max_seconds=max_seconds
        )
        self._watched: dict[Any, Watch] = {}

    # -- client API --------------------------------------------------------------------
    @staticmethod
    async def start_child(
        sup: Any,
        fn: Any,
        *args: Any,
        restart: Restart = "temporary",
        shutdown: Shutdown = 5.0,
    ) -> ActorRef:
        """Run ``await fn(*args)`` as a child of ``sup`` and return the task's ref.

        Raises:
            TypeError: ``fn`` is not an async function.
            InvalidChildSpec: a bad ``restart`` or ``shutdown``.
            MaxChildren: the supervisor is full.
        """
        check_async_fn(fn, "TaskSupervisor.start_child")
        spec = _task_spec(fn, args, None, restart, shutdown)
        ref = await DynamicSupervisor.start_child(sup, spec)
        assert ref is not None
        return ref

    @staticmethod
    async def async_nolink(sup: Any, fn: Any, *args: Any, shutdown: Shutdown = 5.0) -> Task:
        """Run ``await fn(*args)`` under ``sup``, not linked to the caller; the returned
        ``Task`` gives its outcome (always temporary: a result goes to one caller).

        Raises:
            TypeError: ``fn`` is not an async function.
            MaxChildren: the supervisor is full.
        """
        check_async_fn(fn, "TaskSupervisor.async_nolink")
        slot = ResultSlot()
        spec = _task_spec(fn, args, slot, "temporary", shutdown)
        reply = await current_runtime().call(sup, _Async(spec), None)
        if reply.__class__ is _Failed:
            raise reply.exc
        ref, mon = reply
        task: Task = Task._create(ref, slot, mon)
        return task

    @staticmethod
    def async_stream(
        sup: Any,
        items: Iterable[Any] | AsyncIterable[Any],
        fn: Any,
        *,
        max_concurrency: int | None = None,
        ordered: bool = True,
        timeout: float | Literal["infinity"] | None = 5.0,
        on_timeout: Literal["kill_task", "exit"] = "kill_task",
        shutdown: Shutdown = 5.0,
    ) -> TaskStream:
        """Run ``await fn(item)`` for each item, at most ``max_concurrency`` at once
        (default ``os.cpu_count()``); iterate the result for ``StreamResult``s.

        ``timeout`` (per item, from its task's start; None or ``"infinity"`` for none),
        ``on_timeout`` (``"kill_task"``: the item yields ``reason="timeout"``;
        ``"exit"``: the stream raises ``TimeoutError``). Lazy: nothing runs before the
        first ``__anext__``.
        """
        check_async_fn(fn, "TaskSupervisor.async_stream")
        if max_concurrency is None:
            max_concurrency = os.cpu_count() or 1
        if (
            not isinstance(max_concurrency, int)
            or isinstance(max_concurrency, bool)
            or max_concurrency < 1
        ):
            raise ValueError(f"max_concurrency must be an int >= 1, got: {max_concurrency!r}")
        if not isinstance(ordered, bool):
            raise TypeError(f"ordered must be True or False, got: {ordered!r}")
        if timeout == "infinity":
            timeout = None
        if timeout is not None and (
            not isinstance(timeout, (int, float))
            or isinstance(timeout, bool)
            or not math.isfinite(timeout)
            or timeout <= 0
        ):
            raise ValueError(
                f"timeout must be a positive number of seconds, None or 'infinity', "
                f"got: {timeout!r}"
            )
        if on_timeout not in ON_TIMEOUT:
            raise ValueError(f"on_timeout must be one of {ON_TIMEOUT}, got: {on_timeout!r}")
        _task_spec(fn, (), None, "temporary", shutdown)  # validates shutdown now
        return TaskStream(
            sup,
            items,
            fn,
            max_concurrency=max_concurrency,
            ordered=ordered,
            timeout=timeout,
            on_timeout=on_timeout,
            shutdown=shutdown,
        )

    @staticmethod
    async def children(sup: Any, timeout: float | None = 5.0) -> list[ActorRef]:
        """The refs of the tasks running now (Elixir's ``Task.Supervisor.children``)."""
        infos = await DynamicSupervisor.which_children(sup, timeout)
        return [info.ref for info in infos if info.ref is not None]

    # -- requests ----------------------------------------------------------------------
    async def handle_call(self, request: Any, caller: Any) -> Any:
        cls = request.__class__
        if cls is StreamPark:
            inbox = request.inbox
            if inbox.results or inbox.closed:
                return None
            inbox.waiter = caller
            return NoReply
        if cls is StreamSpawn:
            return await self._stream_spawn(request, caller)
        if cls is _Async:
            reply = await super().handle_call(_DynamicReq("start_child", request.spec), caller)
            if reply.__class__ is _Failed:
                return reply
            return reply, self.runtime.monitor(reply)
        if cls is _DynamicReq and request.op == "terminate_child":
            watch = self._watched.pop(getattr(request.arg, "pid", None), None)
            if watch is not None:
                mon = self.runtime.monitor(watch.ref)
                reply = await super().handle_call(request, caller)
                watch.finish(mon.down.reason if mon.down is not None else "shutdown")
                return reply
        return await super().handle_call(request, caller)

    async def _stream_spawn(self, request: StreamSpawn, caller: Any) -> Any:
        spec = _task_spec(request.fn, (request.item,), request.slot, "temporary", request.shutdown)
        reply = await super().handle_call(_DynamicReq("start_child", spec), caller)
        if reply.__class__ is _Failed:
            return reply.exc  # the stream raises it in the consumer
        watch = Watch(reply, request.inbox, request.index, request.item, request.slot)
        self._watched[reply.pid] = watch
        if request.timeout is not None:
            watch.timer = self.send_after(request.timeout, _StreamTimeout(reply))
        return reply

    # -- exits and timeouts --------------------------------------------------------------
    async def handle_info(self, msg: Any) -> None:
        if msg.__class__ is _StreamTimeout:
            watch = self._watched.get(msg.ref.pid)
            if watch is not None and not watch.timed_out:
                # Killed, not asked: a task that overran its time gets no grace period.
                watch.timed_out = True
                watch.timer = None
                self.exit(msg.ref, "kill")
            return
        await super().handle_info(msg)
        if msg.__class__ is Exit:
            watch = self._watched.pop(msg.pid, None)
            if watch is not None:
                watch.finish(msg.reason)

    async def terminate(self, reason: Any) -> None:
        """Stop every task (as ``DynamicSupervisor``); stream items still running yield
        the reason their task was stopped with."""
        watched = getattr(self, "_watched", None)
        if not watched:
            await super().terminate(reason)
            return
        mons = [(w, self.runtime.monitor(w.ref)) for w in watched.values()]
        watched.clear()
        await super().terminate(reason)
        for watch, mon in mons:
            watch.finish(mon.down.reason if mon.down is not None else reason)
