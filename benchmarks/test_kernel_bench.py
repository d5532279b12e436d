"""pytest-benchmark suites for the kernel and its Python-floor references.

Run with ``pytest benchmarks/`` (``benchmarks/`` is not in the default testpaths).
Sizes are small so the file takes a few seconds; each sample includes the set-up of
its event loop (and runtime), so the precise rate of the measured section is stored in
``extra_info["ops_per_s"]`` (or ``ns_per_lookup``). Ratios and floors live in
``python -m benchmarks.compare kernel``; this file tracks trends
(``--benchmark-autosave`` / ``--benchmark-compare``).
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from typing import Any

import pytest

from . import _baselines

N_CAST = 20_000
N_CALL = 5_000
N_SPAWN = 2_000
N_KEYS = 10_000
N_LOOKUPS = 20_000
ROUNDS = 3


def _ours() -> Any:
    try:
        from . import _ours
    except ImportError as exc:
        pytest.skip(f"kernel unavailable: {exc}")
    return _ours


def _rate(benchmark: Any, fn: Callable[[int], float], n: int) -> None:
    rate = benchmark.pedantic(fn, args=(n,), rounds=ROUNDS, iterations=1, warmup_rounds=1)
    benchmark.extra_info["n"] = n
    benchmark.extra_info["ops_per_s"] = rate
    assert rate > 0


# --------------------------------------------------------------------------- cast


def test_cast_minimal_actor(benchmark: Any) -> None:
    _rate(benchmark, _baselines.minimal_cast_rate, N_CAST)


def test_cast_raw_queue(benchmark: Any) -> None:
    _rate(benchmark, _baselines.queue_throughput, N_CAST)


def test_cast_ours(benchmark: Any) -> None:
    _rate(benchmark, _ours().cast_rate, N_CAST)


# --------------------------------------------------------------------------- call


def test_call_minimal_actor(benchmark: Any) -> None:
    _rate(benchmark, _baselines.minimal_call_rate, N_CALL)


def test_call_raw_request_reply(benchmark: Any) -> None:
    _rate(benchmark, _baselines.request_reply_rate, N_CALL)


def test_call_ours(benchmark: Any) -> None:
    _rate(benchmark, _ours().call_rate, N_CALL)


# --------------------------------------------------------------------------- spawn


def test_spawn_minimal_actor(benchmark: Any) -> None:
    _rate(benchmark, _baselines.minimal_spawn_rate, N_SPAWN)


def test_spawn_ours(benchmark: Any) -> None:
    _rate(benchmark, _ours().spawn_rate, N_SPAWN)


# --------------------------------------------------------------------------- registry


def _pattern(keys: list[str]) -> list[str]:
    return random.Random(1234).choices(keys, k=N_LOOKUPS)


def _lookups(benchmark: Any, get: Callable[[Any], Any], pattern: list[str]) -> None:
    def loop() -> None:
        for k in pattern:
            get(k)

    benchmark.pedantic(loop, rounds=ROUNDS * 3, iterations=1, warmup_rounds=1)
    if benchmark.stats is not None:  # None under --benchmark-disable
        benchmark.extra_info["ns_per_lookup"] = benchmark.stats.stats.min / len(pattern) * 1e9


def test_registry_plain_dict_get(benchmark: Any) -> None:
    keys = [f"worker-{i}" for i in range(N_KEYS)]
    d = {k: object() for k in keys}
    _lookups(benchmark, d.get, _pattern(keys))


def test_registry_locked_dict_get(benchmark: Any) -> None:
    keys = [f"worker-{i}" for i in range(N_KEYS)]
    locked = _baselines.LockedDict({k: object() for k in keys})
    _lookups(benchmark, locked.get, _pattern(keys))


def test_registry_whereis_ours(benchmark: Any) -> None:
    ours = _ours()

    async def main() -> None:
        async with ours.runtime() as rt:
            keys = [f"worker-{i}" for i in range(N_KEYS)]
            ref = await rt.spawn(ours.Idle)
            refs = [ref] + [await rt.spawn(ours.Idle) for _ in range(N_KEYS - 1)]
            for key, r in zip(keys, refs, strict=True):
                rt.registry.register(key, r)
            whereis = ours._whereis(rt.registry)
            assert whereis(keys[-1]) is refs[-1] or whereis(keys[-1]) == refs[-1]
            _lookups(benchmark, whereis, _pattern(keys))

    asyncio.run(main())
