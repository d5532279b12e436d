"""The request/reply plumbing of the supervisors' client functions.

A client function (``Supervisor.start_child(sup, spec)``) sends a ``Request``; a client
error (``ChildNotFound``, ``MaxChildren``, ...) comes back as a ``Failed`` reply that
the calling side raises, so a bad request never crashes the supervisor. A failed
restart is retried through the mailbox as a ``TryAgain`` (Erlang's
``try_again_restart``), so other requests get in between.
"""

from __future__ import annotations

from typing import Any

from foundation import current_runtime


class Request:
    """A request of a supervisor's client API."""

    __slots__ = ("arg", "op")

    def __init__(self, op: str, arg: Any = None) -> None:
        self.op = op
        self.arg = arg


class Failed:
    """The reply carrying a client error; the calling side raises it."""

    __slots__ = ("exc",)

    def __init__(self, exc: BaseException) -> None:
        self.exc = exc


class Reply(Exception):
    """Raised inside a handler to answer the caller with ``exc`` instead of crashing."""

    def __init__(self, exc: BaseException) -> None:
        self.exc = exc


class TryAgain:
    """A restart that failed, retried through the mailbox."""

    __slots__ = ("child", "reason")

    def __init__(self, child: Any, reason: Any) -> None:
        self.child = child
        self.reason = reason


async def call_supervisor(sup: Any, op: str, arg: Any, timeout: float | None) -> Any:
    """Call a supervisor (by ref or registered name) and raise the error it answered."""
    result = await current_runtime().call(sup, Request(op, arg), timeout)
    if result.__class__ is Failed:
        raise result.exc
    return result
