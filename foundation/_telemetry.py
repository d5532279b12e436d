"""Telemetry: named events with measurements and metadata, as Erlang's ``telemetry``.

Events are tuples of strings (``("foundation", "actor", "exit")``). Handlers attach to
a prefix and are called synchronously by ``emit``; a handler that raises is detached
and logged, never allowed to break the emitter. ``capture`` collects events so a test
can await one instead of sleeping.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ._context import current_runtime

if TYPE_CHECKING:
    from ._runtime import Runtime

log = logging.getLogger("foundation.telemetry")

EventName = tuple[str, ...]
Handler = Callable[[EventName, Mapping[str, Any], Mapping[str, Any]], None]


@dataclass(frozen=True, slots=True)
class TelemetryEvent:
    """One emitted event as ``capture`` records it."""

    name: EventName
    measurements: Mapping[str, Any] = field(default_factory=dict)
    metadata: Mapping[str, Any] = field(default_factory=dict)


def _as_event(name: EventName | str) -> EventName:
    if isinstance(name, str):
        return tuple(name.split("."))
    if not isinstance(name, tuple) or not all(isinstance(p, str) for p in name):
        raise TypeError(f"an event name is a tuple of str or a dotted str, got: {name!r}")
    return name


class Telemetry:
    """The handler table of one runtime."""

    def __init__(self) -> None:
        self._handlers: dict[Any, tuple[EventName, Handler]] = {}
        self._cache: dict[EventName, list[Handler]] = {}
        self._next_id = 0
        self.active = False

    def attach(self, prefix: EventName | str, handler: Handler, *, id: Any = None) -> Any:
        """Call ``handler(event, measurements, metadata)`` for events under ``prefix``."""
        prefix = _as_event(prefix)
        if not callable(handler):
            raise TypeError(f"a telemetry handler must be callable, got: {handler!r}")
        if id is None:
            self._next_id += 1
            id = ("handler", self._next_id)
        elif id in self._handlers:
            raise ValueError(f"a telemetry handler with id {id!r} is already attached")
        self._handlers[id] = (prefix, handler)
        self._cache.clear()
        self.active = True
        return id

    def detach(self, id: Any) -> bool:
        """Remove a handler; False if it was not attached."""
        found = self._handlers.pop(id, None) is not None
        self._cache.clear()
        self.active = bool(self._handlers)
        return found

    def _handlers_for(self, event: EventName) -> list[Handler]:
        handlers = self._cache.get(event)
        if handlers is None:
            handlers = [
                h for (prefix, h) in self._handlers.values() if event[: len(prefix)] == prefix
            ]
            self._cache[event] = handlers
        return handlers

    def emit(
        self,
        event: EventName,
        measurements: Mapping[str, Any] | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> None:
        if not self.active:
            return
        m = measurements or {}
        md = metadata or {}
        for handler in self._handlers_for(event):
            try:
                handler(event, m, md)
            except Exception:
                log.exception("telemetry handler %r failed on %r; detached", handler, event)
                for key, (_, h) in list(self._handlers.items()):
                    if h is handler:
                        self.detach(key)


class Capture:
    """Events recorded under a prefix; ``wait`` awaits a matching one (runtime clock)."""

    def __init__(self, rt: Runtime, prefix: EventName) -> None:
        self._rt = rt
        self.prefix = prefix
        self.events: list[TelemetryEvent] = []
        self._waiters: list[tuple[Callable[[TelemetryEvent], bool], Any]] = []

    def _record(
        self, event: EventName, measurements: Mapping[str, Any], metadata: Mapping[str, Any]
    ) -> None:
        ev = TelemetryEvent(event, dict(measurements), dict(metadata))
        self.events.append(ev)
        if self._waiters:
            still = []
            for pred, fut in self._waiters:
                if fut.done():
                    continue
                if pred(ev):
                    fut.set_result(ev)
                else:
                    still.append((pred, fut))
            self._waiters = still

    def named(self, name: EventName | str) -> list[TelemetryEvent]:
        """The recorded events with exactly this name."""
        name = _as_event(name)
        return [e for e in self.events if e.name == name]

    async def wait(
        self,
        name: EventName | str | None = None,
        *,
        match: Callable[[TelemetryEvent], bool] | None = None,
        timeout: float | None = 5.0,
        seen: bool = True,
    ) -> TelemetryEvent:
        """Return the first event named ``name`` (and satisfying ``match``).

        With ``seen=True`` an event recorded earlier counts; otherwise only new ones.
        Raises ``TimeoutError`` after ``timeout`` seconds of the runtime clock.
        """
        want = None if name is None else _as_event(name)

        def pred(ev: TelemetryEvent) -> bool:
            return (want is None or ev.name == want) and (match is None or match(ev))

        if seen:
            for ev in self.events:
                if pred(ev):
                    return ev
        fut = self._rt._new_future()
        self._waiters.append((pred, fut))
        if not await self._rt._wait_with_timeout(fut, timeout):
            raise TimeoutError(f"no telemetry event {want or self.prefix!r} within {timeout} s")
        result: TelemetryEvent = fut.result()
        return result


def emit(
    event: EventName | str,
    measurements: Mapping[str, Any] | None = None,
    metadata: Mapping[str, Any] | None = None,
) -> None:
    """Emit an event in the current runtime."""
    current_runtime().telemetry.emit(_as_event(event), measurements, metadata)


def attach(prefix: EventName | str, handler: Handler, *, id: Any = None) -> Any:
    """Attach ``handler`` to events under ``prefix`` in the current runtime; returns its id."""
    return current_runtime().telemetry.attach(prefix, handler, id=id)


def detach(id: Any) -> bool:
    """Detach the handler ``id`` from the current runtime."""
    return current_runtime().telemetry.detach(id)


@asynccontextmanager
async def capture(prefix: EventName | str = ()) -> AsyncIterator[Capture]:
    """Record every event under ``prefix`` while the block runs."""
    rt = current_runtime()
    cap = Capture(rt, _as_event(prefix) if prefix != () else ())
    hid = rt.telemetry.attach(cap.prefix, cap._record)
    try:
        yield cap
    finally:
        rt.telemetry.detach(hid)
