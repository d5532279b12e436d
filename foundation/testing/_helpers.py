"""Awaitable assertions that wait on events or the runtime clock, never on sleeps."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .._context import current_runtime
from .._messages import Down
from .._ref import ActorRef
from .._sync import wait_for
from .._telemetry import EventName, TelemetryEvent, _as_event


async def assert_down(ref: ActorRef, reason: Any = None, *, timeout: float = 1.0) -> Down:
    """Wait for ``ref`` to exit (monitor first, as Elixir's ``assert_kill`` does).

    With ``reason`` given, the exit reason must equal it (or be an instance of it when it
    is an exception class).
    """
    mon = current_runtime().monitor(ref)
    try:
        down: Down = await mon.wait(timeout)
    except TimeoutError:
        raise AssertionError(f"{ref!r} did not exit within {timeout} s") from None
    if reason is not None:
        ok = (
            isinstance(down.reason, reason)
            if isinstance(reason, type)
            else down.reason == reason
        )
        if not ok:
            raise AssertionError(f"{ref!r} exited with {down.reason!r}, expected {reason!r}")
    return down


async def until(
    condition: Callable[[], Any], *, on: EventName | str = ("foundation",), timeout: float = 1.0
) -> Any:
    """Wait until ``condition()`` is truthy, re-checked on each telemetry event under
    ``on``; ``AssertionError`` after ``timeout`` runtime seconds."""
    try:
        return await wait_for(condition, on=on, timeout=timeout)
    except TimeoutError:
        raise AssertionError(f"condition never held within {timeout} s") from None


async def wait_for_event(
    event: EventName | str,
    *,
    match: Callable[[TelemetryEvent], bool] | None = None,
    timeout: float = 1.0,
) -> TelemetryEvent:
    """Wait for the next telemetry ``event`` (optionally matching ``match``)."""
    rt = current_runtime()
    name = _as_event(event)
    fut = rt._new_future()

    def handler(ev: EventName, measurements: Any, metadata: Any) -> None:
        if fut.done() or ev != name:
            return
        record = TelemetryEvent(ev, dict(measurements), dict(metadata))
        if match is None or match(record):
            fut.set_result(record)

    hid = rt.telemetry.attach(name, handler)
    try:
        if not await rt._wait_with_timeout(fut, timeout):
            raise AssertionError(f"no {name!r} event within {timeout} s")
        result: TelemetryEvent = fut.result()
        return result
    finally:
        rt.telemetry.detach(hid)
