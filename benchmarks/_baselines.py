"""The floor of Python: raw asyncio and a *minimal actor*, written here as references.

Nothing in this module has any actor semantics beyond the bare minimum; the kernel's
targets are ratios against these numbers measured in the same run (DESIGN.md §6).

Every function runs one sample in a fresh event loop and returns a rate (operations per
second) or a size; completion is always detected by a future the consumer resolves,
never by waiting a fixed time.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import threading
from collections import deque
from time import perf_counter
from typing import Any

from ._common import settle

# --------------------------------------------------------------------------- raw asyncio


def queue_throughput(n: int) -> float:
    """Raw ``asyncio.Queue``, 1 producer -> 1 consumer: messages per second."""

    async def main() -> float:
        loop = asyncio.get_running_loop()
        q: asyncio.Queue[int] = asyncio.Queue()
        done: asyncio.Future[None] = loop.create_future()

        async def consumer() -> None:
            get = q.get
            for _ in range(n):
                await get()
            done.set_result(None)

        task = loop.create_task(consumer())
        await asyncio.sleep(0)  # the consumer is parked on get() before the clock starts
        settle()
        put = q.put_nowait
        t0 = perf_counter()
        for i in range(n):
            put(i)
        await done
        elapsed = perf_counter() - t0
        await task
        return n / elapsed

    return asyncio.run(main())


def request_reply_rate(n: int) -> float:
    """Raw asyncio request/reply: client puts ``(req, fut)`` on a Queue, awaits each reply."""

    async def main() -> float:
        loop = asyncio.get_running_loop()
        q: asyncio.Queue[tuple[Any, asyncio.Future[Any]] | None] = asyncio.Queue()

        async def server() -> None:
            get = q.get
            while True:
                item = await get()
                if item is None:
                    return
                req, fut = item
                fut.set_result(req)

        task = loop.create_task(server())
        await asyncio.sleep(0)
        settle()
        put = q.put_nowait
        new_future = loop.create_future
        t0 = perf_counter()
        for i in range(n):
            fut = new_future()
            put((i, fut))
            await fut
        elapsed = perf_counter() - t0
        put(None)
        await task
        return n / elapsed

    return asyncio.run(main())


# --------------------------------------------------------------------------- minimal actor


class MinimalActor:
    """A deque plus one waiter future: no links, no supervision, no safety.

    ``cast`` appends and wakes the waiter; ``call`` appends ``(req, fut)`` and awaits
    the future; the run loop drains the deque through ``handle`` and parks on a fresh
    loop future when the deque is empty.
    """

    __slots__ = ("_box", "_loop", "_task", "_waiter")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._box: deque[tuple[Any, asyncio.Future[Any] | None]] = deque()
        self._loop = loop
        self._waiter: asyncio.Future[None] | None = None
        self._task: asyncio.Task[None] | None = None

    @classmethod
    def spawn(cls, loop: asyncio.AbstractEventLoop, *args: Any) -> MinimalActor:
        actor = cls(loop, *args)
        actor._task = loop.create_task(actor.run())
        return actor

    def cast(self, msg: Any) -> None:
        self._box.append((msg, None))
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            waiter.set_result(None)

    async def call(self, req: Any) -> Any:
        fut = self._loop.create_future()
        self._box.append((req, fut))
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            waiter.set_result(None)
        return await fut

    async def run(self) -> None:
        box = self._box
        popleft = box.popleft
        handle = self.handle
        while True:
            while box:
                msg, fut = popleft()
                result = await handle(msg)
                if fut is not None:
                    fut.set_result(result)
            waiter = self._waiter = self._loop.create_future()
            await waiter

    async def handle(self, msg: Any) -> Any:
        return msg

    async def kill(self) -> None:
        task = self._task
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


class MinimalSink(MinimalActor):
    """Counts casts; resolves ``done`` when the n-th has been handled."""

    __slots__ = ("_done", "_i", "_n")

    def __init__(
        self, loop: asyncio.AbstractEventLoop, n: int = 0, done: asyncio.Future[None] | None = None
    ) -> None:
        super().__init__(loop)
        self._n = n
        self._i = 0
        self._done = done

    async def handle(self, msg: Any) -> Any:
        self._i += 1
        if self._i == self._n and self._done is not None:
            self._done.set_result(None)
        return msg


def minimal_cast_rate(n: int) -> float:
    """Minimal actor, 1 sender -> 1 actor: casts handled per second."""

    async def main() -> float:
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()
        actor = MinimalSink.spawn(loop, n, done)
        await asyncio.sleep(0)  # the actor is parked on its waiter
        settle()
        cast = actor.cast
        t0 = perf_counter()
        for i in range(n):
            cast(i)
        await done
        elapsed = perf_counter() - t0
        await actor.kill()
        return n / elapsed

    return asyncio.run(main())


def minimal_call_rate(n: int) -> float:
    """Minimal actor: sequential call round trips per second."""

    async def main() -> float:
        loop = asyncio.get_running_loop()
        actor = MinimalActor.spawn(loop)
        await asyncio.sleep(0)
        settle()
        call = actor.call
        t0 = perf_counter()
        for i in range(n):
            await call(i)
        elapsed = perf_counter() - t0
        await actor.kill()
        return n / elapsed

    return asyncio.run(main())


def minimal_spawn_rate(n: int) -> float:
    """Minimal actor: spawns per second (an actor is started once its task exists)."""

    async def main() -> float:
        loop = asyncio.get_running_loop()
        settle()
        spawn = MinimalActor.spawn
        actors: list[MinimalActor] = []
        append = actors.append
        t0 = perf_counter()
        for _ in range(n):
            append(spawn(loop))
        elapsed = perf_counter() - t0
        await asyncio.sleep(0)
        for a in actors:
            if a._task is not None:
                a._task.cancel()
        await asyncio.gather(*(a._task for a in actors if a._task), return_exceptions=True)
        return n / elapsed

    return asyncio.run(main())


async def minimal_idle_actors(n: int) -> list[MinimalActor]:
    """Spawn ``n`` minimal actors and return once every one is parked (memory probe)."""
    loop = asyncio.get_running_loop()
    actors = [MinimalActor.spawn(loop) for _ in range(n)]
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    return actors


# --------------------------------------------------------------------------- registry refs


class LockedDict:
    """A dict read under a ``threading.Lock``: the naive thread-safe registry."""

    __slots__ = ("_d", "_lock")

    def __init__(self, d: dict[Any, Any]) -> None:
        self._d = d
        self._lock = threading.Lock()

    def get(self, key: Any) -> Any:
        with self._lock:
            return self._d.get(key)


def lookup_ns(get: Any, keys: list[Any]) -> float:
    """Nanoseconds per call of ``get`` over the prepared key sequence (same loop shape)."""
    settle()
    t0 = perf_counter()
    for k in keys:
        get(k)
    elapsed = perf_counter() - t0
    return elapsed / len(keys) * 1e9


def dict_lookup_ns(n_keys: int, n_lookups: int, reps: int) -> dict[str, float]:
    """The registry references alone (used when the kernel is unavailable): best-of-reps
    ns per lookup of a plain ``dict.get`` and a Lock-guarded get, same pattern and loop
    shape as ``_ours.registry_lookup_ns``."""
    keys = [f"worker-{i}" for i in range(n_keys)]
    plain = {k: object() for k in keys}
    locked = LockedDict(plain)
    pattern = random.Random(1234).choices(keys, k=n_lookups)
    getters = {"dict_get": plain.get, "locked_get": locked.get}
    best = {name: float("inf") for name in getters}
    for get in getters.values():  # warm caches and the adaptive interpreter
        lookup_ns(get, pattern)
    for _ in range(reps):
        for name, get in getters.items():
            best[name] = min(best[name], lookup_ns(get, pattern))
    return best
