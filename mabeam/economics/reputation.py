"""Node reputation: each node's recent success rate, with old outcomes fading away.

Every outcome a node reports adds weight 1 to its trials (and to its successes if it
succeeded); all of a node's weight halves every ``half_life_s`` seconds of the clock
values passed in. The score is a smoothed ratio::

    score = (successes + prior_successes) / (trials + prior_trials)

so a node never seen scores the prior ratio (1 of 1 by default: trusted until it fails),
one that fails sinks below the ones that succeed, and after a long quiet spell every
node drifts back to the prior. Pure and deterministic: no I/O, no clock
of its own; ``rows`` / ``from_rows`` let a caller persist it.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Final

__all__ = ("Reputation",)

_MAX_NODE_CHARS: Final = 256


class Reputation:
    """Decayed success rates per node (see the module docstring)."""

    __slots__ = ("_half_life", "_nodes", "_prior_successes", "_prior_trials")

    def __init__(
        self,
        half_life_s: float = 3600.0,
        prior_successes: float = 1.0,
        prior_trials: float = 1.0,
    ) -> None:
        if not _finite(half_life_s) or half_life_s <= 0:
            raise ValueError(f"half_life_s must be a finite number > 0, got: {half_life_s!r}")
        if not _finite(prior_trials) or prior_trials <= 0:
            raise ValueError(f"prior_trials must be a finite number > 0, got: {prior_trials!r}")
        if not _finite(prior_successes) or not 0 <= prior_successes <= prior_trials:
            raise ValueError(
                f"prior_successes must be in 0..prior_trials ({prior_trials!r}),"
                f" got: {prior_successes!r}"
            )
        self._half_life = float(half_life_s)
        self._prior_successes = float(prior_successes)
        self._prior_trials = float(prior_trials)
        # node -> [successes, trials, updated]: the weights as of ``updated``.
        self._nodes: dict[str, list[float]] = {}

    def record(self, node: str, ok: bool, now: float) -> None:
        """Count one outcome of ``node`` at clock value ``now``."""
        _check_node(node)
        if not isinstance(ok, bool):
            raise ValueError(f"ok must be a bool, got: {ok!r}")
        now = _check_now(now)
        entry = self._nodes.get(node)
        if entry is None:
            self._nodes[node] = [1.0 if ok else 0.0, 1.0, now]
            return
        successes, trials, updated = entry
        keep = self._decay(updated, now)
        entry[0] = successes * keep + (1.0 if ok else 0.0)
        entry[1] = trials * keep + 1.0
        entry[2] = max(updated, now)

    def score(self, node: str, now: float) -> float:
        """``node``'s score in [0, 1] at ``now``; the prior ratio for a node never seen."""
        _check_node(node)
        now = _check_now(now)
        entry = self._nodes.get(node)
        if entry is None:
            return self._prior_successes / self._prior_trials
        successes, trials, updated = entry
        keep = self._decay(updated, now)
        ratio = (successes * keep + self._prior_successes) / (trials * keep + self._prior_trials)
        return min(1.0, max(0.0, ratio))

    def snapshot(self, now: float) -> dict[str, float]:
        """Every known node's score at ``now``, by node name."""
        return {node: self.score(node, now) for node in sorted(self._nodes)}

    def rows(self) -> list[tuple[str, float, float, float]]:
        """The state to persist: ``(node, successes, trials, updated)`` per node."""
        return [(node, s, t, u) for node, (s, t, u) in sorted(self._nodes.items())]

    @classmethod
    def from_rows(
        cls,
        rows: Iterable[tuple[str, float, float, float]],
        half_life_s: float = 3600.0,
        prior_successes: float = 1.0,
        prior_trials: float = 1.0,
    ) -> Reputation:
        """A reputation from ``rows()`` output; ``ValueError`` naming a bad row."""
        rep = cls(half_life_s, prior_successes, prior_trials)
        for row in rows:
            try:
                node, successes, trials, updated = row
            except (TypeError, ValueError):
                raise ValueError(
                    f"a row is (node, successes, trials, updated), got: {row!r}"
                ) from None
            _check_node(node)
            ok = all(_finite(v) for v in (successes, trials, updated))
            if not ok or not 0 <= successes <= trials:
                raise ValueError(f"a row needs finite 0 <= successes <= trials, got: {row!r}")
            if node in rep._nodes:
                raise ValueError(f"node {node!r} has two rows")
            rep._nodes[node] = [float(successes), float(trials), float(updated)]
        return rep

    def _decay(self, updated: float, now: float) -> float:
        """The factor weights keep from ``updated`` to ``now`` (1 if the clock went back)."""
        return math.pow(0.5, max(0.0, now - updated) / self._half_life)


def _finite(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _check_node(node: object) -> None:
    if not isinstance(node, str) or not 1 <= len(node) <= _MAX_NODE_CHARS:
        raise ValueError(f"a node is a str of 1 to {_MAX_NODE_CHARS} characters, got: {node!r}")


def _check_now(now: float) -> float:
    if not _finite(now):
        raise ValueError(f"now must be a finite clock value, got: {now!r}")
    return float(now)
