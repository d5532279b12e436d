"""The ledger's values (``Account``, ``Hold``, ``LogEntry``) and its argument checks."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final, Literal

from ._errors import LedgerError

__all__ = (
    "ACCOUNT_KINDS",
    "MAX_JOB_CHARS",
    "MAX_NAME_CHARS",
    "MAX_NOTE_CHARS",
    "Account",
    "AccountKind",
    "Hold",
    "HoldState",
    "LogEntry",
    "check_job",
    "check_kind",
    "check_name",
    "clip_note",
)

AccountKind = Literal["team", "owner"]
HoldState = Literal["open", "settled", "released"]
ACCOUNT_KINDS: Final = ("team", "owner")
MAX_NAME_CHARS: Final = 128
MAX_JOB_CHARS: Final = 256
MAX_NOTE_CHARS: Final = 1024


@dataclass(frozen=True, slots=True)
class Account:
    """One account's balances in micro-credits: ``available`` to spend or hold, ``held``
    in open holds, ``spent`` paid out and ``earned`` received by settles (totals)."""

    name: str
    kind: AccountKind
    available: int
    held: int
    spent: int
    earned: int

    @property
    def total(self) -> int:
        """What the account owns: available plus held."""
        return self.available + self.held


@dataclass(frozen=True, slots=True)
class Hold:
    """An escrow hold: ``amount`` taken from ``account``'s available for ``payee``.

    ``state`` is ``"open"`` until a settle (``charged`` paid to the payee, the rest
    returned) or a release (``charged`` 0, everything returned); ``closed`` is then the
    time it closed.
    """

    hold_id: int
    account: str
    payee: str
    amount: int
    job: str
    state: HoldState
    charged: int | None
    created: float
    closed: float | None
    note: str


@dataclass(frozen=True, slots=True)
class LogEntry:
    """One row of the append-only audit log (see ``LEDGER_SCHEMA`` for each op)."""

    seq: int
    time: float
    op: str
    account: str
    counterparty: str | None
    amount: int
    hold_id: int | None
    job: str
    note: str


ACCOUNT_SQL: Final = "SELECT name, kind, available, held, spent, earned FROM accounts"
HOLD_SQL: Final = (
    "SELECT id, account, payee, amount, job, state, charged, created, closed, note FROM holds"
)
LOG_SQL: Final = (
    "SELECT seq, time, op, account, counterparty, amount, hold, job, note FROM ledger_log"
)


def account_of(row: Any) -> Account:
    return Account(*row)


def hold_of(row: Any) -> Hold:
    return Hold(*row)


def entry_of(row: Any) -> LogEntry:
    return LogEntry(*row)


def check_name(name: object, what: str = "account") -> str:
    """``name`` if it is 1..MAX_NAME_CHARS printable characters, else ``LedgerError``."""
    if not isinstance(name, str):
        raise LedgerError(f"{what}: expected a str name, got: {name!r}")
    if not 1 <= len(name) <= MAX_NAME_CHARS or not name.isprintable():
        raise LedgerError(
            f"{what}: a name is 1 to {MAX_NAME_CHARS} printable characters"
            f" (no control characters), got: {name!r}"
        )
    return name


def check_kind(kind: object) -> AccountKind:
    if kind == "team":
        return "team"
    if kind == "owner":
        return "owner"
    raise LedgerError(f"account kind must be 'team' or 'owner', got: {kind!r}")


def check_job(job: object) -> str:
    """A job id ('' for none): a str of at most MAX_JOB_CHARS printable characters."""
    if not isinstance(job, str) or len(job) > MAX_JOB_CHARS or not job.isprintable():
        raise LedgerError(
            f"job: expected a str of at most {MAX_JOB_CHARS} printable characters, got: {job!r}"
        )
    return job


def clip_note(note: object) -> str:
    """A note as stored: a str cut to MAX_NOTE_CHARS (a long reason must never make a
    release or settle fail and leave money held)."""
    if not isinstance(note, str):
        raise LedgerError(f"note: expected a str, got: {note!r}")
    return note if len(note) <= MAX_NOTE_CHARS else note[: MAX_NOTE_CHARS - 3] + "..."
