"""Supervision measurements: restart latency, a big one_for_all restart, pykka bridge.

Each figure is taken side by side with its reference in one process run, on the asyncio
backend (the reference backend):

- one_for_one restart latency: a child gets an exit signal (a crash without a
  traceback to log), then a call by name reaches the new incarnation; the reference is
  a plain ``spawn`` + ``call`` of the same child (same class, registered under a name
  as the supervised one is). Median over many restarts.
- one_for_all restart of N children: one crash, then every child is stopped in reverse
  order and started again; the reference spawns and stops N plain actors.
- supervised pykka call vs a plain pykka ask (``benchmarks._supervision_pykka``).
"""

from __future__ import annotations

import asyncio
import statistics
from collections.abc import Callable, Coroutine
from time import perf_counter
from typing import Any

from ._common import settle

try:
    from foundation import Actor, Runtime
    from supervision import ChildSpec, Supervisor
except Exception as exc:  # ImportError, or an error raised while the packages import
    raise ImportError(f"cannot import foundation/supervision: {exc!r}") from exc


class Echo(Actor):
    """Answers every call with its request."""

    async def handle_call(self, request: Any, caller: Any) -> Any:
        return request


def _run(coro: Callable[[], Coroutine[Any, Any, Any]]) -> Any:
    settle()
    return asyncio.run(coro())


def restart_latency(n: int) -> dict[str, float]:
    """Median seconds from crash to the new child answering, and of spawn + call."""

    async def main() -> dict[str, float]:
        async with Runtime(watchdog=None) as rt:
            sup = await Supervisor.start(
                [ChildSpec("w", (Echo, (), {"name": "w"}))],
                max_restarts=n + 10,
                max_seconds=3600.0,
            )
            restart: list[float] = []
            plain: list[float] = []
            for _ in range(n):
                child = rt.whereis("w")
                assert child is not None
                t0 = perf_counter()
                rt.exit(child, "crash")
                await rt.call("w", "ping")
                restart.append(perf_counter() - t0)

                # The same child (class and registered name), without a supervisor.
                t0 = perf_counter()
                ref = await rt.spawn(Echo, name="plain")
                await ref.call("ping")
                plain.append(perf_counter() - t0)
                ref.kill()
            await sup.stop("shutdown")
        return {
            "restart_median_s": statistics.median(restart),
            "spawn_call_median_s": statistics.median(plain),
        }

    return _run(main)  # type: ignore[no-any-return]


def one_for_all_restart(n: int) -> dict[str, float]:
    """Seconds to restart ``n`` one_for_all children after one crash, and the
    reference: spawn ``n`` plain actors, then stop them newest first."""

    async def main() -> dict[str, float]:
        async with Runtime(watchdog=None) as rt:
            children = [ChildSpec(i, Echo) for i in range(n)]
            sup = await Supervisor.start(children, strategy="one_for_all")
            first = (await Supervisor.which_children(sup))[0].ref
            assert first is not None
            t0 = perf_counter()
            rt.exit(first, "crash")
            # The supervisor answers after the restart it is in the middle of.
            counts = await Supervisor.count_children(sup, timeout=None)
            restart = perf_counter() - t0
            assert counts.active == n
            stats = await Supervisor.statistics(sup)
            assert stats.restarts_total == 1
            await sup.stop("shutdown", timeout=None)

            t0 = perf_counter()
            refs = [await rt.spawn(Echo) for _ in range(n)]
            for ref in reversed(refs):
                await ref.stop("shutdown")
            plain = perf_counter() - t0
        return {"restart_s": restart, "spawn_stop_s": plain}

    return _run(main)  # type: ignore[no-any-return]
