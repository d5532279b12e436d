"""The cluster client: submit jobs and sweeps, watch them, fetch results, cancel, status.

::

    from mabeam import connect
    from mabeam.ml.spec import load_spec

    async with connect("tcp://127.0.0.1:5555") as client:
        sweep = await client.submit(load_spec("examples/digits/sweep.toml"))
        async for event in client.watch(sweep.job_ids):   # ends when all are terminal
            print(event.job_id, event.state, event.step, event.metrics)
        print(await client.result(sweep.job_ids[0]))      # the value, or JobFailed

``connect`` spawns the connection actor (``_client_conn.ClientConnection``) in the
current foundation ``Runtime``, or in a runtime of its own for the ``async with`` when
none is running. Every request is re-sent on a timer until answered (same request id,
same idempotency key: safe to repeat) and fails with ``CoordinatorUnreachable`` after
``timeout`` seconds; an ERROR reply raises a ``ClientError`` subclass (``BadSpec``,
``UnknownJob``, ...; the list is in ``_client_errors``). Results and progress come
from WATCH events, never from polling.

A ``SweepSpec`` is submitted as one job per trial (in trial order) under a sweep id;
without a ``code_version`` the sweep gets ``src:<hash of the entrypoint's source
file>``, so editing the training code invalidates the result cache.
"""

from __future__ import annotations

import contextlib
import math
import os
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any, Final

import foundation
from foundation import ActorDead, ActorRef, Runtime, RuntimeClosed, StartError
from foundation._public import fixup_module_metadata

from ..ml.spec import SweepSpec
from . import protocol
from ._client_conn import ClientConnection
from ._client_errors import (
    BadBudget,
    BadRequest,
    BadSpec,
    ClientError,
    CoordinatorUnreachable,
    JobFailed,
    NoSuchAccount,
    QuotaExceeded,
    RequestRefused,
    ResultTimeout,
    ShuttingDown,
    Unauthorized,
    UnknownJob,
    UnknownSweep,
)
from ._client_specs import chunks, encoded, is_id, sized_specs, sweep_id_for, sweep_key
from ._client_watch import JobEvent, JobWatch
from ._env import ADDRESS_ENV, COORDINATOR_KEY_ENV, KEY_ENV, or_env
from ._limits import MAX_IDS
from ._security import CurveClient, check_insecure
from .keys import KeyPair

__all__ = (
    "ADDRESS_ENV",
    "COORDINATOR_KEY_ENV",
    "KEY_ENV",
    "BadBudget",
    "BadRequest",
    "DEFAULT_ADDRESS",
    "DEFAULT_TIMEOUT_S",
    "BadSpec",
    "Client",
    "ClientError",
    "ClusterStatus",
    "CoordinatorUnreachable",
    "JobEvent",
    "JobFailed",
    "JobWatch",
    "NoSuchAccount",
    "QuotaExceeded",
    "RequestRefused",
    "ResultTimeout",
    "ShuttingDown",
    "Submission",
    "Unauthorized",
    "UnknownJob",
    "UnknownSweep",
    "connect",
    "default_address",
)

DEFAULT_ADDRESS: Final = "tcp://127.0.0.1:5555"
DEFAULT_TIMEOUT_S: Final = 10.0
"""How long a request waits for an answer before ``CoordinatorUnreachable``."""
DEFAULT_RETRY_S: Final = 1.0
DEFAULT_SILENCE_S: Final = 10.0
"""A watching client that heard nothing for this long sends its WATCHes again."""


def default_address() -> str:
    """``$MABEAM_COORDINATOR`` if set, else ``tcp://127.0.0.1:5555``."""
    return os.environ.get(ADDRESS_ENV) or DEFAULT_ADDRESS


# -- records --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Submission:
    """The jobs of one ``submit``: their ids in spec (trial) order, the sweep id, and
    whether the coordinator had seen this idempotency key before."""

    job_ids: tuple[str, ...]
    sweep_id: str | None
    duplicate: bool


@dataclass(frozen=True, slots=True)
class ClusterStatus:
    """The coordinator's view: connected nodes, jobs (the asked ones, else the recent
    ones, unfinished first), and the number of jobs per state."""

    nodes: tuple[protocol.NodeInfo, ...]
    jobs: tuple[protocol.JobInfo, ...]
    counts: dict[str, int]


# -- the client -----------------------------------------------------------------------


class Client:
    """A connection to one coordinator; get one from ``connect``."""

    def __init__(self, conn: ActorRef, address: str, prefix: str) -> None:
        self.address = address
        self._conn = conn
        self._prefix = prefix
        self._serial = 0
        self._sweeps: dict[str, tuple[str, ...]] = {}

    def _request_id(self) -> str:
        self._serial += 1
        return f"{self._prefix}-{self._serial}"

    async def _call(self, request: Any) -> Any:
        try:
            return await self._conn.call(request, timeout=None)
        except (ActorDead, RuntimeClosed):
            raise ClientError("the client connection is closed", code="closed") from None

    async def _request(self, frame: Any) -> Any:
        return await self._call(("request", frame.request_id, encoded(frame)))

    async def submit(
        self,
        specs: Any,
        *,
        idempotency_key: str | None = None,
        sweep_id: str | None = None,
    ) -> Submission:
        """Queue jobs; return once the coordinator stored them.

        ``specs``: a ``SweepSpec`` (one job per trial, sweep id = the idempotency key),
        a job spec (``store.JobSpec``, ``protocol.JobSpec`` or a dict), or a list of
        them. Submitting again with the same ``idempotency_key`` returns the same jobs
        (``duplicate=True``); without a key each call makes a fresh one. Specs are sent
        up to ``MAX_SPECS_PER_SUBMIT`` at a time (fewer in the first frames, so the first
        jobs start sooner), each chunk with a key derived from this one.
        Raises ``BadSpec`` before sending anything for a spec that cannot be sent.
        """
        wire, sizes = sized_specs(specs)
        if idempotency_key is None:
            name = specs.name if isinstance(specs, SweepSpec) else "submit"
            idempotency_key = sweep_key(name)
        elif not isinstance(idempotency_key, str) or not idempotency_key:
            raise BadSpec(f"idempotency_key must be a non-empty str, got {idempotency_key!r}")
        if sweep_id is None and isinstance(specs, SweepSpec):
            sweep_id = sweep_id_for(idempotency_key, specs.name)
        if sweep_id is not None and not is_id(sweep_id):
            raise BadSpec(
                f"sweep_id must be 1 to 128 chars of A-Z a-z 0-9 . _ : / @ + = - starting "
                f"alphanumeric, got {sweep_id!r}"
            )
        job_ids: list[str] = []
        duplicate = True
        for chunk in chunks(wire, idempotency_key, sizes=sizes):
            frame = protocol.Submit(
                request_id=self._request_id(),
                idempotency_key=chunk.idempotency_key,
                specs=chunk.specs,
                sweep_id=sweep_id,
            )
            reply: protocol.Submitted = await self._request(frame)
            if len(reply.job_ids) != len(chunk.specs):
                raise ClientError(
                    f"the coordinator answered {len(reply.job_ids)} job ids for "
                    f"{len(chunk.specs)} specs",
                    code="bad_reply",
                )
            job_ids.extend(reply.job_ids)
            duplicate = duplicate and reply.duplicate
        submission = Submission(tuple(job_ids), sweep_id, duplicate)
        if sweep_id is not None:
            self._sweeps[sweep_id] = submission.job_ids
        return submission

    def watch(
        self,
        job_ids: Sequence[str] | str | Submission | None = None,
        *,
        sweep_id: str | None = None,
        timeout: float | None = None,
    ) -> JobWatch:
        """An async iterator of ``JobEvent``s for these jobs (or this sweep's), ending
        once every one is terminal: first each job's current state, then each change
        and progress report. Repeated states are dropped. With ``timeout``, it raises
        ``ResultTimeout`` if the jobs are not all finished by then."""
        if isinstance(job_ids, Submission):
            sweep_id, job_ids = None, job_ids.job_ids
        if isinstance(job_ids, str):
            job_ids = (job_ids,)
        if (job_ids is None) == (sweep_id is None):
            raise TypeError("watch() takes job ids or a sweep_id (one of the two)")
        if timeout is not None and not timeout > 0:
            raise ValueError(f"timeout must be > 0 or None, got {timeout!r}")
        return JobWatch(self, None if job_ids is None else tuple(job_ids), sweep_id, timeout)

    async def result(self, job_id: str, timeout: float | None = None) -> Any:
        """The value of job ``job_id`` once it succeeded; ``JobFailed`` if it failed or
        was cancelled, ``ResultTimeout`` if it is not finished after ``timeout`` s."""
        async with self.watch([job_id], timeout=timeout) as events:
            async for event in events:
                if event.terminal:
                    if event.state == "succeeded":
                        return event.value
                    raise JobFailed(job_id, event.state, event.error)
        raise ClientError(f"the watch of job {job_id} ended without its result", code="closed")

    async def cancel(self, job_id: str) -> str:
        """Cancel a job; return its state after the request: ``cancelled`` (it was
        queued), ``leased``/``running`` (its node is stopping it), or the terminal state
        it already had. ``UnknownJob`` if there is no such job."""
        reply: protocol.Cancelled = await self._request(
            protocol.CancelJob(request_id=self._request_id(), job_id=job_id)
        )
        return reply.state

    async def status(
        self, job_ids: Sequence[str] | None = None, *, sweep_id: str | None = None
    ) -> ClusterStatus:
        """Nodes, counts by state and jobs: ``job_ids`` (or the sweep's), else the most
        recent ones, unfinished first."""
        ids = tuple(job_ids or ())
        batches = [ids[i : i + MAX_IDS] for i in range(0, len(ids), MAX_IDS)]
        jobs: list[protocol.JobInfo] = []
        reply: protocol.StatusReply | None = None
        for batch in batches or [()]:
            frame = protocol.Status(request_id=self._request_id(), job_ids=batch, sweep_id=sweep_id)
            reply = await self._request(frame)
            jobs.extend(reply.jobs)
        assert reply is not None
        return ClusterStatus(tuple(reply.nodes), tuple(jobs), dict(reply.counts))

    async def market(self, team: str = "", *, log: int = 20) -> protocol.MarketReply:
        """The market: ledger accounts (``team``: that one; ``NoSuchAccount`` if it has
        none), the connected nodes' listings and the newest ``log`` audit-log lines."""
        frame = protocol.Market(request_id=self._request_id(), team=team, log=log)
        reply: protocol.MarketReply = await self._request(frame)
        return reply

    async def set_budget(self, team: str, credits: object) -> protocol.AccountInfo:
        """Make ``team``'s available money ``credits`` (a number or decimal string; held
        money is untouched): durable and in the audit log when this returns. Opens the
        team's account if new; ``BadBudget`` for an amount the ledger refuses."""
        from ..economics import LedgerError, parse_amount

        try:
            amount = parse_amount(credits, "budget")
        except LedgerError as exc:
            raise BadRequest(str(exc), code="bad_budget") from None
        frame = protocol.Market(request_id=self._request_id(), team=team, budget=amount, log=0)
        reply: protocol.MarketReply = await self._request(frame)
        return next(a for a in reply.accounts if a.name == team)

    async def _sweep_jobs(self, sweep_id: str) -> tuple[str, ...]:
        known = self._sweeps.get(sweep_id)
        if known is not None:
            return known
        status = await self.status(sweep_id=sweep_id)
        ids = tuple(job.job_id for job in status.jobs if job.sweep_id == sweep_id)
        if not ids:
            raise UnknownSweep(f"no job belongs to sweep {sweep_id!r}", code="unknown_sweep")
        return ids


# -- connect --------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def connect(
    address: str | None = None,
    *,
    timeout: float = DEFAULT_TIMEOUT_S,
    retry_s: float = DEFAULT_RETRY_S,
    heartbeat_s: float = protocol.HEARTBEAT_INTERVAL_S,
    silence_s: float = DEFAULT_SILENCE_S,
    key: KeyPair | str | os.PathLike[str] | None = None,
    coordinator_key: KeyPair | bytes | str | os.PathLike[str] | None = None,
    insecure: bool = False,
) -> AsyncIterator[Client]:
    """Connect to the coordinator at ``address`` (default: ``default_address()``).

    Security: ``key`` is this submitter's CurveZMQ key pair (a ``KeyPair`` or its
    ``.key_secret`` file; default ``$MABEAM_KEY``) and ``coordinator_key`` the
    coordinator's public key (default ``$MABEAM_COORDINATOR_KEY``), pinned; a refused
    key raises ``Unauthorized``. ``insecure=True`` connects with plain TCP, to a
    loopback address only (a coordinator started with ``--insecure``).

    ``timeout``: seconds a request may go unanswered before ``CoordinatorUnreachable``;
    ``retry_s``: first re-send delay of an unanswered request (doubling to 8 s);
    ``heartbeat_s``: HEARTBEAT interval while watching; ``silence_s``: while watching,
    a coordinator silent that long gets the open WATCHes again (a restarted coordinator
    has forgotten them; one that is gone makes the watch raise
    ``CoordinatorUnreachable`` after ``timeout``). Runs in the current foundation
    runtime, or in one of its own when none is running.
    """
    address = default_address() if address is None else address
    for name, value in (
        ("timeout", timeout),
        ("retry_s", retry_s),
        ("heartbeat_s", heartbeat_s),
        ("silence_s", silence_s),
    ):
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not 0 < value < math.inf
        ):
            raise ValueError(f"{name} must be a positive number of seconds, got {value!r}")
    curve = _curve(address, key, coordinator_key, insecure)
    options = (address, timeout, retry_s, heartbeat_s, silence_s, curve)
    try:
        foundation.current_runtime()
    except RuntimeError:
        try:
            async with Runtime(), _connected(*options) as client:
                yield client
        except BaseExceptionGroup as group:
            # trio's nursery inside the runtime wraps what the body raised: unwrap it.
            inner = _only(group)
            if inner is None:
                raise
            raise inner from inner.__cause__
        return
    async with _connected(*options) as client:
        yield client


def _only(group: BaseExceptionGroup[Any]) -> BaseException | None:
    """The one exception at the bottom of nested single-member groups, else None."""
    while len(group.exceptions) == 1:
        inner: BaseException = group.exceptions[0]
        if not isinstance(inner, BaseExceptionGroup):
            return inner
        group = inner
    return None


def _curve(
    address: str,
    key: KeyPair | str | os.PathLike[str] | None,
    coordinator_key: KeyPair | bytes | str | os.PathLike[str] | None,
    insecure: bool,
) -> CurveClient | None:
    """The CURVE settings of a connection, or None for plain TCP (loopback only)."""
    if not isinstance(address, str) or not address.startswith(("tcp://", "ipc://")):
        raise ClientError(
            f"cannot connect to {address!r}: expected tcp://HOST:PORT", code="bad_address"
        )
    if type(insecure) is not bool:
        raise ValueError(f"insecure must be True or False, got {insecure!r}")
    try:
        if insecure:
            if key is not None or coordinator_key is not None:
                raise ValueError("insecure=True (plain TCP) takes no keys")
            check_insecure(address, "the coordinator address")
            return None
        key = or_env(key, KEY_ENV)
        coordinator_key = or_env(coordinator_key, COORDINATOR_KEY_ENV)
        return CurveClient.resolve(key, coordinator_key, "client")
    except ValueError as exc:
        hint = ""
        if not insecure and (key is None or coordinator_key is None):
            hint = f" (or set ${KEY_ENV} and ${COORDINATOR_KEY_ENV} to the key files)"
        raise ClientError(f"{exc}{hint}", code="bad_key") from None


@contextlib.asynccontextmanager
async def _connected(
    address: str,
    timeout: float,
    retry_s: float,
    heartbeat_s: float,
    silence_s: float,
    curve: CurveClient | None,
) -> AsyncIterator[Client]:
    if not isinstance(address, str) or not address:
        raise ClientError(
            f"the coordinator address must be a str, got {address!r}", code="bad_address"
        )
    prefix = uuid.uuid4().hex[:12]
    rt = foundation.current_runtime()
    try:
        conn: ActorRef = await rt.spawn(
            ClientConnection,
            address,
            f"client-{prefix}".encode(),
            float(timeout),
            float(retry_s),
            float(heartbeat_s),
            float(silence_s),
            curve,
        )
    except StartError as exc:
        cause = exc.__cause__ if isinstance(exc.__cause__, ClientError) else exc.reason
        if isinstance(cause, ClientError):
            raise cause from None
        raise
    try:
        yield Client(conn, address, f"c{prefix}")
    finally:
        with contextlib.suppress(ActorDead, RuntimeClosed):
            await conn.stop()


fixup_module_metadata(__name__, globals())
