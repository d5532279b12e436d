"""The second OS process of the shared-memory registry benchmark.

    python -m benchmarks._registry_child '{"name": ..., "n": ..., ...}'

The parent (``benchmarks._registry_bench.shm_second_process``) created a
``SharedMemoryBackend`` table and registered ``worker-0 .. worker-{n-1}`` to actors of
its own runtime. This process attaches to the table (``create=False``), checks that
every key resolves, then measures, in rounds, each a batch per figure (median over the
rounds):

- ``hit``: ``Registry.whereis`` of a key it has looked up before: the per-process cache
  entry validated by one 8-byte load (the table's write generation, or the slot's
  sequence number when a write happened since);
- ``refresh``: the key's cache entry dropped (what a reader pays once per key and
  ``liveness_interval``): the probe of the table, the owner's liveness from the
  per-process cache, the cached ``ActorRef``;
- ``cold``: the first lookup of a key in this process: cache entry and ``ActorRef``
  cache dropped, so the probe also builds the detached ``ActorRef``;
- ``lookup``: ``Registry.lookup(key)``, returning ``[(ref, meta)]`` (not cached);
- ``dict_get``: a plain ``dict.get`` over the same keys, same pattern as ``hit``;
- ``manager``: the peer, a ``multiprocessing.Manager().dict()`` proxy ``.get`` on the
  same keys (the manager is started here; its own pickling is part of what it costs).

It prints one JSON object on stdout (nanoseconds per lookup; the batches too). The
reader's ``liveness_interval`` is long (``config["liveness_interval"]``) so that a hit
batch measures hits only; the cost a default reader (1 s) adds is the ``refresh``
figure, once per key and second.
"""

from __future__ import annotations

import gc
import json
import multiprocessing
import random
import statistics
import sys
from collections.abc import Callable, Sequence
from time import perf_counter
from typing import Any


def _timed(fn: Callable[[Any], Any], keys: Sequence[Any]) -> float:
    """Nanoseconds per call of ``fn`` over ``keys`` (one loop, the clock around it)."""
    gc.collect()
    t0 = perf_counter()
    for k in keys:
        fn(k)
    return (perf_counter() - t0) / len(keys) * 1e9


def measure(config: dict[str, Any]) -> dict[str, Any]:
    from foundation import Registry, SharedMemoryBackend

    n = int(config["n"])
    rounds = int(config["rounds"])
    rng = random.Random(int(config.get("seed", 1234)))
    backend = SharedMemoryBackend(
        config["name"], create=False, liveness_interval=float(config["liveness_interval"])
    )
    try:
        registry = Registry(backend)
        whereis, lookup = registry.whereis, registry.lookup
        keys = [f"worker-{i}" for i in range(n)]
        plain = {k: whereis(k) for k in keys}  # also the warm pass: every key is cached
        missing = [k for k, ref in plain.items() if ref is None]
        if missing:
            raise RuntimeError(f"{len(missing)} of {n} keys not found, e.g. {missing[:3]}")
        found = [ref for ref in plain.values() if ref is not None]
        first = found[0]
        entries = lookup(keys[0])
        if len(entries) != 1 or entries[0][0] != first:
            raise RuntimeError(f"lookup({keys[0]!r}) returned {entries!r}")
        hot: dict[Any, Any] = backend._hot  # the per-process cache (dropped for cold rows)
        refs: dict[Any, Any] = backend._refs  # (node, serial, owner) -> detached ActorRef

        def sample(k: int) -> list[str]:
            return rng.sample(keys, min(n, k))

        batches: dict[str, list[float]] = {
            k: [] for k in ("hit", "dict_get", "refresh", "cold", "lookup", "manager")
        }
        with multiprocessing.Manager() as manager:
            shared = manager.dict()
            shared.update({k: (r.pid.node, r.pid.serial) for k, r in zip(keys, found, strict=True)})
            if shared.get(keys[0]) != (first.pid.node, first.pid.serial):
                raise RuntimeError("the Manager dict does not hold the registered keys")
            mget = shared.get
            for _ in range(rounds):  # interleaved: drift hits every figure alike
                pattern = rng.choices(keys, k=int(config["hit_batch"]))
                batches["hit"].append(_timed(whereis, pattern))
                batches["dict_get"].append(_timed(plain.get, pattern))
                some = sample(int(config["cold_batch"]))
                for k in some:
                    hot.pop(k, None)
                batches["refresh"].append(_timed(whereis, some))
                some = sample(int(config["cold_batch"]))
                for k in some:
                    hot.pop(k, None)
                refs.clear()
                batches["cold"].append(_timed(whereis, some))
                batches["lookup"].append(_timed(lookup, sample(int(config["lookup_batch"]))))
                mpattern = rng.choices(keys, k=int(config["manager_batch"]))
                batches["manager"].append(_timed(mget, mpattern))
        if whereis(keys[-1]) != found[-1]:
            raise RuntimeError("the table changed under the benchmark")
        return {
            "n": n,
            "rounds": rounds,
            "first": [first.pid.node, first.pid.serial],
            "detached": first._proc is None,
            "median_ns": {k: statistics.median(v) for k, v in batches.items()},
            "batches_ns": batches,
        }
    finally:
        backend.close()


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m benchmarks._registry_child CONFIG_JSON", file=sys.stderr)
        return 2
    print(json.dumps(measure(json.loads(argv[0]))), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
