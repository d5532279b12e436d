"""The ops a store batch holds, the checks of their arguments, and the outcomes
``JobStore.apply`` returns for them.

Private to ``mabeam.cluster.store``, which re-exports every public name here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, TypeAlias

from ._store_types import InvalidOpError, InvalidSpecError, JobSpec, StoreError

# -- ops ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Submit:
    """Record new jobs; with an idempotency key, a repeat returns the first job ids.

    ``submitter`` scopes the idempotency key; ``owner`` (default: ``submitter``) is who
    the jobs belong to, and with ``max_unfinished`` the submit is refused
    (``QuotaExceededError``) when the owner's queued, leased and running jobs plus
    these would be more than that.
    """

    specs: Sequence[JobSpec]
    submitter: str
    idempotency_key: str | None = None
    owner: str | None = None
    max_unfinished: int | None = None


def check_submit(op: Submit) -> tuple[JobSpec, ...]:
    """A ``Submit``'s arguments checked (``InvalidOpError``/``InvalidSpecError``)."""
    check_name("submitter", op.submitter)
    if op.owner is not None:
        check_name("owner", op.owner)
    if op.max_unfinished is not None and (
        type(op.max_unfinished) is not int or op.max_unfinished < 1
    ):
        raise InvalidOpError(f"max_unfinished must be an int >= 1, got: {op.max_unfinished!r}")
    if op.idempotency_key is not None:
        check_name("idempotency_key", op.idempotency_key)
    specs: object = op.specs
    if not isinstance(specs, (list, tuple)) or not specs:
        raise InvalidOpError(f"specs must be a non-empty list of JobSpec, got: {specs!r}")
    for i, spec in enumerate(specs):
        if not isinstance(spec, JobSpec):
            raise InvalidSpecError(f"specs[{i}] must be a JobSpec, got: {type(spec).__name__}")
    return tuple(specs)


def check_name(what: str, value: object) -> None:
    """A name-like op argument: a non-empty str of at most 256 chars."""
    if type(value) is not str or not value or len(value) > 256:
        raise InvalidOpError(f"{what} must be a non-empty str of at most 256 chars: {value!r}")


@dataclass(frozen=True, slots=True)
class LeaseTerms:
    """What a lease won at auction costs: ``team`` holds ``hold`` micro-credits in escrow,
    paid to ``payee`` at ``rate`` micro-credits per hour (the whole bundle) as it runs."""

    team: str
    payee: str
    rate: int
    hold: int


@dataclass(frozen=True, slots=True)
class Lease:
    """Lease a queued job (past its back-off) to ``node`` under a fresh token; with
    ``terms``, in the same transaction, place the team's hold (or refuse the lease)."""

    job_id: str
    node: str
    terms: LeaseTerms | None = None


@dataclass(frozen=True, slots=True)
class Accept:
    """The node started the attempt holding ``token``: leased -> running."""

    job_id: str
    token: str


@dataclass(frozen=True, slots=True)
class Progress:
    """Keep the latest progress report of the current attempt (no event)."""

    job_id: str
    token: str
    data: Any


@dataclass(frozen=True, slots=True)
class Complete:
    """The attempt holding ``token`` succeeded with ``result``."""

    job_id: str
    token: str
    result: Any


@dataclass(frozen=True, slots=True)
class Fail:
    """The attempt holding ``token`` failed: retry with back-off, or fail for good
    (``permanent``: a failure no retry can fix, e.g. an entrypoint the node refuses)."""

    job_id: str
    token: str
    error: str
    permanent: bool = False


@dataclass(frozen=True, slots=True)
class Release:
    """Hand a lease back unfinished (drain, undeliverable DISPATCH): requeued at once,
    not counted as a failure."""

    job_id: str
    token: str
    reason: str = "released"


@dataclass(frozen=True, slots=True)
class Cancel:
    """Cancel a job: a queued one at once, a leased or running one via its node."""

    job_id: str


@dataclass(frozen=True, slots=True)
class RequeueNode:
    """``node`` is gone: requeue its leases (a running attempt counts as a failure)."""

    node: str
    reason: str = "node lost"


@dataclass(frozen=True, slots=True)
class Prune:
    """Retention: delete up to ``limit`` finished jobs last changed before ``before``
    (store time), their events, and the idempotency records made before ``before``."""

    before: float
    limit: int = 10_000


@dataclass(frozen=True, slots=True)
class SetBudget:
    """Make ``team``'s available money ``amount`` micro-credits (a deposit or withdrawal
    of the difference, in the ledger's audit log); opens the team's account if new."""

    team: str
    amount: int
    note: str = ""


Op: TypeAlias = (
    Submit | Lease | Accept | Progress | Complete | Fail | Release | Cancel | RequeueNode
    | Prune | SetBudget
)  # fmt: skip


# -- outcomes ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Submitted:
    """Job ids in spec order. ``duplicate``: the idempotency key was seen, nothing new was
    recorded. ``cached``: done from a finished job's result. ``joined``: follow a live one."""

    job_ids: tuple[str, ...]
    duplicate: bool = False
    cached: tuple[str, ...] = ()
    joined: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Leased:
    """The lease to DISPATCH: send ``attempt``, ``token`` and ``spec`` to ``node``."""

    job_id: str
    node: str
    attempt: int
    token: str
    spec: JobSpec


@dataclass(frozen=True, slots=True)
class NotLeasable:
    """The job cannot be leased now (not queued, following another job, backing off)."""

    job_id: str
    state: str
    reason: str


@dataclass(frozen=True, slots=True)
class Accepted:
    """An ACCEPT or PROGRESS for the current lease was recorded."""

    job_id: str


@dataclass(frozen=True, slots=True)
class Completed:
    """The job succeeded; ``followers`` succeeded with it (same result)."""

    job_id: str
    followers: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Stale:
    """The token is not the current lease's (or the job is over): nothing changed. The
    sender's result is refused, and may be acknowledged so its outbox lets go."""

    job_id: str
    state: str
    reason: str


@dataclass(frozen=True, slots=True)
class Retried:
    """The attempt failed; the job is queued again as ``attempt``, not before ``not_before``."""

    job_id: str
    attempt: int
    not_before: float


@dataclass(frozen=True, slots=True)
class Failed:
    """The job failed for good (``max_retries`` used up); ``followers`` failed with it."""

    job_id: str
    error: str
    followers: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Requeued:
    """The lease was handed back; the job is queued again as ``attempt``."""

    job_id: str
    attempt: int


@dataclass(frozen=True, slots=True)
class Cancelled:
    """The job is cancelled; ``promoted`` is the follower that now runs in its place."""

    job_id: str
    promoted: str | None = None


@dataclass(frozen=True, slots=True)
class CancelRequested:
    """Tell ``node`` to stop the attempt holding ``token``; its end makes it cancelled."""

    job_id: str
    node: str
    token: str


@dataclass(frozen=True, slots=True)
class NotCancelled:
    """The job had already finished in ``state``."""

    job_id: str
    state: str


@dataclass(frozen=True, slots=True)
class NodeRequeued:
    """What happened to the lost node's leases, by job id."""

    node: str
    requeued: tuple[str, ...] = ()
    failed: tuple[str, ...] = ()
    cancelled: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Rejected:
    """The op was wrong (``error`` says how) and changed nothing."""

    error: StoreError


@dataclass(frozen=True, slots=True)
class Pruned:
    """The job ids a ``Prune`` deleted, and how many idempotency records went too."""

    job_ids: tuple[str, ...] = ()
    submissions: int = 0


@dataclass(frozen=True, slots=True)
class BudgetSet:
    """The team's account after a ``SetBudget`` (micro-credits)."""

    team: str
    available: int
    held: int


Outcome: TypeAlias = (
    Submitted | Leased | NotLeasable | Accepted | Completed | Stale | Retried | Failed
    | Requeued | Cancelled | CancelRequested | NotCancelled | NodeRequeued | Rejected
    | Pruned | BudgetSet
)  # fmt: skip
