"""Registry measurements: the dict backend, the shared-memory backend, their references.

Each function takes one set of samples side by side and returns plain numbers (ns per
lookup, ns per write, seconds); ``benchmarks._suite_registry`` judges them. Actors are
real (``foundation.Runtime`` on asyncio, ``Registry.register`` needs live local refs);
shared-memory tables get random names and are closed (unlinked) in ``finally``.

References: a plain ``dict`` (``get``; ``__setitem__`` + ``__delitem__``), a dict under a
``threading.Lock`` (the naive thread-safe registry), and, for a lookup from a second OS
process, a ``multiprocessing.Manager().dict()`` proxy.
"""

from __future__ import annotations

import asyncio
import gc
import json
import random
import threading
from collections.abc import Callable, Sequence
from time import perf_counter
from typing import Any

from ._baselines import LockedDict, lookup_ns
from ._common import ProbeError, run_json_module, settle

#: Key and metadata limits of the benchmark tables: ``worker-999999`` is 13 bytes and
#: ``{"gpu": 7}`` a few; small limits keep a 1M-entry table at ~150 MB.
KEY_MAX = 32
META_MAX = 32

#: Liveness interval of the second process's reader: long, so a hit batch times hits
#: only (the refresh a 1 s reader pays once per key and second is its own figure).
CHILD_LIVENESS_S = 60.0

#: Actors the in-process samples register keys to, round robin.
POOL = 1000


class ChildError(RuntimeError):
    """The second process failed; the message carries its stderr tail."""


def _keys(n: int) -> list[str]:
    return [f"worker-{i}" for i in range(n)]


async def _pool(rt: Any, n: int) -> list[Any]:
    from ._ours import Idle, warm_up

    await warm_up(rt)
    return [await rt.spawn(Idle) for _ in range(n)]


def _runtime() -> Any:
    from ._ours import runtime

    return runtime()


# --------------------------------------------------------------------------- lookups


def dict_lookups(n_keys: int, n_lookups: int | None, reps: int) -> dict[str, float]:
    """Best-of-``reps`` ns per lookup, interleaved: ``Registry(DictBackend()).whereis``,
    ``rt.registry.whereis``, ``dict.get``, a Lock-guarded get.

    ``n_lookups`` None: every key once, in a random order (a working set that does not
    fit in the CPU caches at 1M keys); else ``n_lookups`` random picks (hot keys).
    """
    from foundation import DictBackend, Registry

    async def main() -> dict[str, float]:
        async with _runtime() as rt:
            refs = await _pool(rt, min(n_keys, POOL))
            keys = _keys(n_keys)
            registry = Registry(DictBackend())
            for i, key in enumerate(keys):
                ref = refs[i % len(refs)]
                registry.register(key, ref)
                rt.registry.register(key, ref)
            plain = {key: refs[i % len(refs)] for i, key in enumerate(keys)}
            rng = random.Random(1234)
            if n_lookups is None:
                pattern = keys[:]
                rng.shuffle(pattern)
            else:
                pattern = rng.choices(keys, k=n_lookups)
            getters: dict[str, Callable[[Any], Any]] = {
                "registry": registry.whereis,
                "runtime": rt.registry.whereis,
                "dict": plain.get,
                "locked": LockedDict(plain).get,
            }
            for name, get in getters.items():
                if get(keys[-1]) is not refs[(n_keys - 1) % len(refs)]:
                    raise RuntimeError(f"{name}: lookup of a registered key failed")
            best = {name: float("inf") for name in getters}
            # Everything built so far stays alive to the end: frozen, it is out of the
            # collections, so the one before each sample does not walk 1M entries.
            gc.collect()
            gc.freeze()
            try:
                for get in getters.values():  # warm caches and the adaptive interpreter
                    lookup_ns(get, pattern)
                for _ in range(reps):
                    for name, get in getters.items():
                        best[name] = min(best[name], lookup_ns(get, pattern))
            finally:
                gc.unfreeze()
            del pattern, plain
        return best

    return asyncio.run(main())


# --------------------------------------------------------------------------- writes


def _locked_writes(d: dict[Any, Any]) -> tuple[Callable[..., None], Callable[..., None]]:
    lock = threading.Lock()

    def put(key: Any, value: Any) -> None:
        with lock:
            d[key] = value

    def delete(key: Any) -> None:
        with lock:
            del d[key]

    return put, delete


def _cycle_s(
    put: Callable[..., Any], delete: Callable[..., Any], keys: Sequence[Any], ref: Any,
    cycles: int, shape: str,
) -> float:
    """Seconds for ``cycles`` x (write every key, then remove every key).

    ``shape`` names the call arguments, so no wrapper frame is billed to anyone:
    ``"registry"`` ``put(k, ref)`` / ``delete(k, ref)``; ``"backend"`` ``put(k, ref, None)``
    / ``delete(k, ref)``; ``"dict"`` ``put(k, ref)`` / ``delete(k)``.
    """
    settle()
    t0 = perf_counter()
    for _ in range(cycles):
        if shape == "backend":
            for k in keys:
                put(k, ref, None)
        else:
            for k in keys:
                put(k, ref)
        if shape == "dict":
            for k in keys:
                delete(k)
        else:
            for k in keys:
                delete(k, ref)
    return perf_counter() - t0


def write_cycle_ns(n_keys: int, cycles: int, shm_cycles: int, reps: int) -> dict[str, float]:
    """Best-of-``reps`` ns per write (a register or an unregister) on a warm registry of
    ``n_keys`` keys: ``Registry`` on a ``DictBackend``, the ``DictBackend`` alone,
    ``Registry`` on a ``SharedMemoryBackend``, a plain dict (set + del), a Lock+dict."""
    from foundation import DictBackend, Registry, SharedMemoryBackend

    async def main() -> dict[str, float]:
        async with _runtime() as rt:
            (ref,) = await _pool(rt, 1)
            keys = _keys(n_keys)
            shm = SharedMemoryBackend(
                create=True, capacity=n_keys, key_max=KEY_MAX, meta_max=META_MAX
            )
            try:
                front = Registry(DictBackend())
                backend = DictBackend()
                on_shm = Registry(shm)
                plain: dict[Any, Any] = {}
                lput, ldel = _locked_writes({})
                runs: dict[str, tuple[Callable[..., Any], Callable[..., Any], int, str]] = {
                    "registry": (front.register, front.unregister, cycles, "registry"),
                    "backend": (backend.register, backend.unregister, cycles, "backend"),
                    "shm": (on_shm.register, on_shm.unregister, shm_cycles, "registry"),
                    "dict": (plain.__setitem__, plain.__delitem__, cycles, "dict"),
                    "locked": (lput, ldel, cycles, "dict"),
                }
                best = {name: float("inf") for name in runs}
                for put, delete, _, shape in runs.values():  # warm-up
                    _cycle_s(put, delete, keys, ref, 1, shape)
                for _ in range(reps):
                    for name, (put, delete, c, shape) in runs.items():
                        s = _cycle_s(put, delete, keys, ref, c, shape)
                        best[name] = min(best[name], s / (2 * n_keys * c) * 1e9)
                if len(front) or shm.count() or plain:
                    raise RuntimeError("a write cycle left entries behind")
            finally:
                shm.close()
        return best

    return asyncio.run(main())


def fill_drain(
    n: int, reps: int, shm_reps: int, loops: int, shm_loops: int
) -> dict[str, dict[str, float]]:
    """Register ``n`` entries into an empty registry, then unregister them all.

    A sample is ``loops`` (``shm_loops`` for the shared-memory table) such fills and
    drains of one registry created for the sample (not timed; a drained registry is
    empty again). One per sample, not one per fill: each ``Registry`` an actor was ever
    registered in stays on its ``proc.registries`` list, which ``register`` scans, so
    thousands of short-lived registries would bill that list to later samples. Per
    implementation (``Registry`` on each backend, dict, Lock+dict) the best of ``reps``
    (``shm_reps``) samples, as seconds per fill and per drain.
    """
    from foundation import DictBackend, Registry, SharedMemoryBackend

    async def main() -> dict[str, dict[str, float]]:
        async with _runtime() as rt:
            refs = await _pool(rt, min(n, POOL))
            keys = _keys(n)
            pairs = [(k, refs[i % len(refs)]) for i, k in enumerate(keys)]
            best: dict[str, dict[str, float]] = {}

            def timed(fn: Callable[..., Any], with_ref: bool = True) -> float:
                t0 = perf_counter()
                if with_ref:
                    for k, r in pairs:
                        fn(k, r)
                else:
                    for k in keys:
                        fn(k)
                return perf_counter() - t0

            def sample(
                put: Callable[..., Any], delete: Callable[..., Any], count: int,
                size: Callable[[], int], with_ref: bool = True,
            ) -> tuple[float, float]:
                settle()  # once per sample: a collection per fill would dwarf a 1k fill
                reg_s = unreg_s = 0.0
                for _ in range(count):
                    reg_s += timed(put)
                    if size() != n:
                        raise RuntimeError(f"a fill left {size()} of {n} entries")
                    unreg_s += timed(delete, with_ref)
                    if size():
                        raise RuntimeError(f"a drain left {size()} entries")
                return reg_s / count, unreg_s / count

            def registry(count: int) -> tuple[float, float]:
                front = Registry(DictBackend())
                return sample(front.register, front.unregister, count, front.count)

            def plain(count: int) -> tuple[float, float]:
                d: dict[Any, Any] = {}
                return sample(d.__setitem__, d.__delitem__, count, d.__len__, False)

            def locked(count: int) -> tuple[float, float]:
                d: dict[Any, Any] = {}
                put, delete = _locked_writes(d)
                return sample(put, delete, count, d.__len__, False)

            def shm(count: int) -> tuple[float, float]:
                table = SharedMemoryBackend(
                    create=True, capacity=n, key_max=KEY_MAX, meta_max=META_MAX
                )
                try:
                    on_shm = Registry(table)
                    return sample(on_shm.register, on_shm.unregister, count, table.count)
                finally:
                    table.close()

            runs = {
                "registry": (registry, reps, loops),
                "dict": (plain, reps, loops),
                "locked": (locked, reps, loops),
                "shm": (shm, shm_reps, shm_loops),
            }
            for rep in range(max(reps, shm_reps)):  # interleaved
                for name, (fn, r, count) in runs.items():
                    if rep >= r:
                        continue
                    reg_s, unreg_s = fn(count)
                    cur = best.get(name)
                    if cur is None or reg_s + unreg_s < cur["register_s"] + cur["unregister_s"]:
                        best[name] = {"register_s": reg_s, "unregister_s": unreg_s}
        return best

    return asyncio.run(main())


# --------------------------------------------------------------------------- second process


def run_child(config: dict[str, Any], timeout: float) -> dict[str, Any]:
    """Run ``benchmarks._registry_child`` with ``config``; its JSON result."""
    try:
        result = run_json_module("benchmarks._registry_child", [json.dumps(config)],
                                 "registry child", timeout)
    except ProbeError as exc:
        raise ChildError(str(exc)) from exc
    if not isinstance(result, dict):
        raise ChildError(f"registry child printed no result object: {result!r}")
    return result


def shm_second_process(n: int, sizes: dict[str, Any], timeout: float = 300.0) -> dict[str, Any]:
    """Register ``worker-0 .. worker-{n-1}`` in a fresh table, one actor per key, with
    ``{"gpu": i % 8}`` metadata, then time lookups from a second OS process (see
    ``benchmarks._registry_child``). Returns the child's result plus set-up times."""
    from foundation import Registry, SharedMemoryBackend

    async def main() -> dict[str, Any]:
        async with _runtime() as rt:
            t0 = perf_counter()
            refs = await _pool(rt, n)
            spawn_s = perf_counter() - t0
            shm = SharedMemoryBackend(create=True, capacity=n, key_max=KEY_MAX, meta_max=META_MAX)
            try:
                registry = Registry(shm)
                t0 = perf_counter()
                for i, (key, ref) in enumerate(zip(_keys(n), refs, strict=True)):
                    registry.register(key, ref, {"gpu": i % 8})
                register_s = perf_counter() - t0
                config = {
                    "name": shm.name,
                    "n": n,
                    "rounds": sizes["rounds"],
                    "hit_batch": sizes["hit_batch"],
                    "cold_batch": sizes["cold_batch"],
                    "lookup_batch": sizes["lookup_batch"],
                    "manager_batch": sizes["manager_batch"],
                    "liveness_interval": CHILD_LIVENESS_S,
                }
                result = await asyncio.to_thread(run_child, config, timeout)
            finally:
                shm.close()
            want = [refs[0].pid.node, refs[0].pid.serial]
            if result.get("first") != want or not result.get("detached"):
                raise RuntimeError(
                    f"the second process resolved worker-0 to {result.get('first')}, "
                    f"detached={result.get('detached')}; registered {want}"
                )
        result["setup"] = {"spawn_s": spawn_s, "register_s": register_s}
        return result

    return asyncio.run(main())
