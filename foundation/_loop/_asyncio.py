"""asyncio backend: loop futures, raw tasks, ``task.cancel`` for kills."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from typing import Any


class Backend:
    """Kernel primitives on the running asyncio loop."""

    name = "asyncio"
    cancelled_exc: type[BaseException] = asyncio.CancelledError

    def __init__(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.new_future = self.loop.create_future
        self._tasks: set[asyncio.Task[None]] = set()
        self._discard = self._tasks.discard
        self.checkpoint = _checkpoint
        # loop._ready is private; without it (uvloop) idleness is judged by checkpoints.
        self._ready: Any = getattr(self.loop, "_ready", None)

    @asynccontextmanager
    async def task_scope(self) -> AsyncIterator[None]:
        try:
            yield
        finally:
            await self.aclose()

    def start(self, fn: Callable[..., Coroutine[Any, Any, None]], *args: Any) -> Any:
        task = self.loop.create_task(fn(*args))
        self._tasks.add(task)
        task.add_done_callback(self._discard)
        return task

    def start_actor(self, proc: Any, serve: Serve) -> None:
        # Actor tasks are tracked by the runtime's process table, not in _tasks: a set
        # entry and a done-callback per actor cost ~200 bytes and ~1 us per spawn.
        proc.cancel_handle = self.loop.create_task(serve(proc))

    def cancel(self, handle: Any) -> None:
        # A task cancelled before its first step gets CancelledError thrown in at its
        # first line, outside serve's try: no exit protocol, no Down, no unregistration.
        # Its first step is already queued, so cancel it right after that step instead.
        if inspect.getcoroutinestate(handle.get_coro()) == inspect.CORO_CREATED:
            self.loop.call_soon(handle.cancel)
        else:
            handle.cancel()

    def _ready_empty(self) -> bool:
        ready = self._ready
        return ready is None or not ready

    async def wait_all_blocked(self, cushion: float = 0.0) -> None:
        # The ready queue is read between checkpoints (it holds the rest of the running
        # batch too). Two idle readings in a row: the checkpoint between them lets the
        # loop poll I/O once, so a ready socket is not mistaken for idleness.
        while True:
            idle = 0
            while idle < 2:
                await _checkpoint()
                idle = idle + 1 if self._ready_empty() else 0
            if cushion <= 0:
                return
            await self.wait_future_until(self.new_future(), cushion)
            if self._ready_empty():
                return

    async def wait_future_until(self, fut: Any, delay: float | None) -> None:
        if delay is None:
            await fut
            return
        handle = self.loop.call_later(max(delay, 0.0), _wake, fut)
        try:
            await fut
        finally:
            handle.cancel()

    def call_soon_threadsafe(self, fn: Callable[..., Any], *args: Any) -> None:
        self.loop.call_soon_threadsafe(fn, *args)

    async def aclose(self) -> None:
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)


Serve = Callable[[Any], Coroutine[Any, Any, None]]


def _wake(fut: asyncio.Future[Any]) -> None:
    if not fut.done():
        fut.set_result(None)


async def _checkpoint() -> None:
    await asyncio.sleep(0)
