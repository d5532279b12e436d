"""Reject accounting for the cluster protocol: bad frames per peer and by error code.

A receiver calls ``PeerHealth.bad`` for every refused frame and ``good`` for every valid
one; a peer that sends ``max_consecutive_bad`` bad frames in a row is to be
disconnected, and its frames dropped unread for a while (a ROUTER cannot close one
peer's connection, so a quarantine is how it hangs up).

What is kept per peer is bounded twice, so that any number of peers sending bad frames
costs bounded memory: a peer whose last bad frame is ``idle_s`` old (and no longer
quarantined) is forgotten, and at most ``max_peers`` peers are tracked, the ones whose
last bad frame is the oldest going first.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from dataclasses import dataclass
from typing import Final

from ._schema import ERROR_CODES, ErrorCode

MAX_CONSECUTIVE_BAD_FRAMES: Final = 10
"""Bad frames in a row after which a peer is disconnected."""
QUARANTINE_S: Final = 30.0
"""How long a disconnected peer's frames are dropped unread (10 liveness windows)."""
PEER_IDLE_S: Final = 60.0
"""A peer that sent no bad frame for this long (nor is quarantined) is forgotten."""
MAX_TRACKED_PEERS: Final = 10_000
"""Peers tracked at most (a few hundred bytes each); the least recently bad go first."""


@dataclass(frozen=True, slots=True)
class RejectStatistics:
    """Rejected frames so far: in total, by error code, and the peers being tracked
    (``peers_forgotten``: dropped for the idle limit or the ``max_peers`` bound)."""

    total: int
    by_code: Mapping[str, int]
    peers_tracked: int
    peers_quarantined: int
    disconnects: int
    peers_forgotten: int = 0


class PeerHealth:
    """Counts bad frames per peer and by code; says when a peer must be disconnected.

    ``bad(peer, code, now)`` returns True once ``max_consecutive_bad`` bad frames came
    in a row from ``peer``: drop its session, send it BYE, and ignore its frames while
    ``quarantined(peer, now)`` (a ROUTER cannot close one peer's connection). A good
    frame resets the run. A peer is forgotten ``max(idle_s, quarantine_s)`` after its
    last bad frame (``expire``), and at most ``max_peers`` peers are tracked.
    """

    __slots__ = (
        "_by_code",
        "_disconnects",
        "_expired",
        "_horizon",
        "_last_bad",
        "_max_bad",
        "_max_peers",
        "_quarantine",
        "_quarantine_s",
        "_runs",
        "_total",
        "_totals",
    )

    def __init__(
        self,
        *,
        max_consecutive_bad: int = MAX_CONSECUTIVE_BAD_FRAMES,
        quarantine_s: float = QUARANTINE_S,
        max_peers: int = MAX_TRACKED_PEERS,
        idle_s: float = PEER_IDLE_S,
    ) -> None:
        if max_consecutive_bad < 1 or max_peers < 1 or quarantine_s < 0 or idle_s < 0:
            raise ValueError(
                "max_consecutive_bad and max_peers must be >= 1, quarantine_s and idle_s >= 0"
            )
        self._max_bad = max_consecutive_bad
        self._quarantine_s = quarantine_s
        self._max_peers = max_peers
        # Forgetting a peer ends its quarantine, so it is kept at least that long.
        self._horizon = max(idle_s, quarantine_s)
        # Every tracked peer, by the time of its last bad frame, oldest first: the
        # other tables only hold peers that are in this one.
        self._last_bad: dict[Hashable, float] = {}
        self._runs: dict[Hashable, int] = {}  # only peers whose last frame was bad
        self._totals: dict[Hashable, int] = {}
        self._quarantine: dict[Hashable, float] = {}  # peer -> quarantined until
        self._by_code: dict[str, int] = dict.fromkeys(ERROR_CODES, 0)
        self._total = 0
        self._disconnects = 0
        self._expired = 0

    def bad(self, peer: Hashable, code: ErrorCode | str, now: float) -> bool:
        """Count one bad frame; True when this one makes ``peer`` cross the threshold."""
        self.expire(now)
        self._total += 1
        self._by_code[code] = self._by_code.get(code, 0) + 1
        last_bad = self._last_bad
        last_bad.pop(peer, None)
        last_bad[peer] = now
        self._totals[peer] = self._totals.get(peer, 0) + 1
        run = self._runs.get(peer, 0) + 1
        self._runs[peer] = run
        while len(last_bad) > self._max_peers:
            self._drop(next(iter(last_bad)))
        if run != self._max_bad:
            return False
        self._disconnects += 1
        del self._runs[peer]
        self._quarantine[peer] = now + self._quarantine_s
        return True

    def good(self, peer: Hashable) -> None:
        """A valid frame from ``peer`` ends its run of bad ones (cheap: called per frame)."""
        if self._runs:
            self._runs.pop(peer, None)

    def quarantined(self, peer: Hashable, now: float) -> bool:
        """Whether frames from ``peer`` are to be dropped unread right now."""
        until = self._quarantine.get(peer)
        if until is None:
            return False
        if now < until:
            return True
        del self._quarantine[peer]
        return False

    def expire(self, now: float) -> int:
        """Forget the peers whose last bad frame is older than the idle limit; how many.

        Cheap when there is nothing to forget (it looks at the oldest peer only), so a
        receiver may call it for every batch of frames.
        """
        last_bad, oldest = self._last_bad, now - self._horizon
        dropped = 0
        while last_bad:
            peer = next(iter(last_bad))
            if last_bad[peer] > oldest:
                break
            self._drop(peer)
            dropped += 1
        return dropped

    def _drop(self, peer: Hashable) -> None:
        self.forget(peer)
        self._expired += 1

    def forget(self, peer: Hashable) -> None:
        """Drop everything known about ``peer`` (its run, total and quarantine)."""
        self._last_bad.pop(peer, None)
        self._runs.pop(peer, None)
        self._totals.pop(peer, None)
        self._quarantine.pop(peer, None)

    def consecutive(self, peer: Hashable) -> int:
        return self._runs.get(peer, 0)

    def rejected(self, peer: Hashable) -> int:
        return self._totals.get(peer, 0)

    def statistics(self) -> RejectStatistics:
        return RejectStatistics(
            total=self._total,
            by_code=dict(self._by_code),
            peers_tracked=len(self._last_bad),
            peers_quarantined=len(self._quarantine),
            disconnects=self._disconnects,
            peers_forgotten=self._expired,
        )
