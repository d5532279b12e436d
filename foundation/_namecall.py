"""Calls addressed by registered name, which wait for a restarting actor to come back.

``ref.call`` keeps Erlang's semantics: a dead pid answers ``noproc`` at once. A call by
name is different: a supervisor restarting the child registers the new incarnation
under the same name moments later, so failing the caller in between turns every restart
into an error at the call sites (the most requested fix in Ray's and xoscar's
trackers). Such a call waits for the name to be registered again, until the caller's
timeout. It is resent only when the old incarnation never took the request from its
mailbox (``ActorDead.handled`` is False), so no request runs twice.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._exceptions import ActorDead, CallTimeout
from ._ref import ActorRef, check_timeout

if TYPE_CHECKING:
    from ._runtime import Runtime


def split_name(rt: Runtime, name: Any) -> tuple[Any, Any]:
    """The registry and key a name resolves in (the default registry, or a via name)."""
    if isinstance(name, tuple) and len(name) == 3 and name[0] == "via":
        return name[1], name[2]
    return rt.registry, name


async def call_by_name(rt: Runtime, name: Any, request: Any, timeout: float | None) -> Any:
    """``call`` the actor registered under ``name``, waiting across restarts."""
    check_timeout(timeout)
    registry, key = split_name(rt, name)
    deadline = None if timeout is None else rt.clock.now() + timeout
    while True:
        remaining = None if deadline is None else deadline - rt.clock.now()
        if remaining is not None and remaining <= 0:
            raise CallTimeout(name, timeout or 0.0, "found no actor registered under that name")
        ref: ActorRef | None = registry.whereis(key)
        if ref is None:
            await _wait_registered(rt, registry, key, remaining)
            continue
        try:
            return await ref.call(request, remaining)
        except ActorDead as exc:
            if exc.handled:
                raise
            # The old incarnation died before it saw the request: wait for the next.


async def _wait_registered(rt: Runtime, registry: Any, key: Any, timeout: float | None) -> None:
    fut = rt._new_future()
    registry._add_waiter(key, fut)
    try:
        await rt._wait_with_timeout(fut, timeout)
    finally:
        registry._remove_waiter(key, fut)


async def call(target: Any, request: Any, timeout: float | None = 5.0) -> Any:
    """``current_runtime().call(...)``: call by ref, or by name across restarts."""
    from ._context import current_runtime

    return await current_runtime().call(target, request, timeout)
