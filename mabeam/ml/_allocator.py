"""``SlotAllocator``: several search agents share one cluster's task slots by contract net.

Each of the cluster's ``slots`` is awarded one trial at a time. While an agent has a
trial ready it casts ``("demand", name)``; for each free slot the allocator then runs a
``contract_net`` among the running search agents (``find_agents(capability="search")``):
an agent bids while it has a trial ready (``SearchAgent`` bids its sweep's priority
times 10^6 minus the trials it started: a higher priority first, equal ones take turns),
the highest bid wins (a tie goes to the least loaded agent, then by name: the order
``find_agents`` lists them in), and the
winner runs one trial on the slot and answers the award when that trial ends. A winner
that dies mid-trial frees the slot: the contract net announces it again.

With ``stop_vote=(after, margin)``, once every agent finished ``after`` trials, the agent
whose best score trails another's by more than ``margin`` (same metric and mode) is put
to a majority vote of the other search agents (a tie rejects); if accepted it stops its
search (its running trials are cancelled, recorded as stopped by the vote). One vote per
agent.

The ``"awards"`` call lists every award that ended (slot, agent, trial, start and end on
the runtime clock), and each is emitted as telemetry ``SLOT_EVENT``: a slot never holds
two trials at once.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from typing import Any, Final

from foundation import Actor, ActorDead, ActorRef, CallTimeout, Exit, current_time

from ..agents import Agent, find_agents
from ..coordination import contract_net, vote

__all__ = ("SLOT_EVENT", "SlotAllocator", "SlotAward", "StopProposal")

log = logging.getLogger("mabeam.search")

#: Telemetry at the end of each award: measurements ``{"held_s"}``, metadata the
#: ``SlotAward``'s fields.
SLOT_EVENT: Final = ("mabeam", "search", "slot")
#: How long each contract-net round collects bids, in seconds.
BID_WINDOW_S: Final = 0.5
#: How long a winner may hold a slot (a trial's whole run), in seconds.
PERFORM_TIMEOUT_S: Final = 7 * 24 * 3600.0


@dataclass(frozen=True)
class SlotAward:
    """One slot given to one agent's trial, from ``start`` to ``end`` (None: running)."""

    slot: int
    agent: str
    start: float
    end: float | None = None
    trial: str | None = None


@dataclass(frozen=True)
class StopProposal:
    """The proposal of a stop vote: stop agent ``stop``, whose best ``metric`` is
    ``score`` (``mode``), since another agent beats it by more than ``margin``."""

    stop: str
    metric: str
    mode: str
    score: float
    margin: float


class _Round(Actor):
    """Runs one contract net for one slot and sends the outcome to the allocator."""

    async def init(self, owner: ActorRef, slot: int, contractors: list[ActorRef]) -> None:
        self.owner, self.slot, self.contractors = owner, slot, contractors
        self.ref.cast("run")

    async def handle_cast(self, msg: Any) -> None:
        outcome = await contract_net(
            self.owner,
            self.contractors,
            {"slot": self.slot},
            BID_WINDOW_S,
            perform_timeout=PERFORM_TIMEOUT_S,
            prefer="highest",
        )
        self.owner.cast(("round", self.slot, outcome))
        self.stop()


class _Poll(Actor):
    """Runs one stop vote and sends the outcome to the allocator."""

    async def init(self, owner: ActorRef, voters: list[ActorRef], proposal: StopProposal) -> None:
        self.owner, self.voters, self.proposal = owner, voters, proposal
        self.ref.cast("run")

    async def handle_cast(self, msg: Any) -> None:
        outcome = await vote(self.voters, self.proposal, "majority", quorum=0.5, timeout=2.0)
        self.owner.cast(("voted", self.proposal, outcome))
        self.stop()


class SlotAllocator(Agent):
    """Awards the cluster's slots to search agents; see the module docstring."""

    capabilities = frozenset({"allocator"})

    async def start_agent(
        self,
        *,
        slots: int | None = None,
        client: Any = None,
        stop_vote: tuple[int, float] | None = None,
    ) -> None:
        if slots is None:
            if client is None:
                raise ValueError("SlotAllocator needs slots=N or a client to count them")
            status = await client.status()
            slots = max(1, sum(node.inventory.slots for node in status.nodes))
        if type(slots) is not int or slots < 1:
            raise ValueError(f"slots must be an int >= 1, got {slots!r}")
        self.slots = slots
        self.rounds: set[int] = set()  # slots with a contract net (and maybe a trial) on
        self.round_of: dict[Any, int] = {}  # a round actor's pid -> its slot
        self.wanted = False  # an agent may have a trial ready: announce free slots
        self.ledger: list[SlotAward] = []
        self.stop_vote = stop_vote
        self.voted: set[str] = set()

    async def handle_cast(self, msg: Any) -> None:
        kind = msg[0] if isinstance(msg, tuple) and msg else None
        if kind == "demand" and len(msg) == 2:
            self.wanted = True
            await self._announce()
        elif kind == "round" and len(msg) == 3:
            await self._round_ended(msg[1], msg[2])
        elif kind == "voted" and len(msg) == 3:
            self._voted(msg[1], msg[2])
        else:
            log.warning("slot allocator: unknown message %r dropped", msg)

    async def handle_call(self, request: Any, caller: Any) -> Any:
        if request == "awards":
            return list(self.ledger)
        return ValueError(f"slot allocator: unknown request {request!r}")

    async def handle_info(self, msg: Any) -> None:
        if not isinstance(msg, Exit):
            return
        slot = self.round_of.pop(msg.pid, None)
        if msg.reason in ("normal", "shutdown"):
            return
        log.warning("slot allocator: a round or vote ended with %r", msg.reason)
        if slot is not None and slot in self.rounds:  # a crashed round frees its slot
            self.rounds.discard(slot)
            self.wanted = True
            await self._announce()

    async def _announce(self) -> None:
        """Start a contract net for each free slot while some agent has a trial ready."""
        agents = [info.ref for info in find_agents(capability="search", status="running")]
        if not agents or not self.wanted:
            return
        free = [slot for slot in range(self.slots) if slot not in self.rounds]
        if not free:
            return  # the demand waits for the next slot that frees up
        self.wanted = False
        for slot in free:
            self.rounds.add(slot)
            ref = await self.spawn_link(_Round, self.ref, slot, agents)
            self.round_of[ref.pid] = slot

    async def _round_ended(self, slot: int, outcome: Any) -> None:
        """A slot is free again: record what ran on it, then look for work for it."""
        self.rounds.discard(slot)
        result = outcome.result if isinstance(outcome.result, dict) else {}
        if outcome.status == "completed" and result.get("trial"):
            award = SlotAward(
                slot,
                str(result.get("agent", "")),
                float(result.get("awarded_at", outcome.started_at)),
                current_time(),
                str(result["trial"]),
            )
            self.ledger.append(award)
            telemetry = self.runtime.telemetry
            if telemetry.active:
                held = {"held_s": current_time() - award.start}
                telemetry.emit(SLOT_EVENT, held, dataclasses.asdict(award))
            self.wanted = True  # the slot's last user may have more: ask again
        elif outcome.status == "completed" and _valid_bids(outcome) > 1:
            self.wanted = True  # the winner had nothing to run after all: the others
        await self._maybe_vote()
        await self._announce()

    async def _maybe_vote(self) -> None:
        if self.stop_vote is None:
            return
        after, margin = self.stop_vote
        snaps = []
        for info in find_agents(capability="search", status="running"):
            try:
                snaps.append((info, await info.ref.call("snapshot", timeout=2.0)))
            except (ActorDead, CallTimeout):
                return  # an agent is going or busy: the next freed slot asks again
        scored = [
            (info, s) for info, s in snaps if s["best_score"] is not None and s["finished"] >= after
        ]
        if len(scored) < 2 or len(scored) < len(snaps):
            return
        metric, mode = scored[0][1]["metric"], scored[0][1]["mode"]
        if any((s["metric"], s["mode"]) != (metric, mode) for _, s in scored):
            return
        sign = 1.0 if mode == "max" else -1.0
        scored.sort(key=lambda item: sign * item[1]["best_score"])
        worst, top = scored[0], scored[-1]
        name = worst[0].meta.name
        gap = sign * (top[1]["best_score"] - worst[1]["best_score"])
        if name in self.voted or not gap > margin:
            return
        self.voted.add(name)
        proposal = StopProposal(name, metric, mode, worst[1]["best_score"], margin)
        voters = [info.ref for info, _ in snaps if info.meta.name != name]
        await self.spawn_link(_Poll, self.ref, voters, proposal)

    def _voted(self, proposal: StopProposal, outcome: Any) -> None:
        tally = f"{outcome.yes} yes, {outcome.no} no, of {len(outcome.ballots)} voters"
        log.info("stop vote on %s: %s (%s)", proposal.stop, outcome.result, tally)
        for info in find_agents(capability="search"):
            if info.meta.name == proposal.stop:
                info.ref.cast(("stop_search", f"stopped by vote ({tally})", outcome.accepted))


def _valid_bids(outcome: Any) -> int:
    """How many agents bid in the contract net's last round."""
    return sum(1 for record in outcome.rounds[-1].bids if record.why == "bid")
