"""``Barrier``: a rendezvous of agents that breaks, loudly and at once, instead of hanging.

    barrier = await Barrier.start(parties=3, timeout=30.0, name="sync")
    ...
    index = await barrier.wait()      # in each of the 3 agents; 0, 1, 2 in arrival order

An actor holds the barrier. A party registers when it calls ``wait`` (or earlier, with
``join``, so that its crash is noticed before it arrives) and the barrier monitors it.
When ``parties`` parties have arrived, every ``wait`` returns its arrival index and the
next generation begins with nobody registered. The barrier *breaks* when:

- a registered party exits before the barrier tripped (it can never arrive): reason
  ``("exited", pid, exit_reason)``;
- ``timeout`` seconds (runtime clock) passed since the generation's first party
  registered: reason ``"timeout"``;
- ``reset()`` is called: reason ``"reset"`` (the barrier is usable again afterwards).

Every waiter then gets ``BarrierBroken`` (a ``foundation.BrokenBarrier``) at once, and
so does every later ``wait`` or ``join`` until ``reset()``. A wait from outside any
actor is allowed but cannot be monitored: only its arrival counts. A ``wait`` never
hangs: the deadline answers it, and the death of the barrier actor raises ``ActorDead``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

from foundation import (
    Actor,
    ActorRef,
    Caller,
    Down,
    MonitorRef,
    NoReply,
    TimerRef,
    current_runtime,
)

from ._check import check_count, check_seconds
from ._errors import BarrierBroken, CoordinationError

__all__ = ("BARRIER_EVENT", "Barrier", "BarrierStatistics")

BARRIER_EVENT: Final = ("mabeam", "coordination", "barrier")


@dataclass(frozen=True, slots=True)
class BarrierStatistics:
    """A barrier's state: ``registered`` parties of this generation, of which
    ``waiting`` have arrived; ``broken`` is the reason while broken, else None."""

    parties: int
    registered: int
    waiting: int
    generation: int
    broken: Any


class _BarrierActor(Actor):
    """The state of one cross-agent barrier (see the module docstring)."""

    async def init(self, parties: int, timeout: float) -> None:
        self.parties = parties
        self.timeout = timeout
        self.generation = 0
        self.registered: dict[ActorRef, MonitorRef] = {}
        self.anonymous = 0
        self.waiting: list[Caller] = []
        self.broken: BarrierBroken | None = None
        self.timer: TimerRef | None = None

    async def handle_call(self, request: Any, caller: Caller) -> Any:
        if request == "statistics":
            return BarrierStatistics(
                self.parties,
                len(self.registered) + self.anonymous,
                len(self.waiting),
                self.generation,
                None if self.broken is None else self.broken.reason,
            )
        if request == "reset":
            self._break("reset", "the barrier was reset")
            self.broken = None
            return None
        if request not in ("join", "wait"):
            return CoordinationError(f"a barrier has no request {request!r}")
        if self.broken is not None:
            return self.broken
        party = None if caller.pid is None else self.runtime.ref_of(caller.pid)
        refused = self._register(party)
        if refused is not None:
            return refused
        if request == "join":
            return None
        self.waiting.append(caller)
        if len(self.waiting) == self.parties:
            self._trip()
        return NoReply

    def _register(self, party: ActorRef | None) -> CoordinationError | None:
        if party is not None and party in self.registered:
            return None
        if len(self.registered) + self.anonymous >= self.parties:
            return CoordinationError(
                f"the barrier's {self.parties} parties of generation {self.generation} "
                f"are all registered; {party!r} is one too many"
            )
        if party is None:
            self.anonymous += 1
        else:
            self.registered[party] = self.monitor(party)
        if self.timer is None:
            self.timer = self.send_after(self.timeout, ("deadline", self.generation))
        return None

    async def handle_info(self, msg: Any) -> None:
        if isinstance(msg, Down):
            for party, mref in self.registered.items():
                if mref == msg.ref:
                    self._break(
                        ("exited", msg.pid, msg.reason),
                        f"party {party!r} exited ({msg.reason!r}) before the barrier tripped",
                    )
                    return
        elif msg == ("deadline", self.generation) and self.broken is None:
            self._break(
                "timeout",
                f"only {len(self.waiting)} of {self.parties} parties arrived within "
                f"{self.timeout} s",
            )

    def _next_generation(self) -> list[Caller]:
        waiting, self.waiting = self.waiting, []
        for mref in self.registered.values():
            self.demonitor(mref, flush=True)
        self.registered.clear()
        self.anonymous = 0
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        self.generation += 1
        return waiting

    def _trip(self) -> None:
        for index, caller in enumerate(self._next_generation()):
            caller.reply(index)
        self._emit("tripped", None)

    def _break(self, reason: Any, detail: str) -> None:
        self.broken = BarrierBroken(reason, f"the barrier is broken: {detail}")
        for caller in self._next_generation():
            caller.reply(self.broken)
        self._emit("broken", reason)

    def _emit(self, what: str, reason: Any) -> None:
        telemetry = self.runtime.telemetry
        if telemetry.active:
            telemetry.emit(
                BARRIER_EVENT,
                {"generation": self.generation},
                {"event": what, "reason": reason, "parties": self.parties},
            )


class Barrier:
    """A handle on a cross-agent barrier; pass it (or its name) to the parties."""

    def __init__(self, ref: ActorRef) -> None:
        if not isinstance(ref, ActorRef):
            raise CoordinationError(f"Barrier() takes the barrier's ActorRef, got: {ref!r}")
        self.ref = ref

    def __repr__(self) -> str:
        return f"Barrier({self.ref!r})"

    @classmethod
    async def start(cls, parties: int, timeout: float, *, name: Any = None) -> Barrier:
        """Start a barrier of ``parties`` (>= 1) that breaks ``timeout`` seconds after a
        generation's first party registered; ``name`` registers it for ``lookup``."""
        count = check_count(parties, "parties", 1)
        seconds = check_seconds(timeout, "timeout")
        ref = await current_runtime().spawn(_BarrierActor, count, seconds, name=name)
        return cls(ref)

    @classmethod
    def lookup(cls, name: Any) -> Barrier:
        """The barrier registered as ``name`` (``LookupError`` if there is none)."""
        ref = current_runtime().whereis(name)
        if ref is None:
            raise LookupError(f"no barrier is registered as {name!r}")
        return cls(ref)

    async def _call(self, request: str, timeout: float | None = 5.0) -> Any:
        reply = await self.ref.call(request, timeout=timeout)
        if isinstance(reply, Exception):
            raise reply
        return reply

    async def join(self) -> None:
        """Register the calling actor for this generation before it arrives, so that
        its crash breaks the barrier at once; ``BarrierBroken`` if already broken."""
        await self._call("join")

    async def wait(self) -> int:
        """Arrive and wait for the others; return the arrival index (0-based).

        Raises:
            BarrierBroken: a party exited, the deadline passed, or it was reset.
            CoordinationError: this generation already has all its parties.
        """
        index: int = await self._call("wait", timeout=None)
        return index

    async def reset(self) -> None:
        """Break the current generation (its waiters get ``BarrierBroken``) and make
        the barrier usable again."""
        await self._call("reset")

    async def statistics(self) -> BarrierStatistics:
        stats: BarrierStatistics = await self._call("statistics")
        return stats

    async def stop(self) -> None:
        """Stop the barrier actor (waiters get ``ActorDead``)."""
        await self.ref.stop()
