"""Fixtures of the registry backend conformance suite (requested by name only, so the
other foundation tests are untouched): ``registry_kind`` runs a test once per backend,
``make_backend`` / ``make_registry`` build fresh ones and release them at teardown."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import pytest
from registry_helpers import (
    REGISTRY_BACKENDS,
    BackendFactory,
    RegistryFactory,
    close_backend,
    new_backend,
)

from foundation import Registry
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
