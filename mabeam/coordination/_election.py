"""Leader election with fencing epochs: one leader per epoch, re-elected when it dies.

    election = await elect_leader("trainers")
    lead = await election.join(priority=1)       # from inside a member actor
    lead.epoch, lead.leader                      # members also get LeaderChanged messages
    if await election.check(lead.epoch): ...     # is that epoch still the current one?

One ``LeaderElection`` actor per group (registered as ``("election", group)``) holds
the members, monitors each of them, and picks the leader: the live member with the
highest ``priority``, a tie to the one that joined first. Leadership is stable: a
member that joins later does not displace a live leader, whatever its priority. Every
change of leader (a first member joining, the leader leaving or exiting, the last member
going) bumps the *epoch*, and every member gets ``LeaderChanged(group, epoch, leader)``
in ``handle_info``; a member that joins gets the current one. The election actor
decides alone, one message at a time, so an epoch never has two leaders.

Fencing: the epoch is the token a leader stamps on what it does. A resource asks the
election (``check(epoch)``: is it the current epoch?) or, without a round trip, keeps a
``Fence`` that refuses any epoch older than the newest it has admitted (``StaleEpoch``),
so a deposed leader that has not yet heard the news cannot overwrite its successor.
Epochs count within one election actor: run it under a supervisor that does not restart
it silently, or start a new group name, since a restarted one begins again at epoch 0.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Iterable
from dataclasses import dataclass
from typing import Any, Final, Literal

from foundation import (
    Actor,
    ActorRef,
    AlreadyRegistered,
    Caller,
    Down,
    MonitorRef,
    StartError,
    current_runtime,
    self_ref,
)

from ._errors import CoordinationError, StaleEpoch

__all__ = (
    "ELECTION_EVENT",
    "Election",
    "ElectionMember",
    "Fence",
    "LeaderChanged",
    "LeaderElection",
    "Leadership",
    "elect_leader",
    "election_key",
)

ELECTION_EVENT: Final = ("mabeam", "coordination", "election")


def election_key(group: Hashable) -> tuple[str, Hashable]:
    """The registry key of the election of ``group``."""
    return ("election", group)


@dataclass(frozen=True, slots=True)
class Leadership:
    """The leader of ``group`` in ``epoch`` (None: no member, no leader)."""

    group: Hashable
    epoch: int
    leader: ActorRef | None


@dataclass(frozen=True, slots=True)
class LeaderChanged:
    """Sent to every member (``handle_info``) when the leader changes, and to a member
    that joins: ``leader`` leads ``group`` from ``epoch`` on."""

    group: Hashable
    epoch: int
    leader: ActorRef | None


@dataclass(frozen=True, slots=True)
class _Join:
    member: ActorRef
    priority: float


@dataclass(frozen=True, slots=True)
class _Leave:
    member: Any


@dataclass(frozen=True, slots=True)
class _Check:
    epoch: int


@dataclass(slots=True)
class _Member:
    priority: float
    order: int
    mref: MonitorRef


def _check_priority(priority: Any) -> float:
    if (
        isinstance(priority, bool)
        or not isinstance(priority, int | float)
        or not math.isfinite(priority)
    ):
        raise CoordinationError(f"priority must be a finite number, got: {priority!r}")
    return float(priority)


class LeaderElection(Actor):
    """The election of one group (see the module docstring); start it with
    ``elect_leader`` or as a supervised child (``child_spec(LeaderElection, group)``)."""

    async def init(self, group: Hashable) -> None:
        self.group = group
        self.members: dict[ActorRef, _Member] = {}
        self.by_mref: dict[MonitorRef, ActorRef] = {}
        self.epoch = 0
        self.leader: ActorRef | None = None
        self.joined = 0

    def _leadership(self) -> Leadership:
        return Leadership(self.group, self.epoch, self.leader)

    async def handle_call(self, request: Any, caller: Caller) -> Any:
        if request == "leader":
            return self._leadership()
        if request == "members":
            return tuple(sorted(self.members, key=lambda r: self.members[r].order))
        if isinstance(request, _Check):
            return request.epoch == self.epoch and self.leader is not None
        if isinstance(request, _Join):
            return self._join(request.member, request.priority)
        if isinstance(request, _Leave):
            if not isinstance(request.member, ActorRef):
                return CoordinationError(f"a member must be an ActorRef, got: {request.member!r}")
            return self._remove(request.member, "left")
        return CoordinationError(f"the election of {self.group!r} has no request {request!r}")

    def _join(self, member: Any, priority: Any) -> Leadership | CoordinationError:
        if not isinstance(member, ActorRef):
            return CoordinationError(f"a member must be an ActorRef, got: {member!r}")
        try:
            priority = _check_priority(priority)
        except CoordinationError as exc:
            return exc
        if member in self.members:
            return self._leadership()
        if not member.is_alive:
            return CoordinationError(f"{member!r} is not alive: it cannot join")
        mref = self.monitor(member)  # a dead member's Down ("noproc") removes it at once
        self.joined += 1
        self.members[member] = _Member(priority, self.joined, mref)
        self.by_mref[mref] = member
        if self.leader is None:
            self._elect("joined")
        else:
            member.send(LeaderChanged(self.group, self.epoch, self.leader))
        return self._leadership()

    async def handle_info(self, msg: Any) -> None:
        if isinstance(msg, Down):
            member = self.by_mref.get(msg.ref)
            if member is not None:
                self._remove(member, "exited")

    def _remove(self, member: Any, why: Literal["left", "exited"]) -> bool:
        entry = self.members.pop(member, None)
        if entry is None:
            return False
        del self.by_mref[entry.mref]
        if why == "left":
            self.demonitor(entry.mref, flush=True)
        if member == self.leader:
            self._elect(f"leader_{why}")
        return True

    def _elect(self, why: str) -> None:
        """Pick the best live member, start a new epoch and tell every member."""
        best = min(
            self.members, key=lambda r: (-self.members[r].priority, self.members[r].order),
            default=None,
        )  # fmt: skip
        self.leader = best
        self.epoch += 1
        news = LeaderChanged(self.group, self.epoch, best)
        for member in self.members:
            member.send(news)
        telemetry = self.runtime.telemetry
        if telemetry.active:
            telemetry.emit(
                ELECTION_EVENT,
                {"epoch": self.epoch, "members": len(self.members)},
                {"group": self.group, "leader": None if best is None else best.pid, "why": why},
            )


class Election:
    """A handle on the election of one group (what ``elect_leader`` returns)."""

    def __init__(self, ref: ActorRef, group: Hashable) -> None:
        self.ref = ref
        self.group = group

    def __repr__(self) -> str:
        return f"Election({self.group!r}, {self.ref!r})"

    async def _call(self, request: Any) -> Any:
        reply = await self.ref.call(request)
        if isinstance(reply, CoordinationError):
            raise reply
        return reply

    async def join(self, member: ActorRef | None = None, *, priority: float = 0) -> Leadership:
        """Add ``member`` (default: the calling actor); return the current leadership."""
        ref = self_ref() if member is None else member
        if not isinstance(ref, ActorRef):
            raise CoordinationError(f"a member must be an ActorRef, got: {ref!r}")
        leadership: Leadership = await self._call(_Join(ref, _check_priority(priority)))
        return leadership

    async def leave(self, member: ActorRef | None = None) -> bool:
        """Remove ``member`` (default: the calling actor); False if it was no member."""
        left: bool = await self._call(_Leave(self_ref() if member is None else member))
        return left

    async def leader(self) -> Leadership:
        """The current epoch and leader."""
        leadership: Leadership = await self._call("leader")
        return leadership

    async def members(self) -> tuple[ActorRef, ...]:
        """The members in join order."""
        members: tuple[ActorRef, ...] = await self._call("members")
        return members

    async def check(self, epoch: int) -> bool:
        """Whether ``epoch`` is the current epoch (and it has a leader)."""
        if isinstance(epoch, bool) or not isinstance(epoch, int):
            raise CoordinationError(f"an epoch is an int, got: {epoch!r}")
        current: bool = await self._call(_Check(epoch))
        return current


async def elect_leader(group: Hashable, members: Iterable[ActorRef] = ()) -> Election:
    """The election of ``group`` in this runtime, started on first use; ``members`` join
    it in order (the first one alive leads unless a member already does)."""
    try:
        hash(group)
    except TypeError:
        raise CoordinationError(f"a group name must be hashable, got: {group!r}") from None
    rt = current_runtime()
    key = election_key(group)
    ref = rt.whereis(key)
    if ref is None:
        try:
            ref = await rt.spawn(LeaderElection, group, name=key)
        except (AlreadyRegistered, StartError):
            ref = rt.whereis(key)  # started meanwhile by someone else
            if ref is None:
                raise
    election = Election(ref, group)
    for member in members:
        await election.join(member)
    return election


class Fence:
    """Kept by a resource: admits an action only when its epoch is not older than the
    newest epoch admitted so far; ``StaleEpoch`` otherwise."""

    def __init__(self, epoch: int = 0) -> None:
        self._epoch = epoch

    @property
    def epoch(self) -> int:
        """The newest epoch admitted."""
        return self._epoch

    def admit(self, epoch: int) -> None:
        """Admit an action stamped with ``epoch`` (raises ``StaleEpoch`` if stale)."""
        if isinstance(epoch, bool) or not isinstance(epoch, int):
            raise CoordinationError(f"an epoch is an int, got: {epoch!r}")
        if epoch < self._epoch:
            raise StaleEpoch(epoch, self._epoch)
        self._epoch = epoch

    def __repr__(self) -> str:
        return f"Fence(epoch={self._epoch})"


class ElectionMember(Actor):
    """Mix into an agent to track its elections: ``self.leadership[group]`` is the last
    ``LeaderChanged``; override ``leader_changed`` to act on it."""

    leadership: dict[Hashable, LeaderChanged]  # made on the first news

    async def leader_changed(self, news: LeaderChanged) -> None:
        """Called on each ``LeaderChanged`` (``news.leader == self.ref``: this one leads)."""

    async def handle_info(self, msg: Any) -> None:
        if isinstance(msg, LeaderChanged):
            board: dict[Hashable, LeaderChanged] = self.__dict__.setdefault("leadership", {})
            board[msg.group] = msg
            await self.leader_changed(msg)
            return
        await super().handle_info(msg)
