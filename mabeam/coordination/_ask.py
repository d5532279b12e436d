"""Asking many actors at once from one protocol actor.

An actor's handler must not await a call per participant: the replies would come one
after the other, and while it waits the actor cannot see a ``Down`` or its deadline. So a
protocol actor starts one short-lived ``Asker`` per question, linked to it: the asker
makes the call and sends the protocol actor an ``Answer``, whatever happens (a reply,
the participant's death, its silence until the timeout). The protocol actor stays free
to count, to notice crashes through its own monitors and to decide at its deadline; once
it has decided it unlinks and kills the askers still waiting (``drop_askers``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from foundation import Actor, ActorDead, ActorRef, CallTimeout

AnswerKind = Literal["reply", "crashed", "timeout"]


@dataclass(frozen=True, slots=True)
class Answer:
    """What became of one question: the reply, the crash (``value`` is the exit
    reason) or the timeout. ``tag`` says which question (the protocol's index)."""

    tag: Any
    kind: AnswerKind
    value: Any


class Asker(Actor):
    """Makes one call and reports it to its owner as an ``Answer`` (``handle_info``)."""

    async def init(
        self, owner: ActorRef, tag: Any, target: ActorRef, request: Any, timeout: float
    ) -> None:
        self.owner = owner
        self.tag = tag
        self.target = target
        self.request = request
        self.timeout = timeout

    async def handle_cast(self, msg: Any) -> None:
        answer: Answer
        try:
            reply = await self.target.call(self.request, timeout=self.timeout)
        except ActorDead as exc:
            answer = Answer(self.tag, "crashed", exc.reason)
        except CallTimeout:
            answer = Answer(self.tag, "timeout", None)
        else:
            answer = Answer(self.tag, "reply", reply)
        self.owner.send(answer)
        self.stop()


async def ask(owner: Actor, tag: Any, target: ActorRef, request: Any, timeout: float) -> ActorRef:
    """Start an asker for ``owner`` (linked to it) and set it going."""
    ref = await owner.spawn_link(Asker, owner.ref, tag, target, request, timeout)
    ref.cast(None)
    return ref


def drop_askers(owner: Actor, askers: list[ActorRef]) -> None:
    """Stop the askers still waiting: their answers are no longer wanted. Unlinked first,
    so their ``killed`` exit does not reach the owner."""
    for ref in askers:
        if ref.is_alive:
            owner.unlink(ref)
            owner.exit(ref, "kill")
    askers.clear()
