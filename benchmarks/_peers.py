"""Peer actor libraries measured in the same run: pykka (threads) and Thespian.

Each function takes a size so a short mode is possible and returns a rate (operations
per second) or raises :class:`PeerUnavailable` when the library is not installed; the
runner reports that as "n/a". Every function stops what it started (pykka actors,
the Thespian actor system) before returning, also on error.
"""

from __future__ import annotations

import threading
from time import perf_counter
from typing import Any

from ._common import settle


class PeerUnavailable(RuntimeError):
    """The peer library is not importable; the figure is reported as n/a."""


def _pykka() -> Any:
    try:
        import pykka
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise PeerUnavailable(f"pykka not installed: {exc}") from exc
    return pykka


def _thespian() -> Any:
    try:
        from thespian import actors
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise PeerUnavailable(f"thespian not installed: {exc}") from exc
    return actors


# --------------------------------------------------------------------------- pykka


def _pykka_classes() -> tuple[type, type]:
    pykka = _pykka()

    class Sink(pykka.ThreadingActor):  # type: ignore[misc, name-defined]
        def __init__(self, n: int = 0, done: threading.Event | None = None) -> None:
            super().__init__()
            self.n = n
            self.i = 0
            self.done = done

        def on_receive(self, message: Any) -> Any:
            self.i += 1
            if self.i == self.n and self.done is not None:
                self.done.set()
            return message

    class Idle(pykka.ThreadingActor):  # type: ignore[misc, name-defined]
        def on_receive(self, message: Any) -> Any:
            return message

    return Sink, Idle


def pykka_tell_rate(n: int) -> float:
    """pykka ``tell`` throughput: n tells; the actor sets an Event on the n-th."""
    pykka = _pykka()
    sink_cls, _ = _pykka_classes()
    done = threading.Event()
    ref = sink_cls.start(n, done)
    try:
        ref.ask(None)  # the actor thread is running and idle before the clock starts
        settle()
        tell = ref.tell
        t0 = perf_counter()
        for i in range(n):
            tell(i)
        if not done.wait(timeout=120.0):
            raise RuntimeError("pykka sink did not receive every message")
        elapsed = perf_counter() - t0
    finally:
        pykka.ActorRegistry.stop_all()
    return n / elapsed


def pykka_ask_rate(n: int) -> float:
    """pykka ``ask`` round trips, issued sequentially from the main thread."""
    pykka = _pykka()
    _, idle_cls = _pykka_classes()
    ref = idle_cls.start()
    try:
        ask = ref.ask
        ask(None)
        settle()
        t0 = perf_counter()
        for i in range(n):
            ask(i)
        elapsed = perf_counter() - t0
    finally:
        pykka.ActorRegistry.stop_all()
    return n / elapsed


def pykka_spawn_rate(k: int) -> float:
    """pykka actors started per second (start k actors; stopping them is not timed)."""
    pykka = _pykka()
    _, idle_cls = _pykka_classes()
    start = idle_cls.start
    refs = []
    try:
        settle()
        t0 = perf_counter()
        for _ in range(k):
            refs.append(start())
        elapsed = perf_counter() - t0
    finally:
        pykka.ActorRegistry.stop_all()
    return k / elapsed


def pykka_idle_actors(k: int) -> list[Any]:
    """Start k idle pykka actors and return their refs once each answered (memory probe)."""
    _, idle_cls = _pykka_classes()
    refs = [idle_cls.start() for _ in range(k)]
    for ref in refs:
        ref.ask(None)
    return refs


def pykka_stop_all() -> None:
    _pykka().ActorRegistry.stop_all()


# --------------------------------------------------------------------------- Thespian


def _thespian_classes() -> type:
    actors = _thespian()

    class Counter(actors.Actor):  # type: ignore[misc, name-defined]
        def __init__(self, *args: Any, **kw: Any) -> None:
            super().__init__(*args, **kw)
            self.i = 0

        def receiveMessage(self, message: Any, sender: Any) -> None:
            if message.__class__ is int:
                self.i += 1
            elif message == "count":
                self.send(sender, self.i)
            else:
                self.send(sender, message)

    return Counter


def _with_thespian(body: Any) -> float:
    actors = _thespian()
    counter_cls = _thespian_classes()
    asys = actors.ActorSystem()  # default base: simpleSystemBase, in-process
    try:
        addr = asys.createActor(counter_cls)
        if asys.ask(addr, "ready", 10) != "ready":
            raise RuntimeError("thespian actor did not answer")
        result: float = body(asys, addr)
        return result
    finally:
        asys.shutdown()


def thespian_ask_rate(n: int) -> float:
    """Thespian (simpleSystemBase) ``ask`` round trips, sequential."""

    def body(asys: Any, addr: Any) -> float:
        ask = asys.ask
        settle()
        t0 = perf_counter()
        for _ in range(n):
            ask(addr, "x", 10)
        return n / (perf_counter() - t0)

    return _with_thespian(body)


def thespian_tell_rate(n: int) -> float:
    """Thespian (simpleSystemBase) ``tell`` throughput: n tells, then one ``ask`` that
    returns the count, so the clock stops only once every tell was handled."""

    def body(asys: Any, addr: Any) -> float:
        tell = asys.tell
        settle()
        t0 = perf_counter()
        for i in range(n):
            tell(addr, i)
        count = asys.ask(addr, "count", 60)
        elapsed = perf_counter() - t0
        if count != n:
            raise RuntimeError(f"thespian counter saw {count} of {n} messages")
        return n / elapsed

    return _with_thespian(body)
