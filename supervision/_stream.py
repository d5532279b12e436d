"""``TaskSupervisor.async_stream``: run a function over many items, some at a time.

    async for r in TaskSupervisor.async_stream("tasks", urls, fetch, max_concurrency=8):
        if r.ok:
            print(r.item, r.value)
        else:
            print(r.item, "failed:", r.reason)       # an exception, or "timeout"

Each item runs as one temporary task actor of the ``TaskSupervisor``; at most
``max_concurrency`` are alive at once, and an item is taken from ``items`` (a sync or
async iterable) only when a slot is free. Results come back as ``StreamResult``s (Elixir's
``{:ok, value}`` / ``{:exit, reason}``), in input order (``ordered=True``) or as they
complete. ``timeout`` counts on the runtime clock from the start of each item's task: a
task still running then is killed and its item yields ``reason="timeout"``
(``on_timeout="kill_task"``), or the stream raises ``TimeoutError`` (``"exit"``).

How results travel: the supervisor is linked to every task and traps exits, so it sees
each exit (with its reason) and runs the timeout timers. It puts the item's result in
the stream's inbox and answers the consumer's pending wait, a deferred ``call``; nothing
polls. A value reaches the inbox through the task's result slot, written just before
the task exits normally.

Closing the stream early (``aclose()``, leaving ``async with``, or dropping the iterator
after ``break``) kills the tasks still running. Prefer ``async with`` or ``aclose()``;
a bare ``break`` relies on the iterator being freed at once, which CPython's reference
counting does when the iterator is not kept in a variable.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from foundation import ActorDead, ActorRef, Caller, current_runtime


@dataclass(frozen=True, slots=True)
class StreamResult:
    """The outcome of one item of ``async_stream``.

    Attributes:
        index: the item's position in the input (0-based).
        item: the input item.
        ok: True when the task returned (Elixir's ``{:ok, value}``).
        value: what the task returned (None when not ``ok``).
        reason: why it failed (``{:exit, reason}``): the exception it raised,
            ``"timeout"``, or the exit reason of a task that was stopped
            (``"shutdown"``, ``"killed"``); None when ``ok``.
    """

    index: int
    item: Any
    ok: bool
    value: Any = None
    reason: Any = None


class ResultSlot:
    """Where a task leaves its return value, read once the task has exited."""

    __slots__ = ("ok", "value")

    def __init__(self) -> None:
        self.ok = False
        self.value: Any = None

    def set(self, value: Any) -> None:
        self.value = value
        self.ok = True


class StreamInbox:
    """Shared by one stream and its supervisor: finished items and the parked consumer.

    The supervisor holds only this object, never the stream itself, so dropping the
    stream frees it (and its finaliser kills the remaining tasks).
    """

    __slots__ = ("closed", "results", "waiter")

    def __init__(self) -> None:
        self.results: deque[StreamResult] = deque()
        self.waiter: Caller | None = None
        self.closed = False

    def put(self, result: StreamResult) -> None:
        """A task finished: queue its result and wake the consumer if it waits."""
        if self.closed:
            return
        self.results.append(result)
        waiter, self.waiter = self.waiter, None
        if waiter is not None:
            waiter.reply(None)


class Watch:
    """The supervisor's record of one running stream task."""

    __slots__ = ("inbox", "index", "item", "ref", "slot", "timed_out", "timer")

    def __init__(
        self, ref: ActorRef, inbox: StreamInbox, index: int, item: Any, slot: ResultSlot
    ) -> None:
        self.ref = ref
        self.inbox = inbox
        self.index = index
        self.item = item
        self.slot = slot
        self.timer: Any = None
        self.timed_out = False

    def finish(self, reason: Any) -> None:
        """The task exited with ``reason``: deliver the item's result."""
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        slot = self.slot
        if slot.ok:
            # It returned: a kill racing with its exit (a timeout) does not matter.
            result = StreamResult(self.index, self.item, True, slot.value)
        else:
            why = "timeout" if self.timed_out else reason
            result = StreamResult(self.index, self.item, False, None, why)
        self.inbox.put(result)


class StreamSpawn:
    """Request: start the task of one item and watch it."""

    __slots__ = ("fn", "inbox", "index", "item", "shutdown", "slot", "timeout")

    def __init__(
        self,
        inbox: StreamInbox,
        index: int,
        item: Any,
        fn: Any,
        timeout: float | None,
        shutdown: Any,
    ) -> None:
        self.inbox = inbox
        self.index = index
        self.item = item
        self.fn = fn
        self.timeout = timeout
        self.shutdown = shutdown
        self.slot = ResultSlot()


class StreamPark:
    """Request: answer once the inbox holds a result (at once if it already does)."""

    __slots__ = ("inbox",)

    def __init__(self, inbox: StreamInbox) -> None:
        self.inbox = inbox


class TaskStream:
    """The async iterator ``TaskSupervisor.async_stream`` returns (also an async context
    manager); see the module docstring. Nothing starts before the first ``__anext__``."""

    def __init__(
        self,
        sup: Any,
        items: Iterable[Any] | AsyncIterable[Any],
        fn: Any,
        *,
        max_concurrency: int,
        ordered: bool,
        timeout: float | None,
        on_timeout: str,
        shutdown: Any,
    ) -> None:
        self._sup_target = sup
        self._sup: ActorRef | None = None
        self._rt: Any = None
        self._items = items
        self._source: Iterator[Any] | AsyncIterator[Any] | None = None
        self._fn = fn
        self._max = max_concurrency
        self._ordered = ordered
        self._timeout = timeout
        self._on_timeout = on_timeout
        self._shutdown = shutdown
        self._inbox = StreamInbox()
        self._running: dict[int, ActorRef] = {}
        self._buffer: dict[int, StreamResult] = {}  # ordered: finished, not yet yielded
        self._ready: deque[StreamResult] = deque()  # unordered: finished, not yet yielded
        self._next_in = 0
        self._next_out = 0
        self._exhausted = False
        self._closed = False
        self._busy = False
        self._thread = threading.get_ident()

    @property
    def max_concurrency(self) -> int:
        """Most tasks of this stream alive at once."""
        return self._max

    @property
    def ordered(self) -> bool:
        """Whether results come in input order (else as they complete)."""
        return self._ordered

    @property
    def timeout(self) -> float | None:
        """Seconds each item's task may run (None: no limit)."""
        return self._timeout

    # -- iteration ---------------------------------------------------------------------
    def __aiter__(self) -> TaskStream:
        return self

    async def __anext__(self) -> StreamResult:
        if self._closed:
            raise StopAsyncIteration
        if self._busy:
            raise RuntimeError("a TaskStream has one consumer; it is already being iterated")
        self._busy = True
        try:
            while True:
                await self._fill()
                result = self._take()
                if result is not None:
                    if result.reason == "timeout" and not result.ok and self._on_timeout == "exit":
                        raise TimeoutError(
                            f"the task of item {result.index} ({result.item!r}) did not "
                            f"finish within {self._timeout} s"
                        )
                    return result
                if not self._running and self._exhausted:
                    self._close()
                    raise StopAsyncIteration
                if not self._inbox.results:
                    await self._park()
                    if self._closed:  # aclose() from another task while parked here
                        raise StopAsyncIteration
                self._take_one_delivered()
        except StopAsyncIteration:
            raise
        except BaseException:
            # The source failed, the supervisor is gone, the consumer was cancelled or
            # a timeout ends the stream: no task of this stream outlives it.
            self._close()
            raise
        finally:
            self._busy = False

    def _take_one_delivered(self) -> None:
        """Move one result the supervisor delivered into the yield order. One at a time,
        as Elixir: a task counts against ``max_concurrency`` until its result is taken
        here, and each result taken lets one more item start before the next yield."""
        results = self._inbox.results
        if not results:
            return
        result = results.popleft()
        self._running.pop(result.index, None)
        if self._ordered:
            self._buffer[result.index] = result
        else:
            self._ready.append(result)

    def _take(self) -> StreamResult | None:
        if not self._ordered:
            return self._ready.popleft() if self._ready else None
        result = self._buffer.pop(self._next_out, None)
        if result is not None:
            self._next_out += 1
        return result

    async def _fill(self) -> None:
        """Start tasks until ``max_concurrency`` run or the items are exhausted; an item
        is taken from the source only when it can start at once (lazy)."""
        while not self._exhausted and len(self._running) < self._max:
            try:
                item = await self._next_item()
            except StopAsyncIteration:
                self._exhausted = True
                return
            index = self._next_in
            self._next_in += 1
            request = StreamSpawn(self._inbox, index, item, self._fn, self._timeout, self._shutdown)
            reply = await self._supervisor().call(request, None)
            if isinstance(reply, BaseException):
                raise reply  # MaxChildren, or the task failed to start
            self._running[index] = reply

    async def _next_item(self) -> Any:
        source = self._source
        if source is None:
            items = self._items
            if isinstance(items, AsyncIterable):
                source = self._source = aiter(items)
            else:
                source = self._source = iter(items)
        if isinstance(source, AsyncIterator):
            return await anext(source)
        try:
            return next(source)
        except StopIteration:
            raise StopAsyncIteration from None

    async def _park(self) -> None:
        if self._inbox.results:
            return
        await self._supervisor().call(StreamPark(self._inbox), None)

    def _supervisor(self) -> ActorRef:
        sup = self._sup
        if sup is None:
            target = self._sup_target
            found = target if isinstance(target, ActorRef) else current_runtime().whereis(target)
            if found is None:
                raise ActorDead(target, "noproc", handled=False)
            sup = self._sup = found
            self._rt = current_runtime()
        return sup

    # -- closing -----------------------------------------------------------------------
    def _close(self) -> list[ActorRef]:
        """Stop for good: kill the tasks still running; return them."""
        self._closed = True
        inbox = self._inbox
        inbox.closed = True
        waiter, inbox.waiter = inbox.waiter, None
        if waiter is not None:
            waiter.reply(None)  # a consumer parked in another task sees the stream closed
        running = list(self._running.values())
        self._running.clear()
        self._buffer.clear()
        self._ready.clear()
        for ref in running:
            ref.kill()
        return running

    async def aclose(self) -> None:
        """Kill the tasks still running and wait until they exited; close an async
        source (idempotent)."""
        running = [] if self._closed else self._close()
        rt = current_runtime()
        for ref in running:
            await rt.monitor(ref).wait(None)
        source, self._source = self._source, None
        self._exhausted = True
        close = getattr(source, "aclose", None)
        if close is not None:
            await close()

    async def __aenter__(self) -> TaskStream:
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        await self.aclose()

    def __del__(self) -> None:
        # A consumer that broke out of ``async for`` drops the iterator here.
        if self._closed or not self._running:
            return
        try:
            if threading.get_ident() == self._thread:
                self._close()
            elif self._rt is not None:  # freed by a collector in another thread
                self._rt.call_soon_threadsafe(self._close)
        except Exception:  # the runtime is gone, and its actors with it
            pass

    def __repr__(self) -> str:
        state = "closed" if self._closed else f"{len(self._running)} running"
        return f"<TaskStream of {self._fn!r}: {state}>"
