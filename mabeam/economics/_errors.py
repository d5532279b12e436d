"""The exceptions of mabeam.economics: all ``LedgerError`` (a ``ValueError``) or
``AuctionError``, each naming what was wrong and the value that was given.

``BadAmount``
    An amount is not a finite, non-negative number of credits with at most six
    decimals (or is over ``MAX_AMOUNT``).
``UnknownAccount``
    An operation names an account the ledger does not have.
``Overdraft``
    A withdrawal, transfer or hold asks for more than the account has available;
    ``account``, ``needed`` and ``available`` (micro-credits) say by how much.
``UnknownHold``
    A settle or release names a hold that does not exist or is already closed.
``AuctionError``
    An auction was started with arguments it cannot run with (no bidders, a bad
    reserve or increment). Raised before anything starts. Outcomes (no sale, a
    crashed bidder) are values, never exceptions.
"""

from __future__ import annotations

__all__ = (
    "AuctionError",
    "BadAmount",
    "LedgerError",
    "Overdraft",
    "UnknownAccount",
    "UnknownHold",
)


class LedgerError(ValueError):
    """A ledger operation was refused; nothing was changed."""


class BadAmount(LedgerError):
    """An amount that is not a valid number of credits."""


class UnknownAccount(LedgerError):
    """No account of that name."""

    def __init__(self, account: str) -> None:
        self.account = account
        super().__init__(f"unknown account {account!r}")


class Overdraft(LedgerError):
    """The account has less available than the operation needs."""

    def __init__(self, account: str, needed: int, available: int) -> None:
        from ._money import format_amount

        self.account = account
        self.needed = needed
        self.available = available
        super().__init__(
            f"account {account!r} has {format_amount(available)} available,"
            f" {format_amount(needed)} needed"
        )


class UnknownHold(LedgerError):
    """No open hold of that id."""


class AuctionError(ValueError):
    """An auction was given arguments it cannot run with."""
