"""What the cluster client raises (``mabeam.cluster.client`` re-exports every name).

Every exception is a ``ClientError`` with a short stable ``code`` and a one-line
message, so the CLI can print ``str(exc)`` and exit 1 without a traceback:

- ``BadRequest`` (``ValueError`` too): a request the client cannot send (a malformed
  job id, a frame over the size limit); nothing was sent.
- ``CoordinatorUnreachable`` (``ConnectionError`` too): no answer from the address
  within the client's ``timeout``, after retrying the request on a timer. Nothing was
  lost: a submit retried later with the same idempotency key never duplicates jobs.
- A refused request: the coordinator answered with an ERROR frame. ``BadSpec``
  (``bad_spec``: a job spec the store refused; raised before sending, too, for a spec
  the client can already tell is wrong), ``UnknownJob`` (``unknown_job``),
  ``UnknownSweep`` (``unknown_sweep``), ``ShuttingDown`` (``shutting_down``); any
  other code (a protocol refusal such as ``bad_value``, ``internal``, ...) is a plain
  ``RequestRefused`` with that code.
- ``JobFailed``: ``Client.result`` of a job that ended ``failed`` or ``cancelled``;
  ``state`` and ``error`` say how.
- ``ResultTimeout`` (``TimeoutError`` too): ``Client.result`` or a watch with a
  ``timeout`` ran out of time while the job was still going; the job is untouched.
"""

from __future__ import annotations

from typing import Final

__all__ = (
    "BadBudget",
    "BadRequest",
    "BadSpec",
    "ClientError",
    "CoordinatorUnreachable",
    "JobFailed",
    "NoSuchAccount",
    "QuotaExceeded",
    "RequestRefused",
    "ResultTimeout",
    "ShuttingDown",
    "Unauthorized",
    "UnknownJob",
    "UnknownSweep",
    "last_line",
    "refusal",
)


class ClientError(Exception):
    """Base of everything the cluster client raises; ``code`` names the kind."""

    code: str = "client_error"

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code


class BadRequest(ClientError, ValueError):
    """A request the protocol cannot carry (the message names the field); not sent."""

    code = "bad_request"


class CoordinatorUnreachable(ClientError, ConnectionError):
    """The coordinator at ``address`` did not answer within ``timeout`` seconds."""

    code = "unreachable"

    def __init__(self, address: str, timeout: float) -> None:
        super().__init__(
            f"no answer from the coordinator at {address} within {timeout:g} s; is "
            "`mabeam coordinator start` running there? (set --coordinator or "
            "$MABEAM_COORDINATOR to another address)"
        )
        self.address = address
        self.timeout = timeout


class RequestRefused(ClientError):
    """The coordinator refused a request with an ERROR frame (``code``, ``message``)."""

    code = "refused"


class BadSpec(RequestRefused):
    """A job spec was refused (by the coordinator's store, or already by the client);
    the message names the key."""

    code = "bad_spec"


class UnknownJob(RequestRefused, LookupError):
    """No job has this id on the coordinator."""

    code = "unknown_job"


class UnknownSweep(RequestRefused, LookupError):
    """No job belongs to this sweep id."""

    code = "unknown_sweep"


class ShuttingDown(RequestRefused):
    """The coordinator is stopping and takes no new requests; retry after its restart."""

    code = "shutting_down"


class QuotaExceeded(RequestRefused):
    """A SUBMIT would pass this submitter's quota of unfinished jobs (the message says
    how many it has and the limit); nothing of it was stored."""

    code = "quota_exceeded"


class Unauthorized(RequestRefused, PermissionError):
    """The coordinator refused this client's key: at the handshake (not in its clients
    allow-list) or for a request (revoked, or a node key used as a client's)."""

    code = "unauthorized"


class NoSuchAccount(RequestRefused, LookupError):
    """The coordinator's ledger has no account of that name (set its budget first)."""

    code = "unknown_account"


class BadBudget(RequestRefused, ValueError):
    """The ledger refused a budget (an account of a node owner, an amount over the
    limit); nothing changed."""

    code = "bad_budget"


class JobFailed(ClientError):
    """A job ended ``failed`` or ``cancelled``; ``error`` is its cause (a traceback's
    text for an exception)."""

    code = "job_failed"

    def __init__(self, job_id: str, state: str, error: str | None) -> None:
        last = last_line(error)
        super().__init__(f"job {job_id} {state}: {last}")
        self.job_id = job_id
        self.state = state
        self.error = error


class ResultTimeout(ClientError, TimeoutError):
    """Waiting for a job's result (or a watch) took longer than its ``timeout``."""

    code = "timeout"


_BY_CODE: Final[dict[str, type[RequestRefused]]] = {
    "bad_spec": BadSpec,
    "unknown_job": UnknownJob,
    "unknown_sweep": UnknownSweep,
    "shutting_down": ShuttingDown,
    "unauthorized": Unauthorized,
    "quota_exceeded": QuotaExceeded,
    "unknown_account": NoSuchAccount,
    "bad_budget": BadBudget,
}


def refusal(code: str, message: str) -> RequestRefused:
    """The exception for an ERROR reply with ``code`` and ``message``."""
    cls = _BY_CODE.get(code, RequestRefused)
    text = (
        message if code in _BY_CODE else f"the coordinator refused the request ({code}): {message}"
    )
    return cls(text, code=code)


def last_line(text: str | None) -> str:
    """The last non-empty line of an error text (a traceback's ``ValueError: ...``)."""
    if not text or not text.strip():
        return "no error text"
    return next(line.strip() for line in reversed(text.splitlines()) if line.strip())
