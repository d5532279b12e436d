"""mabeam.coordination: protocols between agents, each an actor with a deadline and a
defined outcome when participants are slow, crash or answer garbage.

    outcome = await vote(judges, proposal, rule="majority", quorum=0.5, timeout=2.0)
    election = await elect_leader("trainers", members)
    contract = await contract_net(manager, workers, task, deadline=1.0)
    barrier = await Barrier.start(parties=3, timeout=10.0)

Every protocol asks its real participants; see docs/coordination.md.
"""

from __future__ import annotations

from foundation._public import fixup_module_metadata

from ._barrier import BARRIER_EVENT, Barrier, BarrierStatistics
from ._contract import (
    CONTRACT_EVENT,
    Award,
    Bid,
    BidRecord,
    CallForProposals,
    Contractor,
    ContractOutcome,
    ContractRound,
    contract_net,
)
from ._election import (
    ELECTION_EVENT,
    Election,
    ElectionMember,
    Fence,
    LeaderChanged,
    LeaderElection,
    Leadership,
    elect_leader,
    election_key,
)
from ._errors import BarrierBroken, CoordinationError, StaleEpoch
from ._vote import VOTE_EVENT, BallotRecord, VoteOutcome, Voter, VoteRequest, vote

__all__ = (
    "BARRIER_EVENT",
    "CONTRACT_EVENT",
    "ELECTION_EVENT",
    "VOTE_EVENT",
    "Award",
    "BallotRecord",
    "Barrier",
    "BarrierBroken",
    "BarrierStatistics",
    "Bid",
    "BidRecord",
    "CallForProposals",
    "ContractOutcome",
    "ContractRound",
    "Contractor",
    "CoordinationError",
    "Election",
    "ElectionMember",
    "Fence",
    "LeaderChanged",
    "LeaderElection",
    "Leadership",
    "StaleEpoch",
    "VoteOutcome",
    "VoteRequest",
    "Voter",
    "contract_net",
    "elect_leader",
    "election_key",
    "vote",
)

fixup_module_metadata(__name__, globals())
