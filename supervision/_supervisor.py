"""``Supervisor``: keeps a list of children alive, restarting them by a strategy.

A counter that crashes comes back at 0::

    class Counter(Actor):
        async def init(self):
            self.value = 0

        async def handle_call(self, request, caller):
            if request == "incr":
                self.value += 1
                return self.value
            raise ValueError(request)          # any other request crashes it

    sup = await Supervisor.start([child_spec(Counter, name="counter")])
    await call("counter", "incr")              # 1
    with pytest.raises(ActorDead):
        await call("counter", "boom")          # crashes; the supervisor restarts it
    await call("counter", "incr")              # 1 again: a fresh incarnation

Children (``ChildSpec``) start in list order and stop in reverse order. When one exits
its ``restart`` type decides: ``permanent`` always, ``transient`` after an abnormal
exit, ``temporary`` never. The strategy decides who restarts with it:

- ``one_for_one`` (default): only the child that exited;
- ``one_for_all``: every child is stopped (reverse order) and all restart (in order);
- ``rest_for_one``: the children started after it stop and restart with it.

Intensity: more than ``max_restarts`` (default 3) restarts within ``max_seconds``
(default 5) — Elixir's defaults; Erlang uses 1 in 5 — and the supervisor stops its
children in reverse order and exits with ``"shutdown"``, which its own supervisor sees
as a child exit. A failed restart is retried by a message to itself, so other requests
get in between; each retry counts as a restart.

``auto_shutdown``: ``"never"`` (default), ``"any_significant"`` or
``"all_significant"``: the supervisor exits ``"shutdown"`` once any / all of its
``significant`` children exited by themselves and are not restarted.

State hand-over (opt-in): an actor defining ``snapshot()`` has it called after it
exited through ``terminate`` (stopped or crashed, not killed); the next incarnation's
``restore(state)`` receives the value before its first message.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from foundation import ActorRef, Exit, StartError

from ._base import SupervisorBase
from ._calls import Failed as _Failed
from ._calls import Reply as _Reply
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
from ._exceptions import (
    ChildAlreadyPresent,
    ChildAlreadyStarted,
    ChildNotFound,
    ChildRunning,
    StartChildError,
)
from ._intensity import RestartWindow
from ._shutdown import shutdown_child
from ._spec import ChildSpec, check_child_specs, check_significant, should_restart

log = logging.getLogger("supervision")


class Supervisor(SupervisorBase):
    """An OTP supervisor (see the module docstring); subclass it and call
    ``await super().init(children, ...)`` for a module-based supervisor.

    Args (of ``init``):
        children: ``ChildSpec``s (or Actor subclasses, or ``(ActorCls, *args)``).
        strategy: ``"one_for_one"``, ``"one_for_all"`` or ``"rest_for_one"``.
        max_restarts: restarts allowed within ``max_seconds`` (default 3).
        max_seconds: the sliding intensity window on the runtime clock (default 5).
        auto_shutdown: ``"never"``, ``"any_significant"`` or ``"all_significant"``.
    """

    async def init(
        self,
        children: Iterable[Any] = (),
        *,
        strategy: str = "one_for_one",
        max_restarts: int = 3,
        max_seconds: float = 5.0,
        auto_shutdown: str = "never",
    ) -> None:
        check_flags(strategy, max_restarts, max_seconds, auto_shutdown)
        specs = check_child_specs(children, auto_shutdown)
        self.trap_exits = True
        self.strategy = strategy
        self.auto_shutdown = auto_shutdown
        self._window = RestartWindow(max_restarts, max_seconds)
        self._restarts_total = 0
        self._children: list[Child] = []
        self._by_id: dict[Any, Child] = {}
        self._by_pid: dict[Any, Child] = {}
        self._stopping = False
        for spec in specs:
            child = self._add(spec)
            try:
                await self._start(child)
            except StartChildError:
                # Roll back: the children already started stop in reverse order.
                await self._terminate_all()
                raise

    # -- client API (Elixir's Supervisor functions) -------------------------------------
    @classmethod
    def _checked_start_args(
        cls, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> tuple[tuple[Any, ...], dict[str, Any]]:
        if cls is not Supervisor:
            return args, kwargs  # a module-based supervisor checks its own init
        auto_shutdown = kwargs.get("auto_shutdown", "never")
        check_flags(
            kwargs.get("strategy", "one_for_one"),
            kwargs.get("max_restarts", 3),
            kwargs.get("max_seconds", 5.0),
            auto_shutdown,
        )
        # init gets the validated list: a generator of children is read only once.
        if args:
            args = (check_child_specs(args[0], auto_shutdown), *args[1:])
        elif "children" in kwargs:
            kwargs["children"] = check_child_specs(kwargs["children"], auto_shutdown)
        return args, kwargs

    @staticmethod
    async def terminate_child(sup: Any, child_id: Any, timeout: float | None = None) -> None:
        """Stop a child (its spec stays, unless temporary); it is not restarted."""
        await _call(sup, "terminate_child", child_id, timeout)

    @staticmethod
    async def restart_child(
        sup: Any, child_id: Any, timeout: float | None = None
    ) -> ActorRef | None:
        """Start again a child that was terminated (``ChildRunning`` if it runs)."""
        return await _call(sup, "restart_child", child_id, timeout)  # type: ignore[no-any-return]

    @staticmethod
    async def delete_child(sup: Any, child_id: Any, timeout: float | None = None) -> None:
        """Forget the spec of a child that is not running."""
        await _call(sup, "delete_child", child_id, timeout)

    # -- requests ----------------------------------------------------------------------
    async def handle_call(self, request: Any, caller: Any) -> Any:
        if request.__class__ is not _Req:
            raise TypeError(f"{type(self).__qualname__} got an unknown call {request!r}")
        try:
            return await self._request(request.op, request.arg)
        except _Reply as reply:
            return _Failed(reply.exc)

    async def _request(self, op: str, arg: Any) -> Any:
        if op == "which_children":
            return [c.info() for c in self._children]
        if op == "count_children":
            return self._counts()
        if op == "statistics":
            return self._statistics()
        if op == "start_child":
            return await self._start_new(arg)
        child = self._by_id.get(arg)
        if child is None:
            raise _Reply(ChildNotFound(arg))
        if op == "terminate_child":
            if child.ref is not None:
                await self._terminate(child)
            child.status = "undefined"
            if child.spec.restart == "temporary":
                self._remove(child)
            return None
        if op == "restart_child":
            if child.status != "undefined":
                raise _Reply(ChildRunning(arg, child.status))
            ref = await self._start_or_reply(child)
            return ref
        if op == "delete_child":
            if child.status != "undefined":
                raise _Reply(ChildRunning(arg, child.status))
            self._remove(child)
            return None
        raise TypeError(f"unknown supervisor request {op!r}")

    async def _start_new(self, spec: ChildSpec) -> ActorRef | None:
        existing = self._by_id.get(spec.id)
        if existing is not None:
            if existing.ref is not None:
                raise _Reply(ChildAlreadyStarted(spec.id, existing.ref))
            raise _Reply(ChildAlreadyPresent(spec.id))
        try:
            check_significant(spec, self.auto_shutdown)
        except Exception as exc:
            raise _Reply(exc) from None
        child = self._add(spec)
        try:
            return await self._start(child)
        except StartChildError as exc:
            self._remove(child)
            raise _Reply(exc) from None

    async def _start_or_reply(self, child: Child) -> ActorRef | None:
        try:
            return await self._start(child)
        except StartChildError as exc:
            raise _Reply(exc) from None

    # -- child exits -------------------------------------------------------------------
    async def handle_info(self, msg: Any) -> None:
        if msg.__class__ is Exit:
            child = self._by_pid.pop(msg.pid, None)
            # else: a child already shut down, or a stranger
            if child is not None and self._child_exited(child, msg.reason):
                await self._restart(child, msg.reason)
        elif (
            msg.__class__ is _TryAgain
            and msg.child in self._children
            and msg.child.status == "restarting"  # not since terminate_child'd
            and not self._stopping
        ):
            await self._restart(msg.child, msg.reason)

    def _child_exited(self, child: Child, reason: Any) -> bool:
        """Record a child's own exit; True when it is to be restarted."""
        old = child.ref
        assert old is not None
        child.ref = None
        child.status = "undefined"
        if self._proc.rt.telemetry.active:
            emit(self, ("child", "exit"), {}, id=child.spec.id, pid=old.pid, reason=reason)
        if self._stopping:
            return False
        if should_restart(child.spec.restart, reason):
            if not child.plain:  # the actor class may define snapshot()
                take_snapshot(child, old)
            return True
        if child.spec.restart == "temporary":
            self._remove(child)
        if child.spec.significant and self._auto_shutdown_due():
            log.info(
                "supervisor %r shuts down: significant child %r exited (%s)",
                self.pid,
                child.spec.id,
                self.auto_shutdown,
            )
            emit(self, ("supervisor", "shutdown"), {}, reason="auto_shutdown", child=child.spec.id)
            self._give_up()
        return False

    def _auto_shutdown_due(self) -> bool:
        if self.auto_shutdown == "any_significant":
            return True
        if self.auto_shutdown == "all_significant":
            return not any(c.spec.significant and c.ref is not None for c in self._children)
        return False

    async def _restart(self, child: Child, reason: Any) -> None:
        """Restart ``child`` and, per the strategy, its siblings; give up past intensity."""
        if self._intensity_exceeded(child, reason):
            return
        if self.strategy == "one_for_one":
            try:
                await self._start(child, restart_reason=reason)
            except StartChildError as exc:
                self._retry_later(child, exc)
            return
        if self.strategy == "one_for_all":
            group = list(self._children)
        else:
            group = self._children[self._children.index(child) :]
        for other in reversed(group):
            if other.ref is not None:
                old = other.ref
                await self._terminate(other)
                take_snapshot(other, old)
        # Erlang drops temporary siblings stopped for a restart.
        dropped = {o for o in group if o is not child and o.spec.restart == "temporary"}
        if dropped:
            for other in dropped:
                self._remove(other)
            group = [o for o in group if o not in dropped]
        for other in group:
            try:
                await self._start(other, restart_reason=reason)
            except StartChildError as exc:
                self._retry_later(other, exc)
                return

    # -- starting and stopping children ------------------------------------------------
    def _add(self, spec: ChildSpec) -> Child:
        child = Child(spec)
        self._children.append(child)
        self._by_id[spec.id] = child
        return child

    def _remove(self, child: Child) -> None:
        if child in self._children:
            self._children.remove(child)
        self._by_id.pop(child.spec.id, None)

    async def _start(self, child: Child, restart_reason: Any = None) -> ActorRef | None:
        start = child.spec._start
        if start.__class__ is tuple and restart_reason is not None:
            # The restart fast path: spawn inline (one coroutine frame less per restart).
            try:
                ref: ActorRef | None = await self._proc.rt.spawn(
                    start[0], *start[1], link=True, **start[2]
                )
            except StartError as exc:
                cause = exc.__cause__ if exc.__cause__ is not None else exc
                raise StartChildError(child.spec.id, exc.reason) from cause
        else:
            ref = await start_child_process(self, child.spec)
        if ref is None:  # Erlang's ignore: kept as not running, unless temporary
            child.status = "undefined"
            if child.spec.restart == "temporary":
                self._remove(child)
            return None
        record_start(self, self._by_pid, child, ref, restart_reason)
        return ref

    async def _terminate(self, child: Child) -> None:
        ref = child.ref
        assert ref is not None
        self._by_pid.pop(ref.pid, None)
        child.ref = None
        child.status = "undefined"
        reason = await shutdown_child(self, ref, child.spec.shutdown)
        emit(self, ("child", "shutdown"), {}, id=child.spec.id, pid=ref.pid, reason=reason)

    async def _terminate_all(self) -> None:
        for child in reversed(self._children):
            if child.ref is not None:
                await self._terminate(child)

    async def terminate(self, reason: Any) -> None:
        """Stop every child in reverse start order before the supervisor exits."""
        self._stopping = True
        if hasattr(self, "_children"):
            await self._terminate_all()

    def _counts(self) -> ChildCounts:
        children = self._children
        active = sum(1 for c in children if c.ref is not None and c.ref.is_alive)
        sups = sum(1 for c in children if c.spec.type == "supervisor")
        return ChildCounts(len(children), active, sups, len(children) - sups)
