"""``ActorRef`` (the handle every sender holds) and ``Caller`` (the reply slot of a call)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, final

from ._context import current_process_var, current_runtime_var
from ._exceptions import ActorDead, CallTimeout, RuntimeClosed
from ._messages import Info, System
from ._pid import MonitorRef, Pid, _NoPublicConstructor

if TYPE_CHECKING:
    from ._process import Process
    from ._runtime import Runtime

_DEAD = 3  # Process.state once exited (mirrors _process.DEAD without an import cycle)


def check_timeout(timeout: float | None, what: str = "timeout") -> None:
    """Refuse timeouts that cannot mean anything (zero, negative, NaN)."""
    if timeout is not None and not timeout > 0:
        raise ValueError(f"{what} must be a positive number of seconds or None, got: {timeout!r}")


@final
class ActorRef(metaclass=_NoPublicConstructor):
    """The address of one actor incarnation.

    Refs hash and compare by pid, encode with ``foundation.codec`` (ext type), and stay
    valid after the actor died: ``cast``/``send`` to a dead actor are dropped, as in
    Erlang; ``call`` and ``stop`` raise ``ActorDead`` at once.
    """

    __slots__ = ("_mb", "_proc", "pid")

    def __init__(self, pid: Pid, proc: Process | None) -> None:
        self.pid = pid
        self._proc = proc
        # The mailbox, not a bound ``put``: a bound method would cost 64 bytes per actor.
        self._mb = proc.mailbox if proc is not None else _DETACHED

    @classmethod
    def _from_pid(cls, pid: Pid) -> ActorRef:
        """The ref of ``pid`` in the current runtime, or a detached one (always dead)."""
        rt = current_runtime_var.get()
        if rt is not None:
            proc = rt._procs.get(pid)
            if proc is not None:
                return proc.ref
        ref: ActorRef = cls._create(pid, None)
        return ref

    # -- identity ---------------------------------------------------------------------
    def __hash__(self) -> int:
        return self.pid._hash

    def __eq__(self, other: object) -> bool:
        if other.__class__ is ActorRef:
            return self.pid == other.pid
        return NotImplemented

    def __lt__(self, other: ActorRef) -> bool:
        return self.pid < other.pid

    def __repr__(self) -> str:
        proc = self._proc
        if proc is None:
            return f"ActorRef({self.pid!r}, detached)"
        name = f" {proc.name!r}" if proc.name is not None else ""
        return f"ActorRef({self.pid!r} {proc.actor.__class__.__qualname__}{name})"

    def __reduce__(self) -> Any:
        raise TypeError("ActorRef cannot be pickled; encode it with foundation.codec")

    @property
    def is_alive(self) -> bool:
        """Whether the actor has not exited yet."""
        proc = self._proc
        return proc is not None and proc.state != _DEAD

    @property
    def name(self) -> Any:
        """The name the actor was spawned with (None if it had none)."""
        return None if self._proc is None else self._proc.name

    # -- messages ---------------------------------------------------------------------
    def cast(self, msg: Any) -> None:
        """Deliver ``msg`` to ``handle_cast``; never waits. Dropped if the actor is dead."""
        self._mb.put(msg)

    def send(self, msg: Any) -> None:
        """Deliver ``msg`` to ``handle_info`` (a plain Erlang ``!``); never waits."""
        self._mb.put(Info(msg))

    async def cast_wait(self, msg: Any) -> None:
        """Like ``cast``, but waits for room in a bounded ``"block"`` mailbox."""
        await self._wait_room()
        self._mb.put(msg)

    async def send_wait(self, msg: Any) -> None:
        """Like ``send``, but waits for room in a bounded ``"block"`` mailbox."""
        await self._wait_room()
        self._mb.put(Info(msg))

    async def _wait_room(self) -> None:
        proc = self._proc
        if proc is None:
            return
        mb = proc.mailbox
        if mb.overflow == "block" and not mb.closed:
            await mb.wait_for_room()  # type: ignore[attr-defined]

    async def call(self, request: Any, timeout: float | None = 5.0) -> Any:
        """Send ``request`` to ``handle_call`` and wait for the reply.

        Raises:
            ActorDead: the actor is dead, or exited before replying (with its reason).
            CallTimeout: no reply within ``timeout`` seconds of the runtime clock.
        """
        proc = self._proc
        if proc is None or proc.state == _DEAD:
            if proc is not None and proc.rt._closed:
                raise RuntimeClosed(f"the runtime of {self.pid} has stopped")
            raise ActorDead(self.pid, "noproc", handled=False)
        if timeout is not None and not timeout > 0:
            check_timeout(timeout)
        rt = proc.rt
        fut = rt._new_future()
        caller = _new(Caller, fut, request, current_process_var.get())
        caller._target = proc
        mb = proc.mailbox
        if mb.capacity is not None and mb.overflow == "block":
            await mb.wait_for_room()  # type: ignore[attr-defined]
            if proc.state == _DEAD:
                raise ActorDead(self.pid, proc.reason, handled=False)
        mb.put(caller)
        if timeout is not None:
            caller._timeout = timeout
            rt._timers.add_fifo(timeout, fut, _expire, caller)
        return await fut

    async def stop(self, reason: Any = "normal", timeout: float | None = 5.0) -> None:
        """Stop the actor with ``reason`` (``terminate`` runs) and wait until it exited.

        Raises:
            ActorDead: the actor was not alive (``"noproc"``).
            CallTimeout: it did not exit within ``timeout``; it is then killed.
            RuntimeClosed: the actor's runtime has stopped.
        """
        check_timeout(timeout)
        proc = self._proc
        if proc is None or proc.state == _DEAD:
            if proc is not None and proc.rt._closed:
                raise RuntimeClosed(f"the runtime of {self.pid} has stopped")
            raise ActorDead(self.pid, "noproc")
        rt = proc.rt
        fut = rt._new_future()
        if proc.exit_waiters is None:
            proc.exit_waiters = []
        proc.exit_waiters.append(fut)
        proc.mailbox.put_system(System("stop", reason))
        if timeout is None:
            await fut
            return
        done = await rt._wait_with_timeout(fut, timeout)
        if not done:
            from ._process import kill

            kill(proc, "killed")
            raise CallTimeout(self.pid, timeout)

    def kill(self) -> None:
        """Send the untrappable ``"kill"`` exit signal: the actor exits with ``"killed"``."""
        proc = self._proc
        if proc is not None:
            if proc.rt._closed:
                raise RuntimeClosed(f"the runtime of {self.pid} has stopped")
            proc.rt.exit(self, "kill")


_new = type.__call__  # builds a no-public-constructor object without the metaclass hop


class _DetachedMailbox:
    """Stands in for the mailbox of a ref with no local process: sends are dropped."""

    capacity = None
    overflow = None
    closed = True

    def put(self, msg: Any) -> None:
        """Dropped, like a send to a dead pid."""


_DETACHED = _DetachedMailbox()


def _expire(caller: Caller) -> None:
    fut = caller._fut
    if not fut.done():
        target = caller._target
        fut.set_exception(CallTimeout(target.pid, caller._timeout))
        target.rt._on_call_timeout(target, caller)


@final
class Caller(metaclass=_NoPublicConstructor):
    """Who is waiting for a reply; ``handle_call`` gets one and may answer it later.

    Return ``NoReply`` from ``handle_call`` and call ``caller.reply(value)`` when ready.
    A reply to a caller that gave up (timeout, its own death) is discarded.
    """

    __slots__ = ("_fut", "_target", "_timeout", "from_proc", "request")

    def __init__(self, fut: Any, request: Any, from_proc: Process | None) -> None:
        self._fut = fut
        self.request = request
        self.from_proc = from_proc
        self._timeout: float = 0.0
        self._target: Any = None

    @property
    def pid(self) -> Pid | None:
        """The calling actor's pid (None when called from outside any actor)."""
        return None if self.from_proc is None else self.from_proc.pid

    @property
    def waiting(self) -> bool:
        """Whether the caller still waits for a reply."""
        return not self._fut.done()

    def reply(self, value: Any) -> bool:
        """Answer the call; False if the caller no longer waits (reply discarded)."""
        fut = self._fut
        if fut.done():
            return False
        fut.set_result(value)
        return True

    def fail(self, exc: BaseException) -> bool:
        """Answer the call with an exception: ``call`` raises ``exc`` in the caller
        (a bridge relaying a foreign actor's error); False if the caller stopped waiting."""
        if not isinstance(exc, BaseException):
            raise TypeError(f"fail() takes an exception, got: {exc!r}")
        fut = self._fut
        if fut.done():
            return False
        fut.set_exception(exc)
        return True

    def _fail(self, exc: BaseException) -> None:
        fut = self._fut
        if not fut.done():
            fut.set_exception(exc)

    def __repr__(self) -> str:
        return f"Caller(from={self.pid!r})"


@final
class Monitor(metaclass=_NoPublicConstructor):
    """A monitor taken from outside any actor: ``await mon.wait()`` returns its ``Down``."""

    __slots__ = ("_down", "_fut", "_rt", "ref")

    def __init__(self, rt: Runtime, ref: MonitorRef) -> None:
        self._rt = rt
        self.ref = ref
        self._fut = rt._new_future()
        self._down: Any = None

    def _deliver(self, down: Any) -> None:
        self._down = down
        if not self._fut.done():
            self._fut.set_result(down)

    @property
    def down(self) -> Any:
        """The ``Down`` message once delivered, else None."""
        return self._down

    async def wait(self, timeout: float | None = 5.0) -> Any:
        """Wait for the ``Down`` (runtime clock); raise ``TimeoutError`` if none came."""
        check_timeout(timeout)
        if self._down is not None:
            return self._down
        if not await self._rt._wait_with_timeout(self._fut, timeout):
            # The timer resolved the future: a later wait (a kill, then wait) needs a new one.
            self._fut = self._rt._new_future()
            raise TimeoutError(f"no Down for monitor {self.ref!r} within {timeout} s")
        return self._down

    def cancel(self) -> None:
        """Remove the monitor; no ``Down`` is delivered afterwards."""
        self._rt._demonitor(self.ref)
