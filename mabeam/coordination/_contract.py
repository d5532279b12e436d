"""``contract_net``: announce a task, collect bids by a deadline, award it to the best bid.

    outcome = await contract_net(manager, contractors, {"train": "resnet"}, deadline=1.0)
    outcome.status        # "completed" | "no_bids" | "failed"
    outcome.result        # what the winner's work returned
    outcome.rounds        # every round: its bids, its award, why it ended

The FIPA contract net as one short-lived actor. Each round it sends every remaining
contractor a ``CallForProposals`` call at once and collects the answers until every one
has answered or the round's ``deadline`` passed. An answer is a ``Bid(value, data)`` or
a bare number; ``None`` declines; anything else (or a value that is not finite) is
garbage, recorded and ignored, as are silent and crashed contractors. The task goes to
the best bid: the lowest value (``prefer="highest"`` for the highest), a tie to the
contractor listed first. The winner gets an ``Award`` call and does the work; its reply
is the result. If the winner dies (its monitor fires) or does not finish within
``perform_timeout``, the task is announced again to the contractors still alive,
without it, up to ``max_rounds`` rounds.

When ``manager`` (the agent the task is done for) exits, the protocol ends at once with
``"failed"``; it is named in every announcement so contractors know who asks.
Contractors answer ``CallForProposals`` and ``Award`` in ``handle_call``; an agent can
mix in ``Contractor`` and define ``bid(cfp)`` and ``perform(award)``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Final, Literal, TypeAlias

from foundation import Actor, ActorRef, Caller, Down, MonitorRef, NoReply, current_runtime

from ._ask import Answer, ask, drop_askers
from ._check import check_count, check_refs, check_seconds
from ._errors import CoordinationError

__all__ = (
    "CONTRACT_EVENT",
    "Award",
    "Bid",
    "BidRecord",
    "CallForProposals",
    "ContractOutcome",
    "ContractRound",
    "Contractor",
    "contract_net",
)

CONTRACT_EVENT: Final = ("mabeam", "coordination", "contract_net")
BidWhy: TypeAlias = Literal["bid", "declined", "garbage", "timeout", "crashed"]
RoundEnd: TypeAlias = Literal[
    "completed", "no_bids", "winner_crashed", "winner_timeout", "manager_down"
]
Status: TypeAlias = Literal["completed", "no_bids", "failed"]


@dataclass(frozen=True, slots=True)
class Bid:
    """A contractor's offer: ``value`` (a finite number; lower wins unless the manager
    prefers the highest) and optional ``data`` the manager may read."""

    value: float
    data: Any = None


@dataclass(frozen=True, slots=True)
class CallForProposals:
    """The call each contractor gets in round ``round``: answer with a ``Bid``, a number,
    or None to decline, before ``deadline`` (runtime clock)."""

    task: Any
    manager: ActorRef | None
    round: int
    deadline: float


@dataclass(frozen=True, slots=True)
class Award:
    """The call the winner gets: do ``task``; the reply is the result."""

    task: Any
    bid: Bid
    round: int
    manager: ActorRef | None


@dataclass(frozen=True, slots=True)
class BidRecord:
    """One contractor's answer in one round; ``detail`` holds garbage or an exit reason."""

    contractor: ActorRef
    why: BidWhy
    bid: Bid | None
    at: float
    detail: Any = None


@dataclass(frozen=True, slots=True)
class ContractRound:
    """One announcement: the bids, the award (None: no valid bid) and how it ended."""

    number: int
    started_at: float
    bids: tuple[BidRecord, ...]
    award: ActorRef | None
    winning_bid: Bid | None
    ended_at: float
    end: RoundEnd
    detail: Any = None


@dataclass(frozen=True, slots=True)
class ContractOutcome:
    """How a contract net ended: ``completed`` (``result`` from ``winner``), ``no_bids``
    (the last round got no valid bid) or ``failed`` (``reason`` says why)."""

    status: Status
    result: Any
    winner: ActorRef | None
    rounds: tuple[ContractRound, ...]
    reason: str
    started_at: float
    ended_at: float


def parse_bid(answer: Any) -> tuple[BidWhy, Bid | None]:
    """Classify a contractor's answer to a call for proposals."""
    if answer is None:
        return "declined", None
    bid = answer if isinstance(answer, Bid) else Bid(answer)
    value = bid.value
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return "garbage", None
    return "bid", bid


async def contract_net(
    manager: ActorRef | None,
    contractors: Iterable[ActorRef],
    task: Any,
    deadline: float,
    *,
    perform_timeout: float = 60.0,
    max_rounds: int = 3,
    prefer: Literal["lowest", "highest"] = "lowest",
) -> ContractOutcome:
    """Announce ``task`` to ``contractors`` and award it (see the module docstring).

    ``deadline``: seconds each round collects bids; ``perform_timeout``: seconds the
    winner has to finish; ``max_rounds``: announcements at most (>= 1).

    Raises:
        CoordinationError: no or duplicate contractors, a manager that is not an
            ActorRef, a deadline or timeout that is not > 0, a bad ``max_rounds`` or
            ``prefer``.
    """
    if manager is not None and not isinstance(manager, ActorRef):
        raise CoordinationError(f"manager must be an ActorRef or None, got: {manager!r}")
    refs = check_refs(contractors, "contractors")
    bid_window = check_seconds(deadline, "deadline")
    perform = check_seconds(perform_timeout, "perform_timeout")
    rounds = check_count(max_rounds, "max_rounds", 1)
    if prefer not in ("lowest", "highest"):
        raise CoordinationError(f"prefer must be 'lowest' or 'highest', got: {prefer!r}")
    net = await current_runtime().spawn(
        _ContractNet, manager, refs, task, bid_window, perform, rounds, prefer
    )
    outcome: ContractOutcome = await net.call("run", timeout=None)
    return outcome


_MANAGER: Final = -1


class _ContractNet(Actor):
    """Runs one contract net (see the module docstring) and exits once it replied."""

    async def init(
        self,
        manager: ActorRef | None,
        refs: tuple[ActorRef, ...],
        task: Any,
        bid_window: float,
        perform_timeout: float,
        max_rounds: int,
        prefer: str,
    ) -> None:
        self.manager = manager
        self.refs = refs
        self.task = task
        self.bid_window = bid_window
        self.perform_timeout = perform_timeout
        self.max_rounds = max_rounds
        self.sign = 1.0 if prefer == "lowest" else -1.0
        self.started_at = self.runtime.clock.now()
        self.caller: Caller | None = None
        self.monitors: dict[MonitorRef, int] = {}
        self.dead: set[int] = set()
        self.excluded: set[int] = set()
        self.rounds: list[ContractRound] = []
        self.askers: list[ActorRef] = []
        self.phase: Literal["idle", "bidding", "performing", "done"] = "idle"
        self.number = 0
        self.round_start = 0.0
        self.invited: list[int] = []
        self.bids: dict[int, BidRecord] = {}
        self.winner = -1
        self.winning: Bid | None = None

    async def handle_call(self, request: Any, caller: Caller) -> Any:
        if request != "run" or self.caller is not None:
            return CoordinationError(f"a contract net runs once; unexpected {request!r}")
        self.caller = caller
        if self.manager is not None:
            self.monitors[self.monitor(self.manager)] = _MANAGER
        for i, ref in enumerate(self.refs):
            self.monitors[self.monitor(ref)] = i
        await self._announce()
        return NoReply

    # -- bidding ----------------------------------------------------------------------

    async def _announce(self) -> None:
        self.invited = [
            i for i in range(len(self.refs)) if i not in self.dead and i not in self.excluded
        ]
        if not self.invited:
            self._finish("failed", None, "no contractor is left to announce the task to")
            return
        self.number += 1
        self.phase = "bidding"
        self.round_start = self.runtime.clock.now()
        self.bids = {}
        deadline = self.round_start + self.bid_window
        self.send_after(self.bid_window, ("deadline", self.number))
        cfp = CallForProposals(self.task, self.manager, self.number, deadline)
        for i in self.invited:
            tag = ("bid", self.number, i)
            self.askers.append(await ask(self, tag, self.refs[i], cfp, self.bid_window))

    def _record_bid(self, i: int, why: BidWhy, bid: Bid | None, detail: Any) -> None:
        if i in self.bids:
            return
        now = self.runtime.clock.now()
        self.bids[i] = BidRecord(self.refs[i], why, bid, now, detail)

    async def _close_bidding(self) -> None:
        drop_askers(self, self.askers)
        now = self.runtime.clock.now()
        for i in self.invited:
            if i not in self.bids:
                self.bids[i] = BidRecord(self.refs[i], "timeout", None, now)
        valid = [  # a bidder that died since it bid cannot do the work
            (self.sign * r.bid.value, i)
            for i, r in self.bids.items()
            if r.bid is not None and i not in self.dead
        ]
        if not valid:
            self._end_round(None, "no_bids")
            self._finish("no_bids", None, f"no valid bid in round {self.number}")
            return
        _, self.winner = min(valid)  # the best value; a tie goes to the contractor listed first
        self.winning = self.bids[self.winner].bid
        assert self.winning is not None
        self.phase = "performing"
        award = Award(self.task, self.winning, self.number, self.manager)
        tag = ("perform", self.number, self.winner)
        self.askers.append(
            await ask(self, tag, self.refs[self.winner], award, self.perform_timeout)
        )

    # -- performing -------------------------------------------------------------------

    async def _winner_failed(self, end: RoundEnd, detail: Any) -> None:
        drop_askers(self, self.askers)
        self.excluded.add(self.winner)
        self._end_round(self.winner, end, detail)
        if self.number >= self.max_rounds:
            self._finish(
                "failed", None, f"no winner finished the task in {self.max_rounds} round(s)"
            )
            return
        await self._announce()

    def _end_round(self, winner: int | None, end: RoundEnd, detail: Any = None) -> None:
        self.rounds.append(
            ContractRound(
                number=self.number,
                started_at=self.round_start,
                bids=tuple(self.bids[i] for i in sorted(self.bids)),
                award=None if winner is None else self.refs[winner],
                winning_bid=None if winner is None else self.winning,
                ended_at=self.runtime.clock.now(),
                end=end,
                detail=detail,
            )
        )

    # -- messages ---------------------------------------------------------------------

    async def handle_info(self, msg: Any) -> None:
        if self.phase in ("idle", "done"):
            return
        if isinstance(msg, Answer):
            kind, number, i = msg.tag
            if number != self.number:
                return  # a late answer from an earlier round
            if kind == "bid" and self.phase == "bidding":
                if msg.kind == "reply":
                    why, bid = parse_bid(msg.value)
                    self._record_bid(i, why, bid, msg.value if why == "garbage" else None)
                elif msg.kind == "crashed":
                    self._record_bid(i, "crashed", None, msg.value)
                else:
                    self._record_bid(i, "timeout", None, None)
                if len(self.bids) == len(self.invited):
                    await self._close_bidding()
            elif kind == "perform" and self.phase == "performing":
                if msg.kind == "reply":
                    self._end_round(self.winner, "completed")
                    self._finish("completed", msg.value, "the winner finished the task")
                elif msg.kind == "crashed":
                    self.dead.add(i)
                    await self._winner_failed("winner_crashed", msg.value)
                else:
                    await self._winner_failed("winner_timeout", None)
        elif isinstance(msg, Down):
            i = self.monitors.pop(msg.ref, None)
            if i is None:
                return
            if i == _MANAGER:
                self._end_round(None, "manager_down", msg.reason)
                self._finish("failed", None, f"the manager exited ({msg.reason!r})")
                return
            self.dead.add(i)
            if self.phase == "bidding" and i in self.invited:
                self._record_bid(i, "crashed", None, msg.reason)
                if len(self.bids) == len(self.invited):
                    await self._close_bidding()
            elif self.phase == "performing" and i == self.winner:
                await self._winner_failed("winner_crashed", msg.reason)
        elif msg == ("deadline", self.number) and self.phase == "bidding":
            await self._close_bidding()

    def _finish(self, status: Status, result: Any, reason: str) -> None:
        if self.phase == "done" or self.caller is None:
            return
        self.phase = "done"
        now = self.runtime.clock.now()
        won = status == "completed"
        outcome = ContractOutcome(
            status=status,
            result=result,
            winner=self.refs[self.winner] if won else None,
            rounds=tuple(self.rounds),
            reason=reason,
            started_at=self.started_at,
            ended_at=now,
        )
        telemetry = self.runtime.telemetry
        if telemetry.active:
            telemetry.emit(
                CONTRACT_EVENT,
                {"duration": now - self.started_at, "rounds": len(self.rounds)},
                {"status": status, "reason": reason, "contractors": len(self.refs)},
            )
        self.caller.reply(outcome)
        drop_askers(self, self.askers)
        self.stop()


class Contractor(Actor):
    """Mix into an agent (``class Trainer(Contractor, Agent)``) to answer calls for
    proposals with ``bid(cfp)`` and awards with ``perform(award)``."""

    async def bid(self, cfp: CallForProposals) -> Bid | float | None:
        """Return a ``Bid``, a number, or None to decline."""
        return None

    async def perform(self, award: Award) -> Any:
        """Do the awarded task; the return value is the result."""
        raise NotImplementedError(f"{type(self).__qualname__} bid but defines no perform()")

    async def handle_call(self, request: Any, caller: Caller) -> Any:
        if isinstance(request, CallForProposals):
            return await self.bid(request)
        if isinstance(request, Award):
            return await self.perform(request)
        return await super().handle_call(request, caller)
