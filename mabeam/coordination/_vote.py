"""``vote``: ask every participant for a ballot at once and count by a rule, by a deadline.

    outcome = await vote([a, b, c], {"lr": 0.1}, rule="majority", quorum=0.5, timeout=2.0)
    outcome.result        # "accepted" | "rejected" | "no_quorum"
    outcome.ballots       # per participant: ballot, why, when

A short-lived actor runs each vote. It monitors every participant (a crash is known at
once, not at the deadline), asks them all concurrently with a ``VoteRequest`` call, and
decides at the first moment the outcome is certain (see ``_tally``) or at the deadline,
whichever comes first. A participant answers the call with ``"yes"``, ``"no"`` or
``"abstain"`` (``True``/``False`` mean yes/no); anything else is garbage. A participant
that times out, crashes or answers garbage is *missing*: it abstains and does not count
towards the quorum. Every participant's ballot and the reason for it are in the outcome.

A participant is any actor whose ``handle_call`` answers ``VoteRequest``; an agent can
mix in ``Voter`` and define ``ballot(proposal)``. An actor that calls ``vote`` from its
own handler cannot answer its own request (it is busy waiting): its ballot times out.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal, TypeAlias

from foundation import Actor, ActorRef, Caller, Down, MonitorRef, NoReply, current_runtime

from ._ask import Answer, ask, drop_askers
from ._check import check_quorum, check_refs, check_seconds, check_weights
from ._errors import CoordinationError
from ._tally import CAST, MISSING, RULES, Result, Rule, Tally

__all__ = ("VOTE_EVENT", "BallotRecord", "VoteOutcome", "VoteRequest", "Voter", "vote")

VOTE_EVENT: Final = ("mabeam", "coordination", "vote")
Why: TypeAlias = Literal["answered", "timeout", "crashed", "garbage", "pending"]
_BALLOTS: Final[dict[Any, str]] = {"yes": "yes", "no": "no", "abstain": "abstain"}


@dataclass(frozen=True, slots=True)
class VoteRequest:
    """The call every participant gets: answer with ``"yes"``, ``"no"`` or
    ``"abstain"``. ``deadline`` is on the runtime clock; ``poll`` identifies the vote."""

    proposal: Any
    deadline: float
    poll: ActorRef


@dataclass(frozen=True, slots=True)
class BallotRecord:
    """One participant's part in a vote.

    ``why``: ``answered`` (``ballot`` is its answer), or ``timeout`` / ``crashed`` /
    ``garbage`` (missing: counted as ``abstain``, not towards the quorum), or
    ``pending`` (the outcome was certain before it answered). ``detail`` holds the
    garbage answer or the exit reason; ``at`` when it was known (runtime clock).
    """

    participant: ActorRef
    ballot: Literal["yes", "no", "abstain"]
    why: Why
    at: float | None = None
    weight: float = 1.0
    detail: Any = None


@dataclass(frozen=True, slots=True)
class VoteOutcome:
    """The result and the full tally of one vote.

    ``abstain`` counts every participant that did not vote yes or no (missing and
    pending ones included); ``cast`` the valid ballots (what the quorum needs).
    ``early`` is True when the outcome was certain before the deadline (every
    participant answered, or the pending ones could no longer change it).
    """

    result: Result
    rule: Rule
    proposal: Any
    quorum: int
    ballots: tuple[BallotRecord, ...]
    yes: int
    no: int
    abstain: int
    cast: int
    yes_weight: float
    no_weight: float
    started_at: float
    decided_at: float
    early: bool

    @property
    def accepted(self) -> bool:
        return self.result == "accepted"

    def ballot_of(self, participant: ActorRef) -> BallotRecord:
        """The record of ``participant`` (``KeyError`` if it was not asked)."""
        for record in self.ballots:
            if record.participant == participant:
                return record
        raise KeyError(participant)


def parse_ballot(answer: Any) -> str | None:
    """The ballot an answer stands for, or None for garbage."""
    if answer is True:
        return "yes"
    if answer is False:
        return "no"
    if isinstance(answer, str):
        return _BALLOTS.get(answer)
    return None


async def vote(
    participants: Iterable[ActorRef],
    proposal: Any,
    rule: Rule = "majority",
    *,
    quorum: int | float = 0.5,
    timeout: float = 5.0,
    weights: Mapping[ActorRef, float] | Sequence[float] | None = None,
) -> VoteOutcome:
    """Ask every participant to vote on ``proposal``; return the outcome by ``timeout``.

    ``quorum``: an int is the number of ballots that must be cast, a float the fraction
    of participants (rounded up); short of it the result is ``"no_quorum"``. ``weights``
    (rule ``"weighted"`` only): one finite weight >= 0 per participant.

    Raises:
        CoordinationError: no or duplicate participants, an unknown rule, a quorum out
            of range, missing or mismatched weights, a timeout that is not > 0.
    """
    refs = check_refs(participants, "participants")
    if rule not in RULES:
        raise CoordinationError(f"rule must be one of {', '.join(RULES)}, got: {rule!r}")
    required = check_quorum(quorum, len(refs))
    seconds = check_seconds(timeout, "timeout")
    if rule == "weighted":
        if weights is None:
            raise CoordinationError("rule='weighted' needs weights, one per participant")
        checked = check_weights(weights, refs)
    elif weights is not None:
        raise CoordinationError(f"weights are used by rule='weighted' only, not {rule!r}")
    else:
        checked = tuple(1.0 for _ in refs)
    poll = await current_runtime().spawn(_Poll, refs, proposal, rule, required, checked, seconds)
    outcome: VoteOutcome = await poll.call(_RUN, timeout=None)
    return outcome


_RUN: Final = "run"
_DEADLINE: Final = "deadline"


class _Poll(Actor):
    """Runs one vote (see the module docstring) and exits once it replied."""

    async def init(
        self,
        refs: tuple[ActorRef, ...],
        proposal: Any,
        rule: Rule,
        required: int,
        weights: tuple[float, ...],
        timeout: float,
    ) -> None:
        self.refs = refs
        self.proposal = proposal
        self.rule = rule
        self.required = required
        self.weights = weights
        self.timeout = timeout
        self.tally = Tally(rule, required, weights)
        self.states: list[str | None] = [None] * len(refs)
        self.records: list[BallotRecord | None] = [None] * len(refs)
        self.monitors: dict[MonitorRef, int] = {}
        self.askers: list[ActorRef] = []
        self.caller: Caller | None = None
        self.done = False
        self.started_at = self.runtime.clock.now()

    async def handle_call(self, request: Any, caller: Caller) -> Any:
        if request != _RUN or self.caller is not None:
            return CoordinationError(f"a vote runs once; unexpected request {request!r}")
        self.caller = caller
        deadline = self.started_at + self.timeout
        self.send_after(self.timeout, _DEADLINE)
        for i, ref in enumerate(self.refs):
            self.monitors[self.monitor(ref)] = i
        request = VoteRequest(self.proposal, deadline, self.ref)
        for i, ref in enumerate(self.refs):
            self.askers.append(await ask(self, i, ref, request, self.timeout))
        self._check()
        return NoReply

    async def handle_info(self, msg: Any) -> None:
        if self.caller is None or self.done:
            return
        if isinstance(msg, Answer):
            if msg.kind == "reply":
                ballot = parse_ballot(msg.value)
                if ballot is None:
                    self._record(msg.tag, MISSING, "garbage", msg.value)
                else:
                    self._record(msg.tag, ballot, "answered", None)
            elif msg.kind == "crashed":
                self._record(msg.tag, MISSING, "crashed", msg.value)
            else:
                self._record(msg.tag, MISSING, "timeout", None)
            self._check()
        elif isinstance(msg, Down):
            i = self.monitors.pop(msg.ref, None)
            if i is not None:
                self._record(i, MISSING, "crashed", msg.reason)
                self._check()
        elif msg == _DEADLINE:
            self._finish(early=False)

    def _record(self, i: int, state: str, why: Why, detail: Any) -> None:
        if self.states[i] is not None:
            return  # the first news wins (an answer, then the Down of a later exit)
        self.states[i] = state
        self.tally.add(i, state)
        ballot: Any = state if state in CAST else "abstain"
        self.records[i] = BallotRecord(
            self.refs[i], ballot, why, self.runtime.clock.now(), self.weights[i], detail
        )

    def _check(self) -> None:
        if self.tally.decide() is not None:
            self._finish(early=True)

    def _finish(self, *, early: bool) -> None:
        caller = self.caller
        if caller is None or self.done:
            return
        self.done = True
        now = self.runtime.clock.now()
        pending: Why = "pending" if early else "timeout"
        at = None if early else now
        records = tuple(
            r if r is not None else BallotRecord(ref, "abstain", pending, at, w)
            for r, ref, w in zip(self.records, self.refs, self.weights, strict=True)
        )
        result = self.tally.decide(final=not early)
        assert result is not None
        yes = [r for r in records if r.ballot == "yes"]
        no = [r for r in records if r.ballot == "no"]
        outcome = VoteOutcome(
            result=result,
            rule=self.rule,
            proposal=self.proposal,
            quorum=self.required,
            ballots=records,
            yes=len(yes),
            no=len(no),
            abstain=len(records) - len(yes) - len(no),
            cast=sum(1 for s in self.states if s in CAST),
            yes_weight=sum(r.weight for r in yes),
            no_weight=sum(r.weight for r in no),
            started_at=self.started_at,
            decided_at=now,
            early=early,
        )
        telemetry = self.runtime.telemetry
        if telemetry.active:
            telemetry.emit(
                VOTE_EVENT,
                {"duration": now - self.started_at, "yes": outcome.yes, "no": outcome.no,
                 "cast": outcome.cast},
                {"result": result, "rule": self.rule, "participants": len(self.refs),
                 "early": outcome.early},
            )  # fmt: skip
        caller.reply(outcome)
        drop_askers(self, self.askers)
        self.stop()


class Voter(Actor):
    """Mix into an agent (``class Judge(Voter, Agent)``) to answer ``VoteRequest`` with
    ``ballot(proposal)``; other calls go on to the next ``handle_call``."""

    async def ballot(self, proposal: Any) -> Any:
        """Return ``"yes"``, ``"no"`` or ``"abstain"`` (or True / False)."""
        return "abstain"

    async def handle_call(self, request: Any, caller: Caller) -> Any:
        if isinstance(request, VoteRequest):
            return await self.ballot(request.proposal)
        return await super().handle_call(request, caller)
