"""The pykka bridge's cost: a supervised pykka call next to a plain pykka ask.

Both sides talk to the same kind of pykka actor (an echo) in one process run:

- plain: ``pykka_ref.ask(i)`` round trips, issued sequentially from a thread (a worker
  thread of the runtime, so the event loop is idle meanwhile, as a thread-based pykka
  client would have it);
- supervised: ``await bridge.call(i)`` round trips from the event loop to a pykka actor
  run under a ``Supervisor`` by ``pykka_child`` (the reply reaches the loop through the
  bridge's callback futures);
- for context, the floor of any loop-to-thread bridge: ``ask(i, block=False)`` awaited
  on the loop through the same callback future, with no actor in between.

Repetitions alternate the two sides so that drift hits both alike; each figure is the
best repetition. Completion is always a reply, never a fixed wait.
"""

from __future__ import annotations

import asyncio
import functools
from time import perf_counter
from typing import Any

from ._common import settle

try:
    import pykka

    from foundation import Runtime
    from supervision import PykkaBridge, Supervisor, pykka_child
    from supervision._pykka_hooks import NotifyingFuture, start_linked
except Exception as exc:  # ImportError, or an error raised while the packages import
    raise ImportError(f"cannot import pykka/foundation/supervision: {exc!r}") from exc


class Echo(pykka.ThreadingActor):
    """Answers every ask with its message."""

    def on_receive(self, message: Any) -> Any:
        return message


def _plain_asks(ref: Any, n: int) -> float:
    """Seconds for ``n`` sequential asks from the calling thread."""
    ask = ref.ask
    t0 = perf_counter()
    for i in range(n):
        ask(i)
    return perf_counter() - t0


async def _loop_asks(ref: Any, n: int) -> float:
    """Seconds for ``n`` asks awaited on the loop through callback futures (no actor)."""
    loop = asyncio.get_running_loop()
    t0 = perf_counter()
    for i in range(n):
        fut = ref.ask(i, block=False)
        assert isinstance(fut, NotifyingFuture)
        done = loop.create_future()
        if fut.when_done(functools.partial(loop.call_soon_threadsafe, done.set_result, None)):
            await done
        fut.get(timeout=0)
    return perf_counter() - t0


def measure_pykka_call_overhead(n: int = 2_000, repeat: int = 3) -> dict[str, float]:
    """Plain ``ask`` rate vs supervised ``call`` rate (per second) and their ratio.

    ``ratio`` is supervised / plain: 1.0 means the bridge costs nothing over a plain ask
    made from a thread; below 1 is the overhead. ``loop_ask_per_s`` is the floor of
    crossing from the event loop to a pykka thread and back (``ratio_vs_loop_ask`` the
    bridge against it). ``n`` round trips per side and repetition, best of ``repeat``;
    about 1 s in all on a 2-core machine with the defaults.
    """

    async def main() -> dict[str, float]:
        async with Runtime(watchdog=None) as rt:
            plain_ref = Echo.start()
            try:
                sup = await Supervisor.start([pykka_child(Echo, name="echo")])
                bridge = rt.whereis("echo")
                assert bridge is not None
                await rt.to_thread(plain_ref.ask, None)
                await bridge.call(None)
                call = bridge.call
                floor_ref = start_linked(Echo, None, (), {})
                plain_best = supervised_best = floor_best = float("inf")
                for _ in range(repeat):
                    settle()
                    plain_best = min(plain_best, await rt.to_thread(_plain_asks, plain_ref, n))
                    settle()
                    floor_best = min(floor_best, await _loop_asks(floor_ref, n))
                    settle()
                    t0 = perf_counter()
                    for i in range(n):
                        await call(i)
                    supervised_best = min(supervised_best, perf_counter() - t0)
                await rt.to_thread(floor_ref.stop)
                await sup.stop("shutdown")
            finally:
                await rt.to_thread(plain_ref.stop)
        plain_rate = n / plain_best
        supervised_rate = n / supervised_best
        return {
            "n": float(n),
            "plain_ask_per_s": plain_rate,
            "supervised_call_per_s": supervised_rate,
            "loop_ask_per_s": n / floor_best,
            "ratio": supervised_rate / plain_rate,
            "ratio_vs_loop_ask": supervised_rate * floor_best / n,
        }

    return asyncio.run(main())


def measure_pykka_bridge_start(n: int = 200) -> dict[str, float]:
    """``pykka.ThreadingActor.start()`` rate vs ``PykkaBridge.start`` rate (per second):
    the bridge adds a foundation actor, a warden and a wait for ``on_start``."""

    async def main() -> dict[str, float]:
        async with Runtime(watchdog=None) as rt:
            settle()
            t0 = perf_counter()
            refs = [Echo.start() for _ in range(n)]
            plain = perf_counter() - t0
            await rt.to_thread(lambda: [ref.stop() for ref in refs])
            settle()
            t0 = perf_counter()
            bridges = [await PykkaBridge.start(Echo) for _ in range(n)]
            bridged = perf_counter() - t0
            for bridge in bridges:
                await bridge.stop()
        return {
            "n": float(n),
            "plain_start_per_s": n / plain,
            "bridge_start_per_s": n / bridged,
            "ratio": plain / bridged,
        }

    return asyncio.run(main())


if __name__ == "__main__":  # pragma: no cover - a quick look from the command line
    print(measure_pykka_call_overhead())
    print(measure_pykka_bridge_start())
