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

from . import _timers as T_
from ._context import current_process_var
from ._exceptions import ActorDead, CallTimeout
from ._ref import ActorRef, Caller, check_timeout

_new = type.__call__  # builds a no-public-constructor object without the metaclass hop

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
    remaining = timeout  # the first attempt reuses the timeout: its FIFO timer is cheap
    first = True
    while True:
        if not first and deadline is not None:
            remaining = deadline - rt.clock.now()
        first = False
        if remaining is not None and remaining <= 0:
            raise CallTimeout(name, timeout or 0.0, "found no actor registered under that name")
        ref: ActorRef | None = registry.whereis(key)
        try:
            if ref is None:
                fut, caller, on_register = _queue_for_registration(
                    rt, registry, key, request, remaining
                )
                try:
                    result = await fut
                finally:
                    registry._remove_waiter(key, on_register)
                if result is _RETRY:
                    continue
                if result is T_.TIMED_OUT:
                    if caller._target is None:
                        raise CallTimeout(
                            key, timeout or 0.0, "found no actor registered under that name"
                        )
                    raise CallTimeout(caller._target.pid, timeout or 0.0)
                return result
            return await ref.call(request, remaining)
        except ActorDead as exc:
            if exc.handled:
                raise
            # The old incarnation died before it saw the request: wait for the next.


_RETRY = object()


def _queue_for_registration(
    rt: Runtime, registry: Any, key: Any, request: Any, timeout: float | None
) -> tuple[Any, Caller, Any]:
    """Queue the call for the next actor registered under ``key``.

    The request enters the new incarnation's mailbox when the name is registered (in
    ``spawn``, before ``init``), so it is its first message and the caller wakes only
    for the reply: one loop hop instead of two on every restart. The caller awaits the
    returned future (a reply, ``_RETRY`` or ``TIMED_OUT``) and removes the waiter.
    """
    fut = rt._new_future()
    caller: Caller = _new(Caller, fut, request, current_process_var.get())

    def on_register(ref: ActorRef) -> None:
        proc = ref._proc
        if fut.done():
            return
        if proc is None or proc.mailbox.capacity is not None or proc.mailbox.closed:
            fut.set_result(_RETRY)  # a bounded mailbox applies its policy on a plain call
            return
        caller._target = proc
        proc.mailbox.put(caller)

    registry._add_waiter(key, on_register)
    if timeout is not None:
        # The per-delay FIFO of call timeouts: no heap entry to cancel afterwards.
        rt._timers.add_fifo(timeout, fut, T_.time_out, fut)
    return fut, caller, on_register


async def call(target: Any, request: Any, timeout: float | None = 5.0) -> Any:
    """``current_runtime().call(...)``: call by ref, or by name across restarts."""
    from ._context import current_runtime

    return await current_runtime().call(target, request, timeout)
