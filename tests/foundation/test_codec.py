"""foundation.codec: round trips, the wire format, and every limit refusing with CodecError."""

from __future__ import annotations

import contextlib
import enum
import struct
from typing import Any

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from foundation import codec
from foundation._exceptions import CodecError
from foundation._pid import Pid
from foundation._ref import ActorRef
from foundation.codec import Codec, decode, encode

FAST = settings(max_examples=200, deadline=None)


def _ext(code: int, payload: bytes) -> bytes:
    """Hand-build an ext32 frame, so tests do not depend on the encoder."""
    return b"\xc9" + struct.pack(">Ib", len(payload), code) + payload


def _same(a: Any, b: Any) -> bool:
    """Equality that also tells a tuple from a list and a bool from an int."""
    if type(a) is not type(b):
        return False
    if type(a) in (list, tuple):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if type(a) is dict:
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    return bool(a == b)


def _nested_lists(depth: int, leaf: Any = 0) -> Any:
    value: Any = leaf
    for _ in range(depth):
        value = [value]
    return value


# -- round trips -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        None,
        True,
        False,
        0,
        -1,
        2**63 - 1,
        -(2**63),
        2**64 - 1,
        1.5,
        -0.0,
        float("inf"),
        "",
        "héllo ✓",
        b"",
        b"\x00\xff",
        [],
        {},
        (),
        [1, [2, [3, {"a": [4, (5, 6)]}]]],
        {"nested": {"deeper": {"list": [1, 2.5, None, "x", b"y"]}}},
    ],
)
def test_plain_values_round_trip(value: Any) -> None:
    assert _same(decode(encode(value)), value)


def test_tuples_round_trip_as_tuples_not_lists() -> None:
    value = ("shutdown", ("nested", [1, (2,)]), {"k": ()})
    decoded = decode(encode(value))
    assert _same(decoded, value)
    assert type(decoded) is tuple
    assert type(decoded[1][1]) is list
    assert type(decoded[1][1][1]) is tuple


def test_pids_round_trip_to_equal_pids() -> None:
    pid = Pid._create(3, 2**40)
    decoded = decode(encode({"who": pid, "all": [pid, (pid,)]}))
    assert decoded["who"] == pid
    assert type(decoded["who"]) is Pid
    assert decoded["all"] == [pid, (pid,)]


def test_actor_refs_round_trip_as_detached_refs_outside_a_runtime() -> None:
    ref = ActorRef._from_pid(Pid._create(0, 42))
    decoded = decode(encode(("reply_to", ref)))
    assert decoded == ("reply_to", ref)
    assert type(decoded[1]) is ActorRef
    assert decoded[1].pid == Pid._create(0, 42)
    assert not decoded[1].is_alive


def test_decode_accepts_bytearray_and_memoryview() -> None:
    data = encode([1, "a"])
    assert decode(bytearray(data)) == [1, "a"]
    assert decode(memoryview(data)) == [1, "a"]


# -- wire format -------------------------------------------------------------------------


def test_pid_is_ext_type_1_holding_node_and_serial() -> None:
    assert encode(Pid._create(2, 7)) == _ext_encoded(1, msgpack.packb([2, 7]))
    assert decode(_ext(1, msgpack.packb([2, 7]))) == Pid._create(2, 7)


def test_actor_ref_is_ext_type_2_holding_the_pid_payload() -> None:
    ref = ActorRef._from_pid(Pid._create(2, 7))
    assert encode(ref) == _ext_encoded(2, msgpack.packb([2, 7]))
    assert decode(_ext(2, msgpack.packb([2, 7]))) == ref


def test_tuple_is_ext_type_3_holding_an_array_of_the_items() -> None:
    assert encode((1, "a")) == _ext_encoded(3, msgpack.packb([1, "a"]))
    assert decode(_ext(3, msgpack.packb([1, "a"]))) == (1, "a")


def _ext_encoded(code: int, payload: bytes) -> bytes:
    data: bytes = msgpack.packb(msgpack.ExtType(code, payload))
    return data


def test_public_module_exports_a_tuple_all() -> None:
    assert codec.__all__ == ("Codec", "decode", "encode")


# -- the Codec configuration -------------------------------------------------------------


def test_codec_defaults_derive_object_caps_from_max_size() -> None:
    c = Codec()
    assert (c.max_size, c.max_depth) == (1 << 20, 32)
    assert c.max_str_len == c.max_bin_len == c.max_array_len == c.max_ext_len == 1 << 20
    assert c.max_map_len == 1 << 19
    small = Codec(max_size=100, max_str_len=10)
    assert (small.max_str_len, small.max_bin_len, small.max_map_len) == (10, 100, 50)


def test_codec_is_immutable_hashable_and_compares_by_limits() -> None:
    c = Codec(max_depth=4)
    with pytest.raises(AttributeError):
        c.max_depth = 5
    assert c == Codec(max_depth=4)
    assert c != Codec(max_depth=5)
    assert hash(c) == hash(Codec(max_depth=4))
    assert "max_depth=4" in repr(c)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"max_size": 0},
        {"max_depth": -1},
        {"max_depth": 501},
        {"max_str_len": -1},
        {"max_map_len": 1.5},
        {"max_bin_len": True},
    ],
)
def test_codec_refuses_invalid_limits_at_construction(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="got: "):
        Codec(**kwargs)


# -- decode limits -----------------------------------------------------------------------


def test_decode_refuses_input_over_max_size_before_parsing() -> None:
    with pytest.raises(CodecError, match="over max_size=16"):
        Codec(max_size=16).decode(encode("x" * 20))


def test_decode_refuses_nesting_deeper_than_max_depth() -> None:
    assert decode(b"\x91" * 32 + b"\xc0") == _nested_lists(32, leaf=None)
    with pytest.raises(CodecError, match="deeper than max_depth=32"):
        decode(b"\x91" * 33 + b"\xc0")
    with pytest.raises(CodecError, match="deeper than max_depth=32"):
        decode(b"\x81\xa1k" * 33 + b"\xc0")


def test_decode_refuses_a_huge_hand_crafted_nesting_of_arrays() -> None:
    with pytest.raises(CodecError, match="deeper") as info:
        decode(b"\x91" * 100_000 + b"\xc0")
    assert isinstance(info.value.__cause__, msgpack.StackError)


def test_decode_refuses_a_huge_hand_crafted_nesting_of_tuples() -> None:
    blob = b"\xc0"
    for _ in range(10_000):
        blob = _ext(3, b"\x91" + blob)
    with pytest.raises(CodecError, match="deeper than max_depth=32"):
        decode(blob)


def test_decode_counts_lists_and_tuples_together_for_depth() -> None:
    def alternating(depth: int) -> Any:
        value: Any = 0
        for i in range(depth):
            value = [value] if i % 2 else (value,)
        return value

    assert _same(decode(_encode_unchecked(alternating(32))), alternating(32))
    with pytest.raises(CodecError, match="deeper than max_depth=32"):
        decode(_encode_unchecked(alternating(33)))


def _encode_unchecked(value: Any) -> bytes:
    """Encode tuples as ext 3 without any depth check, like a hostile peer would."""

    def default(obj: Any) -> msgpack.ExtType:
        return msgpack.ExtType(3, msgpack.packb(list(obj), default=default, strict_types=True))

    data: bytes = msgpack.packb(value, default=default, strict_types=True)
    return data


@pytest.mark.parametrize(
    ("limits", "value", "message"),
    [
        ({"max_str_len": 3}, "abcd", "max_str_len"),
        ({"max_bin_len": 3}, b"abcd", "max_bin_len"),
        ({"max_array_len": 3}, [1, 2, 3, 4], "max_array_len"),
        ({"max_map_len": 1}, {"a": 1, "b": 2}, "max_map_len"),
        ({"max_ext_len": 3}, (1, 2, 3, 4), "max_ext_len"),
    ],
)
def test_decode_refuses_objects_over_their_length_caps(
    limits: dict[str, int], value: Any, message: str
) -> None:
    with pytest.raises(CodecError, match=message):
        Codec(**limits).decode(encode(value))


@pytest.mark.parametrize("code", [0, 4, 9, 127, -2, -128])
def test_decode_refuses_unknown_ext_types(code: int) -> None:
    with pytest.raises(CodecError, match=f"unknown ext type {code}"):
        decode(_ext(code, b"\xc0"))


def test_decode_refuses_msgpack_timestamps() -> None:
    with pytest.raises(CodecError, match="timestamp"):
        decode(msgpack.packb(msgpack.Timestamp(1, 0)))


@pytest.mark.parametrize(
    "payload",
    [b"\x91\x01", b"\x92\x01\xff", b"\x92\x01\xc3", b"\xa1x", b"\x93\x01\x02\x03", b"\x92\x01"],
)
def test_decode_refuses_malformed_pid_payloads(payload: bytes) -> None:
    with pytest.raises(CodecError, match="pid payload"):
        decode(_ext(1, payload))


def test_decode_refuses_a_tuple_payload_that_is_not_an_array() -> None:
    with pytest.raises(CodecError, match="tuple payload must be an array"):
        decode(_ext(3, b"\x01"))


@pytest.mark.parametrize(
    "value", [1, "text", [1, 2, 3], {"a": (1, 2)}, Pid._create(1, 2), b"\x00" * 40]
)
def test_decode_refuses_truncated_bytes(value: Any) -> None:
    data = encode(value)
    for cut in range(len(data)):
        with pytest.raises(CodecError):
            decode(data[:cut])


def test_decode_says_truncated_and_chains_the_msgpack_error() -> None:
    with pytest.raises(CodecError, match="truncated") as info:
        decode(b"\x92\x01")
    assert isinstance(info.value.__cause__, ValueError)


def test_decode_refuses_trailing_garbage() -> None:
    with pytest.raises(CodecError, match="trailing bytes") as info:
        decode(encode([1, 2]) + b"\x00")
    assert isinstance(info.value.__cause__, msgpack.ExtraData)


@pytest.mark.parametrize(
    "data",
    [
        b"\x81\x01\x02",  # int key
        b"\x81\xc4\x01k\x02",  # bin key
        b"\x81\xc0\x02",  # nil key
        b"\x81\x91\x01\x02",  # array key
        _ext(3, b"\x91\x81" + _ext(3, b"\x90") + b"\x01"),  # tuple key, inside a tuple
    ],
)
def test_decode_refuses_non_str_map_keys(data: bytes) -> None:
    with pytest.raises(CodecError, match="map keys must be str"):
        decode(data)


@pytest.mark.parametrize(
    "data",
    [b"", b"\xc1", b"\xa2\xff\xfe", b"\xd9"],
)
def test_decode_refuses_malformed_bytes(data: bytes) -> None:
    with pytest.raises(CodecError):
        decode(data)


def test_decode_refuses_non_bytes_input() -> None:
    with pytest.raises(CodecError, match="needs bytes, got: str"):
        decode("\x90")  # type: ignore[arg-type]


# -- encode limits -----------------------------------------------------------------------


class _Colour(enum.IntEnum):
    RED = 1


class _Text(str):
    pass


@pytest.mark.parametrize(
    "value",
    [{1, 2}, object(), bytearray(b"x"), _Colour.RED, _Text("x"), [1, {"a": frozenset()}]],
)
def test_encode_refuses_unsupported_types(value: Any) -> None:
    with pytest.raises(CodecError, match="cannot encode"):
        encode(value)


@pytest.mark.parametrize("value", [2**64, -(2**63) - 1, [2**70]])
def test_encode_refuses_ints_outside_the_64_bit_range(value: Any) -> None:
    with pytest.raises(CodecError, match="64-bit"):
        encode(value)


def test_encode_refuses_strings_that_are_not_utf8() -> None:
    with pytest.raises(CodecError, match="UTF-8"):
        encode("\ud800")


@pytest.mark.parametrize("value", [{1: "a"}, {b"k": 1}, {("a",): 1}, [{"ok": {None: 1}}]])
def test_encode_refuses_non_str_dict_keys(value: Any) -> None:
    with pytest.raises(CodecError, match="keys must be str"):
        encode(value)


def test_encode_refuses_nesting_deeper_than_max_depth() -> None:
    assert decode(encode(_nested_lists(32))) == _nested_lists(32)
    with pytest.raises(CodecError, match="deeper than max_depth=32"):
        encode(_nested_lists(33))
    with pytest.raises(CodecError, match="deeper than max_depth=2"):
        Codec(max_depth=2).encode({"a": ({"b": 1},)})


def test_encode_refuses_a_cyclic_value() -> None:
    cycle: list[Any] = []
    cycle.append(cycle)
    with pytest.raises(CodecError, match="deeper"):
        encode(cycle)


def test_encode_refuses_a_shared_graph_too_large_to_send_without_expanding_it() -> None:
    shared: Any = [0]
    for _ in range(30):  # 2**30 leaves once expanded, 31 list objects in memory
        shared = [shared, shared]
    with pytest.raises(CodecError, match="more items than fit in max_size"):
        encode(shared)


def test_encode_refuses_output_larger_than_max_size() -> None:
    with pytest.raises(CodecError, match="over max_size=16"):
        Codec(max_size=16).encode(["ab"] * 6)


@pytest.mark.parametrize(
    ("limits", "value", "message"),
    [
        ({"max_str_len": 3}, "abcd", "max_str_len"),
        ({"max_str_len": 3}, {"abcd": 1}, "max_str_len"),
        ({"max_str_len": 7}, "ééé✓", "max_str_len"),
        ({"max_bin_len": 3}, b"abcd", "max_bin_len"),
        ({"max_array_len": 3}, (1, 2, 3, 4), "max_array_len"),
        ({"max_map_len": 1}, {"a": 1, "b": 2}, "max_map_len"),
        ({"max_ext_len": 3}, (1, 2, 3, 4), "max_ext_len"),
    ],
)
def test_encode_refuses_what_decode_with_the_same_limits_would_refuse(
    limits: dict[str, int], value: Any, message: str
) -> None:
    with pytest.raises(CodecError, match=message):
        Codec(**limits).encode(value)


# -- properties --------------------------------------------------------------------------

_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=False)
    | st.text(max_size=20)
    | st.binary(max_size=20)
    | st.builds(Pid._create, st.integers(0, 2**16), st.integers(0, 2**63 - 1))
)
_values = st.recursive(
    _scalars,
    lambda children: (
        st.lists(children, max_size=5)
        | st.lists(children, max_size=5).map(tuple)
        | st.dictionaries(st.text(max_size=10), children, max_size=5)
    ),
    max_leaves=30,
)


@FAST
@given(_values)
def test_random_nested_values_round_trip_exactly(value: Any) -> None:
    assert _same(decode(encode(value)), value)


@FAST
@given(st.binary(max_size=200))
def test_decode_of_random_bytes_returns_a_value_or_raises_codec_error(data: bytes) -> None:
    with contextlib.suppress(CodecError):
        decode(data)


@FAST
@given(_values, st.data())
def test_decode_of_corrupted_encodings_returns_a_value_or_raises_codec_error(
    value: Any, data: st.DataObject
) -> None:
    blob = bytearray(encode(value))
    for _ in range(data.draw(st.integers(1, 4))):
        index = data.draw(st.integers(0, len(blob) - 1))
        blob[index] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(blob)))
    with contextlib.suppress(CodecError):
        decode(bytes(blob[:cut]))
