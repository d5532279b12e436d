"""Memory per idle actor, measured in a fresh interpreter.

Usage (the runner calls it; it is not a user entry point)::

    python -m benchmarks._memprobe {minimal|task_queue|ours|pykka} N

It imports everything, measures RSS after a full collection, creates N idle actors and
waits until each is parked (an event, not a pause), collects again, measures RSS, and
prints one JSON line ``{"impl": ..., "n": N, "bytes_per_actor": ...}``. The process
then exits without tearing the actors down: teardown is not what is measured.
"""

from __future__ import annotations

import asyncio
import gc
import json
import os
import sys
from typing import Any

from ._common import rss


async def _task_queue_idle(n: int) -> list[Any]:
    """n asyncio tasks, each parked on its own ``asyncio.Queue`` (the raw reference)."""
    loop = asyncio.get_running_loop()

    async def worker(q: asyncio.Queue[Any]) -> None:
        while True:
            await q.get()

    held = []
    for _ in range(n):
        q: asyncio.Queue[Any] = asyncio.Queue()
        held.append((q, loop.create_task(worker(q))))
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    return held


def _report(impl: str, n: int, before: int, after: int) -> None:
    print(json.dumps({"impl": impl, "n": n, "bytes_per_actor": (after - before) / n}))
    sys.stdout.flush()


def _probe_async(impl: str, n: int) -> None:
    async def main() -> None:
        if impl == "ours":
            from . import _ours

            async with _ours.runtime() as rt:
                await _ours.warm_up(rt)
                before = rss()
                held = await _ours.idle_actors(rt, n)
                after = rss()
                _report(impl, n, before, after)
                del held
                os._exit(0)  # skip tearing down n actors: not measured, only slow
        else:
            from . import _baselines

            make = _baselines.minimal_idle_actors if impl == "minimal" else _task_queue_idle
            # warm the allocator and the loop's structures with a small batch first
            warm = await make(100)
            before = rss()
            held = await make(n)
            after = rss()
            _report(impl, n, before, after)
            del held, warm
            os._exit(0)

    asyncio.run(main())


def _probe_pykka(n: int) -> None:
    from . import _peers

    warm = _peers.pykka_idle_actors(10)
    before = rss()
    held = _peers.pykka_idle_actors(n)
    after = rss()
    _report("pykka", n, before, after)
    del held, warm
    _peers.pykka_stop_all()


def main(argv: list[str]) -> int:
    # No cyclic collections while N actors are created (they would only slow the probe
    # down, quadratically in N); ``rss()`` runs a full collection before each reading.
    if len(argv) != 2 or argv[0] not in {"minimal", "task_queue", "ours", "pykka"}:
        print(
            "usage: python -m benchmarks._memprobe {minimal|task_queue|ours|pykka} N",
            file=sys.stderr,
        )
        return 2
    impl, n = argv[0], int(argv[1])
    gc.disable()
    if impl == "pykka":
        _probe_pykka(n)
    else:
        _probe_async(impl, n)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
