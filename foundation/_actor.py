"""``Actor``: the gen_server-shaped behaviour every actor subclasses.

A counter that starts at 0::

    class Counter(Actor):
        async def init(self, start=0):
            self.value = start

        async def handle_call(self, request, caller):
            if request == "get":
                return self.value

        async def handle_cast(self, msg):
            if msg == "incr":
                self.value += 1

    async with Runtime() as rt:
        counter = await rt.spawn(Counter, 41)
        counter.cast("incr")
        assert await counter.call("get") == 42

Handlers run one message at a time, in mailbox order. An exception in a handler crashes
the actor: ``terminate(exc)`` runs, linked actors receive the exit signal, monitors a
``Down``. Return ``NoReply`` from ``handle_call`` to answer later with ``caller.reply``.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from ._messages import Exit
from ._pid import MonitorRef, Pid
from ._ref import ActorRef, Caller
from ._timers import TimerRef

if TYPE_CHECKING:
    from ._process import Process
    from ._runtime import Runtime

log = logging.getLogger("foundation")


class Actor:
    """Base class of actors; override the ``async`` callbacks you need.

    Attributes:
        trap_exits: when True, exit signals from linked actors arrive as ``Exit``
            messages in ``handle_info`` instead of killing this actor (``"kill"``
            sent with ``exit`` still kills).
    """

    # A slot for the kernel's handle keeps a stateless actor free of an instance dict.
    __slots__ = ("__dict__", "__weakref__", "_proc")

    trap_exits: bool = False
    _proc: Process

    # -- callbacks --------------------------------------------------------------------
    async def init(self, *args: Any, **kwargs: Any) -> None:
        """Set up state; ``spawn`` returns after it. Raising makes ``spawn`` fail."""
        if args or kwargs:
            raise TypeError(
                f"{type(self).__qualname__}.init() takes no arguments; define "
                f"'async def init(self, ...)' to accept {args!r} {kwargs!r}"
            )

    async def handle_call(self, request: Any, caller: Caller) -> Any:
        """Answer ``ref.call(request)``; the return value is the reply."""
        raise NotImplementedError(
            f"{type(self).__qualname__} received call {request!r} but defines no handle_call"
        )

    async def handle_cast(self, msg: Any) -> None:
        """Handle ``ref.cast(msg)``."""
        raise NotImplementedError(
            f"{type(self).__qualname__} received cast {msg!r} but defines no handle_cast"
        )

    async def handle_info(self, msg: Any) -> None:
        """Handle ``ref.send(msg)``, ``Exit`` (when trapping exits) and ``Down``.

        The default logs and drops unexpected messages, as a gen_server does.
        """
        if not isinstance(msg, Exit):
            log.warning("%s %r dropped unexpected message %r", type(self).__qualname__,
                        self._proc.pid, msg)

    async def terminate(self, reason: Any) -> None:
        """Clean up before exiting; runs on stop and on crashes, not on kills."""

    # -- identity ---------------------------------------------------------------------
    @property
    def ref(self) -> ActorRef:
        """This actor's ref."""
        return self._proc.ref

    @property
    def pid(self) -> Pid:
        return self._proc.pid

    @property
    def runtime(self) -> Runtime:
        return self._proc.rt

    # -- spawning, links, monitors ----------------------------------------------------
    async def spawn(self, actor_cls: type[Actor], *args: Any, **kwargs: Any) -> Any:
        """Spawn an actor (same options as ``Runtime.spawn``)."""
        return await self._proc.rt.spawn(actor_cls, *args, **kwargs)

    async def spawn_link(self, actor_cls: type[Actor], *args: Any, **kwargs: Any) -> ActorRef:
        """Spawn an actor linked to this one; this actor becomes its parent."""
        ref: ActorRef = await self._proc.rt.spawn(actor_cls, *args, link=True, **kwargs)
        return ref

    def link(self, ref: ActorRef) -> None:
        """Link to ``ref``; a dead target sends this actor a ``noproc`` exit signal."""
        self._proc.rt._link(self._proc, ref)

    def unlink(self, ref: ActorRef) -> None:
        self._proc.rt._unlink(self._proc, ref)

    def monitor(self, target: ActorRef | Any) -> MonitorRef:
        """Monitor ``target`` (a ref or a registered name); exactly one ``Down`` follows."""
        return self._proc.rt._monitor_from(self._proc, target)

    def demonitor(self, mref: MonitorRef, *, flush: bool = False) -> bool:
        """Stop monitoring; ``flush`` also drops an already queued ``Down``."""
        from ._process import demonitor

        return demonitor(self._proc, mref, flush)

    def exit(self, ref: ActorRef, reason: Any) -> None:
        """Send ``ref`` an exit signal (Erlang's ``exit/2``)."""
        self._proc.rt._exit_from(self._proc, ref, reason)

    # -- timers and stopping ----------------------------------------------------------
    def send_after(self, delay: float, msg: Any) -> TimerRef:
        """Deliver ``msg`` to this actor's ``handle_info`` after ``delay`` seconds."""
        return self._proc.rt.send_after(delay, self._proc.ref, msg)

    def cast_after(self, delay: float, msg: Any) -> TimerRef:
        """Deliver ``msg`` to this actor's ``handle_cast`` after ``delay`` seconds."""
        return self._proc.rt.cast_after(delay, self._proc.ref, msg)

    def stop(self, reason: Any = "normal") -> None:
        """Exit with ``reason`` once the current handler returns (``terminate`` runs)."""
        from ._messages import System

        self._proc.mailbox.put_system(System("stop", reason), first=True)
