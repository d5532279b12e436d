"""The counting rules of ``vote``: a running tally that knows when the outcome is certain.

Each participant is in one of three states: a cast ballot (``"yes"``, ``"no"``,
``"abstain"``), *missing* (timed out, crashed or answered garbage: counts as an
abstention but not towards the quorum) or still *pending*. ``Tally.decide`` returns the
outcome as soon as every way the pending participants could still answer leads to the
same outcome, and None while it does not: so deciding early never changes a result.

- quorum: at least ``required`` ballots cast, else ``"no_quorum"``;
- ``majority``: accepted when yes > no (abstentions do not count); a tie rejects;
- ``weighted``: accepted when the weight of yes > the weight of no; a tie rejects;
- ``unanimous``: accepted when every participant voted yes.

The tally is kept up to date one ballot at a time (a vote among 1,000 participants
re-counted on every answer spent ~85 % of its time counting), and weights are summed as
exact fractions, so an early decision and the final count can never disagree by a
rounding error.
"""

from __future__ import annotations

from collections.abc import Sequence
from fractions import Fraction
from typing import Final, Literal, TypeAlias

Rule: TypeAlias = Literal["majority", "weighted", "unanimous"]
Result: TypeAlias = Literal["accepted", "rejected", "no_quorum"]
RULES: Final[tuple[str, ...]] = ("majority", "weighted", "unanimous")
CAST: Final = frozenset({"yes", "no", "abstain"})
MISSING: Final = "missing"


class Tally:
    """The counts of one vote so far; ``add`` a state per participant as it is known."""

    def __init__(self, rule: Rule, required: int, weights: Sequence[float]) -> None:
        self.rule = rule
        self.required = required
        self.weights = [Fraction(w) for w in weights] if rule == "weighted" else None
        self.pending = len(weights)
        self.cast = 0
        self.not_yes = 0  # known states other than yes (unanimous fails on the first)
        self.yes: Fraction | int = 0
        self.no: Fraction | int = 0
        self.open: Fraction | int = sum(self.weights) if self.weights else self.pending

    def add(self, i: int, state: str) -> None:
        """Participant ``i`` is now known: a ballot or ``MISSING``."""
        w: Fraction | int = 1 if self.weights is None else self.weights[i]
        self.pending -= 1
        self.open -= w
        if state in CAST:
            self.cast += 1
        if state == "yes":
            self.yes += w
        else:
            self.not_yes += 1
            if state == "no":
                self.no += w

    def decide(self, *, final: bool = False) -> Result | None:
        """The outcome if it is certain, else None; ``final``: the pending are missing."""
        pending, open_ = (0, 0) if final else (self.pending, self.open)
        if self.cast + pending < self.required:
            return "no_quorum"
        if self.cast < self.required:
            return None  # the quorum may still be met or missed: both outcomes are open
        if self.rule == "unanimous":
            if self.not_yes or (final and self.pending):
                return "rejected"
            return "accepted" if pending == 0 else None
        if self.yes > self.no + open_:
            return "accepted"  # even if every pending participant votes no
        if self.yes + open_ <= self.no:
            return "rejected"  # even if every pending participant votes yes (a tie rejects)
        return None
