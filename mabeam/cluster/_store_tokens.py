"""Lease tokens: what fences a job's results to the attempt that holds its lease."""

from __future__ import annotations

import hashlib
import itertools
import os

__all__ = ("LeaseTokens",)


class LeaseTokens:
    """Lease tokens: 16 hex chars, unique and unguessable, ~1 us each.

    A keyed BLAKE2b of a counter, with a random key per store opened: no system call
    per lease (``secrets.token_hex`` reads the kernel's random source each time), and
    a node that saw any number of tokens cannot derive another one.
    """

    __slots__ = ("_count", "_key")

    def __init__(self) -> None:
        self._key = os.urandom(32)
        self._count = itertools.count()

    def __call__(self) -> str:
        data = next(self._count).to_bytes(8, "big")
        return hashlib.blake2b(data, key=self._key, digest_size=8).hexdigest()
