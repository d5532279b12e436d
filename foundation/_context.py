"""The context variables that find the current runtime and the current actor."""

from __future__ import annotations

from contextvars import ContextVar
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ._process import Process
    from ._ref import ActorRef
    from ._runtime import Runtime

_OUTSIDE = "must be called from inside a foundation runtime"

current_runtime_var: ContextVar[Runtime | None] = ContextVar("foundation_runtime", default=None)
current_process_var: ContextVar[Process | None] = ContextVar("foundation_process", default=None)


def current_runtime() -> Runtime:
    """Return the runtime of the calling task; raise ``RuntimeError`` outside one."""
    rt = current_runtime_var.get()
    if rt is None:
        raise RuntimeError(_OUTSIDE)
    return rt


def self_ref() -> ActorRef:
    """Return the ref of the actor whose code is running; raise outside an actor."""
    proc = current_process_var.get()
    if proc is None:
        current_runtime()
        raise RuntimeError("self_ref() must be called from inside an actor")
    return proc.ref


def current_time() -> float:
    """Return the current time of the runtime clock (seconds, monotonic)."""
    return current_runtime().clock.now()
