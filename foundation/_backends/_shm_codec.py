"""Keys and metadata of a shared registry table as bytes (str keys as UTF-8, the rest
through ``foundation.codec``), with the table's size limits as clear errors."""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any

from .._codec import Codec
from .._exceptions import CodecError, ValueTooLarge

STR, CODEC = 1, 2


class EntryCodec:
    """Encode and decode one table's keys and metadata under its limits."""

    def __init__(self, name: str, key_max: int, meta_max: int) -> None:
        self.name = name
        self._key_max = key_max
        self._meta_max = meta_max
        self._codec = Codec()
        self._meta_codec = Codec(max_size=max(meta_max, 1))

    def key(self, key: Hashable, *, writing: bool) -> tuple[int, bytes] | None:
        """``(kind, bytes)`` of ``key``; too long raises ``ValueTooLarge`` for a write and
        gives None for a read (such a key cannot be in the table)."""
        if key.__class__ is str:
            try:
                kb = key.encode("utf-8")
            except UnicodeEncodeError:
                raise TypeError(f"registry key {key!r} is not valid UTF-8 text") from None
            kt = STR
        else:
            try:
                hash(key)  # as a dict-backed registry: unhashable keys are refused
            except TypeError:
                raise TypeError(f"registry keys must be hashable, got: {key!r}") from None
            try:
                kb = self._codec.encode(key)
            except CodecError as exc:
                raise TypeError(
                    f"keys of a shared-memory registry must be str or encodable by "
                    f"foundation.codec (int, bytes, tuples ...), got {key!r}: {exc}"
                ) from None
            kt = CODEC
        if len(kb) > self._key_max:
            if not writing:
                return None  # cannot be in the table
            raise ValueTooLarge(
                f"key {key!r} encodes to {len(kb)} bytes; table {self.name!r} allows "
                f"key_max={self._key_max} (choose key_max when creating the table)"
            )
        return kt, kb

    def decode_key(self, kt: int, kb: bytes) -> Hashable:
        if kt == STR:
            return kb.decode("utf-8")
        key: Hashable = self._codec.decode(kb)
        return key

    def meta(self, meta: Any) -> bytes:
        if meta is None:
            return b""
        try:
            mb = self._codec.encode(meta)
        except CodecError as exc:
            raise TypeError(f"registry metadata must be encodable by foundation.codec, "
                            f"got {meta!r}: {exc}") from None
        if len(mb) > self._meta_max:
            raise ValueTooLarge(
                f"metadata encodes to {len(mb)} bytes; table {self.name!r} allows "
                f"meta_max={self._meta_max} (choose meta_max when creating the table)"
            )
        return mb

    def decode_meta(self, mb: bytes) -> Any:
        return self._meta_codec.decode(mb) if mb else None
