"""The ``auction`` scheduling policy: freed GPU slots are sold, not handed out in order.

Nodes list their GPUs with an owner (the ledger account that is paid) and a reserve
price per GPU-hour (``Inventory.owner`` / ``.price``). Whenever the scheduler has nodes
with credit, each node with free GPUs holds one sealed-bid auction among the queued
GPU jobs that fit it: ``vcg`` over bundles (a job needing k GPUs bids for k of the
node's free GPUs, all or nothing), which for single-GPU jobs and one free GPU is the
Vickrey auction. Winners pay the VCG price (the externality they impose, at least the
reserve) per hour of the bundle: the lease carries ``LeaseTerms`` and the store places
the team's escrow hold in the lease's own transaction, settles it on completion by the
hours the job held the GPUs, and releases it on a failure, a cancel or a requeue.

Bids are truthful valuations (the dominant strategy in a Vickrey/VCG auction), made
for each team from its job and its budget (``valuation``). Jobs that need no GPU take
no part: they are placed by priority and cost nothing.

The policy keeps the teams' available balances as the store last reported them
(``set_balance``, from each committed batch) minus the holds of its own picks not yet
committed, so one round never promises a team more than it has; the store has the
final word (a hold that would overdraw refuses the lease, and the job waits).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from ..economics import MAX_AMOUNT, MICRO, Reputation, SealedBid, vcg
from ._coord_policy import NodeCapacity, PriorityPolicy, ReadyJob
from ._coord_store import Committed
from ._frames import default_owner
from .store import Completed, Failed, LeaseTerms, Retried

__all__ = (
    "DEFAULT_HOLD_S",
    "AuctionPolicy",
    "Listing",
    "MarketRound",
    "market_view",
    "valuation",
)

DEFAULT_HOLD_S: Final = 3600.0
"""How long a hold pays for when the job has no ``timeout_s``: one hour."""
_MAX_ROUNDS_KEPT: Final = 256


@dataclass(frozen=True, slots=True)
class Listing:
    """A node's offer: who is paid for its GPUs, and its reserve (micro-credits per
    GPU-hour)."""

    node_id: str
    owner: str
    reserve: int


@dataclass(frozen=True, slots=True)
class MarketRound:
    """One auction: on which node, among how many bids, who won what at which price."""

    node_id: str
    time: float
    bidders: int
    capacity: int
    awards: tuple[tuple[str, str, int, int, int], ...]  # job, team, gpus, value, price (/h)


def hold_hours(job: ReadyJob, default_s: float) -> float:
    """The hours a job's hold pays for: its timeout, else ``default_s``."""
    return (job.timeout_s if job.timeout_s is not None else default_s) / 3600.0


def valuation(
    job: ReadyJob, *, available: int, demand_hours: float, reputation: float, hold_s: float
) -> int:
    """What one hour of the job's GPU bundle is worth to its team (micro-credits): its
    truthful bid.

    A job that states a ``value`` (credits per GPU-hour) is worth that; otherwise its
    team spreads what it has over the GPU-hours its queued jobs need, weighted by the
    job's priority (x2 per +10). Either way times the node's reputation (the chance the
    hour yields a result), and never more than the team could pay for the job's whole
    hold. A job without a team bids nothing.
    """
    if not job.team or job.gpus <= 0:
        return 0
    hours = hold_hours(job, hold_s) * job.gpus
    if job.value is not None:
        per_gpu = job.value * MICRO
    else:
        per_gpu = available / max(demand_hours, hours) * 2.0 ** (job.priority / 10)
    bundle = per_gpu * job.gpus * max(0.0, min(1.0, reputation))
    affordable = available / (hours / job.gpus) if hours > 0 else 0.0
    return int(max(0.0, min(bundle, affordable, MAX_AMOUNT)))


def market_view(
    policy: str, nodes: Iterable[tuple[str, Any]], market: AuctionPolicy | None
) -> dict[str, Any]:
    """What MARKET shows of the scheduler: its policy and each connected node's listing
    (node, owner, reserve in micro-credits per GPU-hour, GPUs, reputation)."""
    now = time.time()
    listings = []
    for node_id, inv in nodes:
        score = market.reputation.score(node_id, now) if market is not None else 1.0
        listings.append((node_id, inv.payee, round(inv.price * MICRO), len(inv.gpus), score))
    return {"policy": policy, "listings": listings}


class AuctionPolicy:
    """Sells free GPUs by VCG auction per node (see the module docstring)."""

    name = "auction"

    def __init__(
        self,
        *,
        hold_s: float = DEFAULT_HOLD_S,
        reputation: Reputation | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.hold_s = hold_s
        self.reputation = reputation if reputation is not None else Reputation()
        self.listings: dict[str, Listing] = {}
        self.balances: dict[str, int] = {}
        self.rounds: list[MarketRound] = []
        self._clock = clock
        self._free = PriorityPolicy()  # jobs that need no GPU
        self._teams: dict[str, PriorityPolicy] = {}  # GPU jobs per team
        self._jobs: dict[str, ReadyJob] = {}
        self._demand: dict[str, float] = {}  # queued GPU-hours per team
        self._terms: dict[str, LeaseTerms] = {}

    # -- the queue (SchedulingPolicy) ---------------------------------------------------

    def add(self, job: ReadyJob) -> None:
        self.remove(job.job_id)
        self._jobs[job.job_id] = job
        if job.gpus <= 0:
            self._free.add(job)
            return
        team = self._teams.get(job.team)
        if team is None:
            team = self._teams[job.team] = PriorityPolicy()
        team.add(job)
        self._demand[job.team] = self._demand.get(job.team, 0.0) + self._hours(job)

    def remove(self, job_id: str) -> ReadyJob | None:
        job = self._jobs.pop(job_id, None)
        if job is None:
            return None
        if job.gpus <= 0:
            self._free.remove(job_id)
        else:
            self._teams[job.team].remove(job_id)
            self._demand[job.team] = max(0.0, self._demand[job.team] - self._hours(job))
        return job

    def __contains__(self, job_id: object) -> bool:
        return job_id in self._jobs

    def __len__(self) -> int:
        return len(self._jobs)

    def terms(self, job_id: str) -> LeaseTerms | None:
        """The price of a job this policy just assigned (None: it pays nothing)."""
        return self._terms.pop(job_id, None)

    # -- the market ---------------------------------------------------------------------

    def list_node(self, node_id: str, owner: str, price: float) -> None:
        """A node offers its GPUs: ``owner`` is paid, ``price`` credits per GPU-hour is
        its reserve."""
        reserve = round(price * MICRO)
        self.listings[node_id] = Listing(node_id, owner or default_owner(node_id), reserve)

    def set_balance(self, team: str, available: int) -> None:
        """What the store says ``team`` has available now."""
        self.balances[team] = available

    def assign(self, nodes: Sequence[NodeCapacity]) -> list[tuple[ReadyJob, NodeCapacity]]:
        out: list[tuple[ReadyJob, NodeCapacity]] = []
        if any(self._teams.values()):
            for node in nodes:
                if node.credit > 0 and node.gpus > 0:
                    out += self._auction(node)
        if len(self._free):
            for job, node in self._free.assign(nodes):
                del self._jobs[job.job_id]
                out.append((job, node))
        return out

    def _auction(self, node: NodeCapacity) -> list[tuple[ReadyJob, NodeCapacity]]:
        listing = self.listings.get(node.node_id)
        if listing is None:
            listing = Listing(node.node_id, default_owner(node.node_id), 0)
        seats = min(node.gpus, node.credit)
        capacity = node.gpus
        candidates = self._candidates(node, seats)
        if not candidates:
            return []
        score = self.reputation.score(node.node_id, self._clock())
        bids: list[SealedBid] = []
        for job in candidates:
            team = job.team
            value = valuation(
                job,
                available=self.balances.get(team, 0),
                demand_hours=self._demand.get(team, 0.0),
                reputation=score,
                hold_s=self.hold_s,
            )
            bids.append(SealedBid(job.job_id, value, job.gpus, job.seq))
        clearing = vcg(bids, capacity=node.gpus, reserve_per_unit=listing.reserve)
        # More winners than the node has credit for (many small bundles): the highest
        # values keep their seats.
        awards = sorted(clearing.awards, key=lambda a: (-a.value, self._jobs[a.bidder].seq))
        won = {a.bidder: a for a in awards[: node.credit]}
        out: list[tuple[ReadyJob, NodeCapacity]] = []
        record: list[tuple[str, str, int, int, int]] = []
        for job in candidates:
            award = won.get(job.job_id)
            if award is None or not node.fits(job.shape):
                self._teams[job.team].add(job)  # back in line for the next auction
                continue
            hold = math.ceil(award.price * hold_hours(job, self.hold_s))
            if hold > self.balances.get(job.team, 0) and hold > 0:
                # Each bid is capped by the team's whole balance: two wins of one team
                # in one auction can add up to more than it has. The later one waits.
                self._teams[job.team].add(job)
                continue
            del self._jobs[job.job_id]
            self._demand[job.team] = max(0.0, self._demand[job.team] - self._hours(job))
            if award.price > 0 or hold > 0:
                self._terms[job.job_id] = LeaseTerms(job.team, listing.owner, award.price, hold)
                self.balances[job.team] = self.balances.get(job.team, 0) - hold
            node.take(job)
            out.append((job, node))
            record.append((job.job_id, job.team, job.gpus, award.value, award.price))
        self._note(MarketRound(node.node_id, self._clock(), len(bids), capacity, tuple(record)))
        return out

    def _candidates(self, node: NodeCapacity, seats: int) -> list[ReadyJob]:
        """Per team, its best ``seats`` jobs that fit ``node`` (taken out of the queue;
        a team ranks its own jobs by priority, then age). A team offers no more jobs
        than the node has places, so with one free GPU its jobs do not bid against each
        other: the price comes from the other teams or the reserve."""
        picked: list[ReadyJob] = []
        for team in self._teams.values():
            for _ in range(seats):
                job = team.best_for(node)
                if job is None:
                    break
                picked.append(job)
        return picked

    def _hours(self, job: ReadyJob) -> float:
        return hold_hours(job, self.hold_s) * job.gpus

    def _note(self, round_: MarketRound) -> None:
        self.rounds.append(round_)
        if len(self.rounds) > _MAX_ROUNDS_KEPT:
            del self.rounds[: len(self.rounds) - _MAX_ROUNDS_KEPT]

    # -- what the store reports -------------------------------------------------------

    def observe(self, batch: Committed, leased: Mapping[str, str]) -> None:
        """Follow a committed batch: the balances it moved, and each finished attempt's
        node (``leased``: job -> node, before the scheduler frees it) for reputation."""
        self.balances.update(batch.balances)
        now = self._clock()
        for out in batch.outcomes:
            kind = type(out)
            if kind is Completed or kind is Failed or kind is Retried:
                node = leased.get(out.job_id)  # type: ignore[union-attr]
                if node is not None:
                    self.reputation.record(node, kind is Completed, now)
