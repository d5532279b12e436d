"""Field specs for the cluster wire protocol: check a decoded value, build the typed one.

A ``Spec`` has two directions. ``load(value, path)`` takes what msgpack decoded and
returns the typed value (a list becomes a tuple, a map becomes its dataclass), or
raises ``ProtocolError`` naming ``path``. ``dump(value, path)`` runs the same checks on
the Python side and returns what goes on the wire, so a frame that encodes always
decodes. ``Struct`` (in ``_schema_struct``) ties a frozen dataclass to one spec per field.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from typing import Any, Final, Literal, NoReturn, get_args

from foundation.codec import Codec

ErrorCode = Literal[
    "bad_msgpack",
    "too_large",
    "bad_version",
    "unknown_type",
    "missing_field",
    "unknown_field",
    "bad_type",
    "bad_value",
]
ERROR_CODES: Final[tuple[ErrorCode, ...]] = get_args(ErrorCode)


class ProtocolError(ValueError):
    """A frame broke the protocol: ``code`` (one of ``ERROR_CODES``) says how, ``message`` where.

    Raised by ``encode`` and ``decode`` for every problem with a frame and never any
    other exception. ``frame_type`` and ``request_id`` are filled in when the bad frame
    still showed them, so a receiver can answer with an ERROR that names the request.
    """

    code: ErrorCode
    message: str
    frame_type: str | None
    request_id: str | None

    def __init__(
        self,
        code: ErrorCode,
        message: str,
        *,
        frame_type: str | None = None,
        request_id: str | None = None,
    ) -> None:
        super().__init__(code, message)
        self.code = code
        self.message = message
        self.frame_type = frame_type
        self.request_id = request_id

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"


def fail(code: ErrorCode, message: str) -> NoReturn:
    raise ProtocolError(code, message)


def show(value: Any) -> str:
    """A short description of ``value`` for an error message (never a huge repr)."""
    kind = type(value)
    if kind is str:
        return repr(value) if len(value) <= 40 else f"{value[:40]!r}... ({len(value)} chars)"
    if kind is int and value.bit_length() > 64:
        return f"an int of {value.bit_length()} bits"
    if kind is bool or kind is int or kind is float or value is None:
        return repr(value)
    return f"a value of type {kind.__name__}"


def bad_type(path: str, expected: str, value: Any) -> NoReturn:
    fail("bad_type", f"{path} must be {expected}, got {show(value)}")


def bad_value(path: str, expected: str, value: Any) -> NoReturn:
    fail("bad_value", f"{path} must be {expected}, got {show(value)}")


# -- codec errors ---------------------------------------------------------------------

_SIZE_MARKERS: Final = ("over max_size", "exceeds max_", "nested deeper", "more items than fit")


def codec_error(exc: Exception, *, encoding: bool) -> ProtocolError:
    """Map a ``CodecError`` to a protocol error: a broken limit is ``too_large``."""
    text = str(exc)
    # A malformed pid payload quotes msgpack's own limit error: the bytes are bad.
    if not text.startswith("malformed") and any(marker in text for marker in _SIZE_MARKERS):
        return ProtocolError("too_large", text)
    return ProtocolError("bad_value" if encoding else "bad_msgpack", text)


def make_codec(
    *, max_size: int, max_depth: int, max_str: int, max_array: int, max_map: int
) -> Codec:
    return Codec(
        max_size=max_size,
        max_depth=max_depth,
        max_str_len=max_str,
        max_bin_len=max_size,
        max_array_len=max_array,
        max_map_len=max_map,
        max_ext_len=max_size,
    )


# -- specs ----------------------------------------------------------------------------


class Spec:
    """How one field is checked (``load``, from the wire) and written (``dump``, to it)."""

    __slots__ = ()

    def load(self, value: Any, path: str) -> Any:
        raise NotImplementedError

    def dump(self, value: Any, path: str) -> Any:
        """Leaves check the Python value exactly as a decoded one."""
        return self.load(value, path)


class Integer(Spec):
    """An int (never a bool) in ``[lo, hi]``."""

    __slots__ = ("hi", "lo")

    def __init__(self, lo: int, hi: int) -> None:
        self.lo = lo
        self.hi = hi

    def load(self, value: Any, path: str) -> int:
        if type(value) is not int:
            bad_type(path, "an int", value)
        if not self.lo <= value <= self.hi:
            bad_value(path, f"an int in [{self.lo}, {self.hi}]", value)
        return value


class Number(Spec):
    """A finite number in ``[lo, hi]`` (``positive`` excludes 0), carried as a float."""

    __slots__ = ("hi", "lo", "positive")

    def __init__(self, lo: float, hi: float, *, positive: bool = False) -> None:
        self.lo = lo
        self.hi = hi
        self.positive = positive

    def load(self, value: Any, path: str) -> float:
        kind = type(value)
        if kind is not float and kind is not int:
            bad_type(path, "a number", value)
        try:
            number = float(value) if kind is int else value
        except OverflowError:  # an int past 1e308, only possible on the encode side
            number = math.inf
        if not math.isfinite(number) or not self.lo <= number <= self.hi:
            bad_value(path, f"a finite number in [{self.lo:g}, {self.hi:g}]", value)
        if self.positive and number <= 0:
            bad_value(path, "a number above 0", value)
        return number


class Boolean(Spec):
    __slots__ = ()

    def load(self, value: Any, path: str) -> bool:
        if type(value) is not bool:
            bad_type(path, "a bool", value)
        return value


class Text(Spec):
    """A str of at most ``max_len`` characters that fully matches ``pattern`` if given."""

    __slots__ = ("max_len", "pattern", "what")

    def __init__(self, max_len: int, pattern: str | None = None, what: str = "") -> None:
        self.max_len = max_len
        self.pattern = None if pattern is None else re.compile(pattern, re.ASCII)
        self.what = what or f"a str of at most {max_len} chars"

    def accepts(self, value: object) -> bool:
        """Whether ``load`` would take ``value`` (without building an error)."""
        return (
            type(value) is str
            and len(value) <= self.max_len
            and (self.pattern is None or self.pattern.fullmatch(value) is not None)
        )

    def load(self, value: Any, path: str) -> str:
        if type(value) is not str:
            bad_type(path, "a str", value)
        if len(value) > self.max_len:
            fail("bad_value", f"{path} is {len(value)} chars, over the limit of {self.max_len}")
        if self.pattern is not None and self.pattern.fullmatch(value) is None:
            bad_value(path, self.what, value)
        return value


class Choice(Spec):
    __slots__ = ("options",)

    def __init__(self, *options: str) -> None:
        self.options = frozenset(options)

    def load(self, value: Any, path: str) -> str:
        if type(value) is not str:
            bad_type(path, "a str", value)
        if value not in self.options:
            bad_value(path, "one of " + ", ".join(sorted(map(repr, self.options))), value)
        return value


class Optional(Spec):
    """``None`` or what ``inner`` accepts."""

    __slots__ = ("inner",)

    def __init__(self, inner: Spec) -> None:
        self.inner = inner

    def load(self, value: Any, path: str) -> Any:
        return None if value is None else self.inner.load(value, path)

    def dump(self, value: Any, path: str) -> Any:
        return None if value is None else self.inner.dump(value, path)


class Sequence(Spec):
    """A list of at most ``max_len`` items (a tuple on the Python side)."""

    __slots__ = ("item", "max_len", "min_len")

    def __init__(self, item: Spec, max_len: int, *, min_len: int = 0) -> None:
        self.item = item
        self.max_len = max_len
        self.min_len = min_len

    def _check(self, value: Any, path: str, kinds: tuple[type, ...]) -> None:
        if type(value) not in kinds:
            bad_type(path, "a list", value)
        if not self.min_len <= len(value) <= self.max_len:
            fail(
                "bad_value",
                f"{path} has {len(value)} items; it must have {self.min_len} to {self.max_len}",
            )

    def load(self, value: Any, path: str) -> tuple[Any, ...]:
        self._check(value, path, (list,))
        load = self.item.load
        return tuple([load(item, f"{path}[{i}]") for i, item in enumerate(value)])

    def dump(self, value: Any, path: str) -> list[Any]:
        self._check(value, path, (tuple, list))
        dump = self.item.dump
        return [dump(item, f"{path}[{i}]") for i, item in enumerate(value)]


_LEAVES: Final = frozenset({type(None), bool, int, float, str, bytes})
_PLAIN: Final = "a plain value (None, bool, int, float, str, bytes, list, tuple or str-keyed map)"


class Plain(Spec):
    """Any plain msgpack value (user data: params, results); pids and refs are refused.

    ``depth`` is where the value sits in its frame (the frame map is 0), so the walk
    holds the codec's own limits too (nesting, str, array and map lengths): a frame
    that ``dump`` passed encodes without the codec's walk, and one that ``load`` passed
    was within them. The walk is iterative and stops after ``budget`` values (each costs
    at least one byte on the wire), so a cyclic or shared structure cannot run away.
    """

    __slots__ = ("budget", "depth", "limits")

    def __init__(self, budget: int, *, depth: int, limits: Codec) -> None:
        self.budget = budget
        self.depth = depth
        self.limits = limits

    def load(self, value: Any, path: str) -> Any:
        if type(value) not in _LEAVES:
            self._walk(value, path, _LEAVES)  # msgpack held the str/array/map limits
        return value

    def dump(self, value: Any, path: str) -> Any:
        """As ``load``, and ints are checked against msgpack's range here: decoded ones
        always fit, a Python int may not (and would fail later with a worse message)."""
        kind = type(value)
        if kind is int:
            _check_int(value, path)
        elif kind is str:
            self._check_str(value, path)
        elif kind not in _LEAVES:
            self._walk(value, path, _SCALARS)
        return value

    def _check_str(self, text: str, path: str) -> None:
        limit = self.limits.max_str_len
        if len(text) * 4 > limit:  # UTF-8 takes at most 4 bytes per char
            size = len(text.encode("utf-8", "surrogatepass"))
            if size > limit:
                fail(
                    "too_large", f"{path}: a str of {size} UTF-8 bytes exceeds max_str_len={limit}"
                )

    def _walk(self, value: Any, path: str, skip: frozenset[type]) -> None:
        """Check every container and every leaf type not in ``skip``, level by level."""
        budget = self.budget
        limits = self.limits
        depth = self.depth
        level = [value]
        inside = f"{path} (or an item inside it)"
        while level:
            below: list[Any] = []
            for item in level:
                kind = type(item)
                if kind is dict:
                    if len(item) > limits.max_map_len:
                        fail("too_large", f"{inside}: a map of {len(item)} entries exceeds "
                             f"max_map_len={limits.max_map_len}")  # fmt: skip
                    for key in item:
                        if type(key) is not str:
                            bad_type(f"{path} (a map key)", "a str", key)
                        if skip is _SCALARS:
                            self._check_str(key, inside)
                    children: Any = item.values()
                elif kind is list or kind is tuple:
                    if len(item) > limits.max_array_len:
                        fail("too_large", f"{inside}: a list of {len(item)} items exceeds "
                             f"max_array_len={limits.max_array_len}")  # fmt: skip
                    children = item
                elif kind is int:
                    _check_int(item, inside)
                    continue
                elif kind is str:
                    self._check_str(item, inside)
                    continue
                elif kind in _LEAVES:
                    continue
                else:
                    bad_type(inside, _PLAIN, item)
                if depth >= limits.max_depth:
                    fail("too_large", f"{inside}: value is nested deeper than "
                         f"max_depth={limits.max_depth}")  # fmt: skip
                budget -= len(item) + 1
                if budget < 0:
                    fail("too_large", f"{path} holds more values than fit in one frame")
                below.extend(child for child in children if type(child) not in skip)
            level = below
            depth += 1


_SCALARS: Final = frozenset({type(None), bool, float, bytes})
_INT_MIN: Final = -(1 << 63)
_INT_LIMIT: Final = 1 << 64


def _check_int(value: int, path: str) -> None:
    if not _INT_MIN <= value < _INT_LIMIT:
        bad_value(path, "an int in msgpack's range [-2**63, 2**64 - 1]", value)


class Scalar(Spec):
    """None, a bool, an int, a float (NaN and infinities included: a diverged loss is
    still a metric) or a str of at most ``max_len`` chars."""

    __slots__ = ("max_len",)

    def __init__(self, max_len: int) -> None:
        self.max_len = max_len

    def load(self, value: Any, path: str) -> Any:
        kind = type(value)
        if kind is str:
            if len(value) > self.max_len:
                fail("bad_value", f"{path} is {len(value)} chars, over the limit of {self.max_len}")
        elif kind is not int and kind is not float and kind is not bool and value is not None:
            bad_type(path, "None, a bool, an int, a float or a str", value)
        return value

    def dump(self, value: Any, path: str) -> Any:
        if type(value) is int:
            _check_int(value, path)
        return self.load(value, path)


class MapOf(Spec):
    """A map of at most ``max_len`` entries with checked keys and values."""

    __slots__ = ("key", "max_len", "value")

    def __init__(self, key: Spec, value: Spec, max_len: int) -> None:
        self.key = key
        self.value = value
        self.max_len = max_len

    def load(self, value: Any, path: str) -> dict[str, Any]:
        return self._map(value, path, self.value.load)

    def dump(self, value: Any, path: str) -> dict[str, Any]:
        return self._map(value, path, self.value.dump)

    def _map(self, value: Any, path: str, convert: Callable[[Any, str], Any]) -> dict[str, Any]:
        if type(value) is not dict:
            bad_type(path, "a map", value)
        if len(value) > self.max_len:
            fail("bad_value", f"{path} has {len(value)} entries, over the limit of {self.max_len}")
        key_load = self.key.load
        out: dict[str, Any] = {}
        for key, item in value.items():
            key_load(key, f"{path} (a key)")
            out[key] = convert(item, f"{path}[{key!r:.40}]")
        return out
