"""Fixtures of the registry backend conformance suite (requested by name only, so the
other foundation tests are untouched): ``registry_kind`` runs a test once per backend,
``make_backend`` / ``make_registry`` build fresh ones and release them at teardown."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest
from registry_helpers import (
    REGISTRY_BACKENDS,
    BackendFactory,
    RegistryFactory,
    close_backend,
    new_backend,
)
from shm_child import Child, new_name, remove_table

from foundation import Registry, Runtime, SharedMemoryBackend
from foundation.abc import Keys, RegistryBackend


@pytest.fixture(params=REGISTRY_BACKENDS)
def registry_kind(request: pytest.FixtureRequest) -> str:
    """The backend under test: ``"dict"`` or ``"shm"``."""
    return str(request.param)


@pytest.fixture
def make_backend(registry_kind: str) -> Iterator[BackendFactory]:
    """Fresh backends of ``registry_kind``; shared tables are closed and unlinked at
    teardown, failed test or not. Requested before ``runtime``, it is torn down after."""
    with contextlib.ExitStack() as stack:

        def make() -> RegistryBackend:
            backend = new_backend(registry_kind)
            stack.callback(close_backend, backend)
            return backend

        yield make


@pytest.fixture
def make_registry(make_backend: BackendFactory) -> RegistryFactory:
    """``make_registry(keys="unique", name=None)``: a Registry on a fresh backend."""

    def make(keys: Keys = "unique", name: str | None = None) -> Registry:
        return Registry(make_backend(), keys=keys, name=name)

    return make


@pytest.fixture
async def backend_runtime(
    request: pytest.FixtureRequest, make_backend: BackendFactory
) -> AsyncIterator[Runtime]:
    """The plugin's ``runtime`` with its default registry on the backend under test (a
    conformance module makes it its ``runtime``)."""
    clk = request.getfixturevalue("clock") if "clock" in request.fixturenames else None
    async with Runtime(clock=clk, registry=make_backend()) as rt:
        yield rt


@pytest.fixture
def spawn() -> Iterator[Callable[..., Child]]:
    """Start worker processes (tests/foundation/shm_worker.py); all reaped at teardown."""
    children: list[Child] = []

    def start(**args: Any) -> Child:
        child = Child(args)
        children.append(child)
        return child

    try:
        yield start
    finally:
        for child in children:
            child.close()


@pytest.fixture
def make_table() -> Iterator[Callable[..., SharedMemoryBackend]]:
    """Create tables in this process (bound to unique keys); all unlinked at teardown."""
    tables: list[SharedMemoryBackend] = []

    def create(**kw: Any) -> SharedMemoryBackend:
        table = SharedMemoryBackend(new_name(), create=True, **kw)
        tables.append(table)
        table.bind("unique")
        return table

    try:
        yield create
    finally:
        for table in tables:
            table.close(unlink=True)
            remove_table(table.name)
