"""Trial generation for sweep specs: grid expansion, seeded random sampling, and the
canonical byte encoding behind trial content hashes.

Everything here is deterministic and independent of the Python version, the platform and
dict order: random draws come from SHA-256 of (seed, trial index, parameter name), not
from ``random.Random``, whose non-``random()`` methods may change between versions.
"""

from __future__ import annotations

import copy
import hashlib
import itertools
import math
import struct
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, Protocol

__all__ = (
    "MAX_DEPTH",
    "Sampler",
    "canonical_bytes",
    "draw_bits",
    "expand_grid",
    "fresh",
    "grid_size",
    "sample_space",
    "unit_float",
)

#: How deeply values may nest (lists in tables in lists...) before encoding refuses them.
MAX_DEPTH = 64

_NAN = bytes.fromhex("7ff8000000000000")  # one canonical NaN: every NaN encodes the same
_pack_double = struct.Struct(">d").pack
_RANDOM_DOMAIN = b"mabeam.random.v1\x00"


class Sampler(Protocol):
    """A distribution: maps 64 uniformly random bits to one parameter value."""

    def sample(self, bits: int) -> Any: ...


# -- canonical encoding -----------------------------------------------------------------


def canonical_bytes(value: Any) -> bytes:
    """Encode ``value`` as unambiguous, type-tagged bytes (format in docs/spec.md).

    Equal values give equal bytes whatever the dict order; ``1``, ``1.0`` and ``True``
    give different bytes; lists and tuples encode alike. Raises ``TypeError`` for a type
    outside None/bool/int/float/str/bytes/list/tuple/dict or a non-str dict key, and
    ``ValueError`` for nesting deeper than ``MAX_DEPTH`` or a string that is not valid
    Unicode (a lone surrogate).
    """
    out = bytearray()
    try:
        _encode(value, out, 0)
    except _Unencodable as exc:
        raise exc.kind(f"value{exc.where} {exc.reason}") from None
    return bytes(out)


class _Unencodable(Exception):
    """Raised deep inside ``_encode``; each level on the way out prepends its index/key."""

    def __init__(self, kind: type[Exception], reason: str) -> None:
        self.kind = kind
        self.reason = reason
        self.where = ""


def _encode(value: Any, out: bytearray, depth: int) -> None:
    kind = type(value)
    if kind is str:
        _encode_str(value, out)
    elif kind is float:
        out += b"f"
        out += _NAN if value != value else _pack_double(value)
    elif kind is bool:
        out += b"T" if value else b"F"
    elif kind is int:
        out += b"i%d;" % value
    elif value is None:
        out += b"N"
    elif isinstance(value, list | tuple):
        if depth >= MAX_DEPTH:
            raise _Unencodable(ValueError, f"is nested deeper than {MAX_DEPTH} levels")
        out += b"l%d:" % len(value)
        for i, item in enumerate(value):
            try:
                _encode(item, out, depth + 1)
            except _Unencodable as exc:
                exc.where = f"[{i}]{exc.where}"
                raise
    elif isinstance(value, dict | Mapping):
        if depth >= MAX_DEPTH:
            raise _Unencodable(ValueError, f"is nested deeper than {MAX_DEPTH} levels")
        keys = list(value)
        for key in keys:
            if not isinstance(key, str):
                raise _Unencodable(TypeError, f"has a non-str key {key!r}; keys must be str")
        keys.sort()  # code point order == UTF-8 byte order
        out += b"d%d:" % len(keys)
        for key in keys:
            _encode_str(key, out)
            try:
                _encode(value[key], out, depth + 1)
            except _Unencodable as exc:
                exc.where = f"[{key!r}]{exc.where}"
                raise
    elif isinstance(value, bool):  # subclasses of the exact types above, e.g. IntEnum
        out += b"T" if value else b"F"
    elif isinstance(value, int):
        out += b"i%d;" % int(value)
    elif isinstance(value, float):
        _encode(float(value), out, depth)
    elif isinstance(value, str):
        _encode_str(str(value), out)
    elif isinstance(value, bytes | bytearray | memoryview):
        data = bytes(value)
        out += b"b%d:" % len(data)
        out += data
    else:
        raise _Unencodable(
            TypeError,
            f"has unsupported type {kind.__name__}; expected None, bool, int, float, str,"
            " bytes, list, tuple or dict",
        )


def _encode_str(text: str, out: bytearray) -> None:
    try:
        data = text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise _Unencodable(ValueError, f"holds a string that is not valid Unicode: {exc}") from None
    out += b"s%d:" % len(data)
    out += data


# -- grid -------------------------------------------------------------------------------


def grid_size(grid: Mapping[str, Sequence[Any]]) -> int:
    """Number of trials a grid expands to (the product of the list lengths), computed
    without expanding it."""
    return math.prod(len(values) for values in grid.values())


def expand_grid(grid: Mapping[str, Sequence[Any]]) -> Iterator[dict[str, Any]]:
    """Yield the cartesian product of the grid in declaration order: the first parameter
    varies slowest, the last fastest (``itertools.product`` order)."""
    names = list(grid)
    for combo in itertools.product(*(grid[name] for name in names)):
        yield {name: fresh(value) for name, value in zip(names, combo, strict=True)}


def fresh(value: Any) -> Any:
    """A private copy of a mutable value, so trials never share a nested list or table."""
    return copy.deepcopy(value) if isinstance(value, list | dict) else value


# -- random -----------------------------------------------------------------------------


def draw_bits(seed: int, index: int, name: str) -> int:
    """64 uniformly distributed bits for parameter ``name`` of trial ``index``: the first
    8 bytes of SHA-256 over a domain tag and ``canonical_bytes([seed, index, name])``.

    A trial's draw depends only on (seed, index, name): raising ``n`` keeps the earlier
    trials, and adding a parameter leaves the others' draws alone.
    """
    data = name.encode("utf-8")
    message = b"%sl3:i%d;i%d;s%d:%s" % (_RANDOM_DOMAIN, seed, index, len(data), data)
    return int.from_bytes(hashlib.sha256(message).digest()[:8], "big")


def unit_float(bits: int) -> float:
    """Map 64 random bits to a float uniformly spread over [0, 1) (53 bits of precision)."""
    return (bits >> 11) * (1.0 / (1 << 53))


def sample_space(space: Mapping[str, Sampler], n: int, seed: int) -> Iterator[dict[str, Any]]:
    """Yield ``n`` parameter dicts, each parameter drawn from its distribution."""
    for index in range(n):
        yield {
            name: fresh(dist.sample(draw_bits(seed, index, name))) for name, dist in space.items()
        }
