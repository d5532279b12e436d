"""``Runtime``: the process table, clock, timers, registry and telemetry of one world.

``async with Runtime() as rt`` starts the kernel on the running anyio backend (asyncio
or trio); leaving the block stops every actor (``terminate`` runs with ``"shutdown"``,
stragglers are killed after ``shutdown_timeout``) and closes the runtime. Refs of a
closed runtime refuse further use with ``RuntimeClosed``.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any, TypeVar

import anyio
import sniffio

from . import _process as P
from . import _timers as T_
from ._actor import Actor
from ._clock import Clock, MonotonicClock
from ._context import current_process_var, current_runtime_var
from ._events import KernelEvents
from ._exceptions import RuntimeClosed, StartError
from ._loop import load_backend
from ._mailbox import OVERFLOW_POLICIES
from ._messages import System
from ._namecall import call_by_name, split_name
from ._pid import MonitorRef, Pid
from ._ref import ActorRef, Monitor, check_timeout
from ._registry import Registry
from ._telemetry import Telemetry
from ._timers import TimerRef, Timers

log = logging.getLogger("foundation")
T = TypeVar("T")

_new = type.__call__  # builds a no-public-constructor object without the metaclass hop


@dataclass(frozen=True, slots=True)
class RuntimeStatistics:
    """A snapshot of a runtime."""

    actors: int
    spawned: int
    exited: int
    crashed: int
    timers_pending: int
    dropped_to_dead: int


class Runtime(KernelEvents):
    """One actor world per OS process (tests make one each).

    Args:
        clock: the runtime clock (default: monotonic; ``VirtualClock`` in tests).
        registry: backend of the default registry used by ``spawn(name=...)``.
        node: node number written into every pid of this runtime.
        shutdown_timeout: seconds ``terminate`` may take at shutdown before a kill.
        watchdog: seconds an actor may hold the event loop before a
            ``("foundation", "loop", "blocked")`` event (None disables the watchdog).
    """

    def __init__(
        self,
        *,
        clock: Clock | None = None,
        registry: Any = None,
        node: int = 0,
        shutdown_timeout: float = 5.0,
        watchdog: float | None = 0.5,
    ) -> None:
        check_timeout(shutdown_timeout, "shutdown_timeout")
        check_timeout(watchdog, "watchdog")
        if not isinstance(node, int) or node < 0:
            raise ValueError(f"node must be a non-negative int, got: {node!r}")
        self.clock: Clock = clock if clock is not None else MonotonicClock()
        self.node = node
        self.shutdown_timeout = shutdown_timeout
        self.telemetry = Telemetry()
        self.registry = Registry(registry, keys="unique")
        self._watchdog_threshold = watchdog
        self._procs: dict[Pid, P.Process] = {}
        self._serial = itertools.count(1)
        self._mref_serial = itertools.count(1)
        self._ext_monitors: dict[MonitorRef, P.Process] = {}
        self._started = False
        self._closing = False
        self._closed = False
        self._spawned = 0
        self._exited = 0
        self._crashed = 0
        self._dropped = 0
        self._all_exited: Any = None
        self._finishing: Any = None  # parked processes being finished (see _process.kill)
        self._idle_waiters: list[Any] | None = None
        self._backend: Any = None
        self._timers: Any = None
        self.watchdog: Any = None

    # -- lifecycle --------------------------------------------------------------------
    async def __aenter__(self) -> Runtime:
        if self._started:
            raise RuntimeError("a Runtime can be entered only once")
        try:
            library = sniffio.current_async_library()
        except sniffio.AsyncLibraryNotFoundError:
            raise RuntimeError("Runtime must be entered from an async context") from None
        self._started = True
        self._backend = load_backend(library)
        self._new_future = self._backend.new_future
        self._scope = self._backend.task_scope()
        await self._scope.__aenter__()
        self._token = current_runtime_var.set(self)
        self._timers = Timers(self.clock, self._backend)
        self.clock._attach(self._timers)
        self._backend.start(self._timers.run)
        if self._watchdog_threshold is not None:
            from ._watchdog import Watchdog

            self.watchdog = Watchdog(self, self._watchdog_threshold)
            self.watchdog.start()
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        try:
            await self._shutdown()
        finally:
            self._closed = True
            self.registry.close()  # a backend it made from a name ("shm") is its to close
            if self.watchdog is not None:
                self.watchdog.stop()
            self._timers.closed = True
            self._timers.wake()
            try:
                current_runtime_var.reset(self._token)
            except ValueError:
                current_runtime_var.set(None)
            await self._scope.__aexit__(*exc_info)

    async def _shutdown(self) -> None:
        """Stop every actor, newest first: ``terminate("shutdown")``, then kill."""
        self._closing = True
        if not self._procs:
            return
        self._all_exited = self._new_future()
        for proc in sorted(self._procs.values(), key=lambda p: p.pid, reverse=True):
            if proc.state == P.RUNNING:
                proc.mailbox.put_system(System("stop", "shutdown"), first=True)
            elif proc.state == P.STARTING:
                P.kill(proc, "shutdown")
        done = await self._wait_real(self._all_exited, self.shutdown_timeout)
        if not done:
            for proc in list(self._procs.values()):
                log.warning("actor %r did not stop within %s s at shutdown; killed",
                            proc.pid, self.shutdown_timeout)
                P.kill(proc, "killed")
            if self._procs:
                await self._wait_real(self._all_exited, self.shutdown_timeout)

    async def _wait_real(self, fut: Any, timeout: float) -> bool:
        if fut.done():
            return True
        await self._backend.wait_future_until(fut, timeout)
        return bool(fut.done())

    @property
    def closed(self) -> bool:
        """Whether the runtime has stopped."""
        return self._closed

    @property
    def backend(self) -> str:
        """The anyio backend the runtime runs on (``"asyncio"`` or ``"trio"``)."""
        self._check_open()
        return str(self._backend.name)

    def _check_open(self) -> None:
        if not self._started:
            raise RuntimeError("the runtime is not started: use 'async with Runtime() as rt'")
        if self._closed or self._closing:
            raise RuntimeClosed("the runtime has stopped")

    # -- spawning ---------------------------------------------------------------------
    async def spawn(
        self,
        actor_cls: type[Actor],
        *args: Any,
        name: Any = None,
        link: bool = False,
        monitor: bool = False,
        mailbox_size: int | None = None,
        overflow: str = "block",
        **kwargs: Any,
    ) -> Any:
        """Start an actor and return its ref once ``init`` has returned.

        ``link``/``monitor`` relate the new actor to the calling actor (``monitor`` also
        works outside actors and then returns ``(ref, Monitor)``; inside an actor it
        returns ``(ref, MonitorRef)``). ``name`` registers it in ``rt.registry`` (or
        ``("via", registry, key)``) before ``init`` runs.

        Raises:
            StartError: ``init`` raised (the cause is chained) or the actor was killed
                during ``init``.
            AlreadyRegistered: ``name`` is taken.
        """
        if not (isinstance(actor_cls, type) and issubclass(actor_cls, Actor)):
            inst = isinstance(actor_cls, Actor)  # type: ignore[unreachable]
            hint = " (pass the class, not an instance)" if inst else ""
            raise TypeError(f"spawn() takes an Actor subclass, got: {actor_cls!r}{hint}")
        if mailbox_size is not None and (
            not isinstance(mailbox_size, int) or isinstance(mailbox_size, bool)
            or mailbox_size < 1
        ):
            raise ValueError(f"mailbox_size must be a positive int or None, got: {mailbox_size!r}")
        if overflow not in OVERFLOW_POLICIES:
            raise ValueError(f"overflow must be one of {OVERFLOW_POLICIES}, got: {overflow!r}")
        self._check_open()
        parent = current_process_var.get()
        if parent is not None and parent.rt is not self:
            parent = None
        if link and parent is None:
            raise RuntimeError(
                "link=True needs a calling actor to link to; use self.spawn_link() inside "
                "an actor, or monitor=True from outside"
            )
        actor = actor_cls()
        proc = P.Process(
            self,
            _new(Pid, self.node, next(self._serial)),
            actor,
            name,
            parent,
            mailbox_size,
            overflow,
        )
        actor._proc = proc
        if name is not None:
            self._register_name(name, proc)
        self._procs[proc.pid] = proc
        self._spawned += 1
        if link:
            P.link(parent, proc)  # type: ignore[arg-type]
        token = current_process_var.set(proc)
        try:
            await actor.init(*args, **kwargs)
        except Exception as exc:
            current_process_var.reset(token)
            if parent is not None:
                # The spawner learns of the failure from StartError, not an exit signal.
                P.unlink(parent, proc)
            P.finish(proc, exc)
            raise StartError(actor_cls.__qualname__, exc) from exc
        except BaseException:
            current_process_var.reset(token)
            P.finish(proc, "killed")
            raise
        current_process_var.reset(token)
        if proc.kill_reason is not None:
            if parent is not None:
                P.unlink(parent, proc)
            P.finish(proc, proc.kill_reason)
            raise StartError(actor_cls.__qualname__, proc.kill_reason)
        proc.state = P.RUNNING
        self._backend.start_actor(proc, P.serve)
        if self.telemetry.active:
            self.telemetry.emit(
                ("foundation", "actor", "spawn"),
                {},
                {"pid": proc.pid, "name": name, "actor": actor_cls.__qualname__},
            )
        if monitor:
            if parent is not None:
                return proc.ref, self._monitor_from(parent, proc.ref)
            return proc.ref, self.monitor(proc.ref)
        return proc.ref

    def _register_name(self, name: Any, proc: P.Process) -> None:
        registry, key = split_name(self, name)
        if not isinstance(registry, Registry):
            raise TypeError(f"a via name is ('via', Registry, key), got: {name!r}")
        registry.register(key, proc.ref)

    # -- lookup -------------------------------------------------------------------------
    def whereis(self, name: Any) -> ActorRef | None:
        """The live actor registered under ``name`` (or a via name), else None."""
        registry, key = split_name(self, name)
        return registry.whereis(key)  # type: ignore[no-any-return]

    def call(
        self, target: Any, request: Any, timeout: float | None = 5.0
    ) -> Coroutine[Any, Any, Any]:
        """Call an actor by ref (as ``ref.call``) or by registered name.

        A call by name waits, until ``timeout``, for an actor to be registered under
        the name (a supervisor restarting it), and resends the request if the old
        incarnation died before taking it; a call by ref fails at once (``noproc``).
        """
        # Returns the coroutine itself (``await rt.call(...)``): no frame of its own.
        if isinstance(target, ActorRef):
            return target.call(request, timeout)
        return call_by_name(self, target, request, timeout)

    def call_soon_threadsafe(self, fn: Callable[..., Any], *args: Any) -> None:
        """Schedule ``fn(*args)`` on the runtime's loop from any thread (a bridge's hook).

        Allowed while the runtime shuts down (actors still run ``terminate`` then);
        refused with ``RuntimeClosed`` once it has stopped.
        """
        if not self._started or self._closed:
            self._check_open()
        self._backend.call_soon_threadsafe(fn, *args)

    def ref_of(self, pid: Pid) -> ActorRef:
        """The ref of ``pid`` (a detached, dead ref if no such actor lives here)."""
        proc = self._procs.get(pid)
        return proc.ref if proc is not None else ActorRef._from_pid(pid)

    def actors(self) -> list[ActorRef]:
        """Refs of every live actor, oldest first."""
        return [p.ref for p in sorted(self._procs.values(), key=lambda p: p.pid)]

    def info(self, ref: ActorRef) -> dict[str, Any] | None:
        """Introspection of a live actor (as ``erlang:process_info``), None if dead."""
        return P.process_info(ref._proc)

    # -- signals, links, monitors ---------------------------------------------------------
    def exit(self, ref: ActorRef, reason: Any) -> None:
        """Send ``ref`` an exit signal with ``reason`` (Erlang ``exit/2``)."""
        self._exit_from(current_process_var.get(), ref, reason)

    def _exit_from(self, sender: P.Process | None, ref: ActorRef, reason: Any) -> None:
        if not isinstance(ref, ActorRef):
            raise TypeError(f"exit() takes an ActorRef, got: {ref!r}")
        target = ref._proc
        if target is None:
            return
        P.exit_signal(
            target, None if sender is None else sender.pid, reason, link=False, sender=sender
        )

    def _resolve(self, target: Any) -> tuple[P.Process | None, Pid | None]:
        if isinstance(target, ActorRef):
            return target._proc, target.pid
        ref = self.whereis(target)
        if ref is None:
            return None, None
        return ref._proc, ref.pid

    def _link(self, proc: P.Process, ref: ActorRef) -> None:
        if not isinstance(ref, ActorRef):
            raise TypeError(f"link() takes an ActorRef, got: {ref!r}")
        other = ref._proc
        if other is None or other.state == P.DEAD:
            P.exit_signal(proc, ref.pid, "noproc", link=True, sender=None)
            return
        P.link(proc, other)

    def _unlink(self, proc: P.Process, ref: ActorRef) -> None:
        if ref._proc is not None:
            P.unlink(proc, ref._proc)

    def _new_mref(self) -> MonitorRef:
        mref: MonitorRef = MonitorRef._create(next(self._mref_serial))
        return mref

    def _monitor_from(self, watcher: P.Process, target: Any) -> MonitorRef:
        proc, pid = self._resolve(target)
        mref = self._new_mref()
        P.monitor(watcher, proc, pid if pid is not None else target, mref)
        return mref

    def monitor(self, target: ActorRef | Any) -> Monitor:
        """Monitor from any task: ``await rt.monitor(ref).wait()`` returns the ``Down``."""
        proc, pid = self._resolve(target)
        mref = self._new_mref()
        mon: Monitor = Monitor._create(self, mref)
        if proc is not None and proc.state != P.DEAD:
            self._ext_monitors[mref] = proc

        def deliver(down: Any) -> None:
            self._ext_monitors.pop(mref, None)
            mon._deliver(down)

        P.monitor(deliver, proc, pid if pid is not None else target, mref)
        return mon

    def _demonitor(self, mref: MonitorRef) -> None:
        proc = self._ext_monitors.pop(mref, None)
        if proc is not None and proc.monitors is not None:
            proc.monitors.pop(mref, None)

    # -- timers -------------------------------------------------------------------------
    def send_after(self, delay: float, ref: ActorRef, msg: Any) -> TimerRef:
        """Deliver ``msg`` to ``ref``'s ``handle_info`` after ``delay`` runtime seconds."""
        check_timeout(delay, "delay")
        self._check_open()
        return TimerRef(self._timers, self._timers.add(delay, T_.deliver_info, (ref, msg)))

    def cast_after(self, delay: float, ref: ActorRef, msg: Any) -> TimerRef:
        """Deliver ``msg`` to ``ref``'s ``handle_cast`` after ``delay`` runtime seconds."""
        check_timeout(delay, "delay")
        self._check_open()
        return TimerRef(self._timers, self._timers.add(delay, T_.deliver_cast, (ref, msg)))

    async def sleep(self, delay: float) -> None:
        """Sleep ``delay`` seconds of the runtime clock (instant on a ``VirtualClock``)."""
        if delay < 0:
            raise ValueError(f"delay must be >= 0, got: {delay!r}")
        fut = self._new_future()
        self._timers.add(delay, T_.resolve_none, fut)
        await fut

    async def _wait_with_timeout(self, fut: Any, timeout: float | None) -> bool:
        """Await ``fut`` for at most ``timeout`` runtime seconds; False on timeout."""
        if timeout is None:
            await fut
            return True
        if fut.done():
            return True
        entry = self._timers.add(timeout, T_.time_out, fut)
        try:
            result = await fut
        finally:
            if entry[2] is not None:
                self._timers.cancel(entry)
        return result is not T_.TIMED_OUT

    async def wait_idle(self) -> None:
        """Return once no task is runnable: every actor waits on its mailbox or a timer."""
        self._check_open()
        clock = self.clock
        if clock.virtual and getattr(clock, "autojump", False):
            # The timer driver spins to detect idleness before a jump; a second spinner
            # would keep it (and itself) busy forever, so the driver answers instead.
            await self._timers.wait_idle()
            return
        if self._idle_waiters is not None:
            # Another task already watches for idleness: a second watcher would see the
            # first one as runnable forever, so share its answer.
            fut = self._new_future()
            self._idle_waiters.append(fut)
            await fut
            return
        self._idle_waiters = []
        try:
            await self._backend.wait_all_blocked()
        finally:
            waiters, self._idle_waiters = self._idle_waiters, None
            for fut in waiters:
                if not fut.done():
                    fut.set_result(None)

    async def to_thread(self, fn: Callable[..., T], *args: Any) -> T:
        """Run blocking ``fn(*args)`` in a worker thread, keeping the loop free."""
        return await anyio.to_thread.run_sync(fn, *args)

    # -- kernel callbacks -----------------------------------------------------------------
    def _on_exit(self, proc: P.Process, reason: Any) -> None:
        self._exited += 1
        if isinstance(reason, BaseException):
            self._crashed += 1
        if self.telemetry.active:
            self.telemetry.emit(
                ("foundation", "actor", "exit"),
                {},
                {
                    "pid": proc.pid,
                    "name": proc.name,
                    "actor": proc.actor.__class__.__qualname__,
                    "reason": reason,
                },
            )
        if self._all_exited is not None and not self._procs and not self._all_exited.done():
            self._all_exited.set_result(None)

    def statistics(self) -> RuntimeStatistics:
        return RuntimeStatistics(
            actors=len(self._procs),
            spawned=self._spawned,
            exited=self._exited,
            crashed=self._crashed,
            timers_pending=self._timers.pending() if self._timers is not None else 0,
            dropped_to_dead=self._dropped,
        )
