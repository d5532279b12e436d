"""Shared pieces of the registry tests: backends by kind, test actors, and a child process
that registers an actor in a shared table and dies holding it.

Imported as ``from registry_helpers import ...`` (pytest puts this folder on sys.path);
run as a script it is the child: ``python registry_helpers.py <table> <keys> <key>``
attaches to the table, registers one actor under ``<key>`` with metadata
``{"from": "child"}``, prints one JSON line (its OS pid and the actor's pid) and exits
with ``os._exit`` so nothing unregisters the entry: a process that crashed.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Hashable
from typing import Any

import foundation
from foundation import Actor, ActorRef, Caller, Registry, Runtime, SharedMemoryBackend
from foundation.abc import RegistryBackend

REGISTRY_BACKENDS = ("dict", "shm")
#: Small shared tables: capacity 256 keeps a full scan (select, statistics) cheap.
SHM_CAPACITY = 256

BackendFactory = Callable[[], RegistryBackend]
RegistryFactory = Callable[..., Registry]


def new_backend(kind: str, **options: Any) -> RegistryBackend:
    """A fresh backend of ``kind``: a ``DictBackend`` or a new randomly named table."""
    if kind == "dict":
        return foundation.DictBackend(**options)
    if kind == "shm":
        options.setdefault("capacity", SHM_CAPACITY)
        return SharedMemoryBackend(create=True, **options)
    raise ValueError(f"unknown backend kind {kind!r}")


def close_backend(backend: RegistryBackend) -> None:
    """Release ``backend``; a shared table is unlinked whoever created it."""
    if isinstance(backend, SharedMemoryBackend):
        backend.close(unlink=True)
    else:
        backend.close()


class Worker(Actor):
    async def init(self, tag: Any = None) -> None:
        self.tag = tag

    async def handle_call(self, request: Any, caller: Caller) -> Any:
        if request == "crash":
            raise RuntimeError("boom")
        return self.tag

    async def handle_cast(self, msg: Any) -> None:
        if msg == "crash":
            raise RuntimeError("boom")


class FailsInInit(Actor):
    async def init(self) -> None:
        raise ValueError("bad config")


class RegistersItself(Actor):
    async def init(self, registry: Registry, key: Hashable) -> None:
        registry.register(key, self.ref, {"role": "self"})


async def spawn_workers(rt: Runtime, n: int) -> list[ActorRef]:
    return [await rt.spawn(Worker, i) for i in range(n)]


async def register_in_dead_child(table: str, keys: str, key: str) -> dict[str, Any]:
    """Run the child below against ``table`` and wait for it to exit; its JSON line."""
    import anyio

    done = await anyio.run_process(
        [sys.executable, __file__, table, keys, key], check=False
    )
    assert done.returncode == 0, done.stderr.decode()
    line: dict[str, Any] = json.loads(done.stdout.decode().strip().splitlines()[-1])
    return line


def _child(table: str, keys: str, key: str) -> None:
    async def main() -> None:
        rt = foundation.current_runtime()
        backend = SharedMemoryBackend(table, create=False)
        reg = Registry(backend, keys=keys)  # type: ignore[arg-type]
        ref = await rt.spawn(Worker)
        reg.register(key, ref, {"from": "child"})
        pid = ref.pid
        print(json.dumps({"os_pid": os.getpid(), "node": pid.node, "serial": pid.serial}),
              flush=True)
        os._exit(0)  # die holding the entry, as a crashed process would

    foundation.run(main, watchdog=None)


if __name__ == "__main__":
    _child(*sys.argv[1:4])
