"""``JobPump``: follows one set of jobs for an actor, as messages.

A ``Client.watch`` is an async iterator; an actor cannot sit in one without blocking
its mailbox. The owner spawns a pump linked (one per submission): the pump reads the
watch and casts each ``JobEvent`` to the owner as ``("event", event)``, then
``PumpDone`` once every job is terminal, and exits ``normal``. A watch that fails (the
coordinator unreachable past the client's timeout) crashes the pump: the owner, which
traps exits, sees why and may watch the unfinished jobs again (a new watch restates
each job's current state, so nothing is lost).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from foundation import Actor, ActorRef, Pid

if TYPE_CHECKING:
    from ..cluster.client import Client

__all__ = ("JobPump", "PumpDone")


@dataclass(frozen=True)
class PumpDone:
    """Cast by a pump whose jobs are all terminal, just before it exits."""

    pump: Pid


class JobPump(Actor):
    """Casts the events of ``job_ids`` to ``owner``; spawn it linked."""

    async def init(self, client: Client, job_ids: tuple[str, ...], owner: ActorRef) -> None:
        self._client = client
        self._job_ids = job_ids
        self._owner = owner
        self.ref.cast("run")

    async def handle_cast(self, msg: Any) -> None:
        if msg != "run":
            raise ValueError(f"JobPump takes no messages, got {msg!r}")
        async with self._client.watch(self._job_ids) as events:
            async for event in events:
                await self._owner.cast_wait(("event", event))
        self._owner.cast(PumpDone(self.pid))
        self.stop("normal")
