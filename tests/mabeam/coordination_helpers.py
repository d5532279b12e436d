"""Scripted participants for the coordination tests: each call is answered, crashed on,
answered with garbage or left unanswered after a delay on the runtime clock."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

from foundation import Actor, Caller, NoReply, run
from foundation.testing import VirtualClock

T = TypeVar("T")

Kind = Literal["answer", "crash", "garbage", "silent", "dead"]
GARBAGE: Any = {"not": "a ballot"}


@dataclass(frozen=True)
class Act:
    """What a participant does with one call: after ``delay`` seconds, ``answer`` with
    ``value``, ``crash``, answer ``garbage``, or stay ``silent``; ``dead`` participants
    have exited before the protocol starts."""

    kind: Kind
    value: Any = None
    delay: float = 0.0


class Scripted(Actor):
    """Plays ``acts[type(request).__name__]`` (or ``acts["*"]``) on every call."""

    async def init(self, acts: dict[str, Act]) -> None:
        self.acts = acts
        self.calls: list[Any] = []

    async def handle_call(self, request: Any, caller: Caller) -> Any:
        if request == "calls":
            return list(self.calls)
        self.calls.append(request)
        act = self.acts.get(type(request).__name__, self.acts.get("*"))
        assert act is not None, request
        if act.kind == "silent":
            return NoReply
        if act.delay > 0:
            self.send_after(act.delay, (act, caller))
            return NoReply
        return self._play(act)

    async def handle_info(self, msg: Any) -> None:
        act, caller = msg
        caller.reply(self._play(act))

    def _play(self, act: Act) -> Any:
        if act.kind == "crash":
            raise RuntimeError("scripted crash")
        if act.kind == "garbage":
            return GARBAGE
        return act.value


def run_virtual(main: Callable[[], Awaitable[T]], backend: str = "asyncio") -> T:
    """Run ``main`` in a fresh runtime on an autojumping virtual clock starting at 0."""
    return run(main, backend=backend, clock=VirtualClock(autojump=True), watchdog=None)
