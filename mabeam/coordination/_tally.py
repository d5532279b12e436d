"""The counting rules of ``vote``, as plain functions over the ballots known so far.

Each participant is in one of three states: a cast ballot (``"yes"``, ``"no"``,
``"abstain"``), *missing* (timed out, crashed or answered garbage: counts as an
abstention but not towards the quorum) or still *pending*. ``decide`` returns the
outcome as soon as every way the pending participants could still answer leads to the
same outcome, and None while it does not: so deciding early never changes a result.

- quorum: at least ``required`` ballots cast, else ``"no_quorum"``;
- ``majority``: accepted when yes > no (abstentions do not count); a tie rejects;
- ``weighted``: accepted when the weight of yes > the weight of no; a tie rejects;
- ``unanimous``: accepted when every participant voted yes.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Final, Literal, TypeAlias

Rule: TypeAlias = Literal["majority", "weighted", "unanimous"]
Result: TypeAlias = Literal["accepted", "rejected", "no_quorum"]
RULES: Final[tuple[str, ...]] = ("majority", "weighted", "unanimous")
CAST: Final = frozenset({"yes", "no", "abstain"})
MISSING: Final = "missing"


def decide(
    rule: Rule,
    required: int,
    states: Sequence[str | None],
    weights: Sequence[float] | None = None,
) -> Result | None:
    """The outcome if it is certain, else None. ``states`` holds per participant a
    ballot, ``MISSING``, or None (pending); pass no pending ones to get the final one."""
    cast = sum(1 for s in states if s in CAST)
    pending = sum(1 for s in states if s is None)
    if cast + pending < required:
        return "no_quorum"
    if cast < required:
        return None  # the quorum may still be met or missed: both outcomes are open
    if rule == "unanimous":
        if any(s is not None and s != "yes" for s in states):
            return "rejected"
        return "accepted" if pending == 0 else None
    if rule == "majority":
        yes = float(sum(1 for s in states if s == "yes"))
        no = float(sum(1 for s in states if s == "no"))
        open_ = float(pending)
    else:
        assert weights is not None
        yes = math.fsum(w for s, w in zip(states, weights, strict=True) if s == "yes")
        no = math.fsum(w for s, w in zip(states, weights, strict=True) if s == "no")
        open_ = math.fsum(w for s, w in zip(states, weights, strict=True) if s is None)
    if yes > no + open_:
        return "accepted"  # even if every pending participant votes no
    if yes + open_ <= no:
        return "rejected"  # even if every pending participant votes yes (a tie rejects)
    return None
