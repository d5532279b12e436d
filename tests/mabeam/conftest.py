"""Fixtures shared by the mabeam tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from node_helpers import FakeCoordinator


@pytest.fixture
def fake() -> Iterator[FakeCoordinator]:
    """A fake coordinator (a raw ROUTER on 127.0.0.1) for node agent tests."""
    coordinator = FakeCoordinator()
    try:
        yield coordinator
    finally:
        coordinator.close()
