"""Money: integer micro-credits, so sums are exact and conservation is checkable.

Users write credits (``12.5``, ``"0.000001"``); the ledger, the auctions and the store
keep ``int`` micro-credits (1 credit = ``MICRO``). ``parse_amount`` is the one way in
from user input, ``format_amount`` the one way out.
"""

from __future__ import annotations

import math
from decimal import Decimal, InvalidOperation
from typing import Final

from ._errors import BadAmount

__all__ = ("MAX_AMOUNT", "MICRO", "check_micro", "format_amount", "parse_amount")

MICRO: Final = 1_000_000
"""Micro-credits per credit."""

MAX_AMOUNT: Final = 10**12 * MICRO
"""The largest amount (10^12 credits = 10^18 micro-credits): far above any budget and
inside SQLite's int64 (about 9.2 * 10^18), which 10^15 credits (10^21) would overflow. The
ledger also keeps the total of all its balances under it."""


def parse_amount(value: object, what: str = "amount") -> int:
    """Credits (int, float, or a decimal str) -> micro-credits; ``BadAmount`` naming
    ``what`` for a negative, non-finite, too precise or too large value, or a bool."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str, Decimal)):
        raise BadAmount(f"{what}: expected a number of credits, got: {value!r}")
    if isinstance(value, float) and not math.isfinite(value):
        raise BadAmount(f"{what}: expected a finite number of credits, got: {value!r}")
    try:
        exact = Decimal(value.strip() if isinstance(value, str) else repr(value))
    except InvalidOperation:
        raise BadAmount(f"{what}: expected a number of credits, got: {value!r}") from None
    if not exact.is_finite():
        raise BadAmount(f"{what}: expected a finite number of credits, got: {value!r}")
    if exact < 0:
        raise BadAmount(f"{what}: must not be negative, got: {value!r}")
    micro = exact * MICRO
    if micro != micro.to_integral_value():
        raise BadAmount(f"{what}: at most 6 decimals (1 micro-credit), got: {value!r}")
    return check_micro(int(micro), what)


def check_micro(value: object, what: str = "amount") -> int:
    """``value`` if it is an int of micro-credits in ``0..MAX_AMOUNT``, else ``BadAmount``."""
    if type(value) is not int:
        raise BadAmount(f"{what}: expected an int of micro-credits, got: {value!r}")
    if value < 0:
        raise BadAmount(f"{what}: must not be negative, got: {format_amount(value)}")
    if value > MAX_AMOUNT:
        raise BadAmount(f"{what}: over the largest amount {format_amount(MAX_AMOUNT)}")
    return value


def format_amount(micro: int) -> str:
    """Micro-credits as credits without trailing zeros: 12_500_000 -> ``"12.5"``."""
    sign = "-" if micro < 0 else ""
    whole, frac = divmod(abs(micro), MICRO)
    if not frac:
        return f"{sign}{whole}"
    return f"{sign}{whole}.{frac:06d}".rstrip("0")
