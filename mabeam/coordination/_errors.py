"""The exceptions of mabeam.coordination.

``CoordinationError``
    An entry point was called with arguments that cannot work (no participants, an
    unknown rule, a quorum out of range, weights that do not match, a timeout that is
    not a positive number). Raised before anything starts; a ``ValueError``.

``StaleEpoch``
    A ``Fence`` refused an action stamped with an epoch older than one it already saw:
    the action comes from a leader that has since been replaced.

``BarrierBroken``
    A ``Barrier`` can no longer trip: a registered party exited, the deadline passed, or
    it was reset. Every waiter gets it at once; ``reason`` says which. A subclass of
    ``foundation.BrokenBarrier``, so code written for the local barrier catches it too.

Outcomes of protocols (a vote that did not pass, a contract nobody bid on) are values,
never exceptions: see ``VoteOutcome`` and ``ContractOutcome``.
"""

from __future__ import annotations

from typing import Any

from foundation import BrokenBarrier

__all__ = ("BarrierBroken", "CoordinationError", "StaleEpoch")


class CoordinationError(ValueError):
    """A coordination protocol was given arguments it cannot run with."""


class StaleEpoch(Exception):
    """An action carried an epoch older than the newest one its fence has seen."""

    def __init__(self, epoch: int, current: int) -> None:
        self.epoch = epoch
        self.current = current
        super().__init__(
            f"epoch {epoch} is stale: epoch {current} has been seen; the action comes "
            f"from a replaced leader"
        )


class BarrierBroken(BrokenBarrier):
    """The cross-agent barrier broke; ``reason`` is ``"timeout"``, ``"reset"`` or
    ``("exited", pid, exit_reason)`` for a party that left."""

    def __init__(self, reason: Any, detail: str) -> None:
        self.reason = reason
        super().__init__(detail)
