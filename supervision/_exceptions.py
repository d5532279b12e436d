"""The exception tree of supervision.

``SupervisionError``
    Base of everything the behaviours raise on purpose.

``InvalidChildSpec``
    A child spec (or a supervisor's flags) is malformed; ``reason`` is the Erlang tag
    (``invalid_restart``, ``invalid_shutdown``, ``bad_combination``,
    ``duplicate_child_id``, ...). Raised before anything starts.

``StartChildError``
    A child failed to start (its ``init`` raised, or its start function returned
    something that is not an actor). ``__cause__`` is the original failure. When it
    happens while a supervisor starts, the children already started are stopped and
    the supervisor's own start fails with it.

``ChildNotFound``
    No child with that id (or ref) is known to the supervisor.

``ChildAlreadyStarted`` / ``ChildAlreadyPresent``
    ``start_child`` with an id that is running (``ref`` says where) / known but not
    running (use ``restart_child``).

``ChildRunning``
    ``restart_child`` or ``delete_child`` on a child that is running or restarting:
    terminate it first.

``InvalidSupervisorFlags``
    A supervisor option (strategy, max_restarts, max_seconds, auto_shutdown,
    max_children) is malformed; raised before anything starts.

``MaxChildren``
    A ``DynamicSupervisor`` already runs ``max_children`` children.

``TaskFailed``
    A ``TaskSupervisor`` task awaited with ``Task.result`` exited without returning a
    value: it raised (``__cause__`` is the exception, ``reason`` too), or it was stopped
    (``reason`` is ``"shutdown"``, ``"killed"``, ...). A task that is merely slow
    raises ``TimeoutError`` instead and keeps running.
"""

from __future__ import annotations

from typing import Any


class SupervisionError(Exception):
    """Base class of every error the supervision behaviours raise deliberately."""


class InvalidChildSpec(SupervisionError, ValueError):
    """A child spec or supervisor flag is malformed (``reason`` is the Erlang tag)."""

    def __init__(self, reason: str, message: str) -> None:
        self.reason = reason
        super().__init__(f"{reason}: {message}")


class StartChildError(SupervisionError):
    """A child failed to start; ``__cause__`` carries the failure."""

    def __init__(self, child_id: Any, reason: Any) -> None:
        self.child_id = child_id
        self.reason = reason
        super().__init__(f"child {child_id!r} failed to start: {reason!r}")


class ChildNotFound(SupervisionError, LookupError):
    """The supervisor has no child with this id (or ref)."""

    def __init__(self, child_id: Any) -> None:
        self.child_id = child_id
        super().__init__(f"no child {child_id!r} in this supervisor")


class ChildAlreadyStarted(SupervisionError):
    """``start_child`` with the id of a running child."""

    def __init__(self, child_id: Any, ref: Any) -> None:
        self.child_id = child_id
        self.ref = ref
        super().__init__(f"child {child_id!r} is already started as {ref!r}")


class ChildAlreadyPresent(SupervisionError):
    """``start_child`` with the id of a known child that is not running."""

    def __init__(self, child_id: Any) -> None:
        self.child_id = child_id
        super().__init__(
            f"child {child_id!r} is already present (not running); use restart_child "
            "or delete_child"
        )


class ChildRunning(SupervisionError):
    """``restart_child``/``delete_child`` on a running or restarting child."""

    def __init__(self, child_id: Any, state: str) -> None:
        self.child_id = child_id
        self.state = state
        super().__init__(f"child {child_id!r} is {state}; terminate_child it first")


class MaxChildren(SupervisionError):
    """A ``DynamicSupervisor`` is at its ``max_children``."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        super().__init__(f"the dynamic supervisor already runs max_children={limit} children")


class InvalidSupervisorFlags(SupervisionError, ValueError):
    """A supervisor flag (strategy, intensity, auto_shutdown, ...) is malformed."""

    def __init__(self, reason: str, message: str) -> None:
        self.reason = reason
        super().__init__(f"{reason}: {message}")


class TaskFailed(SupervisionError):
    """A task exited without a value; ``reason`` is its exit reason (``__cause__`` the
    exception when it crashed)."""

    def __init__(self, pid: Any, reason: Any) -> None:
        self.pid = pid
        self.reason = reason
        super().__init__(f"task {pid} exited without a result: {reason!r}")
