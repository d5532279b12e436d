"""Kernel access for behaviours built on foundation (supervisors, bridges).

Application code never needs these: they reach behind the mailbox, which only a
behaviour that owns the actor's lifecycle (its supervisor) may do, at moments when the
actor runs no handler.
"""

from __future__ import annotations

from ._actor import Actor
from ._ref import ActorRef

_DEAD = 3


def actor_instance(ref: ActorRef) -> Actor | None:
    """The ``Actor`` object behind a ref of this process (None for a detached ref).

    A supervisor uses it to hand state over between incarnations (``snapshot`` on the
    old one after it exited, ``restore`` on the new one before its first message).
    """
    if not isinstance(ref, ActorRef):
        raise TypeError(f"actor_instance() takes an ActorRef, got: {ref!r}")
    proc = ref._proc
    return None if proc is None else proc.actor


def exited_through_terminate(ref: ActorRef) -> bool:
    """Whether the actor has exited and its ``terminate`` ran to the end (it was stopped
    or crashed, not killed by a signal): its state is then consistent."""
    proc = ref._proc
    return proc is not None and proc.state == _DEAD and proc.kill_reason is None


__all__ = ("actor_instance", "exited_through_terminate")
