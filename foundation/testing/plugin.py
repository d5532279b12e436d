"""pytest plugin: ``runtime`` and ``clock`` fixtures for anyio tests.

Enable with ``-p foundation.testing.plugin``. ``runtime`` is a started ``Runtime``;
when the test also asks for ``clock`` it runs on that ``VirtualClock`` (autojump).
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from .._clock import VirtualClock
from .._runtime import Runtime


@pytest.fixture
def clock() -> VirtualClock:
    """A fresh autojumping ``VirtualClock`` starting at 0."""
    return VirtualClock(autojump=True)


@pytest.fixture
async def runtime(request: pytest.FixtureRequest) -> AsyncIterator[Runtime]:
    """A running ``Runtime`` (on ``clock`` when the test uses that fixture)."""
    clk = request.getfixturevalue("clock") if "clock" in request.fixturenames else None
    async with Runtime(clock=clk) as rt:
        yield rt
