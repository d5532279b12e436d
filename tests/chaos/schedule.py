"""The seeded fault schedule of a chaos run.

``FaultSchedule(seed, ...)`` draws every fault of a run up front from
``random.Random(seed)``: its kind, its target, how long it lasts, and when it fires,
counted in jobs: fault ``i`` fires once ``after_jobs`` more jobs have ended (as the
submitter saw them) since fault ``i - 1``, or ``max_gap_s`` after it when the jobs do
not move. Counting jobs rather than seconds makes a replay of a seed inject the same
faults at the same point of the sweep whatever the machine's speed; the faults' own
durations are wall-clock seconds (these are real processes). The last fault fires
before ~85 % of the jobs have ended, so the run ends with a quiet phase in which the
cluster must drain the queue on its own.

Kinds (docs/reliability.md, "Chaos", says what each does to the cluster):

==================  ======================================================================
node_kill           SIGKILL a node agent; restart it on the same work dir ``duration_s`` later
node_stop           SIGSTOP a node agent, SIGCONT ``duration_s`` later (often longer than
                    the lease: its jobs are requeued while it is frozen)
coordinator_kill    SIGKILL the coordinator; restart it on the same state file and port
                    ``duration_s`` later
cut                 reset (RST) the proxied connections of the targets (node agents, and
                    the submitter's link)
partition           hold the targets' traffic for ``duration_s`` (connections stay open)
drop                lose messages (probability ``amount``) for ``duration_s``; each loss
                    resets its connection
duplicate           deliver messages twice (probability ``amount``) for ``duration_s``
delay               delay the targets' traffic by ``amount`` s (+ jitter) for ``duration_s``
==================  ======================================================================

Worker crashes are not scheduled here: the task itself crashes for a seeded subset of
(job, attempt) (``chaos_tasks.crashes``).
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass
from typing import Final

KINDS: Final = (
    "node_kill",
    "node_stop",
    "coordinator_kill",
    "cut",
    "partition",
    "drop",
    "duplicate",
    "delay",
)
PROXY_KINDS: Final = frozenset({"cut", "partition", "drop", "duplicate", "delay"})
CURVE_KINDS: Final = tuple(k for k in KINDS if k != "duplicate")
"""Under CURVE a duplicated message is refused by libzmq (nonce) and drops the
connection: that is a cut, so a CURVE run leaves ``duplicate`` out."""


@dataclass(frozen=True, slots=True)
class Fault:
    """One scheduled fault (see the module docstring for the fields' meaning)."""

    index: int
    kind: str
    after_jobs: int
    targets: tuple[str, ...]
    duration_s: float = 0.0
    amount: float = 0.0

    def describe(self) -> str:
        extra = f" amount={self.amount:.3f}" if self.amount else ""
        return (
            f"#{self.index} +{self.after_jobs} jobs: {self.kind} {','.join(self.targets)}"
            f" for {self.duration_s:.2f} s{extra}"
        )


class FaultSchedule:
    """The faults of one seeded run, in firing order."""

    def __init__(
        self,
        seed: int,
        *,
        jobs: int,
        faults: int,
        nodes: tuple[str, ...],
        lease_s: float,
        kinds: tuple[str, ...] = KINDS,
        max_gap_s: float = 3.0,
    ) -> None:
        unknown = set(kinds) - set(KINDS)
        if unknown or not kinds:
            raise ValueError(f"kinds must be a non-empty subset of {KINDS}, got {kinds!r}")
        self.seed = seed
        self.max_gap_s = max_gap_s
        rng = random.Random(seed)
        budget = max(int(jobs * 0.85), 1)
        gap = max(budget // (faults + 1), 1)
        order: list[str] = []
        while len(order) < faults:  # every kind once per round, in a seeded order
            round_ = list(kinds)
            rng.shuffle(round_)
            order += round_
        faults_: list[Fault] = []
        for i, kind in enumerate(order[:faults]):
            after = rng.randint(max(gap // 2, 1), gap * 3 // 2 + 1)
            faults_.append(self._draw(rng, i, kind, after, nodes, lease_s))
        self.faults = tuple(faults_)

    @staticmethod
    def _draw(
        rng: random.Random, index: int, kind: str, after: int, nodes: tuple[str, ...], lease: float
    ) -> Fault:
        one = (rng.choice(nodes),)
        if kind in PROXY_KINDS:  # the submitter's link too
            links = (*nodes, "submitter")
            one = (rng.choice(links),)
            some = links if rng.random() < 0.3 else one
        if kind == "node_kill":
            return Fault(index, kind, after, one, rng.uniform(0.05, 1.0))
        if kind == "node_stop":  # half of them outlast the lease
            long = rng.random() < 0.5
            pause = rng.uniform(1.5 * lease, 4 * lease) if long else rng.uniform(0.1, 0.8 * lease)
            return Fault(index, kind, after, one, pause)
        if kind == "coordinator_kill":
            return Fault(index, kind, after, ("coordinator",), rng.uniform(0.0, 0.8))
        if kind == "cut":
            return Fault(index, kind, after, some)
        if kind == "partition":
            return Fault(index, kind, after, some, rng.uniform(0.3 * lease, 3 * lease))
        if kind == "drop":
            return Fault(index, kind, after, some, rng.uniform(0.2, 1.0), rng.uniform(0.05, 0.3))
        if kind == "duplicate":
            return Fault(index, kind, after, some, rng.uniform(0.2, 1.5), rng.uniform(0.1, 0.5))
        delay = rng.uniform(0.005, 1.2 * lease)  # the longest ones look like a silent peer
        return Fault(index, kind, after, some, rng.uniform(0.3, 1.5), delay)

    def counts(self) -> Counter[str]:
        return Counter(f.kind for f in self.faults)

    def describe(self) -> str:
        return "\n".join(f.describe() for f in self.faults)
