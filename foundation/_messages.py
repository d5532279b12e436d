"""The messages the kernel itself delivers: ``Exit``, ``Down``, ``NoReply``, envelopes."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final, final

from ._pid import MonitorRef, Pid


@final
@dataclass(frozen=True, slots=True)
class Exit:
    """An exit signal turned into a message, because the receiver traps exits.

    ``pid`` is the actor that exited (or sent the signal), ``reason`` its exit reason.
    """

    pid: Pid
    reason: Any


@final
@dataclass(frozen=True, slots=True)
class Down:
    """The one message a monitor delivers when its target exits.

    ``reason`` is the target's exit reason, or ``"noproc"`` when it was already dead.
    """

    ref: MonitorRef
    pid: Pid
    reason: Any


class _NoReplyType:
    __slots__ = ()

    def __repr__(self) -> str:
        return "NoReply"


NoReply: Final = _NoReplyType()
"""Return it from ``handle_call`` to reply later with ``caller.reply(value)``."""


class Info:
    """Envelope of a ``send``: delivered to ``handle_info``."""

    __slots__ = ("msg",)

    def __init__(self, msg: Any) -> None:
        self.msg = msg


class System:
    """Envelope of a kernel request to the actor loop: stop, or a parent's exit."""

    __slots__ = ("kind", "reason")

    def __init__(self, kind: str, reason: Any) -> None:
        self.kind = kind
        self.reason = reason
