"""``Application``: a named top supervisor, started and stopped as a unit.

A service is one tree; the application names it, starts it, and turns the way it ends
into a process exit code::

    app = Application("shop", children=[child_spec(Database), child_spec(Web)])

    if __name__ == "__main__":
        raise SystemExit(app.run())        # SIGTERM / SIGINT stop it gracefully: exit 0

or, embedded in a program (or a test) that already has a runtime::

    async with app.running() as sup:        # the top Supervisor, registered as "shop"
        ...
    app.exit_status                         # how it ended (code, reason, message)

The top supervisor is a ``Supervisor`` registered under the application's name, with
the application's ``strategy``, ``max_restarts``, ``max_seconds`` and ``auto_shutdown``
(defaults as ``Supervisor``: one_for_one, 3 restarts in 5 s). A subclass may define
``children()`` instead of passing ``children=``.

How it ends, as Erlang's application controller reports it:

- ``stop()``, SIGTERM or SIGINT: the top supervisor stops its children in reverse start
  order (each within its own ``shutdown``); exit code 0.
- ``auto_shutdown`` (a significant child finished): a designed end; exit code 0.
- the top supervisor reached its restart intensity, crashed, was killed, or the tree
  failed to start: exit code 1, and ``run`` writes one line naming the application, the
  reason and the child to stderr.

``shutdown_timeout`` bounds the graceful stop: past it the top supervisor is killed
(None, the default: as long as the tree needs, Erlang's ``infinity`` for a top
supervisor). A second SIGTERM/SIGINT during the stop is ignored; the stop goes on.
"""

from __future__ import annotations

import logging
import signal as signals_module
import sys
from collections.abc import AsyncIterator, Iterable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import anyio

import foundation
from foundation import (
    ActorDead,
    ActorRef,
    AlreadyRegistered,
    CallTimeout,
    Runtime,
    StartError,
    current_runtime,
)

from ._child import check_flags
from ._exceptions import StartChildError, SupervisionError
from ._spec import check_child_specs, is_normal_exit
from ._supervisor import Supervisor

log = logging.getLogger("supervision")

_STOP_SIGNALS = (signals_module.SIGTERM, signals_module.SIGINT)


@dataclass(frozen=True, slots=True)
class ExitStatus:
    """How an ``Application`` ended.

    Attributes:
        code: the process exit code (0: stopped on purpose; 1: failed).
        reason: the top supervisor's exit reason (the start failure if it never ran).
        message: one line naming the application and what happened.
        signal: ``"SIGTERM"`` / ``"SIGINT"`` when a signal stopped it, else None.
        child: the id of the child whose exit ended the tree, when one did.
        child_reason: that child's last exit reason.
    """

    code: int
    reason: Any
    message: str
    signal: str | None = None
    child: Any = None
    child_reason: Any = None


def _describe(reason: Any) -> str:
    """An exit reason as one short line (``RuntimeError: boom``, ``'killed'``)."""
    if isinstance(reason, BaseException):
        text = str(reason)
        line = f"{type(reason).__name__}: {text}" if text else type(reason).__name__
    else:
        line = repr(reason)
    return " ".join(line.split())


class Application:
    """A named top supervisor with a start/stop lifecycle and a console entry point.

    Args:
        name: registered name of the top supervisor (and the name in every message);
            a subclass may set it as a class attribute instead.
        children: the top supervisor's children (``ChildSpec``s, Actor subclasses or
            ``(ActorCls, *args)``), validated here; or define ``children()``.
        strategy / max_restarts / max_seconds / auto_shutdown: the top supervisor's
            flags (see ``Supervisor``).
        shutdown_timeout: seconds a graceful stop may take before the top supervisor
            is killed (None: no limit).
    """

    name: str = ""
    strategy: str = "one_for_one"
    max_restarts: int = 3
    max_seconds: float = 5.0
    auto_shutdown: str = "never"
    shutdown_timeout: float | None = None

    def __init__(
        self,
        name: str | None = None,
        children: Iterable[Any] | None = None,
        *,
        strategy: str | None = None,
        max_restarts: int | None = None,
        max_seconds: float | None = None,
        auto_shutdown: str | None = None,
        shutdown_timeout: float | None = None,
    ) -> None:
        if name is not None:
            self.name = name
        if not isinstance(self.name, str) or not self.name:
            raise TypeError(f"an application name is a non-empty str, got: {self.name!r}")
        if strategy is not None:
            self.strategy = strategy
        if max_restarts is not None:
            self.max_restarts = max_restarts
        if max_seconds is not None:
            self.max_seconds = max_seconds
        if auto_shutdown is not None:
            self.auto_shutdown = auto_shutdown
        if shutdown_timeout is not None:
            self.shutdown_timeout = shutdown_timeout
        timeout = self.shutdown_timeout
        if timeout is not None and not (
            isinstance(timeout, (int, float)) and not isinstance(timeout, bool) and timeout > 0
        ):
            raise ValueError(
                f"shutdown_timeout must be a positive number of seconds or None, got: {timeout!r}"
            )
        check_flags(self.strategy, self.max_restarts, self.max_seconds, self.auto_shutdown)
        self._specs = None if children is None else check_child_specs(children, self.auto_shutdown)
        if self._specs is None and type(self).children is Application.children:
            raise TypeError(
                f"application {self.name!r} has no children: pass children=[...] or "
                "define a children() method in a subclass"
            )
        self._ref: ActorRef | None = None
        self._rt: Runtime | None = None
        self._reset()

    def __repr__(self) -> str:
        state = "running" if self.is_running else "stopped"
        return f"<{type(self).__qualname__} {self.name!r} {state}>"

    def children(self) -> Iterable[Any]:
        """The top supervisor's children, in start order (override in a subclass)."""
        return list(self._specs or ())

    # -- state --------------------------------------------------------------------------
    def _reset(self) -> None:
        self._hids: list[Any] = []
        self._stopping = False
        self._signal: str | None = None
        self._exit_reason: Any = None
        self._exited = False
        self._giving_up: Mapping[str, Any] | None = None
        self._last_exit: dict[Any, Any] = {}
        self._status: ExitStatus | None = None
        self._on_exit: Any = None

    @property
    def ref(self) -> ActorRef | None:
        """The top supervisor of the current (or last) run; None before the first."""
        return self._ref

    @property
    def is_running(self) -> bool:
        """Whether the top supervisor is alive."""
        return self._ref is not None and self._ref.is_alive

    @property
    def exit_status(self) -> ExitStatus | None:
        """How the last run ended; None while it runs (or before it started)."""
        if self._status is None and self._exited:
            self._status = self._conclude()
        return self._status

    # -- lifecycle ----------------------------------------------------------------------
    async def start(self) -> ActorRef:
        """Start the top supervisor (children in order) in the current runtime.

        Raises:
            RuntimeError: it is already running.
            StartError: a child failed to start (``__cause__`` is the
                ``StartChildError``); the children already started were stopped.
            AlreadyRegistered: another actor holds the application's name.
            InvalidChildSpec / InvalidSupervisorFlags: ``children()`` is malformed.
        """
        if self.is_running:
            raise RuntimeError(f"application {self.name!r} is already running")
        rt = current_runtime()
        children = check_child_specs(self.children(), self.auto_shutdown)
        self._detach()
        self._reset()
        self._rt = rt
        tel = rt.telemetry
        self._hids = [
            tel.attach(("supervision", "child", "exit"), self._on_event),
            tel.attach(("supervision", "supervisor", "shutdown"), self._on_event),
            tel.attach(("foundation", "actor", "exit"), self._on_event),
        ]
        try:
            ref: ActorRef = await Supervisor.start(
                children,
                name=self.name,
                strategy=self.strategy,
                max_restarts=self.max_restarts,
                max_seconds=self.max_seconds,
                auto_shutdown=self.auto_shutdown,
            )
        except BaseException:
            self._detach()
            raise
        self._ref = ref
        log.info("application %r started: top supervisor %r", self.name, ref.pid)
        return ref

    async def stop(self) -> None:
        """Stop the tree gracefully: children in reverse start order. A no-op when it
        is not running. Past ``shutdown_timeout`` the top supervisor is killed."""
        ref = self._ref
        if ref is None or not ref.is_alive:
            self._detach()
            return
        self._stopping = True
        try:
            await ref.stop("shutdown", timeout=self.shutdown_timeout)
        except CallTimeout:
            log.error(
                "application %r did not stop within %s s; its top supervisor was killed",
                self.name,
                self.shutdown_timeout,
            )
        except ActorDead:
            pass  # it exited on its own meanwhile
        self._detach()

    @asynccontextmanager
    async def running(self) -> AsyncIterator[ActorRef]:
        """Start the application, yield its top supervisor, stop it on the way out."""
        ref = await self.start()
        try:
            yield ref
        finally:
            await self.stop()
            self._detach()

    async def serve(self) -> int:
        """The main loop: start, wait until the tree ends or SIGTERM/SIGINT arrives,
        stop gracefully; return the exit code (a failure is also written to stderr).

        Must run in the main thread (signal handlers); ``run`` calls it.
        """
        with anyio.open_signal_receiver(*_STOP_SIGNALS) as received:
            # The handlers are installed before any child starts, so a child that says
            # "ready" can be signalled at once.
            try:
                ref = await self.start()
            except (StartError, AlreadyRegistered, SupervisionError) as exc:
                self._status = self._start_failed(exc)
            else:
                signum = await self._wait(ref, received)
                if signum is not None:
                    self._signal = signals_module.Signals(signum).name
                    log.info("application %r stopping on %s", self.name, self._signal)
                    await self.stop()
                self._detach()
        status = self.exit_status or self._conclude()
        if status.code != 0:
            print(status.message, file=sys.stderr, flush=True)
        return status.code

    def run(self, backend: str = "asyncio", **runtime_options: Any) -> int:
        """Run the application in a fresh ``Runtime`` until it ends; return the exit
        code, so ``raise SystemExit(app.run())`` makes a console main."""
        try:
            return foundation.run(self.serve, backend=backend, **runtime_options)
        except KeyboardInterrupt:  # before the signal handlers were installed
            return 130

    async def _wait(self, ref: ActorRef, received: Any) -> int | None:
        """Wait for a stop signal (returned) or the top supervisor's exit (None)."""
        scope = anyio.CancelScope()
        self._on_exit = scope.cancel  # the exit handler ends the wait
        try:
            with scope:
                if not ref.is_alive:
                    return None
                async for signum in received:
                    return int(signum)
        finally:
            self._on_exit = None
        return None

    # -- telemetry: how the top supervisor ends ----------------------------------------
    def _on_event(
        self, event: tuple[str, ...], measurements: Mapping[str, Any], meta: Mapping[str, Any]
    ) -> None:
        if event[0] == "foundation":
            ref = self._ref
            if ref is not None and meta.get("pid") == ref.pid:
                self._exited = True
                self._exit_reason = meta.get("reason")
                if self._on_exit is not None:
                    self._on_exit()
            return
        if meta.get("supervisor_name") != self.name or self._ref is None:
            return
        if event[1] == "child":
            self._last_exit[meta.get("id")] = meta.get("reason")
        else:
            self._giving_up = {**meta, **measurements}

    def _detach(self) -> None:
        if not self._hids or self._rt is None:
            return
        for hid in self._hids:
            self._rt.telemetry.detach(hid)
        self._hids = []
        ref = self._ref
        if ref is not None and not ref.is_alive and not self._exited:
            self._exited = True
            self._exit_reason = "shutdown"

    def _conclude(self) -> ExitStatus:
        reason = self._exit_reason
        name = self.name
        giving_up = self._giving_up
        if giving_up is not None:
            child = giving_up.get("child")
            child_reason = self._last_exit.get(child)
            if giving_up.get("reason") == "auto_shutdown":
                return ExitStatus(
                    0,
                    reason,
                    f"{name}: stopped: significant child {child!r} exited "
                    f"({_describe(child_reason)}; auto_shutdown={self.auto_shutdown})",
                    child=child,
                    child_reason=child_reason,
                )
            restarts = giving_up.get("restarts", self.max_restarts)
            return ExitStatus(
                1,
                reason,
                f"{name}: reached max restart intensity: {restarts} restarts in "
                f"{self.max_seconds:g} s; child {child!r} last exited with "
                f"{_describe(child_reason)}",
                child=child,
                child_reason=child_reason,
            )
        how = f"stopped by {self._signal}" if self._signal is not None else "stopped"
        if is_normal_exit(reason):
            return ExitStatus(0, reason, f"{name}: {how}", self._signal)
        if self._stopping:  # killed past shutdown_timeout
            return ExitStatus(
                1,
                reason,
                f"{name}: {how}; the top supervisor exited with {_describe(reason)}",
                self._signal,
            )
        return ExitStatus(1, reason, f"{name}: top supervisor exited with {_describe(reason)}")

    def _start_failed(self, exc: BaseException) -> ExitStatus:
        cause = exc.__cause__ if isinstance(exc, StartError) else exc
        if isinstance(cause, StartChildError):
            origin = cause.__cause__ if cause.__cause__ is not None else cause.reason
            return ExitStatus(
                1,
                cause,
                f"{self.name}: failed to start: child {cause.child_id!r} failed: "
                f"{_describe(origin)}",
                child=cause.child_id,
                child_reason=origin,
            )
        return ExitStatus(1, exc, f"{self.name}: failed to start: {_describe(exc)}")
