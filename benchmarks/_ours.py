"""The same measurements for the foundation kernel (asyncio backend, the reference).

Importing this module raises :class:`ImportError` with a clear message when
``foundation`` is missing or lacks the public names used here; the runner reports the
kernel's figures as n/a with that message.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from time import perf_counter
from typing import Any

from ._common import settle

try:
    import foundation
except Exception as exc:  # ImportError, or an error raised while the kernel imports
    raise ImportError(f"cannot import the foundation kernel: {exc!r}") from exc

_missing = [name for name in ("Runtime", "Actor") if not hasattr(foundation, name)]
if _missing:
    raise ImportError(
        "foundation does not export " + ", ".join(_missing) + " (benchmarks/_ours.py needs "
        "Runtime and Actor; see benchmarks/README.md)"
    )

Runtime: Any = foundation.Runtime
Actor: Any = foundation.Actor


class Sink(Actor):  # type: ignore[misc]
    """Counts casts; resolves ``done`` (an asyncio future) at the n-th; echoes calls."""

    async def init(self, n: int = 0, done: asyncio.Future[None] | None = None) -> None:
        self.n = n
        self.i = 0
        self.done = done

    async def handle_cast(self, msg: Any) -> None:
        self.i += 1
        if self.i == self.n and self.done is not None:
            self.done.set_result(None)

    async def handle_call(self, request: Any, caller: Any) -> Any:
        return request


class Idle(Actor):  # type: ignore[misc]
    """A trivial actor: default init, echoes calls."""

    async def handle_call(self, request: Any, caller: Any) -> Any:
        return request


@asynccontextmanager
async def runtime() -> AsyncIterator[Any]:
    async with Runtime() as rt:
        yield rt


async def warm_up(rt: Any) -> None:
    """Spawn, call and stop one actor so first-use costs are not billed to a sample."""
    ref = await rt.spawn(Idle)
    await ref.call(0, timeout=5.0)
    await ref.stop()


async def idle_actors(rt: Any, n: int) -> list[Any]:
    """Spawn n idle actors; ``spawn`` returns after ``init``, so each is parked after a
    last round trip through the loop."""
    spawn = rt.spawn
    refs = [await spawn(Idle) for _ in range(n)]
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    return refs


def cast_rate(n: int) -> float:
    """1 sender -> 1 actor: casts handled per second (timed until the n-th is handled)."""

    async def main() -> float:
        loop = asyncio.get_running_loop()
        async with runtime() as rt:
            await warm_up(rt)
            done: asyncio.Future[None] = loop.create_future()
            ref = await rt.spawn(Sink, n, done)
            await ref.call(None, timeout=5.0)  # parked and idle before the clock starts
            settle()
            cast = ref.cast
            t0 = perf_counter()
            for i in range(n):
                cast(i)
            await done
            elapsed = perf_counter() - t0
            await ref.stop()
        return n / elapsed

    return asyncio.run(main())


def call_rate(n: int) -> float:
    """Sequential ``call`` round trips per second (``timeout=5.0``, the default)."""

    async def main() -> float:
        async with runtime() as rt:
            await warm_up(rt)
            ref = await rt.spawn(Idle)
            call = ref.call
            await call(None, timeout=5.0)
            settle()
            t0 = perf_counter()
            for i in range(n):
                await call(i, timeout=5.0)
            elapsed = perf_counter() - t0
            await ref.stop()
        return n / elapsed

    return asyncio.run(main())


def spawn_rate(n: int) -> float:
    """``await rt.spawn(Idle)`` in a loop: actors started (init finished) per second."""

    async def main() -> float:
        async with runtime() as rt:
            await warm_up(rt)
            spawn = rt.spawn
            refs = []
            append = refs.append
            settle()
            t0 = perf_counter()
            for _ in range(n):
                append(await spawn(Idle))
            elapsed = perf_counter() - t0
            # leaving the runtime stops them all (concurrently, not timed)
        return n / elapsed

    return asyncio.run(main())


def _whereis(registry: Any) -> Any:
    for name in ("whereis", "lookup"):
        fn = getattr(registry, name, None)
        if fn is not None:
            return fn
    raise ImportError("the runtime registry has neither whereis() nor lookup()")


def registry_lookup_ns(n_keys: int, n_lookups: int, reps: int) -> dict[str, float]:
    """Best-of-``reps`` nanoseconds per lookup of ``rt.registry.whereis`` vs a plain
    ``dict.get`` vs a ``threading.Lock``-guarded dict get, over the same random access
    pattern of ``n_lookups`` among ``n_keys`` registered keys, with one loop shape."""
    from ._baselines import LockedDict, lookup_ns

    async def main() -> dict[str, float]:
        async with runtime() as rt:
            await warm_up(rt)
            keys = [f"worker-{i}" for i in range(n_keys)]
            refs = [await rt.spawn(Idle) for _ in range(n_keys)]
            registry = rt.registry
            for key, ref in zip(keys, refs, strict=True):
                registry.register(key, ref)
            plain = dict(zip(keys, refs, strict=True))
            locked = LockedDict(plain)
            pattern = random.Random(1234).choices(keys, k=n_lookups)
            whereis = _whereis(registry)
            if whereis(keys[0]) is None:
                raise RuntimeError("registry lookup of a registered key returned None")
            getters = {"whereis": whereis, "dict_get": plain.get, "locked_get": locked.get}
            best = {name: float("inf") for name in getters}
            for get in getters.values():  # warm caches and the adaptive interpreter
                lookup_ns(get, pattern)
            for _ in range(reps):  # interleaved so drift hits every variant alike
                for name, get in getters.items():
                    best[name] = min(best[name], lookup_ns(get, pattern))
        return best

    return asyncio.run(main())
