"""Draining a node before it stops: finish or hand back the work, then say BYE.

The node application calls ``DRAIN`` on the connection actor before it stops the tree
(SIGTERM on ``mabeam node start``, or leaving ``start_node``). From then on the node
takes no new work: a DISPATCH gets RESULT ``handed_back`` (the coordinator requeues
it without counting a retry) and no READY goes out. Running tasks may finish until
``drain_timeout_s``; then the ones left are stopped and handed back, and a last wait of
the stop grace plus one heartbeat lets them stop and their results be ACKed. Once
nothing runs, the results still un-ACKed get one resend period (plus a heartbeat) for
their ACKs: they stay in the outbox for the next start anyway. The drain is over once
nothing runs and every result is ACKed (or the node is not connected, or the last wait
is over): the connection sends BYE and answers the call. ``Drain`` is that state
machine; the connection actor asks it and acts.
"""

from __future__ import annotations

from typing import Any, Final

from foundation import Actor, Caller, NoReply, TimerRef

from ._node_setup import NodeSetup

__all__ = ("DRAIN", "DRAIN_DEADLINE", "DRAIN_LAST", "Drain")

DRAIN: Final = "drain"
"""The call that drains the node."""
DRAIN_DEADLINE: Final = "drain_deadline"
"""Timer message: drain_timeout_s is over, hand back what still runs."""
DRAIN_LAST: Final = "drain_last"
"""Timer message: the last wait (after the hand-back, or for ACKs) is over."""


class Drain:
    """A drain in progress: who waits for it and how far it got."""

    def __init__(self, actor: Actor, setup: NodeSetup, caller: Caller) -> None:
        self._actor = actor
        self._setup = setup
        self._callers = [caller]
        self.expired = False  # running tasks were handed back
        self.final = False  # the last wait is over: finish whatever is left
        self.done = False
        self._waiting_for_acks = False
        self._timers: list[TimerRef] = [actor.send_after(setup.drain_timeout_s, DRAIN_DEADLINE)]

    def join(self, caller: Caller) -> Any:
        """Another DRAIN call: answered with the first one (at once if it is over)."""
        if self.done:
            return None
        self._callers.append(caller)
        return NoReply

    def expire(self) -> bool:
        """The deadline passed: start the last wait; False if it already did."""
        if self.expired or self.done:
            return False
        self.expired = True
        setup = self._setup
        last = setup.task.grace_s + setup.heartbeat_s  # tasks stop, results get ACKed
        self._timers.append(self._actor.send_after(last, DRAIN_LAST))
        return True

    def can_finish(self, *, busy: bool, unacked: bool) -> bool:
        """Whether the drain is over: nothing runs or waits for an ACK, or time is up."""
        if self.done:
            return False
        if self.final or not (busy or unacked):
            return True
        if not busy and not self._waiting_for_acks:
            self._waiting_for_acks = True
            setup = self._setup
            wait = setup.resend_s + setup.heartbeat_s
            self._timers.append(self._actor.send_after(wait, DRAIN_LAST))
        return False

    def finish(self) -> None:
        """Answer every caller; the drain is done."""
        self.done = True
        for timer in self._timers:
            timer.cancel()
        for caller in self._callers:
            caller.reply(None)
