"""Task functions and actors shared by the TaskSupervisor tests."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from foundation import Actor, Caller, Event
from supervision import StreamResult, TaskFailed, TaskSupervisor


class Boom(Exception):
    """The crash of every failing task here."""


async def double(x: int) -> int:
    return 2 * x


async def crash(*_: Any) -> None:
    raise Boom("task failed")


async def forever(*_: Any) -> None:
    await Event().wait()


class Spawner(Actor):
    """An actor that starts tasks on request, to show that their fate is not its own."""

    async def handle_call(self, request: Any, caller: Caller) -> Any:
        op, ts, fn = request
        if op == "start_child":
            return await TaskSupervisor.start_child(ts, fn)
        if op == "async_nolink":
            task = await TaskSupervisor.async_nolink(ts, fn)
            try:
                return await task.result()
            except TaskFailed as exc:
                return ("failed", exc.reason)
        return "alive"


async def collect(stream: AsyncIterator[StreamResult]) -> list[StreamResult]:
    return [r async for r in stream]
