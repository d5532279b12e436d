"""What supervisors share: a child's record, starting one, state hand-over, reports."""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any

from foundation import Actor, ActorRef, StartError, lowlevel

from ._exceptions import InvalidSupervisorFlags, StartChildError
from ._spec import ChildSpec

log = logging.getLogger("supervision")

STRATEGIES = ("one_for_one", "one_for_all", "rest_for_one")
AUTO_SHUTDOWN = ("never", "any_significant", "all_significant")


@dataclass(frozen=True, slots=True)
class ChildInfo:
    """One row of ``which_children``: ``status`` is ``"running"``, ``"restarting"``
    (a restart failed and is retried) or ``"undefined"`` (not running)."""

    id: Any
    ref: ActorRef | None
    status: str
    type: str
    restart: str
    restarts: int


@dataclass(frozen=True, slots=True)
class ChildCounts:
    """``count_children``: specs known, children alive, and how many of each type."""

    specs: int
    active: int
    supervisors: int
    workers: int


@dataclass(frozen=True, slots=True)
class SupervisorStatistics:
    """A supervisor's counters: restarts inside the intensity window and in total."""

    strategy: str
    max_restarts: int
    max_seconds: float
    restarts_in_window: int
    restarts_total: int
    specs: int
    active: int
    supervisors: int
    workers: int


class Child:
    """A supervisor's record of one child (its spec and current incarnation)."""

    __slots__ = ("handover", "plain", "ref", "restarts", "spec", "status")

    def __init__(self, spec: ChildSpec) -> None:
        self.spec = spec
        # True when the child's class is known and defines no snapshot(): its exits
        # skip the hand-over check (a restart's hot path).
        start = spec._start
        self.plain = isinstance(start, tuple) and not hasattr(start[0], "snapshot")
        self.ref: ActorRef | None = None
        self.status = "undefined"
        self.restarts = 0
        self.handover: tuple[Any] | None = None

    def info(self) -> ChildInfo:
        spec = self.spec
        return ChildInfo(spec.id, self.ref, self.status, spec.type, spec.restart, self.restarts)


def check_flags(strategy: str, max_restarts: int, max_seconds: float, auto_shutdown: str) -> None:
    """Validate supervisor flags with Erlang's reason tags."""
    if strategy not in STRATEGIES:
        raise InvalidSupervisorFlags(
            "invalid_strategy", f"strategy must be one of {STRATEGIES}, got: {strategy!r}"
        )
    if not isinstance(max_restarts, int) or isinstance(max_restarts, bool) or max_restarts < 0:
        raise InvalidSupervisorFlags(
            "invalid_intensity", f"max_restarts must be an int >= 0, got: {max_restarts!r}"
        )
    if (
        not isinstance(max_seconds, (int, float))
        or isinstance(max_seconds, bool)
        or not math.isfinite(max_seconds)
        or max_seconds <= 0
    ):
        raise InvalidSupervisorFlags(
            "invalid_period", f"max_seconds must be a positive number, got: {max_seconds!r}"
        )
    if auto_shutdown not in AUTO_SHUTDOWN:
        raise InvalidSupervisorFlags(
            "invalid_auto_shutdown",
            f"auto_shutdown must be one of {AUTO_SHUTDOWN}, got: {auto_shutdown!r}",
        )


async def start_child_process(sup: Actor, spec: ChildSpec) -> ActorRef | None:
    """Start ``spec`` linked to ``sup``; None when its start function returned None.

    Raises:
        StartChildError: ``init`` or the start function raised, or it returned
            something other than an ``ActorRef`` or None.
    """
    start = spec._start
    try:
        if isinstance(start, tuple):
            cls, args, kwargs = start
            spawned: ActorRef = await sup.runtime.spawn(cls, *args, link=True, **kwargs)
            return spawned
        ref: Any = await start()
    except StartError as exc:
        cause = exc.__cause__ if exc.__cause__ is not None else exc
        raise StartChildError(spec.id, exc.reason) from cause
    except Exception as exc:
        raise StartChildError(spec.id, exc) from exc
    if ref is None:
        return None
    if not isinstance(ref, ActorRef):
        err = TypeError(
            f"the start function of child {spec.id!r} returned {ref!r}, not an ActorRef"
        )
        raise StartChildError(spec.id, err) from err
    sup.link(ref)  # idempotent when the start function already linked it
    return ref


def take_snapshot(child: Child, old: ActorRef) -> None:
    """Keep ``snapshot()`` of an incarnation that exited through ``terminate``."""
    child.handover = None
    actor = lowlevel.actor_instance(old)
    if not hasattr(type(actor), "snapshot"):
        return
    snapshot = getattr(actor, "snapshot", None)
    if snapshot is None or not callable(snapshot):
        return
    if not lowlevel.exited_through_terminate(old):
        return
    try:
        child.handover = (snapshot(),)
    except Exception as exc:
        log.error(
            "snapshot() of child %r raised %r; the new incarnation starts fresh",
            child.spec.id,
            exc,
            exc_info=exc,
        )


def restore(child: Child, new: ActorRef) -> None:
    """Hand a kept snapshot to the new incarnation before its first message."""
    handover, child.handover = child.handover, None
    if handover is None:
        return
    restore_fn = getattr(lowlevel.actor_instance(new), "restore", None)
    if restore_fn is None or not callable(restore_fn):
        return
    try:
        restore_fn(handover[0])
    except Exception as exc:
        log.error(
            "restore() of child %r raised %r; it keeps the state init gave it",
            child.spec.id,
            exc,
            exc_info=exc,
        )


def emit(sup: Actor, what: tuple[str, str], measurements: dict[str, Any], **meta: Any) -> None:
    """Emit ``("supervision", *what)`` with the supervisor's pid and name."""
    telemetry = sup.runtime.telemetry
    if telemetry.active:
        meta["supervisor"] = sup.pid
        meta["supervisor_name"] = sup.ref.name
        telemetry.emit(("supervision", *what), measurements, meta)


def record_start(
    sup: Actor, by_pid: dict[Any, Child], child: Child, ref: ActorRef, restart_reason: Any
) -> None:
    """Book a started incarnation: its ref, hand-over, restart count and telemetry.

    A start without a restart reason (the first one, or ``restart_child``) is not a
    restart: restart counts and events follow the supervisor's own restarts only.
    """
    child.ref = ref
    child.status = "running"
    by_pid[ref.pid] = child
    if child.handover is not None:
        restore(child, ref)
    if restart_reason is None:
        if sup._proc.rt.telemetry.active:
            emit(sup, ("child", "start"), {}, id=child.spec.id, pid=ref.pid)
        return
    child.restarts += 1
    if sup._proc.rt.telemetry.active:
        emit(
            sup,
            ("child", "restart"),
            {"restarts": child.restarts},
            id=child.spec.id,
            pid=ref.pid,
            reason=restart_reason,
        )
