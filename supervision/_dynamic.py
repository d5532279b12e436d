"""``DynamicSupervisor``: many children started on demand, usually of one spec.

    sup = await DynamicSupervisor.start(max_children=1000, name="workers")
    for job in jobs:
        await DynamicSupervisor.start_child("workers", child_spec(Worker, job))

Children are peers: restarts are ``one_for_one``, intensity is counted over all of them
(3 in 5 s by default, as Elixir), spec ids are ignored (many children share a spec),
and at shutdown every child is signalled at once and waited for until its own
``shutdown`` deadline, as Elixir's ``DynamicSupervisor`` does.
"""

from __future__ import annotations

import logging
from typing import Any

from foundation import ActorRef, Exit

from ._base import SupervisorBase
from ._calls import Failed as _Failed
from ._calls import Request as _Req
from ._calls import TryAgain as _TryAgain
from ._calls import call_supervisor as _call
from ._child import (
    Child,
    ChildCounts,
    check_flags,
    emit,
    record_start,
    start_child_process,
    take_snapshot,
)
from ._exceptions import ChildNotFound, InvalidSupervisorFlags, MaxChildren, StartChildError
from ._intensity import RestartWindow
from ._shutdown import shutdown_all, shutdown_child
from ._spec import should_restart

log = logging.getLogger("supervision")


def _check_flags(max_children: Any, max_restarts: Any, max_seconds: Any) -> None:
    """Validate a dynamic supervisor's flags (``start`` and ``init`` share it)."""
    check_flags("one_for_one", max_restarts, max_seconds, "never")
    if max_children is not None and (
        not isinstance(max_children, int) or isinstance(max_children, bool) or max_children < 0
    ):
        raise InvalidSupervisorFlags(
            "invalid_max_children",
            f"max_children must be an int >= 0 or None, got: {max_children!r}",
        )


class DynamicSupervisor(SupervisorBase):
    """A one_for_one supervisor of children added at run time.

    Args (of ``init``):
        max_children: refuse ``start_child`` beyond this many live children (None:
            no limit).
        max_restarts / max_seconds: restart intensity (default 3 in 5 s).
    """

    async def init(
        self,
        *,
        max_children: int | None = None,
        max_restarts: int = 3,
        max_seconds: float = 5.0,
    ) -> None:
        _check_flags(max_children, max_restarts, max_seconds)
        self.trap_exits = True
        self.max_children = max_children
        self._window = RestartWindow(max_restarts, max_seconds)
        self._restarts_total = 0
        self._children: dict[Child, None] = {}  # insertion-ordered set
        self._by_pid: dict[Any, Child] = {}
        self._stopping = False

    # -- client API --------------------------------------------------------------------
    @classmethod
    def _checked_start_args(
        cls, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> tuple[tuple[Any, ...], dict[str, Any]]:
        _check_flags(
            kwargs.get("max_children"),
            kwargs.get("max_restarts", 3),
            kwargs.get("max_seconds", 5.0),
        )
        return args, kwargs

    @staticmethod
    async def terminate_child(sup: Any, ref: ActorRef, timeout: float | None = None) -> None:
        """Stop the child ``ref`` (``ChildNotFound`` if it is not a child); its spec goes."""
        await _call(sup, "terminate_child", ref, timeout)

    # -- requests ----------------------------------------------------------------------
    async def handle_call(self, request: Any, caller: Any) -> Any:
        if request.__class__ is not _Req:
            raise TypeError(f"{type(self).__qualname__} got an unknown call {request!r}")
        op, arg = request.op, request.arg
        if op == "start_child":
            # Every child counts, a restarting one too (Erlang counts all dynamic children).
            if self.max_children is not None and len(self._children) >= self.max_children:
                return _Failed(MaxChildren(self.max_children))
            child = Child(arg)
            try:
                ref = await self._start(child)
            except StartChildError as exc:
                return _Failed(exc)
            if ref is not None:
                self._children[child] = None
            return ref
        if op == "terminate_child":
            found = self._by_pid.pop(arg.pid, None) if isinstance(arg, ActorRef) else None
            if found is None:
                return _Failed(ChildNotFound(arg))
            del self._children[found]
            found.ref = None
            reason = await shutdown_child(self, arg, found.spec.shutdown)
            emit(self, ("child", "shutdown"), {}, id=found.spec.id, pid=arg.pid, reason=reason)
            return None
        if op == "which_children":
            return [c.info() for c in self._children]
        if op == "count_children":
            return self._counts()
        if op == "statistics":
            return self._statistics()
        raise TypeError(f"unknown dynamic supervisor request {op!r}")

    def _counts(self) -> ChildCounts:
        n = len(self._children)
        sups = sum(1 for c in self._children if c.spec.type == "supervisor")
        active = sum(1 for c in self._children if c.ref is not None)
        return ChildCounts(n, active, sups, n - sups)

    # -- exits and restarts --------------------------------------------------------------
    async def handle_info(self, msg: Any) -> None:
        if msg.__class__ is Exit:
            child = self._by_pid.pop(msg.pid, None)
            if child is not None:
                await self._exited(child, msg.reason)
        elif msg.__class__ is _TryAgain and msg.child in self._children and not self._stopping:
            await self._restart(msg.child, msg.reason)

    async def _exited(self, child: Child, reason: Any) -> None:
        old = child.ref
        assert old is not None
        child.ref = None
        child.status = "undefined"
        emit(self, ("child", "exit"), {}, id=child.spec.id, pid=old.pid, reason=reason)
        if self._stopping:
            return
        if not should_restart(child.spec.restart, reason):
            del self._children[child]
            return
        take_snapshot(child, old)
        await self._restart(child, reason)

    async def _restart(self, child: Child, reason: Any) -> None:
        if self._intensity_exceeded(child, reason):
            return
        try:
            ref = await self._start(child, reason)
        except StartChildError as exc:
            self._retry_later(child, exc)
            return
        if ref is None:
            del self._children[child]

    async def _start(self, child: Child, restart_reason: Any = None) -> ActorRef | None:
        ref = await start_child_process(self, child.spec)
        if ref is None:
            return None
        record_start(self, self._by_pid, child, ref, restart_reason)
        return ref

    async def terminate(self, reason: Any) -> None:
        """Signal every child at once; kill each one still alive at its deadline."""
        self._stopping = True
        if not hasattr(self, "_children"):
            return
        running = [(c.ref, c.spec.shutdown) for c in self._children if c.ref is not None]
        self._by_pid.clear()
        await shutdown_all(self, running)
