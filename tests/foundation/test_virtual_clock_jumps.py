"""The autojumping clock never jumps to the deadline of a timer that is gone."""

from __future__ import annotations

import pytest

from foundation import Event, Runtime
from foundation.testing import VirtualClock

pytestmark = pytest.mark.anyio


async def test_the_clock_does_not_jump_to_a_cancelled_deadline() -> None:
    clock = VirtualClock()
    async with Runtime(clock=clock) as rt:
        ev = Event()
        rt._timers.add(1.0, lambda _: ev.set(), None)
        await ev.wait(timeout=10)
        assert clock.now() == 1.0
        # The 10 s timeout of the wait above was cancelled: idling in a thread must
        # leave the clock where it is.
        assert await rt.to_thread(lambda: 42) == 42
        assert clock.now() == 1.0
