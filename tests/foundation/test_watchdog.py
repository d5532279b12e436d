"""The loop-blockage watchdog names the actor that held the event loop too long.

Blocking the loop is the point of these tests, so each one blocks it on purpose with
``runtime.watchdog.detected.wait(timeout=5)``: a ``threading.Event`` that the
watchdog's sampler thread sets the moment it sees the blockage. The wait ends as soon
as the blockage is detected, so nothing sleeps for a fixed time.
"""

from __future__ import annotations

from typing import Any

import pytest

from foundation import Actor, Caller, Runtime
from foundation.telemetry import capture

pytestmark = pytest.mark.anyio

THRESHOLD = 0.05


class Blocker(Actor):
    async def handle_call(self, request: Any, caller: Caller) -> Any:
        if request == "block":
            detected = self.runtime.watchdog.detected
            detected.clear()
            # The blockage being measured: this handler holds the event loop until the
            # watchdog's sampler thread has detected it (a threading.Event, set from
            # that thread; 5 s is only a safety net should detection never happen).
            return detected.wait(timeout=5)
        return "pong"


async def test_an_actor_blocking_the_loop_is_reported_with_pid_name_and_class() -> None:
    async with Runtime(watchdog=THRESHOLD) as rt, capture("foundation.loop") as cap:
        ref = await rt.spawn(Blocker, name="blocker")
        assert await ref.call("block") is True
        # Matched by pid: a loaded machine may add a stall of its own to the record.
        event = await cap.wait(
            "foundation.loop.blocked", match=lambda e: e.metadata["pid"] == ref.pid
        )
    assert event.name == ("foundation", "loop", "blocked")
    assert event.metadata["pid"] == ref.pid
    assert event.metadata["name"] == "blocker"
    assert event.metadata["actor"] == "Blocker"
    assert event.metadata["threshold"] == THRESHOLD
    assert event.measurements["duration"] > THRESHOLD
    assert rt.watchdog.reports == len(cap.named("foundation.loop.blocked")) >= 1


async def test_every_blockage_is_reported_not_only_the_first() -> None:
    async with Runtime(watchdog=THRESHOLD) as rt, capture("foundation.loop.blocked") as cap:
        first = await rt.spawn(Blocker, name="first")
        second = await rt.spawn(Blocker, name="second")
        assert await first.call("block") is True
        await cap.wait(match=lambda e: e.metadata["pid"] == first.pid)
        assert await second.call("block") is True
        await cap.wait(match=lambda e: e.metadata["pid"] == second.pid)
        # The loop is responsive again in between and afterwards.
        assert await first.call("ping") == "pong"
    ours = [e for e in cap.events if e.metadata["pid"] in (first.pid, second.pid)]
    assert [e.metadata["name"] for e in ours] == ["first", "second"]
    assert all(e.measurements["duration"] > THRESHOLD for e in cap.events)


async def test_a_blockage_outside_any_actor_is_reported_without_a_culprit() -> None:
    async with Runtime(watchdog=THRESHOLD) as rt, capture("foundation.loop.blocked") as cap:
        # The blockage being measured: the test's own task holds the loop until the
        # sampler thread has detected it (5 s is only a safety net).
        assert rt.watchdog.detected.wait(timeout=5)
        event = await cap.wait()
    assert (event.metadata["pid"], event.metadata["name"], event.metadata["actor"]) == (
        None,
        None,
        None,
    )
    assert event.measurements["duration"] > THRESHOLD


async def test_the_watchdog_can_be_disabled_and_refuses_bad_thresholds() -> None:
    async with Runtime(watchdog=None) as rt:
        assert rt.watchdog is None
    for bad in (0, -1.0, float("nan")):
        with pytest.raises(ValueError, match="watchdog"):
            Runtime(watchdog=bad)
