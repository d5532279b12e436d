"""trio backend: a nursery per runtime, a cancel scope per actor, rescheduled tasks."""

from __future__ import annotations

import math
from collections.abc import AsyncIterator, Callable, Coroutine, Generator
from contextlib import asynccontextmanager
from typing import Any

import outcome
import trio
import trio.lowlevel as tl
from trio.testing import wait_all_tasks_blocked


class TrioFuture:
    """A one-shot result slot awaited by at most one trio task."""

    __slots__ = ("_outcome", "_task")

    def __init__(self) -> None:
        self._outcome: outcome.Outcome[Any] | None = None
        self._task: tl.Task | None = None

    def done(self) -> bool:
        return self._outcome is not None

    def set_result(self, value: Any) -> None:
        self._settle(outcome.Value(value))

    def set_exception(self, exc: BaseException) -> None:
        self._settle(outcome.Error(exc))

    def result(self) -> Any:
        """The value (or raise the error), as often as asked, like ``asyncio.Future``.

        ``Outcome.unwrap`` works once only, and ``await`` has usually spent it already.
        """
        result = self._outcome
        if result is None:
            raise RuntimeError("future is not done")
        if isinstance(result, outcome.Value):
            return result.value
        assert isinstance(result, outcome.Error)
        raise result.error

    def _settle(self, result: outcome.Outcome[Any]) -> None:
        if self._outcome is not None:
            raise RuntimeError("future already settled")
        self._outcome = result
        task = self._task
        if task is not None:
            self._task = None
            tl.reschedule(task, result)

    def _abort(self, _raise_cancel: Any) -> tl.Abort:
        # The waiting task was cancelled: the slot is settled as cancelled so a late
        # result is dropped instead of waking a task that left.
        self._task = None
        self._outcome = outcome.Error(trio.Cancelled._create())
        return tl.Abort.SUCCEEDED

    async def _wait(self) -> Any:
        if self._outcome is not None:
            await tl.checkpoint()
            return self._outcome.unwrap()
        self._task = tl.current_task()
        return await tl.wait_task_rescheduled(self._abort)

    def __await__(self) -> Generator[Any, None, Any]:
        return self._wait().__await__()


class Backend:
    """Kernel primitives on the running trio loop."""

    name = "trio"
    cancelled_exc: type[BaseException] = trio.Cancelled

    def __init__(self) -> None:
        self._nursery: trio.Nursery | None = None
        self.new_future = TrioFuture
        self.checkpoint = tl.checkpoint
        self._token = tl.current_trio_token()

    @asynccontextmanager
    async def task_scope(self) -> AsyncIterator[None]:
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            try:
                yield
            finally:
                nursery.cancel_scope.cancel()

    def start(self, fn: Callable[..., Coroutine[Any, Any, None]], *args: Any) -> Any:
        assert self._nursery is not None
        scope = trio.CancelScope()
        self._nursery.start_soon(_in_scope, scope, fn, args)
        return scope

    def start_actor(self, proc: Any, serve: Serve) -> None:
        assert self._nursery is not None
        proc.cancel_handle = scope = trio.CancelScope()
        self._nursery.start_soon(_in_scope, scope, serve, (proc,))

    def cancel(self, handle: Any) -> None:
        handle.cancel()

    async def wait_all_blocked(self, cushion: float = 0.0) -> None:
        # trio's tasks_runnable leaves out the rest of the running batch (and trio
        # shuffles batches), so polling it mistakes a busy loop for an idle one; trio's
        # own detector runs between batches.
        await wait_all_tasks_blocked(cushion)

    async def wait_future_until(self, fut: Any, delay: float | None) -> None:
        deadline = math.inf if delay is None else trio.current_time() + max(delay, 0.0)
        with trio.move_on_at(deadline):
            await fut

    def call_soon_threadsafe(self, fn: Callable[..., Any], *args: Any) -> None:
        self._token.run_sync_soon(fn, *args)

    async def aclose(self) -> None:
        if self._nursery is not None:
            self._nursery.cancel_scope.cancel()


Serve = Callable[[Any], Coroutine[Any, Any, None]]


async def _in_scope(
    scope: trio.CancelScope, fn: Callable[..., Coroutine[Any, Any, None]], args: tuple[Any, ...]
) -> None:
    with scope:
        await fn(*args)
