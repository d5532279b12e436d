"""``ChildSpec``: how a supervisor starts, restarts and stops one child.

A spec is validated when it is built, with Erlang's reason tags, so a typo fails at
the line that made it and never inside a running tree::

    ChildSpec("db", (Database, ("postgres://...",)), restart="permanent", shutdown=10.0)
    child_spec(Counter, 0, id="counter", name="counter")   # the same, shorter

``start`` is an ``Actor`` subclass, a tuple ``(ActorCls, args)`` or
``(ActorCls, args, kwargs)`` (``kwargs`` go to ``init``, and may hold spawn options
such as ``name``), or an ``async`` function that starts an actor and returns its ref
(or None: Erlang's ``ignore``, the child is kept as not running).

Defaults follow Elixir: ``restart="permanent"``, ``shutdown=5.0`` seconds for a worker
and ``"infinity"`` for a supervisor, ``type="worker"``, ``significant=False``.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Awaitable, Callable, Hashable, Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

from foundation import Actor

from ._exceptions import InvalidChildSpec

Restart = Literal["permanent", "transient", "temporary"]
Shutdown = float | Literal["brutal_kill", "infinity"]
ChildType = Literal["worker", "supervisor"]
StartFn = Callable[[], Awaitable[Any]]

RESTART_VALUES = ("permanent", "transient", "temporary")
TYPE_VALUES = ("worker", "supervisor")
DEFAULT_WORKER_SHUTDOWN = 5.0
builtins_type = type  # child_spec() takes a ``type=`` option, as Elixir does


@dataclass(frozen=True)
class ChildSpec:
    """One child of a supervisor.

    Attributes:
        id: unique within its supervisor (any hashable); names the child in
            ``terminate_child``/``restart_child``/``delete_child`` and the tree dump.
        start: what to start (see the module docstring).
        restart: ``"permanent"`` (always restarted), ``"transient"`` (restarted only
            after an abnormal exit: not ``"normal"``, ``"shutdown"`` or
            ``("shutdown", x)``), ``"temporary"`` (never restarted; its spec is
            dropped when it exits).
        shutdown: seconds the child gets to exit after the ``"shutdown"`` signal before
            it is killed; ``"brutal_kill"`` kills at once; ``"infinity"`` waits (the
            default for supervisors). None picks the default for ``type``.
        type: ``"worker"`` or ``"supervisor"`` (a nested tree).
        significant: with the supervisor's ``auto_shutdown``, this child's own exit
            may shut the supervisor down. Only transient and temporary children.
    """

    id: Hashable
    start: Any
    restart: Restart = "permanent"
    shutdown: Shutdown | None = None
    type: ChildType = "worker"
    significant: bool = False
    _start: tuple[Any, tuple[Any, ...], dict[str, Any]] | StartFn = field(
        init=False, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        try:
            hash(self.id)
        except TypeError:
            raise InvalidChildSpec(
                "invalid_child_id", f"a child id must be hashable, got: {self.id!r}"
            ) from None
        if self.restart not in RESTART_VALUES:
            raise InvalidChildSpec(
                "invalid_restart_type",
                f"child {self.id!r}: restart must be one of {RESTART_VALUES}, "
                f"got: {self.restart!r}",
            )
        if self.type not in TYPE_VALUES:
            raise InvalidChildSpec(
                "invalid_child_type",
                f"child {self.id!r}: type must be one of {TYPE_VALUES}, got: {self.type!r}",
            )
        shutdown = self.shutdown
        if shutdown is None:
            shutdown = "infinity" if self.type == "supervisor" else DEFAULT_WORKER_SHUTDOWN
            object.__setattr__(self, "shutdown", shutdown)
        valid_number = (
            isinstance(shutdown, (int, float))
            and not isinstance(shutdown, bool)
            and math.isfinite(shutdown)
            and shutdown > 0
        )
        if not valid_number and shutdown not in ("brutal_kill", "infinity"):
            raise InvalidChildSpec(
                "invalid_shutdown",
                f"child {self.id!r}: shutdown is a positive number of seconds, "
                f"'brutal_kill' or 'infinity', got: {shutdown!r}",
            )
        if not isinstance(self.significant, bool):
            raise InvalidChildSpec(
                "invalid_significant",
                f"child {self.id!r}: significant must be True or False, got: {self.significant!r}",
            )
        if self.significant and self.restart == "permanent":
            raise InvalidChildSpec(
                "bad_combination",
                f"child {self.id!r}: a permanent child cannot be significant (it is always "
                "restarted); use restart='transient' or 'temporary'",
            )
        object.__setattr__(self, "_start", _normalise_start(self.id, self.start))


def _normalise_start(child_id: Any, start: Any) -> Any:
    """``(cls, args, kwargs)`` for an actor start, or the async start function."""
    if isinstance(start, type) and issubclass(start, Actor):
        return (start, (), {})
    if (
        isinstance(start, tuple)
        and start
        and isinstance(start[0], type)
        and issubclass(start[0], Actor)
    ):
        if len(start) in (2, 3) and isinstance(start[1], (tuple, list)):
            kwargs = start[2] if len(start) == 3 else {}
            if isinstance(kwargs, dict) and all(isinstance(k, str) for k in kwargs):
                return (start[0], tuple(start[1]), dict(kwargs))
    elif callable(start) and not isinstance(start, type):
        fn = start.__call__ if not inspect.isroutine(start) else start
        if inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(start):
            return start
        raise InvalidChildSpec(
            "invalid_mfa",
            f"child {child_id!r}: a start function must be 'async def' and return an "
            f"ActorRef (or None), got: {start!r}",
        )
    raise InvalidChildSpec(
        "invalid_mfa",
        f"child {child_id!r}: start is an Actor subclass, (ActorCls, args), "
        f"(ActorCls, args, kwargs) or an async function, got: {start!r}",
    )


def child_spec(
    actor_cls: type[Actor],
    *args: Any,
    id: Hashable | None = None,
    restart: Restart = "permanent",
    shutdown: Shutdown | None = None,
    type: ChildType | None = None,
    significant: bool = False,
    **kwargs: Any,
) -> ChildSpec:
    """A spec that spawns ``actor_cls(*args, **kwargs)``; the id defaults to the class
    name (or ``name=`` when given) and ``type`` to ``"supervisor"`` for supervisors."""
    if not (isinstance(actor_cls, builtins_type) and issubclass(actor_cls, Actor)):
        raise InvalidChildSpec(
            "invalid_mfa", f"child_spec() takes an Actor subclass, got: {actor_cls!r}"
        )
    if type is None:
        type = "supervisor" if getattr(actor_cls, "_is_supervisor", False) else "worker"
    if id is None:
        id = kwargs.get("name") or actor_cls.__qualname__
    return ChildSpec(
        id,
        (actor_cls, args, kwargs),
        restart=restart,
        shutdown=shutdown,
        type=type,
        significant=significant,
    )


def as_child_spec(child: Any) -> ChildSpec:
    """Accept a ``ChildSpec``, an ``Actor`` subclass or ``(ActorCls, *args)``."""
    if isinstance(child, ChildSpec):
        return child
    if isinstance(child, builtins_type) and issubclass(child, Actor):
        return child_spec(child)
    if (
        isinstance(child, tuple)
        and child
        and isinstance(child[0], builtins_type)
        and issubclass(child[0], Actor)
    ):
        return child_spec(child[0], *child[1:])
    raise InvalidChildSpec(
        "invalid_child_spec",
        f"a child is a ChildSpec, an Actor subclass or (ActorCls, *args), got: {child!r}",
    )


def check_child_specs(children: Iterable[Any], auto_shutdown: str = "never") -> list[ChildSpec]:
    """Validate a list of children as ``Supervisor`` does; return them as specs.

    Raises:
        InvalidChildSpec: a malformed child, a duplicate id (``duplicate_child_id``),
            or a significant child under ``auto_shutdown="never"``.
    """
    if isinstance(children, (str, bytes)) or not isinstance(children, Iterable):
        raise InvalidChildSpec("invalid_child_spec", f"children must be a list, got: {children!r}")
    specs = [as_child_spec(c) for c in children]
    seen: set[Hashable] = set()
    for spec in specs:
        if spec.id in seen:
            raise InvalidChildSpec("duplicate_child_id", f"two children have the id {spec.id!r}")
        seen.add(spec.id)
        check_significant(spec, auto_shutdown)
    return specs


def check_significant(spec: ChildSpec, auto_shutdown: str) -> None:
    if spec.significant and auto_shutdown == "never":
        raise InvalidChildSpec(
            "bad_combination",
            f"child {spec.id!r} is significant but the supervisor's auto_shutdown is "
            "'never'; set auto_shutdown='any_significant' or 'all_significant'",
        )


def should_restart(restart: str, reason: Any) -> bool:
    """Whether a child exiting with ``reason`` is restarted under its restart type."""
    if restart == "permanent":
        return True
    if restart == "temporary":
        return False
    return not is_normal_exit(reason)


def is_normal_exit(reason: Any) -> bool:
    """``"normal"``, ``"shutdown"`` and ``("shutdown", term)``: exits a transient child
    is not restarted after (and that the logger does not report as crashes)."""
    if reason == "normal" or reason == "shutdown":
        return True
    return isinstance(reason, tuple) and len(reason) == 2 and reason[0] == "shutdown"
