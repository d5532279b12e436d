"""The wire codec: msgpack with ext types for pids, refs and tuples, under strict limits.

Everything that crosses a process boundary goes through this codec; pickle never does,
because unpickling runs code chosen by the sender.

Wire format
-----------

A message is exactly one msgpack value (https://github.com/msgpack/msgpack/blob/master/spec.md)
with no trailing bytes. The plain msgpack types carry ``None``, ``bool``, ``int`` (64-bit
range), ``float``, ``str`` (UTF-8, the str family), ``bytes`` (the bin family), ``list``
(array) and ``dict`` (map; keys must be ``str``). Three ext types carry the rest:

==========  ============  =========================================================
ext code    Python type   payload
==========  ============  =========================================================
1           ``Pid``       msgpack array ``[node, serial]``, two non-negative ints
2           ``ActorRef``  the payload of its pid (code 1); decoding binds it to the
                          live process of the current runtime, or makes it detached
3           ``tuple``     msgpack array of the items (which may use ext types too)
==========  ============  =========================================================

Every other ext code, msgpack's timestamp (code -1) included, is refused.

Limits
------

``Codec`` holds the limits; ``encode`` and ``decode`` use ``Codec()``'s defaults:
at most ``max_size`` bytes per message (1 MiB), at most ``max_depth`` nested
containers (32; lists, tuples and dicts each count one level, so ``[[1]]`` has depth
2), and per-object caps on str/bin/array/map/ext lengths, which default to what fits
in ``max_size``. The encoder refuses any value the decoder with the same limits would
refuse, so a round trip through one ``Codec`` never fails on the receiving side.
Every failure raises ``CodecError``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final, NoReturn, final

import msgpack

from ._exceptions import CodecError
from ._pid import Pid

if TYPE_CHECKING:
    from ._ref import ActorRef

_EXT_PID: Final = 1
_EXT_ACTOR_REF: Final = 2
_EXT_TUPLE: Final = 3

_DEFAULT_MAX_SIZE: Final = 1 << 20
_DEFAULT_MAX_DEPTH: Final = 32
# msgpack's C packer gives up past 511 nested containers; stay well below it.
_DEPTH_CEILING: Final = 500

# Nested payloads are small. With packb's default 256 KiB buffer, a second live buffer
# during the outer pack made a 2-tuple cost ~14 us instead of ~2 us (glibc mmap path).
_SMALL_BUFFER: Final = 1024

_INT_MIN: Final = -(1 << 63)
_INT_LIMIT: Final = 1 << 64
_SCALARS: Final = frozenset({type(None), bool, int, float})
_LIMIT_NAMES: Final = (
    "max_size",
    "max_depth",
    "max_str_len",
    "max_bin_len",
    "max_array_len",
    "max_map_len",
    "max_ext_len",
)
_SUPPORTED: Final = "None, bool, int, float, str, bytes, list, tuple, dict, Pid, ActorRef"


def _actor_ref_class() -> type[ActorRef]:
    """Return ``ActorRef``, imported late so kernel modules can import the codec freely."""
    from ._ref import ActorRef

    return ActorRef


def _refuse_ext(code: int, payload: bytes) -> NoReturn:
    raise CodecError(f"ext type {code} is not allowed inside a pid payload")


def _decode_pid(payload: bytes) -> Pid:
    try:
        fields = msgpack.unpackb(
            payload,
            max_str_len=0,
            max_bin_len=0,
            max_array_len=2,
            max_map_len=0,
            max_ext_len=0,
            ext_hook=_refuse_ext,
        )
    except CodecError:
        raise
    except Exception as exc:
        raise CodecError(f"malformed pid payload: {exc}") from exc
    if (
        type(fields) is not list
        or len(fields) != 2
        or any(type(f) is not int or f < 0 for f in fields)
    ):
        raise CodecError(
            f"a pid payload must be [node, serial] (non-negative ints), got: {fields!r}"
        )
    pid: Pid = Pid._create(fields[0], fields[1])
    return pid


def _encode_pid(pid: Pid) -> bytes:
    payload: bytes = msgpack.packb([pid.node, pid.serial], buf_size=_SMALL_BUFFER)
    return payload


@final
class Codec:
    """A msgpack codec with size and depth limits (see the module docstring for the format).

    All arguments are keyword-only and validated here. ``max_size`` bounds a whole
    message in bytes and ``max_depth`` the container nesting. The per-object caps
    ``max_str_len`` / ``max_bin_len`` (bytes), ``max_array_len`` / ``max_map_len``
    (entries) and ``max_ext_len`` (payload bytes) default to the largest value that
    fits in ``max_size``; set them lower to refuse big objects early. Instances are
    immutable, hashable and compare by their limits.

    Example::

        codec = Codec(max_size=64 * 1024, max_depth=8)
        codec.decode(codec.encode(("shutdown", [1, 2]))) == ("shutdown", [1, 2])
    """

    __slots__ = (
        "_unpack_limits",
        "max_array_len",
        "max_bin_len",
        "max_depth",
        "max_ext_len",
        "max_map_len",
        "max_size",
        "max_str_len",
    )

    max_size: int
    max_depth: int
    max_str_len: int
    max_bin_len: int
    max_array_len: int
    max_map_len: int
    max_ext_len: int
    _unpack_limits: dict[str, int]

    def __init__(
        self,
        *,
        max_size: int = _DEFAULT_MAX_SIZE,
        max_depth: int = _DEFAULT_MAX_DEPTH,
        max_str_len: int | None = None,
        max_bin_len: int | None = None,
        max_array_len: int | None = None,
        max_map_len: int | None = None,
        max_ext_len: int | None = None,
    ) -> None:
        _check_limit("max_size", max_size, minimum=1)
        _check_limit("max_depth", max_depth, minimum=0)
        if max_depth > _DEPTH_CEILING:
            raise ValueError(f"max_depth must be at most {_DEPTH_CEILING}, got: {max_depth!r}")
        # Every element costs at least one byte and every map entry two, so these
        # defaults are the tightest ones that never refuse a message of max_size bytes.
        limits = {
            "max_size": max_size,
            "max_depth": max_depth,
            "max_str_len": max_size if max_str_len is None else max_str_len,
            "max_bin_len": max_size if max_bin_len is None else max_bin_len,
            "max_array_len": max_size if max_array_len is None else max_array_len,
            "max_map_len": max_size // 2 if max_map_len is None else max_map_len,
            "max_ext_len": max_size if max_ext_len is None else max_ext_len,
        }
        for name, value in limits.items():
            _check_limit(name, value, minimum=0)
            object.__setattr__(self, name, value)
        object.__setattr__(
            self,
            "_unpack_limits",
            {
                "max_str_len": limits["max_str_len"],
                "max_bin_len": limits["max_bin_len"],
                "max_array_len": limits["max_array_len"],
                "max_map_len": limits["max_map_len"],
                "max_ext_len": limits["max_ext_len"],
            },
        )

    def _key(self) -> tuple[int, ...]:
        return tuple(getattr(self, name) for name in _LIMIT_NAMES)

    def __setattr__(self, name: str, value: object) -> NoReturn:
        raise AttributeError(f"Codec is immutable; cannot set {name!r}")

    def __delattr__(self, name: str) -> NoReturn:
        raise AttributeError(f"Codec is immutable; cannot delete {name!r}")

    def __eq__(self, other: object) -> bool:
        if other.__class__ is Codec:
            return self._key() == other._key()
        return NotImplemented

    def __hash__(self) -> int:
        return hash(self._key())

    def __repr__(self) -> str:
        fields = ", ".join(f"{n}={getattr(self, n)}" for n in _LIMIT_NAMES)
        return f"Codec({fields})"

    # -- encoding -------------------------------------------------------------------

    def encode(self, obj: Any, *, walk: bool = True) -> bytes:
        """Return the msgpack bytes of ``obj``; raise ``CodecError`` if it cannot be sent.

        Raises ``CodecError`` for a type outside the wire format, a dict key that is not
        ``str``, an int outside the 64-bit range, nesting deeper than ``max_depth``, an
        object over its length cap, or a result longer than ``max_size``. With
        ``walk=False`` the caller has already checked ``obj`` against these limits (a
        schema that holds them, say): only the size check and msgpack's own run.
        """
        if walk:
            self._check_encodable(obj)
        try:
            data: bytes = msgpack.packb(
                obj, default=self._ext_default, strict_types=True, use_bin_type=True
            )
        except CodecError:
            raise
        except OverflowError as exc:
            raise CodecError("an int is outside the 64-bit msgpack range") from exc
        except UnicodeEncodeError as exc:
            raise CodecError(f"a str is not encodable as UTF-8: {exc.reason}") from exc
        except Exception as exc:
            raise CodecError(f"cannot encode value: {exc}") from exc
        if len(data) > self.max_size:
            raise CodecError(f"encoded value is {len(data)} bytes, over max_size={self.max_size}")
        return data

    def _check_encodable(self, obj: Any) -> None:
        """Walk ``obj`` without recursion; refuse what ``decode`` would refuse.

        Only containers go on the stack; leaves are checked where they are found. The
        walk also stops after ``max_size`` values, since each costs at least one byte on
        the wire: a small object graph that shares one list many times over would
        otherwise take exponential time to pack before the size check could run.
        """
        kind = type(obj)
        if kind is not list and kind is not tuple and kind is not dict:
            self._check_leaf(obj, kind)
            return
        max_depth = self.max_depth
        budget = self.max_size
        stack: list[tuple[Any, int]] = [(obj, 0)]
        while stack:
            value, depth = stack.pop()
            if depth >= max_depth:
                raise CodecError(f"value is nested deeper than max_depth={max_depth}")
            if type(value) is dict:
                if len(value) > self.max_map_len:
                    raise CodecError(
                        f"dict of length {len(value)} exceeds max_map_len={self.max_map_len}"
                    )
                for key in value:
                    if type(key) is not str:
                        raise CodecError(f"dict keys must be str, got: {key!r}")
                    self._check_str(key)
                items = value.values()
                budget -= 2 * len(value) + 1
            else:
                if len(value) > self.max_array_len:
                    raise CodecError(
                        f"{type(value).__name__} of length {len(value)} exceeds "
                        f"max_array_len={self.max_array_len}"
                    )
                items = value
                budget -= len(value) + 1
            if budget < 0:
                raise CodecError(f"value has more items than fit in max_size={self.max_size}")
            for item in items:
                kind = type(item)
                if kind is list or kind is tuple or kind is dict:
                    stack.append((item, depth + 1))
                elif kind is not bool and kind is not float and kind is not type(None):
                    self._check_leaf(item, kind)

    def _check_leaf(self, value: Any, kind: type) -> None:
        if kind is int:
            if not _INT_MIN <= value < _INT_LIMIT:
                raise CodecError(f"int {value} is outside the 64-bit msgpack range")
        elif kind is str:
            self._check_str(value)
        elif kind is bytes:
            if len(value) > self.max_bin_len:
                raise CodecError(
                    f"bytes of length {len(value)} exceed max_bin_len={self.max_bin_len}"
                )
        elif kind not in _SCALARS and kind is not Pid and not isinstance(value, _actor_ref_class()):
            raise CodecError(
                f"cannot encode {kind.__qualname__!s} objects; supported: {_SUPPORTED}"
            )

    def _check_str(self, text: str) -> None:
        # UTF-8 takes at most 4 bytes per character: measure only when it could matter.
        if len(text) * 4 > self.max_str_len:
            size = len(text.encode("utf-8", "surrogatepass"))
            if size > self.max_str_len:
                raise CodecError(
                    f"str of {size} UTF-8 bytes exceeds max_str_len={self.max_str_len}"
                )

    def _ext_default(self, obj: Any) -> msgpack.ExtType:
        """msgpack's ``default`` hook: build the ext types (types were checked by the walk)."""
        kind = type(obj)
        if kind is tuple:
            payload: bytes = msgpack.packb(
                list(obj),
                default=self._ext_default,
                strict_types=True,
                use_bin_type=True,
                buf_size=_SMALL_BUFFER,
            )
            code = _EXT_TUPLE
        elif kind is Pid:
            payload, code = _encode_pid(obj), _EXT_PID
        else:
            if not isinstance(obj, _actor_ref_class()):
                raise CodecError(f"cannot encode {kind.__qualname__!s} objects")
            payload, code = _encode_pid(obj.pid), _EXT_ACTOR_REF
        if len(payload) > self.max_ext_len:
            raise CodecError(
                f"ext payload of {len(payload)} bytes exceeds max_ext_len={self.max_ext_len}"
            )
        return msgpack.ExtType(code, payload)

    # -- decoding -------------------------------------------------------------------

    def decode(self, data: bytes | bytearray | memoryview, *, walk: bool = True) -> Any:
        """Return the value encoded in ``data``; raise ``CodecError`` if it is not valid.

        Refuses input over ``max_size`` before parsing, malformed or truncated msgpack,
        trailing bytes, objects over their length caps, non-``str`` map keys, unknown
        ext types and nesting deeper than ``max_depth``. With ``walk=False`` the last
        three checks of the decoded value (keys, timestamps, depth) are left to the
        caller, who checks the value anyway and calls ``check_decoded`` when it refuses
        it (so the error is the one ``decode`` would have raised).
        """
        if not isinstance(data, bytes | bytearray | memoryview):
            raise CodecError(f"decode needs bytes, got: {type(data).__qualname__}")
        size = data.nbytes if type(data) is memoryview else len(data)
        if size > self.max_size:
            raise CodecError(f"message is {size} bytes, over max_size={self.max_size}")
        value = self._unpack(data, _ExtDecoder(self))
        if walk:
            self._check_decoded(value)
        return value

    def check_decoded(self, value: Any) -> None:
        """The checks ``decode(walk=False)`` left out: str map keys, no msgpack
        timestamps, nesting up to ``max_depth``; raises ``CodecError``."""
        self._check_decoded(value)

    def _unpack(self, data: bytes | bytearray | memoryview, ext: _ExtDecoder) -> Any:
        try:
            return msgpack.unpackb(
                data,
                raw=False,
                strict_map_key=True,
                ext_hook=ext,
                **self._unpack_limits,
            )
        except CodecError:
            raise
        except msgpack.ExtraData as exc:
            raise CodecError("trailing bytes after the encoded value") from exc
        except msgpack.StackError as exc:
            raise CodecError(f"value is nested deeper than max_depth={self.max_depth}") from exc
        except msgpack.FormatError as exc:
            raise CodecError("malformed msgpack: reserved type byte") from exc
        except UnicodeDecodeError as exc:
            raise CodecError(f"a str is not valid UTF-8: {exc.reason}") from exc
        except Exception as exc:
            text = str(exc)
            if "incomplete input" in text:
                raise CodecError("message is truncated: incomplete msgpack value") from exc
            if "map key" in text:
                raise CodecError(f"map keys must be str: {text}") from exc
            raise CodecError(f"cannot decode message: {text}") from exc

    def _check_decoded(self, value: Any) -> None:
        """Walk the decoded value without recursion: depth, ``str`` keys, no timestamps."""
        stack: list[tuple[Any, int]] = [(value, 0)]
        while stack:
            item, depth = stack.pop()
            kind = type(item)
            if kind is list or kind is tuple:
                children: Any = item
            elif kind is dict:
                for key in item:
                    if type(key) is not str:
                        raise CodecError(f"map keys must be str, got: {key!r}")
                children = item.values()
            elif kind is msgpack.Timestamp:
                raise CodecError("ext type -1 (msgpack timestamp) is not part of the wire format")
            else:
                continue
            if depth >= self.max_depth:
                raise CodecError(f"value is nested deeper than max_depth={self.max_depth}")
            stack.extend((child, depth + 1) for child in children)


@final
class _ExtDecoder:
    """msgpack's ``ext_hook`` for one ``decode`` call; it builds pids, refs and tuples.

    A tuple's payload is unpacked by a nested ``unpackb`` that calls this hook again, so
    ``nesting`` counts those calls and stops at ``max_depth``: a crafted message of
    nested tuples must not be able to exhaust the Python stack. The exact depth, which
    also counts lists and dicts around the tuples, is checked after decoding.
    """

    __slots__ = ("codec", "nesting")

    def __init__(self, codec: Codec) -> None:
        self.codec = codec
        self.nesting = 0

    def __call__(self, code: int, payload: bytes) -> Any:
        if code == _EXT_TUPLE:
            if self.nesting >= self.codec.max_depth:
                raise CodecError(f"value is nested deeper than max_depth={self.codec.max_depth}")
            self.nesting += 1
            try:
                items = self.codec._unpack(payload, self)
            finally:
                self.nesting -= 1
            if type(items) is not list:
                raise CodecError(f"a tuple payload must be an array, got: {type(items).__name__}")
            return tuple(items)
        if code == _EXT_PID:
            return _decode_pid(payload)
        if code == _EXT_ACTOR_REF:
            return _actor_ref_class()._from_pid(_decode_pid(payload))
        raise CodecError(
            f"unknown ext type {code}; known: {_EXT_PID} (Pid), {_EXT_ACTOR_REF} (ActorRef), "
            f"{_EXT_TUPLE} (tuple)"
        )


def _check_limit(name: str, value: object, *, minimum: int) -> None:
    if type(value) is not int or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got: {value!r}")


_DEFAULT_CODEC: Final = Codec()


def encode(obj: Any) -> bytes:
    """Encode ``obj`` with the default ``Codec()`` limits; see ``Codec.encode``."""
    return _DEFAULT_CODEC.encode(obj)


def decode(data: bytes | bytearray | memoryview) -> Any:
    """Decode ``data`` with the default ``Codec()`` limits; see ``Codec.decode``."""
    return _DEFAULT_CODEC.decode(data)
