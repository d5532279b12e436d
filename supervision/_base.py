"""What ``Supervisor`` and ``DynamicSupervisor`` share: starting one, nesting it, the
client functions that read a tree, and the restart intensity with its give-up."""

from __future__ import annotations

import logging
from typing import Any

from foundation import Actor, ActorRef, current_runtime

from ._calls import TryAgain, call_supervisor
from ._child import Child, ChildCounts, ChildInfo, SupervisorStatistics, emit
from ._exceptions import StartChildError
from ._intensity import RestartWindow
from ._spec import ChildSpec, as_child_spec

log = logging.getLogger("supervision")


class SupervisorBase(Actor):
    """The common part of the supervisors; not used on its own."""

    _is_supervisor = True
    strategy = "one_for_one"
    _window: RestartWindow
    _restarts_total: int
    _stopping: bool

    # -- starting and nesting ------------------------------------------------------------
    @classmethod
    async def start(
        cls, *args: Any, name: Any = None, link: bool = False, **kwargs: Any
    ) -> ActorRef:
        """Spawn this supervisor (``link=True`` links it to the calling actor).

        Raises:
            InvalidChildSpec / InvalidSupervisorFlags: before anything starts.
            StartError: a child failed to start; ``__cause__`` is the
                ``StartChildError`` and the children already started were stopped.
        """
        args, kwargs = cls._checked_start_args(args, kwargs)
        ref: ActorRef = await current_runtime().spawn(cls, *args, name=name, link=link, **kwargs)
        return ref

    @classmethod
    def _checked_start_args(
        cls, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> tuple[tuple[Any, ...], dict[str, Any]]:
        """Validate ``start``'s arguments before the spawn (a clear error, not a
        ``StartError``); a subclass with its own ``init`` signature is checked there."""
        return args, kwargs

    @classmethod
    def child_spec(
        cls,
        *args: Any,
        id: Any = None,
        restart: str = "permanent",
        shutdown: Any = "infinity",
        significant: bool = False,
        **kwargs: Any,
    ) -> ChildSpec:
        """A spec that starts this supervisor as a child of another (a subtree)."""
        if id is None:
            id = kwargs.get("name") or cls.__qualname__
        return ChildSpec(
            id,
            (cls, args, kwargs),
            restart=restart,  # type: ignore[arg-type]
            shutdown=shutdown,
            type="supervisor",
            significant=significant,
        )

    # -- client API shared by both kinds ------------------------------------------------
    @staticmethod
    async def start_child(sup: Any, spec: Any, timeout: float | None = None) -> ActorRef | None:
        """Start a child from ``spec`` under ``sup`` (a ref or a registered name).

        Raises:
            ChildAlreadyStarted / ChildAlreadyPresent: the id is taken (``Supervisor``).
            MaxChildren: the supervisor is full (``DynamicSupervisor``).
            StartChildError: it failed to start (its spec is not kept).
        """
        return await call_supervisor(sup, "start_child", as_child_spec(spec), timeout)  # type: ignore[no-any-return]

    @staticmethod
    async def which_children(sup: Any, timeout: float | None = 5.0) -> list[ChildInfo]:
        """The children in start order: id, ref, status, type, restart, restarts."""
        result: list[ChildInfo] = await call_supervisor(sup, "which_children", None, timeout)
        return result

    @staticmethod
    async def count_children(sup: Any, timeout: float | None = 5.0) -> ChildCounts:
        """How many specs, live children, supervisors and workers."""
        result: ChildCounts = await call_supervisor(sup, "count_children", None, timeout)
        return result

    @staticmethod
    async def statistics(sup: Any, timeout: float | None = 5.0) -> SupervisorStatistics:
        """Counts plus restarts inside the intensity window and in total."""
        result: SupervisorStatistics = await call_supervisor(sup, "statistics", None, timeout)
        return result

    # -- shared internals ---------------------------------------------------------------
    def _counts(self) -> ChildCounts:
        raise NotImplementedError

    def _statistics(self) -> SupervisorStatistics:
        counts = self._counts()
        window = self._window
        return SupervisorStatistics(
            self.strategy,
            window.max_restarts,
            window.max_seconds,
            window.count(self._proc.rt.clock.now()),
            self._restarts_total,
            counts.specs,
            counts.active,
            counts.supervisors,
            counts.workers,
        )

    def _intensity_exceeded(self, child: Child, reason: Any) -> bool:
        """Count a restart; past the intensity, report it and give up (True)."""
        window = self._window
        if window.add(self._proc.rt.clock.now()):
            self._restarts_total += 1
            return False
        log.error(
            "%s %r reached its restart intensity (%d restarts in %s s); child %r exited "
            "with %r; shutting down",
            type(self).__qualname__,
            self.pid,
            window.max_restarts,
            window.max_seconds,
            child.spec.id,
            reason,
        )
        emit(
            self,
            ("supervisor", "shutdown"),
            {"restarts": window.max_restarts},
            reason="reached_max_restart_intensity",
            child=child.spec.id,
        )
        self._give_up()
        return True

    def _retry_later(self, child: Child, exc: StartChildError) -> None:
        """A failed restart is retried by a message to self (``try_again_restart``), so
        other requests get in between."""
        log.error(
            "%s %r could not restart child %r: %r; retrying",
            type(self).__qualname__,
            self.pid,
            child.spec.id,
            exc.reason,
        )
        child.status = "restarting"
        self.ref.send(TryAgain(child, exc.reason))

    def _give_up(self) -> None:
        self._stopping = True
        self.stop("shutdown")
