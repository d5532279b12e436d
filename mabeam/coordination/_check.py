"""Argument checks shared by the protocols: each names the argument and the bad value."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from foundation import ActorRef

from ._errors import CoordinationError


def check_refs(refs: Any, what: str) -> tuple[ActorRef, ...]:
    """A non-empty tuple of distinct ``ActorRef``s."""
    if isinstance(refs, ActorRef | str | bytes) or not isinstance(refs, Iterable):
        raise CoordinationError(f"{what} must be a collection of ActorRefs, got: {refs!r}")
    found = tuple(refs)
    if not found:
        raise CoordinationError(f"{what} must not be empty")
    bad = [r for r in found if not isinstance(r, ActorRef)]
    if bad:
        raise CoordinationError(f"{what} must be ActorRefs, got: {bad[0]!r}")
    if len(set(found)) != len(found):
        seen: set[ActorRef] = set()
        dup = next(r for r in found if r in seen or seen.add(r))  # type: ignore[func-returns-value]
        raise CoordinationError(f"{what} must be distinct; {dup!r} appears twice")
    return found


def check_seconds(value: Any, what: str) -> float:
    """A finite number of seconds > 0."""
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or not value > 0
    ):
        raise CoordinationError(f"{what} must be a finite number of seconds > 0, got: {value!r}")
    return float(value)


def check_count(value: Any, what: str, minimum: int) -> int:
    """An int >= ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise CoordinationError(f"{what} must be an int >= {minimum}, got: {value!r}")
    return value


def check_quorum(quorum: Any, n: int) -> int:
    """The number of ballots needed: an int is a count in [0, n], a float a fraction in
    [0.0, 1.0] of the ``n`` participants (rounded up)."""
    if isinstance(quorum, bool) or not isinstance(quorum, int | float):
        raise CoordinationError(
            f"quorum must be a count (int) or a fraction (float in [0, 1]), got: {quorum!r}"
        )
    if isinstance(quorum, int):
        if not 0 <= quorum <= n:
            raise CoordinationError(
                f"quorum as a count must be in [0, {n}] (the number of participants), "
                f"got: {quorum!r}"
            )
        return quorum
    if not (math.isfinite(quorum) and 0.0 <= quorum <= 1.0):
        raise CoordinationError(f"quorum as a fraction must be in [0.0, 1.0], got: {quorum!r}")
    return math.ceil(quorum * n - 1e-9)


def check_weights(
    weights: Mapping[ActorRef, float] | Sequence[float], refs: tuple[ActorRef, ...]
) -> tuple[float, ...]:
    """One finite weight >= 0 per participant (a sequence in participant order, or a
    mapping with exactly the participants as keys), not all zero."""
    if isinstance(weights, Mapping):
        missing = [r for r in refs if r not in weights]
        extra = [k for k in weights if k not in set(refs)]
        if missing or extra:
            raise CoordinationError(
                "weights must have exactly the participants as keys; "
                f"missing: {missing!r}, not participants: {extra!r}"
            )
        values = [weights[r] for r in refs]
    elif isinstance(weights, Sequence) and not isinstance(weights, str | bytes):
        values = list(weights)
        if len(values) != len(refs):
            raise CoordinationError(
                f"weights must have one entry per participant ({len(refs)}), got {len(values)}"
            )
    else:
        raise CoordinationError(
            f"weights must be a sequence or a mapping of participant -> weight, got: {weights!r}"
        )
    for ref, w in zip(refs, values, strict=True):
        if isinstance(w, bool) or not isinstance(w, int | float) or not math.isfinite(w) or w < 0:
            raise CoordinationError(f"a weight must be a finite number >= 0, got {w!r} for {ref!r}")
    if not math.fsum(values) > 0:
        raise CoordinationError("weights are all zero: no weighted vote could ever pass")
    return tuple(float(w) for w in values)
