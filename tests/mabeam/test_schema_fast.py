"""The generated fast paths of the wire schemas agree with the interpreter.

``Struct.load``/``dump`` run code generated per struct and fall back to the interpreter
(``load_checked``/``dump_checked``) for anything it does not take. The property that
keeps that safe: whatever the fast path takes, the interpreter takes too and builds
the same value (compared by repr: ``1`` and ``1.0`` differ). Errors come from the
interpreter alone, so they need no test of their own here.
"""

from __future__ import annotations

import copy
import dataclasses
import math
from typing import Any

import msgpack
import pytest
from frame_strategies import FRAME_STRATEGIES, payloads, raw_frame, slots, wrong_value
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mabeam.cluster._protocol_schemas import _BY_TYPE, _SCHEMAS, FRAME_CLASSES
from mabeam.cluster._schema import ProtocolError
from mabeam.cluster._schema_struct import Slow

_CHECKS = [HealthCheck.too_slow, HealthCheck.data_too_large]


def _agree(fast: Any, checked: Any, value: Any, path: str) -> None:
    """``fast`` refuses ``value`` (Slow) or returns what ``checked`` returns."""
    try:
        got = fast(value)
    except Slow:
        return
    assert repr(got) == repr(checked(value, path))


@settings(max_examples=300, deadline=None, suppress_health_check=_CHECKS)
@given(data=st.data())
def test_what_the_fast_decoder_takes_the_interpreter_takes_alike(data: st.DataObject) -> None:
    cls = data.draw(st.sampled_from(FRAME_CLASSES), label="type")
    category = data.draw(st.sampled_from(["valid", "mutated", "wrong_types"]), label="category")
    payload = data.draw(payloads(cls, category), label="payload")
    raw = msgpack.unpackb(payload, strict_map_key=False)
    name = raw.get("t") if type(raw) is dict else None
    schema = _BY_TYPE.get(name) if type(name) is str else None  # type: ignore[arg-type]
    schema = schema or _SCHEMAS[cls]
    _agree(schema.compiled("load"), schema.load_checked, raw, schema.name)


@settings(max_examples=300, deadline=None, suppress_health_check=_CHECKS)
@given(data=st.data())
def test_what_the_fast_encoder_takes_the_interpreter_takes_alike(data: st.DataObject) -> None:
    cls = data.draw(st.sampled_from(FRAME_CLASSES), label="type")
    frame = data.draw(FRAME_STRATEGIES[cls], label="frame")
    schema = _SCHEMAS[cls]
    fields = [f.name for f in dataclasses.fields(frame)]
    if fields and data.draw(st.booleans(), label="break a field"):
        name = data.draw(st.sampled_from(fields), label="field")
        object.__setattr__(frame, name, data.draw(wrong_value(getattr(frame, name))))
    _agree(schema.compiled("dump"), schema.dump_checked, frame, schema.name)


def test_a_valid_frame_takes_the_fast_path_both_ways() -> None:
    """Not a fallback each time: a valid frame of every type passes the generated code."""

    @settings(max_examples=20, deadline=None, suppress_health_check=_CHECKS)
    @given(frame=st.one_of(*FRAME_STRATEGIES.values()))
    def check(frame: Any) -> None:
        schema = _SCHEMAS[type(frame)]
        wire = schema.compiled("dump")(frame)
        assert repr(wire) == repr(schema.dump_checked(frame, "x"))
        loaded = schema.compiled("load")(msgpack.unpackb(msgpack.packb(wire)))
        assert repr(loaded) == repr(schema.load_checked(msgpack.unpackb(msgpack.packb(wire)), "x"))

    check()


@pytest.mark.parametrize("cls", FRAME_CLASSES, ids=lambda cls: cls.__name__)
def test_an_error_reads_as_the_interpreter_words_it(cls: type) -> None:
    schema = _SCHEMAS[cls]
    with pytest.raises(ProtocolError) as fast:
        schema.load({"nope": 1}, schema.name)
    with pytest.raises(ProtocolError) as checked:
        schema.load_checked({"nope": 1}, schema.name)
    assert (fast.value.code, fast.value.message) == (checked.value.code, checked.value.message)


EDGES: list[Any] = [
    None, True, False, 0, 1, -1, 255, 256, 2**31 - 1, 2**31, -(2**31), -(2**31) - 1,
    2**63 - 1, 2**63, 2**64 - 1, 2**64, -(2**63), -(2**63) - 1, 10**400,
    0.0, -0.0, 0.5, 1.0, -1.0, 1e9, 1e9 + 1, 1e18, 1e300, math.nan, math.inf, -math.inf,
    "", "a", "A-1", "process", "pool", "x" * 32, "x" * 33, "y" * 128, "y" * 129, "z" * 256,
    "z" * 257, "t" * 4097, "a b", "-x", "\x00", "\x7f", "é", "m.n:f", "m:f", "1m:f",
    b"", b"x", [], [1], ["a"], [[]], {}, {"a": 1}, {"": None}, {1: 2}, (1,),
    msgpack.ExtType(5, b"x"),
]  # fmt: skip
"""Values at and past every bound of the specs (ints, numbers, lengths, patterns)."""


@settings(max_examples=25, deadline=None, suppress_health_check=_CHECKS)
@given(frame=st.one_of(*FRAME_STRATEGIES.values()))
def test_every_field_at_every_edge_agrees(frame: Any) -> None:
    """Each position of a valid frame (nested ones too) set to each edge value, both
    ways: the decoder on the wire map, the encoder on the frame's top-level fields."""
    schema = _SCHEMAS[type(frame)]
    load, dump = schema.compiled("load"), schema.compiled("dump")
    raw = raw_frame(frame)
    for index in range(len(slots(raw, []))):
        for value in EDGES:
            broken = copy.deepcopy(raw)
            container, key = slots(broken, [])[index]
            container[key] = value
            _agree(load, schema.load_checked, broken, schema.name)
    for field in dataclasses.fields(frame):
        for value in EDGES:
            changed = copy.copy(frame)
            object.__setattr__(changed, field.name, value)
            _agree(dump, schema.dump_checked, changed, schema.name)
