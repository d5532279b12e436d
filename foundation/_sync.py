"""Event-driven synchronisation: ``Event``, ``CountDownLatch``, ``Barrier``, ``wait_for``.

Every wait is woken by the state change it waits for, never by polling; timeouts are on
the runtime clock (instant under a ``VirtualClock``) and raise ``TimeoutError``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ._context import current_runtime
from ._exceptions import BrokenBarrier
from ._ref import check_timeout
from ._telemetry import EventName, _as_event


async def _wait(fut: Any, timeout: float | None, what: str) -> Any:
    check_timeout(timeout)
    if not await current_runtime()._wait_with_timeout(fut, timeout):
        raise TimeoutError(f"{what} did not happen within {timeout} s")
    return fut.result()


class Event:
    """A flag that tasks and actors can wait on; once set it stays set."""

    def __init__(self) -> None:
        self._set = False
        self._waiters: list[Any] = []

    def set(self) -> None:
        """Set the flag and wake every waiter."""
        if self._set:
            return
        self._set = True
        waiters, self._waiters = self._waiters, []
        for fut in waiters:
            if not fut.done():
                fut.set_result(None)

    def is_set(self) -> bool:
        return self._set

    async def wait(self, timeout: float | None = None) -> None:
        """Return once set; ``TimeoutError`` after ``timeout`` runtime seconds."""
        check_timeout(timeout)
        if self._set:
            return
        fut = current_runtime()._new_future()
        self._waiters.append(fut)
        try:
            await _wait(fut, timeout, "Event.wait")
        except BaseException:
            # Timed out or cancelled: forget the future, or an Event waited on with a
            # timeout in a loop would keep one dead future per wait until set().
            if fut in self._waiters:
                self._waiters.remove(fut)
            raise

    def statistics(self) -> EventStatistics:
        return EventStatistics(is_set=self._set, waiting=sum(not f.done() for f in self._waiters))


@dataclass(frozen=True, slots=True)
class EventStatistics:
    is_set: bool
    waiting: int


@dataclass(frozen=True, slots=True)
class LatchStatistics:
    count: int
    waiting: int


class CountDownLatch:
    """Opens when ``count_down`` has been called ``count`` times (Java's latch)."""

    def __init__(self, count: int) -> None:
        if not isinstance(count, int) or isinstance(count, bool) or count < 0:
            raise ValueError(f"count must be an int >= 0, got: {count!r}")
        self._count = count
        self._event = Event()
        if count == 0:
            self._event.set()

    @property
    def count(self) -> int:
        return self._count

    def count_down(self, n: int = 1) -> None:
        """Decrease the count by ``n`` (not below zero); open the latch at zero."""
        if n < 1:
            raise ValueError(f"n must be >= 1, got: {n!r}")
        self._count = max(0, self._count - n)
        if self._count == 0:
            self._event.set()

    async def wait(self, timeout: float | None = None) -> None:
        """Return once the count reached zero."""
        await self._event.wait(timeout)

    def statistics(self) -> LatchStatistics:
        return LatchStatistics(self._count, self._event.statistics().waiting)


@dataclass(frozen=True, slots=True)
class BarrierStatistics:
    parties: int
    waiting: int
    generation: int
    broken: bool


class Barrier:
    """``parties`` waiters meet; each ``wait`` returns its arrival index (0-based).

    A waiter that times out or is cancelled breaks the barrier: every current and future
    waiter gets ``BrokenBarrier`` until ``reset()``.
    """

    def __init__(self, parties: int) -> None:
        if not isinstance(parties, int) or isinstance(parties, bool) or parties < 1:
            raise ValueError(f"parties must be an int >= 1, got: {parties!r}")
        self.parties = parties
        self._waiters: list[Any] = []
        self._generation = 0
        self._broken = False

    async def wait(self, timeout: float | None = None) -> int:
        check_timeout(timeout)  # before arriving: a refused call must not count as a party
        if self._broken:
            raise BrokenBarrier("the barrier is broken; call reset() to reuse it")
        index = len(self._waiters)
        if index + 1 == self.parties:
            waiters, self._waiters = self._waiters, []
            self._generation += 1
            for fut in waiters:
                if not fut.done():
                    fut.set_result(True)
            return index
        rt = current_runtime()
        fut = rt._new_future()
        self._waiters.append(fut)
        try:
            ok = await rt._wait_with_timeout(fut, timeout)
        except BaseException:
            self._break()
            raise
        if not ok:
            self._break()
            raise TimeoutError(f"barrier of {self.parties} did not trip within {timeout} s")
        if fut.result() is False:
            raise BrokenBarrier("the barrier was broken while waiting")
        return index

    def _break(self) -> None:
        self._broken = True
        waiters, self._waiters = self._waiters, []
        for fut in waiters:
            if not fut.done():
                fut.set_result(False)

    def abort(self) -> None:
        """Break the barrier now (for a participant that crashed)."""
        self._break()

    def reset(self) -> None:
        """Make a broken barrier usable again (current waiters get ``BrokenBarrier``)."""
        self._break()
        self._broken = False

    @property
    def broken(self) -> bool:
        return self._broken

    def statistics(self) -> BarrierStatistics:
        return BarrierStatistics(self.parties, len(self._waiters), self._generation, self._broken)


async def wait_for(
    condition: Callable[[], Any],
    *,
    on: EventName | str = ("foundation",),
    timeout: float | None = 5.0,
) -> Any:
    """Return ``condition()`` once truthy, re-checked after each telemetry event under ``on``.

    The condition is evaluated at once and then only when something relevant happened
    (an actor spawned or exited, a registry changed, ...): no polling.
    """
    check_timeout(timeout)
    value = condition()
    if value:
        return value
    rt = current_runtime()
    fut = rt._new_future()

    def check(_event: Any, _m: Any, _md: Any) -> None:
        if fut.done():
            return
        try:
            result = condition()
        except Exception as exc:
            # Fail the wait now; escaping into telemetry would detach this handler and
            # leave the waiter to a misleading TimeoutError.
            fut.set_exception(exc)
            return
        if result:
            fut.set_result(result)

    hid = rt.telemetry.attach(_as_event(on), check)
    try:
        return await _wait(fut, timeout, f"condition {condition!r}")
    finally:
        rt.telemetry.detach(hid)
