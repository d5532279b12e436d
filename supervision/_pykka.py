"""The pykka bridge: a pykka ``ThreadingActor`` as a supervised child.

A pykka actor that crashes comes back as a fresh instance::

    class Counter(pykka.ThreadingActor):
        def __init__(self):
            super().__init__()
            self.value = 0

        def on_receive(self, message):          # ask and tell
            if message == "incr":
                return self.add(1)
            raise ValueError(message)

        def add(self, n):                       # a method, called as the proxy does
            self.value += n
            return self.value

    sup = await Supervisor.start([pykka_child(Counter, name="counter")])
    await call("counter", "incr")               # 1: an ask, answered without blocking
    await call("counter", PykkaCall("add", 2))  # 3
    current_runtime().whereis("counter").cast("boom")   # a tell that crashes it
    await call("counter", "incr")               # 1: a fresh pykka actor

The supervised child is a small actor, the *bridge*, that starts the pykka actor in
``init`` (and returns once its ``on_start`` ran) and mirrors its life:

- ``await bridge.call(msg)`` is ``pykka_ref.ask(msg)``; ``bridge.cast(msg)`` is
  ``tell``. ``PykkaCall("method", *args, **kwargs)`` calls a method as the proxy does
  (``proxy.method(...)`` through ``call``, ``proxy.method.defer(...)`` through
  ``cast``); a dotted name reaches a traversable attribute. Other messages go to
  ``on_receive`` unchanged (pykka's own ``ProxyGetAttr`` too).
- Calls never block the event loop: the bridge answers later (``NoReply``) when the
  pykka future completes, so it keeps serving its mailbox while pykka works.
- pykka's failure semantics are kept. An exception raised while answering an ask goes
  back to the caller and the pykka actor keeps running (pykka logs it at INFO). An
  exception in a tell stops the pykka actor (pykka logs it and calls ``on_failure``):
  the bridge exits with that exception and the supervisor restarts it by the child's
  ``restart`` type. A pykka actor that stops by itself ends the bridge ``"normal"``; an
  exception in ``on_stop`` ends it with that exception; an exception in ``on_start``
  fails the start (``StartError`` with the cause) where pykka's ``start()`` would have
  returned a ref to an actor already stopping. A ``BaseException`` in a handler makes
  pykka stop *all* its actors: that bridge exits with it, the others ``"normal"``.
  Calls still queued in a pykka actor that ended were never handled: they fail with
  ``ActorDead(reason, handled=False)``, so a call by name waits for the next incarnation.
- Stopping reaches it: the bridge traps exits, so a supervisor's ``"shutdown"`` runs its
  ``terminate``, which stops the pykka actor and waits (in a worker thread, at most
  ``stop_timeout`` seconds) until its ``on_stop`` ran. A killed bridge runs no
  ``terminate``; a linked companion actor (the *warden*) sees the exit and asks the pykka
  actor to stop, so its thread ends after the message it is handling.

How replies reach the loop without blocking it: pykka futures have no done-callback,
so the pykka actor runs as a subclass of its class whose reply futures schedule the
answer on the loop (``call_soon_threadsafe``) when set; where this pykka version does
not create futures through the hook that allows it, each future is awaited in a worker
thread (``rt.to_thread(future.get)``): the same answers, one thread hop slower. See
``_pykka_hooks``.

Limits: pykka cannot interrupt a running handler, so a handler that never returns keeps
its thread (and a stop waits for it up to ``stop_timeout``). Messages cross threads by
reference, as in pykka. The bridge waits on real threads, so with an autojumping
``VirtualClock`` virtual time may jump while pykka works: use the real clock for bridges.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Hashable
from contextlib import suppress
from dataclasses import dataclass, field
from typing import Any

import pykka
from pykka.messages import ProxyCall, ProxyGetAttr

from foundation import Actor, ActorDead, ActorRef, Caller, Exit, NoReply, current_runtime
from foundation import Event as LoopEvent

from ._exceptions import InvalidChildSpec
from ._pykka_hooks import (
    Link,
    NotifyingFuture,
    PykkaExited,
    check_actor_class,
    post,
    start_linked,
    stop_nowait,
)
from ._spec import DEFAULT_WORKER_SHUTDOWN, ChildSpec, Restart, Shutdown

log = logging.getLogger("supervision")


@dataclass(frozen=True, init=False)
class PykkaCall:
    """A proxy method call sent through a bridge: ``PykkaCall("method", *args, **kwargs)``.

    ``attr`` may be dotted (``"playback.play"``) to reach a method of an attribute.
    """

    attr: str
    args: tuple[Any, ...]
    kwargs: dict[str, Any] = field(hash=False)

    def __init__(self, attr: str, /, *args: Any, **kwargs: Any) -> None:
        if not isinstance(attr, str) or not attr:
            raise TypeError(f"PykkaCall takes a method name, got: {attr!r}")
        object.__setattr__(self, "attr", attr)
        object.__setattr__(self, "args", args)
        object.__setattr__(self, "kwargs", kwargs)

    def message(self) -> ProxyCall:
        """The pykka message the proxy would send for this call."""
        return ProxyCall(attr_path=tuple(self.attr.split(".")), args=self.args, kwargs=self.kwargs)


_PYKKA_REF = object()  # the request behind PykkaBridge.pykka_ref
_PRUNE_AT = 1024  # open calls a bridge tracks before it forgets the answered ones


def _answer(caller: Caller, fut: pykka.Future[Any], pykka_ref: pykka.ActorRef[Any]) -> None:
    """Answer ``caller`` from a completed pykka future (on the loop)."""
    try:
        value = fut.get(timeout=0)
    except Exception as exc:
        _answer_error(caller, exc, pykka_ref)
    else:
        caller.reply(value)


def _answer_error(caller: Caller, exc: Exception, pykka_ref: pykka.ActorRef[Any]) -> None:
    if isinstance(exc, pykka.ActorDeadError) and not pykka_ref.is_alive():
        # The pykka actor died with this call queued, unhandled: the bridge's terminate
        # fails it as such (a call by name then waits for the next incarnation).
        return
    _fail(caller, exc)


def _fail(caller: Caller, exc: BaseException) -> None:
    """Answer with an exception: the caller's ``await ref.call(...)`` raises ``exc``."""
    caller.fail(exc)


class _PykkaWarden(Actor):
    """The bridge's companion: stops the pykka actor when the bridge exits in any way (a
    kill included, which runs no ``terminate``), and waits on futures in a worker thread
    where the callback path is not available."""

    async def init(self, pykka_ref: pykka.ActorRef[Any], link: Link) -> None:
        self.trap_exits = True  # the bridge's exit, even "killed", ends it via terminate
        self._pykka = pykka_ref
        self._link = link

    async def handle_cast(self, msg: Any) -> None:
        fut, caller = msg
        try:
            value = await self.runtime.to_thread(fut.get)
        except Exception as exc:
            _answer_error(caller, exc, self._pykka)
        else:
            caller.reply(value)

    async def handle_info(self, msg: Any) -> None:
        """Exits of anything but the bridge (its parent) do not concern it."""

    async def terminate(self, reason: Any) -> None:
        if not self._link.finished.is_set():
            stop_nowait(self._pykka)


class PykkaBridge(Actor):
    """The supervised actor standing for one pykka actor (see the module docstring).

    Args (of ``init``):
        actor_cls: a ``pykka.ThreadingActor`` subclass.
        args, kwargs: its constructor arguments.
        stop_timeout: seconds ``terminate`` waits for the pykka actor's ``on_stop``
            (None: as long as it takes).
    """

    async def init(
        self,
        actor_cls: type[pykka.ThreadingActor],
        args: tuple[Any, ...] = (),
        kwargs: dict[str, Any] | None = None,
        *,
        stop_timeout: float | None = DEFAULT_WORKER_SHUTDOWN,
    ) -> None:
        check_actor_class(actor_cls)
        self.trap_exits = True  # a supervisor's "shutdown" runs terminate, which stops pykka
        rt = self.runtime
        self._stop_timeout = stop_timeout
        self._calls: dict[Caller, pykka.Future[Any] | None] = {}
        self._prune_at = _PRUNE_AT
        self._link = link = Link(rt, self.ref)
        self._pykka: pykka.ActorRef[Any] = start_linked(actor_cls, link, args, kwargs or {})
        try:
            # Answered after on_start: spawn returns once the pykka actor is serving.
            ready = self._pykka.ask(ProxyGetAttr(attr_path=("actor_urn",)), block=False)
            try:
                await self._wait(ready)
            except Exception as exc:
                reason = link.reason if link.reason is not None else exc
                if isinstance(reason, Exception):
                    raise reason from None
                raise RuntimeError(
                    f"{actor_cls.__qualname__}.on_start raised {reason!r}"
                ) from reason
            self._warden = await self.spawn_link(_PykkaWarden, self._pykka, link)
        except BaseException:
            stop_nowait(self._pykka)
            raise

    async def _wait(self, fut: pykka.Future[Any]) -> Any:
        """Await a pykka future without blocking the loop."""
        if isinstance(fut, NotifyingFuture):
            done = LoopEvent()
            if fut.when_done(functools.partial(post, self.runtime, done.set)):
                await done.wait()
            return fut.get(timeout=0)
        return await self.runtime.to_thread(fut.get)

    # -- client API ----------------------------------------------------------------------
    @classmethod
    async def start(
        cls,
        actor_cls: type[pykka.ThreadingActor],
        *args: Any,
        name: Any = None,
        link: bool = False,
        stop_timeout: float | None = DEFAULT_WORKER_SHUTDOWN,
        **kwargs: Any,
    ) -> ActorRef:
        """Start ``actor_cls(*args, **kwargs)`` behind a bridge outside a supervisor
        (``link=True`` links it to the calling actor); returns the bridge's ref."""
        check_actor_class(actor_cls)
        ref: ActorRef = await current_runtime().spawn(
            cls, actor_cls, args, kwargs, name=name, link=link, stop_timeout=stop_timeout
        )
        return ref

    @staticmethod
    async def pykka_ref(bridge: Any, timeout: float | None = 5.0) -> pykka.ActorRef[Any]:
        """The pykka ``ActorRef`` behind a bridge (a ref or a registered name)."""
        ref: pykka.ActorRef[Any] = await current_runtime().call(bridge, _PYKKA_REF, timeout)
        return ref

    # -- messages ------------------------------------------------------------------------
    async def handle_call(self, request: Any, caller: Caller) -> Any:
        pykka_ref = self._pykka
        if request is _PYKKA_REF:
            return pykka_ref
        calls = self._calls
        if len(calls) >= self._prune_at:
            # Forget answered calls now and then instead of on every reply.
            self._calls = calls = {c: f for c, f in calls.items() if c.waiting}
            self._prune_at = max(_PRUNE_AT, 2 * len(calls))
        if not pykka_ref.is_alive():
            calls[caller] = None  # its exit is on the way; terminate fails this call
            return NoReply
        msg = request.message() if request.__class__ is PykkaCall else request
        fut = pykka_ref.ask(msg, block=False)
        calls[caller] = fut
        if fut.__class__ is NotifyingFuture:
            if not fut.when_done(
                functools.partial(post, self.runtime, _answer, caller, fut, pykka_ref)
            ):
                _answer(caller, fut, pykka_ref)
        else:
            self._warden.cast((fut, caller))
        return NoReply

    async def handle_cast(self, msg: Any) -> None:
        # A cast to a dead actor is dropped; the bridge's exit is on the way.
        with suppress(pykka.ActorDeadError):
            self._pykka.tell(msg.message() if msg.__class__ is PykkaCall else msg)

    async def handle_info(self, msg: Any) -> None:
        if msg.__class__ is PykkaExited:
            self.stop(msg.reason)
        elif msg.__class__ is Exit:
            # A linked actor (the warden, or one the user linked) exited: die with it as
            # an actor that does not trap exits would (the parent's exit never gets here).
            if msg.reason != "normal":
                self.stop(msg.reason)
        else:
            await super().handle_info(msg)

    async def terminate(self, reason: Any) -> None:
        """Stop the pykka actor, wait (in a worker thread) until its ``on_stop`` ran, and
        settle the calls still open."""
        link = self._link
        if not link.finished.is_set():
            stop_nowait(self._pykka)
            if not await self.runtime.to_thread(link.finished.wait, self._stop_timeout):
                log.warning(
                    "pykka actor %s did not stop within %s s; its thread ends when its "
                    "current handler returns",
                    self._pykka,
                    self._stop_timeout,
                )
                return  # its open calls may be in the handler: they fail as handled
        self._settle(reason)

    def _settle(self, reason: Any) -> None:
        """Answer the calls left open once the pykka actor ended.

        Answers pykka gave before it ended were scheduled on the loop before its end was
        (one thread, FIFO), so most are delivered already; the rest are answered from
        their futures. A call pykka never handled (its future unset, or set to pykka's
        ``ActorDeadError`` by the teardown) fails with ``ActorDead(handled=False)``, so
        a call by name waits for the next incarnation instead of failing.
        """
        for caller, fut in self._calls.items():
            if not caller.waiting:
                continue
            try:
                if fut is None:
                    raise pykka.ActorDeadError("not started")
                value = fut.get(timeout=0)
            except (pykka.ActorDeadError, pykka.Timeout):
                _fail(caller, ActorDead(self.pid, reason, handled=False))
            except Exception as exc:
                _fail(caller, exc)
            else:
                caller.reply(value)
        self._calls = {}


def pykka_child(
    actor_cls: type[pykka.ThreadingActor],
    *args: Any,
    id: Hashable | None = None,
    restart: Restart = "permanent",
    shutdown: Shutdown | None = None,
    significant: bool = False,
    name: Any = None,
    **kwargs: Any,
) -> ChildSpec:
    """A child spec that runs ``actor_cls(*args, **kwargs)`` behind a ``PykkaBridge``.

    ``name`` registers the bridge (calls by name then wait across restarts); ``id``
    defaults to ``name`` or the class name. ``shutdown`` (default 5 s) is also how long
    the bridge waits for the pykka actor's ``on_stop``.
    """
    try:
        check_actor_class(actor_cls)
    except TypeError as exc:
        raise InvalidChildSpec("invalid_mfa", str(exc)) from None
    if id is None:
        id = name if name is not None else actor_cls.__qualname__
    stop_timeout: float | None
    if shutdown is None or shutdown == "brutal_kill":
        stop_timeout = DEFAULT_WORKER_SHUTDOWN
    elif shutdown == "infinity":
        stop_timeout = None
    else:
        stop_timeout = shutdown
    init_kwargs: dict[str, Any] = {"stop_timeout": stop_timeout}
    if name is not None:
        init_kwargs["name"] = name
    return ChildSpec(
        id,
        (PykkaBridge, (actor_cls, args, kwargs), init_kwargs),
        restart=restart,
        shutdown=shutdown,
        type="worker",
        significant=significant,
    )
