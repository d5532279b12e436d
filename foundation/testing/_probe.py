"""``Probe``: an actor that records what it receives, for ``assert_receive``."""

from __future__ import annotations

from typing import Any

from .._actor import Actor
from .._context import current_runtime
from .._ref import ActorRef, Caller, check_timeout


class _Any:
    __slots__ = ()

    def __eq__(self, other: object) -> bool:
        return True

    def __hash__(self) -> int:
        return 0

    def __repr__(self) -> str:
        return "ANY"


ANY: Any = _Any()
"""Wildcard that equals anything, for use inside patterns: ``("result", ANY)``."""


def matches(pattern: Any, msg: Any) -> bool:
    """A pattern is a type (isinstance), a predicate (called), or a value (==, ANY ok)."""
    if isinstance(pattern, type):
        return isinstance(msg, pattern)
    if callable(pattern) and not isinstance(pattern, _Any):
        return bool(pattern(msg))
    return bool(pattern == msg)


class ProbeActor(Actor):
    """Records casts, sends, ``Exit`` and ``Down`` messages; traps exits."""

    async def init(self) -> None:
        self.trap_exits = True
        self.inbox: list[Any] = []
        self.waiters: list[tuple[Any, Caller]] = []

    def _offer(self, msg: Any) -> None:
        for i, (pattern, caller) in enumerate(self.waiters):
            if not caller.waiting:
                continue
            if matches(pattern, msg):
                del self.waiters[i]
                caller.reply(msg)
                return
        self.inbox.append(msg)

    async def handle_cast(self, msg: Any) -> None:
        self._offer(msg)

    async def handle_info(self, msg: Any) -> None:
        self._offer(msg)

    async def handle_call(self, request: Any, caller: Caller) -> Any:
        op, arg = request
        if op == "receive":
            for i, msg in enumerate(self.inbox):
                if matches(arg, msg):
                    del self.inbox[i]
                    return msg
            self.waiters = [w for w in self.waiters if w[1].waiting]
            self.waiters.append((arg, caller))
            from .._messages import NoReply

            return NoReply
        if op == "inbox":
            return list(self.inbox)
        raise ValueError(f"unknown probe request {request!r}")


class Probe:
    """A test's mailbox: link or monitor things to ``probe.ref`` and assert what arrives.

    ``probe = await Probe.start()``; then ``await probe.assert_receive(Down)``.
    """

    def __init__(self, ref: ActorRef) -> None:
        self.ref = ref

    @classmethod
    async def start(cls) -> Probe:
        return cls(await current_runtime().spawn(ProbeActor))

    async def assert_receive(self, pattern: Any, timeout: float = 1.0) -> Any:
        """Return the first message matching ``pattern`` (removing it), waiting up to
        ``timeout`` runtime seconds; ``AssertionError`` if none arrives."""
        return await assert_receive(self.ref, pattern, timeout)

    async def assert_no_receive(self, pattern: Any = object, timeout: float = 0.1) -> None:
        """Fail if a message matching ``pattern`` arrives within ``timeout``."""
        try:
            msg = await self.ref.call(("receive", pattern), timeout=timeout)
        except TimeoutError:
            return
        raise AssertionError(f"expected no message matching {pattern!r}, got {msg!r}")

    async def messages(self) -> list[Any]:
        """Everything received and not yet consumed, in order."""
        inbox: list[Any] = await self.ref.call(("inbox", None))
        return inbox


async def assert_receive(probe: ActorRef, pattern: Any, timeout: float = 1.0) -> Any:
    """Wait (runtime clock) for a message matching ``pattern`` in a ``ProbeActor``."""
    check_timeout(timeout)
    try:
        return await probe.call(("receive", pattern), timeout=timeout)
    except TimeoutError:
        raise AssertionError(
            f"no message matching {pattern!r} within {timeout} s"
        ) from None



