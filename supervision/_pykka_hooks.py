"""The pykka side of the bridge: what runs in pykka's threads.

The bridge starts a subclass of the user's pykka class with two mix-ins above it:

- ``_BridgeHooks`` wraps the public hooks ``on_start``, ``on_stop`` and ``on_failure``
  (each calls the user's first) to record the pykka actor's exit reason and, after its
  last hook ran, tell the bridge through the runtime's ``call_soon_threadsafe``.
- ``_FastFutures`` overrides ``_create_future``, the hook pykka's ``ask`` creates
  reply futures with, to return a ``ThreadingFuture`` that also runs a callback when it
  is set: the bridge schedules its reply on the loop from there. It is mixed in only
  when this pykka version has that hook (``FAST_FUTURES``); otherwise futures are
  awaited in a worker thread.

The subclass keeps the user's class name, module and docstring, so pykka's registry
lookups by class or by class name find it. Nothing here starts a thread: pykka does.
"""

from __future__ import annotations

import logging
import sys
import threading
import types
from collections.abc import Callable
from contextlib import suppress
from types import TracebackType
from typing import Any

import pykka

from foundation import ActorRef

log = logging.getLogger("supervision")


def post(rt: Any, fn: Callable[..., None], *args: Any) -> None:
    """Schedule ``fn(*args)`` on the runtime's loop from a pykka thread; never raises
    (it runs inside pykka's code, where an exception would be taken for a crash)."""
    with suppress(Exception):  # the runtime has stopped: nobody is left to tell
        rt.call_soon_threadsafe(fn, *args)


class PykkaExited:
    """Sent to the bridge when its pykka actor ended."""

    __slots__ = ("reason",)

    def __init__(self, reason: Any) -> None:
        self.reason = reason


def _deliver(bridge: ActorRef, msg: Any) -> None:
    with suppress(Exception):  # the runtime has stopped
        bridge.send(msg)


class Link:
    """What one pykka actor shares with its bridge: its exit reason and when it ended."""

    __slots__ = ("_lock", "bridge", "finished", "reason", "rt")

    def __init__(self, rt: Any, bridge: ActorRef) -> None:
        self._lock = threading.Lock()
        self.rt = rt
        self.bridge = bridge
        self.reason: BaseException | None = None
        self.finished = threading.Event()

    def failed(self, exc: BaseException) -> None:
        """Record a failure; the first one is the exit reason (a later ``on_failure``
        error is a consequence, as in Erlang's first-reason-wins)."""
        with self._lock:
            if self.reason is None:
                self.reason = exc

    def ended(self) -> None:
        """The pykka actor ran its last hook: tell the bridge, once."""
        with self._lock:
            if self.finished.is_set():
                return
            reason: Any = self.reason if self.reason is not None else "normal"
            self.finished.set()
        post(self.rt, _deliver, self.bridge, PykkaExited(reason))


_pending = threading.local()


class _BridgeHooks(pykka.ThreadingActor):
    """Mixed in above the user's class: reports the pykka actor's end to its bridge.

    Only public pykka hooks are wrapped; each calls the user's hook first.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        # Taken before the user's __init__ runs, so an actor it starts gets no link.
        self._supervision_link: Link | None = getattr(_pending, "link", None)
        _pending.link = None
        super().__init__(*args, **kwargs)

    def on_start(self) -> None:
        try:
            super().on_start()
        except BaseException as exc:
            # pykka logs it and stops the actor without on_stop/on_failure; the bridge's
            # init sees the start fail and raises this.
            if self._supervision_link is not None:
                self._supervision_link.failed(exc)
            raise

    def on_stop(self) -> None:
        link = self._supervision_link
        if link is None:
            super().on_stop()
            return
        current = sys.exc_info()[1]
        if current is not None and not isinstance(current, Exception):
            link.failed(current)  # pykka stops every actor on a BaseException in a handler
        try:
            super().on_stop()
        except BaseException as exc:
            link.failed(exc)
            raise
        finally:
            link.ended()

    def on_failure(
        self,
        exception_type: type[BaseException] | None,
        exception_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        link = self._supervision_link
        if link is not None and exception_value is not None:
            link.failed(exception_value)
        try:
            super().on_failure(exception_type, exception_value, traceback)
        finally:
            if link is not None:
                link.ended()


class NotifyingFuture(pykka.ThreadingFuture[Any]):
    """A ``ThreadingFuture`` that runs one callback when it is set."""

    def __init__(self) -> None:
        super().__init__()
        self._done_lock = threading.Lock()
        self._done = False
        self._callback: Callable[[], object] | None = None

    def set(self, value: Any | None = None) -> None:
        super().set(value)
        self._fire()

    def set_exception(self, exc_info: Any = None) -> None:
        super().set_exception(exc_info if exc_info is not None else sys.exc_info())
        self._fire()

    def _fire(self) -> None:
        with self._done_lock:
            self._done = True
            callback, self._callback = self._callback, None
        if callback is not None:
            callback()

    def when_done(self, callback: Callable[[], object]) -> bool:
        """Run ``callback()`` (in the setting thread) once set; False if already set."""
        with self._done_lock:
            if self._done:
                return False
            self._callback = callback
            return True


class _FastFutures(pykka.ThreadingActor):
    """Mixed in when pykka creates futures through ``_create_future``."""

    @staticmethod
    def _create_future() -> pykka.Future[Any]:
        return NotifyingFuture()


def _fast_futures_supported() -> bool:
    """Whether pykka makes an actor's futures through the ``_create_future`` hook."""
    hook = pykka.ThreadingActor.__dict__.get("_create_future")
    return isinstance(hook, staticmethod) and isinstance(hook.__func__(), pykka.ThreadingFuture)


FAST_FUTURES = _fast_futures_supported()
_classes: dict[tuple[type[Any], bool], type[pykka.ThreadingActor]] = {}


def start_linked(
    actor_cls: type[pykka.ThreadingActor],
    link: Link | None,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
) -> pykka.ActorRef[Any]:
    """Start ``actor_cls(*args, **kwargs)`` (as the bridged subclass) reporting to ``link``
    (None: a bridged actor that reports to nobody, as a benchmark's reference uses)."""
    cls = _bridged_class(actor_cls, FAST_FUTURES)
    _pending.link = link
    try:
        ref: pykka.ActorRef[Any] = cls.start(*args, **kwargs)
    finally:
        _pending.link = None
    return ref


def _bridged_class(actor_cls: type[pykka.ThreadingActor], fast: bool) -> type[Any]:
    """The user's class with the bridge hooks (one subclass per class, cached)."""
    key = (actor_cls, fast)
    cls = _classes.get(key)
    if cls is None:
        bases: tuple[type, ...] = (_BridgeHooks, _FastFutures) if fast else (_BridgeHooks,)
        cls = types.new_class(actor_cls.__name__, (*bases, actor_cls))
        cls.__qualname__ = actor_cls.__qualname__
        cls.__module__ = actor_cls.__module__
        cls.__doc__ = actor_cls.__doc__
        _classes[key] = cls
    return cls


def check_actor_class(actor_cls: Any) -> None:
    if not (isinstance(actor_cls, type) and issubclass(actor_cls, pykka.ThreadingActor)):
        raise TypeError(
            f"the pykka bridge takes a pykka.ThreadingActor subclass, got: {actor_cls!r}"
        )


def stop_nowait(pykka_ref: pykka.ActorRef[Any]) -> None:
    """Ask the pykka actor to stop after the messages already queued; never blocks."""
    try:
        pykka_ref.stop(block=False)
    except Exception as exc:  # pragma: no cover - pykka answers a dead actor on the future
        log.debug("stopping %s raised %r", pykka_ref, exc)
