"""The cluster wire protocol: every frame round-trips, every refusal has its code and field.

The hypothesis strategies that build valid frames of each type live in
frame_strategies.py, with those that break them for the fuzz tests.
"""

from __future__ import annotations

import dataclasses
import math
import re
from pathlib import Path
from typing import Any

import msgpack
import pytest
from frame_strategies import FRAME_STRATEGIES, refused, wire
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from foundation.codec import encode as codec_encode
from mabeam.cluster import protocol as p
from mabeam.cluster.protocol import (
    ERROR_CODES,
    ERROR_KINDS,
    FRAME_CLASSES,
    MAX_FRAME_BYTES,
    PROTOCOL_VERSION,
    Ack,
    Bye,
    Cancel,
    CancelJob,
    Dispatch,
    Error,
    JobSpec,
    PeerHealth,
    Progress,
    ProtocolError,
    Ready,
    Resources,
    Result,
    Submit,
    clip,
    decode,
    encode,
    error_reply,
)

V = PROTOCOL_VERSION

DOCS = Path(__file__).resolve().parents[2] / "docs" / "protocol.md"
ROUND_TRIP = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# -- round trips ----------------------------------------------------------------------


def test_the_strategies_cover_every_frame_class() -> None:
    assert set(FRAME_STRATEGIES) == set(FRAME_CLASSES)
    assert len(FRAME_CLASSES) == 21  # with MARKET and MARKET_REPLY


@pytest.mark.parametrize("cls", FRAME_CLASSES, ids=lambda c: c.__name__)
@ROUND_TRIP
@given(data=st.data())
def test_every_frame_type_round_trips_through_encode_and_decode(
    cls: type, data: st.DataObject
) -> None:
    frame = data.draw(FRAME_STRATEGIES[cls])
    payload = encode(frame)
    assert len(payload) <= MAX_FRAME_BYTES
    back = decode(payload)
    assert type(back) is cls
    assert back == frame
    assert encode(back) == payload
    # The envelope: version and type first, then exactly the dataclass's fields.
    raw = msgpack.unpackb(payload, strict_map_key=True, ext_hook=lambda code, data: code)
    assert list(raw)[:2] == ["v", "t"]
    assert (raw["v"], raw["t"]) == (PROTOCOL_VERSION, cls.TYPE)
    assert set(raw) - {"v", "t"} == {f.name for f in dataclasses.fields(cls)}


def test_optional_fields_may_be_left_out_and_take_their_defaults() -> None:
    frame = decode(wire(v=V, t="DISPATCH", job_id="j1", attempt=2, lease="l1", entrypoint="m:f"))
    assert frame == Dispatch(job_id="j1", attempt=2, lease="l1", entrypoint="m:f")
    assert frame.params == {} and frame.resources == Resources(gpus=0, cpus=1, memory_mb=0)
    spec = decode(
        wire(v=V, t="SUBMIT", request_id="r", idempotency_key="k", specs=[{"entrypoint": "a:b"}])
    )
    assert isinstance(spec, Submit)
    assert spec.specs == (JobSpec(entrypoint="a:b"),)
    assert spec.specs[0].max_retries == 3 and spec.specs[0].isolation == "process"


def test_an_int_is_taken_for_a_float_field_and_carried_as_a_float() -> None:
    frame = decode(
        wire(v=V, t="DISPATCH", job_id="j", attempt=0, lease="l", entrypoint="m:f", timeout_s=30)
    )
    assert isinstance(frame, Dispatch)
    assert frame.timeout_s == 30.0 and type(frame.timeout_s) is float


def test_user_values_keep_nan_tuples_and_bytes() -> None:
    frame = Result(
        job_id="j",
        lease="l",
        attempt=1,
        ok=True,
        value={"loss": math.nan, "shape": (3, 4), "blob": b"\x00\xff"},
    )
    back = decode(encode(frame))
    assert isinstance(back, Result)
    assert math.isnan(back.value["loss"])
    assert back.value["shape"] == (3, 4) and back.value["blob"] == b"\x00\xff"
    progress = decode(encode(Progress(job_id="j", lease="l", step=3, metrics={"loss": math.inf})))
    assert isinstance(progress, Progress) and progress.metrics == {"loss": math.inf}


def test_cancel_has_a_node_form_with_a_lease_and_a_client_form_with_a_request_id() -> None:
    assert decode(encode(Cancel(job_id="j", lease="l"))) == Cancel(job_id="j", lease="l")
    assert decode(encode(CancelJob(request_id="r", job_id="j"))) == CancelJob(
        request_id="r", job_id="j"
    )
    error = refused(wire(v=V, t="CANCEL", job_id="j"))
    assert error.code == "missing_field" and "'lease'" in error.message
    error = refused(wire(v=V, t="CANCEL", job_id="j", lease="l", request_id="r"))
    assert error.code == "unknown_field" and "'request_id'" in error.message


def test_the_direction_sets_name_only_frame_classes() -> None:
    groups = (p.FROM_NODE, p.TO_NODE, p.FROM_CLIENT, p.TO_CLIENT)
    assert set().union(*groups) == set(FRAME_CLASSES)
    assert Dispatch in p.TO_NODE and Dispatch not in p.FROM_NODE
    assert CancelJob in p.FROM_CLIENT and Cancel in p.TO_NODE


# -- every error code, with the field it names ----------------------------------------

GOOD_ACK = {"v": V, "t": "ACK", "job_id": "j1", "lease": "l1"}
GOOD_DISPATCH = {
    "v": V,
    "t": "DISPATCH",
    "job_id": "j",
    "attempt": 1,
    "lease": "l",
    "entrypoint": "pkg.mod:train",
}
GOOD_HELLO = {"v": V, "t": "HELLO", "node_id": "n1", "inventory": {"node_id": "n1"}}


def _with(base: dict[str, Any], **changes: Any) -> bytes:
    data = {**base, **changes}
    return wire(**{k: v for k, v in data.items() if v is not _DROP})


_DROP = object()


def _nested(depth: int) -> Any:
    value: Any = 1
    for _ in range(depth):
        value = [value]
    return value


ERROR_CASES: list[tuple[str, bytes, str, str]] = [
    # (case, payload, code, text the message must contain)
    ("reserved byte", b"\xc1", "bad_msgpack", "malformed"),
    ("truncated map", wire(**GOOD_ACK)[:-3], "bad_msgpack", "truncated"),
    ("trailing bytes", wire(**GOOD_ACK) + b"\x00", "bad_msgpack", "trailing"),
    ("empty payload", b"", "bad_msgpack", "truncated"),
    ("int map key", msgpack.packb({1: 2}), "bad_msgpack", "map key"),
    ("unknown ext type", msgpack.packb(msgpack.ExtType(42, b"x")), "bad_msgpack", "ext type 42"),
    (  # msgpack's own limit error inside: still bad bytes, not a frame too large
        "pid ext holding a map",
        wire(**{**GOOD_ACK, "job_id": msgpack.ExtType(1, msgpack.packb({"a": 1}))}),
        "bad_msgpack",
        "malformed pid payload",
    ),
    (
        "timestamp ext",
        msgpack.packb({"v": V, "t": "BYE", "reason": msgpack.Timestamp(1)}, datetime=False),
        "bad_msgpack",
        "ext type -1",
    ),
    ("invalid utf-8", b"\x81\xa1v\xa2\xff\xfe", "bad_msgpack", "UTF-8"),
    ("over the frame size", b"\x00" * (MAX_FRAME_BYTES + 1), "too_large", "over the limit"),
    ("huge str", wire(**{**GOOD_ACK, "job_id": "x" * 300_000}), "too_large", "max_str_len"),
    (
        "huge array",
        wire(v=V, t="WATCH", request_id="r", job_ids=[0] * 100_001),
        "too_large",
        "max_array_len",
    ),
    ("huge array header", b"\xdd\xff\xff\xff\xff", "too_large", "max_array_len"),
    ("deep nesting", wire(v=V, t="BYE", reason=_nested(18)), "too_large", "nested deeper"),
    ("not a map", msgpack.packb([1, "ACK"]), "bad_type", "a frame must be a map"),
    ("no version", _with(GOOD_ACK, v=_DROP), "missing_field", "'v'"),
    ("next version", _with(GOOD_ACK, v=V + 1), "bad_version", f"'v' is {V + 1}"),
    ("version 0", _with(GOOD_ACK, v=0), "bad_version", "'v' is 0"),
    ("version as str", _with(GOOD_ACK, v="1"), "bad_version", "'v' is '1'"),
    ("version as bool", _with(GOOD_ACK, v=True), "bad_version", "'v' is True"),
    ("no type", _with(GOOD_ACK, t=_DROP), "missing_field", "'t'"),
    ("type not a str", _with(GOOD_ACK, t=7), "bad_type", "'t'"),
    ("unknown type", _with(GOOD_ACK, t="NOPE"), "unknown_type", "'NOPE'"),
    ("lowercase type", _with(GOOD_ACK, t="ack"), "unknown_type", "'ack'"),
    ("no lease", _with(GOOD_ACK, lease=_DROP), "missing_field", "ACK is missing the field 'lease'"),
    ("extra field", _with(GOOD_ACK, extra=1), "unknown_field", "ACK has an unknown field 'extra'"),
    ("job id not a str", _with(GOOD_ACK, job_id=5), "bad_type", "ACK.job_id must be a str"),
    ("job id as bytes", _with(GOOD_ACK, job_id=b"j1"), "bad_type", "ACK.job_id"),
    ("empty job id", _with(GOOD_ACK, job_id=""), "bad_value", "ACK.job_id must be an id"),
    ("long job id", _with(GOOD_ACK, job_id="j" * 129), "bad_value", "ACK.job_id is 129 chars"),
    ("job id with a space", _with(GOOD_ACK, job_id="a b"), "bad_value", "ACK.job_id"),
    ("bool credit", wire(v=V, t="READY", credit=True), "bad_type", "READY.credit must be an int"),
    ("float credit", wire(v=V, t="READY", credit=1.0), "bad_type", "READY.credit"),
    ("negative credit", wire(v=V, t="READY", credit=-1), "bad_value", "READY.credit"),
    (
        "bad entrypoint",
        _with(GOOD_DISPATCH, entrypoint="pkg.mod.train"),
        "bad_value",
        "DISPATCH.entrypoint",
    ),
    (
        "entrypoint with a call",
        _with(GOOD_DISPATCH, entrypoint="os:system('x')"),
        "bad_value",
        "DISPATCH.entrypoint",
    ),
    (
        "entrypoint with a newline",
        _with(GOOD_DISPATCH, entrypoint="a:b\n"),
        "bad_value",
        "DISPATCH.entrypoint",
    ),
    ("nan timeout", _with(GOOD_DISPATCH, timeout_s=math.nan), "bad_value", "DISPATCH.timeout_s"),
    ("inf timeout", _with(GOOD_DISPATCH, timeout_s=math.inf), "bad_value", "DISPATCH.timeout_s"),
    ("zero timeout", _with(GOOD_DISPATCH, timeout_s=0.0), "bad_value", "DISPATCH.timeout_s"),
    ("bool timeout", _with(GOOD_DISPATCH, timeout_s=True), "bad_type", "DISPATCH.timeout_s"),
    ("bad isolation", _with(GOOD_DISPATCH, isolation="thread"), "bad_value", "DISPATCH.isolation"),
    ("params not a map", _with(GOOD_DISPATCH, params=[1]), "bad_type", "DISPATCH.params"),
    (
        "pid in params",
        _with(GOOD_DISPATCH, params={"p": msgpack.ExtType(1, msgpack.packb([1, 2]))}),
        "bad_type",
        "DISPATCH.params['p']",
    ),
    (
        "resources gpus as str",
        _with(GOOD_DISPATCH, resources={"gpus": "1"}),
        "bad_type",
        "DISPATCH.resources.gpus",
    ),
    (
        "resources unknown key",
        _with(GOOD_DISPATCH, resources={"tpus": 1}),
        "unknown_field",
        "DISPATCH.resources has an unknown field 'tpus'",
    ),
    (
        "resources negative",
        _with(GOOD_DISPATCH, resources={"memory_mb": -5}),
        "bad_value",
        "DISPATCH.resources.memory_mb",
    ),
    ("inventory missing", _with(GOOD_HELLO, inventory=_DROP), "missing_field", "'inventory'"),
    ("inventory not a map", _with(GOOD_HELLO, inventory=["n1"]), "bad_type", "HELLO.inventory"),
    (
        "gpu without uuid",
        _with(GOOD_HELLO, inventory={"node_id": "n1", "gpus": [{"model": "H100", "memory_mb": 1}]}),
        "missing_field",
        "HELLO.inventory.gpus[0]",
    ),
    (
        "gpu memory as float",
        _with(
            GOOD_HELLO,
            inventory={
                "node_id": "n1",
                "gpus": [{"uuid": "GPU-1", "model": "H100", "memory_mb": 1.5}],
            },
        ),
        "bad_type",
        "HELLO.inventory.gpus[0].memory_mb",
    ),
    (
        "gpus as a tuple",
        _with(
            GOOD_HELLO, inventory={"node_id": "n1", "gpus": msgpack.ExtType(3, msgpack.packb([]))}
        ),
        "bad_type",
        "HELLO.inventory.gpus must be a list",
    ),
    (
        "duplicate gpu",
        _with(
            GOOD_HELLO,
            inventory={
                "node_id": "n1",
                "gpus": [{"uuid": "GPU-1", "model": "a", "memory_mb": 1}] * 2,
            },
        ),
        "bad_value",
        "HELLO.inventory.gpus",
    ),
    (
        "inventory of another node",
        _with(GOOD_HELLO, inventory={"node_id": "n2"}),
        "bad_value",
        "HELLO.inventory.node_id",
    ),
    (
        "running job bad lease",
        _with(GOOD_HELLO, running=[{"job_id": "j", "attempt": 1, "lease": None}]),
        "bad_type",
        "HELLO.running[0].lease",
    ),
    (
        "ok result with error",
        wire(v=V, t="RESULT", job_id="j", lease="l", attempt=1, ok=True, error="boom"),
        "bad_value",
        "RESULT.error",
    ),
    (
        "failed result without kind",
        wire(v=V, t="RESULT", job_id="j", lease="l", attempt=1, ok=False, error="boom"),
        "bad_value",
        "RESULT",
    ),
    (
        "result ok as int",
        wire(v=V, t="RESULT", job_id="j", lease="l", attempt=1, ok=1),
        "bad_type",
        "RESULT.ok must be a bool",
    ),
    (
        "unknown error kind",
        wire(
            v=V,
            t="RESULT",
            job_id="j",
            lease="l",
            attempt=1,
            ok=False,
            error="x",
            error_kind="oops",
        ),
        "bad_value",
        "RESULT.error_kind",
    ),
    (
        "negative duration",
        wire(v=V, t="RESULT", job_id="j", lease="l", attempt=1, ok=True, duration_s=-1.0),
        "bad_value",
        "RESULT.duration_s",
    ),
    (
        "metric as a list",
        wire(v=V, t="PROGRESS", job_id="j", lease="l", step=1, metrics={"acc": [1]}),
        "bad_type",
        "PROGRESS.metrics['acc']",
    ),
    (
        "metric key with a control char",
        wire(v=V, t="PROGRESS", job_id="j", lease="l", step=1, metrics={"a\x00": 1}),
        "bad_value",
        "PROGRESS.metrics",
    ),
    (
        "empty specs",
        wire(v=V, t="SUBMIT", request_id="r", idempotency_key="k", specs=[]),
        "bad_value",
        "SUBMIT.specs has 0 items",
    ),
    (
        "too many specs",
        wire(
            v=V,
            t="SUBMIT",
            request_id="r",
            idempotency_key="k",
            specs=[{"entrypoint": "a:b"}] * 1001,
        ),
        "bad_value",
        "SUBMIT.specs",
    ),
    (
        "spec without entrypoint",
        wire(v=V, t="SUBMIT", request_id="r", idempotency_key="k", specs=[{"params": {}}]),
        "missing_field",
        "SUBMIT.specs[0] is missing the field 'entrypoint'",
    ),
    (
        "spec priority overflow",
        wire(
            v=V,
            t="SUBMIT",
            request_id="r",
            idempotency_key="k",
            specs=[{"entrypoint": "a:b", "priority": 2**31}],
        ),
        "bad_value",
        "SUBMIT.specs[0].priority",
    ),
    (
        "empty idempotency key",
        wire(v=V, t="SUBMIT", request_id="r", idempotency_key="", specs=[{"entrypoint": "a:b"}]),
        "bad_value",
        "SUBMIT.idempotency_key",
    ),
    (
        "watch nothing",
        wire(v=V, t="WATCH", request_id="r"),
        "bad_value",
        "WATCH needs job_ids or sweep_id",
    ),
    (
        "state not a name",
        wire(v=V, t="CANCELLED", request_id="r", job_id="j", state="Done!"),
        "bad_value",
        "CANCELLED.state",
    ),
    (
        "error code too long",
        wire(v=V, t="ERROR", code="x" * 33, message="m"),
        "bad_value",
        "ERROR.code",
    ),
    ("bye reason too long", wire(v=V, t="BYE", reason="x" * 70_000), "bad_value", "BYE.reason"),
    (
        "heartbeat with a field",
        wire(v=V, t="HEARTBEAT", seq=1),
        "unknown_field",
        "HEARTBEAT has an unknown field 'seq'",
    ),
    (
        "status reply job value pid",
        wire(
            v=V,
            t="STATUS_REPLY",
            request_id="r",
            jobs=[
                {
                    "job_id": "j",
                    "state": "running",
                    "attempt": 1,
                    "entrypoint": "a:b",
                    "value": [msgpack.ExtType(2, msgpack.packb([1, 2]))],
                }
            ],
        ),
        "bad_type",
        "STATUS_REPLY.jobs[0].value",
    ),
]


@pytest.mark.parametrize(
    ("case", "payload", "code", "text"), ERROR_CASES, ids=[c[0] for c in ERROR_CASES]
)
def test_each_bad_frame_raises_its_code_and_names_the_field(
    case: str, payload: bytes, code: str, text: str
) -> None:
    error = refused(payload)
    assert error.code == code, error
    assert text in error.message, error
    assert str(error) == f"{code}: {error.message}"
    assert error.args == (code, error.message)


def test_the_cases_hit_every_error_code() -> None:
    assert {case[2] for case in ERROR_CASES} == set(ERROR_CODES)


GOOD_ACK_FRAME = Ack(job_id="j1", lease="l1")


def test_decode_refuses_what_is_not_bytes() -> None:
    error = refused("ACK")  # type: ignore[arg-type]
    assert error.code == "bad_msgpack"
    assert decode(bytearray(encode(GOOD_ACK_FRAME))) == GOOD_ACK_FRAME
    assert decode(memoryview(encode(GOOD_ACK_FRAME))) == GOOD_ACK_FRAME


GOOD_ACK_FRAME = Ack(job_id="j1", lease="l1")


def test_a_bug_in_a_check_still_surfaces_as_a_protocol_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def broken(raw: dict[str, Any]) -> Any:
        raise KeyError("oops")

    monkeypatch.setattr(p, "_load", broken)
    error = refused(wire(**GOOD_ACK))
    assert error.code == "bad_value"
    assert error.message.startswith("frame could not be checked: KeyError")


def test_a_refused_frame_keeps_its_type_and_request_id_for_the_error_reply() -> None:
    error = refused(wire(v=V, t="SUBMIT", request_id="req-7", idempotency_key="k", specs=[]))
    assert (error.frame_type, error.request_id) == ("SUBMIT", "req-7")
    reply = error_reply(error)
    assert reply == Error(code="bad_value", message=error.message, in_reply_to="req-7")
    assert decode(encode(reply)) == reply
    bogus = refused(wire(v=V, t="SUBMIT", request_id="no spaces allowed", specs=[]))
    assert bogus.request_id is None
    assert refused(wire(v=9, t="NOPE")).frame_type is None


# -- encode checks the same schema and the size first ---------------------------------

_CYCLIC: list[Any] = []
_CYCLIC.append(_CYCLIC)

ENCODE_CASES: list[tuple[str, Any, str, str]] = [
    ("a huge int count", Ready(credit=10**5000), "bad_value", "an int of 16610 bits"),
    (
        "a huge int timeout",
        Dispatch("j", 1, "l", "a:b", timeout_s=10**400),
        "bad_value",
        "DISPATCH.timeout_s",
    ),
    ("not a frame", {"v": V, "t": "ACK"}, "unknown_type", "not a protocol frame"),
    ("int job id", Ack(job_id=5, lease="l"), "bad_type", "ACK.job_id"),  # type: ignore[arg-type]
    (
        "negative attempt",
        Dispatch(job_id="j", attempt=-1, lease="l", entrypoint="a:b"),
        "bad_value",
        "DISPATCH.attempt",
    ),
    ("bool credit", Ready(credit=True), "bad_type", "READY.credit"),
    (
        "nan duration",
        Result(job_id="j", lease="l", attempt=1, ok=True, duration_s=math.nan),
        "bad_value",
        "RESULT.duration_s",
    ),
    (
        "a set in params",
        Dispatch(job_id="j", attempt=1, lease="l", entrypoint="a:b", params={"s": {1}}),
        "bad_type",
        "DISPATCH.params['s']",
    ),
    (
        "an int key in params",
        Dispatch(job_id="j", attempt=1, lease="l", entrypoint="a:b", params={1: 2}),  # type: ignore[dict-item]
        "bad_type",
        "DISPATCH.params",
    ),
    (
        "a dict for resources",
        Dispatch(job_id="j", attempt=1, lease="l", entrypoint="a:b", resources={"gpus": 1}),  # type: ignore[arg-type]
        "bad_type",
        "DISPATCH.resources must be a Resources",
    ),
    (
        "an int past 64 bits",
        Result(job_id="j", lease="l", attempt=1, ok=True, value=2**64),
        "bad_value",
        "RESULT.value must be an int in msgpack's range",
    ),
    (
        "a metric past 64 bits",
        Progress(job_id="j", lease="l", step=1, metrics={"n": 2**64}),
        "bad_value",
        "PROGRESS.metrics['n'] must be an int in msgpack's range",
    ),
    (
        "a huge int inside a value",
        Result(job_id="j", lease="l", attempt=1, ok=True, value={"a": [1, -(10**5000)]}),
        "bad_value",
        "RESULT.value (or an item inside it) must be an int in msgpack's range",
    ),
    ("a lone surrogate", Bye(reason="\ud800"), "bad_value", "UTF-8"),
    (
        "a param str over the str cap",
        Dispatch(job_id="j", attempt=1, lease="l", entrypoint="a:b", params={"x": "y" * 300_000}),
        "too_large",
        "max_str_len",
    ),
    (
        "a frame over the size limit",
        Dispatch(
            job_id="j", attempt=1, lease="l", entrypoint="a:b", params={"x": ["y" * 200_000] * 6}
        ),
        "too_large",
        "over max_size",
    ),
    (
        "a cyclic param",
        Dispatch(job_id="j", attempt=1, lease="l", entrypoint="a:b", params={"x": _CYCLIC}),
        "too_large",
        "DISPATCH.params",
    ),
]


@pytest.mark.parametrize(
    ("case", "frame", "code", "text"), ENCODE_CASES, ids=[c[0] for c in ENCODE_CASES]
)
def test_encode_refuses_a_bad_frame_with_its_code_and_field(
    case: str, frame: Any, code: str, text: str
) -> None:
    with pytest.raises(ProtocolError) as info:
        encode(frame)
    assert info.value.code == code, info.value
    assert text in info.value.message, info.value


def _dispatch_with_blob(size: int) -> Dispatch:
    return Dispatch(job_id="j", attempt=1, lease="l", entrypoint="a:b", params={"b": b"\0" * size})


def test_a_frame_of_exactly_max_frame_bytes_passes_and_one_byte_more_does_not() -> None:
    overhead = len(encode(_dispatch_with_blob(MAX_FRAME_BYTES // 2))) - MAX_FRAME_BYTES // 2
    exact = _dispatch_with_blob(MAX_FRAME_BYTES - overhead)
    payload = encode(exact)
    assert len(payload) == MAX_FRAME_BYTES
    assert decode(payload) == exact
    with pytest.raises(ProtocolError) as info:
        encode(_dispatch_with_blob(MAX_FRAME_BYTES - overhead + 1))
    assert info.value.code == "too_large"
    assert refused(payload + b"\x00").code == "too_large"


def test_what_encode_refuses_decode_refuses_with_the_same_code() -> None:
    bad = {"v": V, "t": "DISPATCH", "job_id": "j", "attempt": -1, "lease": "l", "entrypoint": "a:b"}
    with pytest.raises(ProtocolError) as on_encode:
        encode(Dispatch(job_id="j", attempt=-1, lease="l", entrypoint="a:b"))
    on_decode = refused(codec_encode(bad))
    assert on_encode.value.code == on_decode.code == "bad_value"
    assert on_encode.value.message == on_decode.message


# -- helpers --------------------------------------------------------------------------


@given(st.text(max_size=300), st.integers(0, 200))
@settings(max_examples=200, deadline=None)
def test_clip_keeps_short_text_and_cuts_long_text_to_the_limit(text: str, limit: int) -> None:
    out = clip(text, limit)
    if len(text) <= limit:
        assert out == text
    else:
        assert len(out) <= limit


def test_clip_keeps_the_head_and_the_tail_of_a_traceback() -> None:
    text = "Traceback (most recent call last):\n" + "  frame\n" * 20_000 + "ValueError: boom"
    out = clip(text)
    assert len(out) == p.MAX_TEXT_LEN
    assert out.startswith("Traceback") and out.endswith("ValueError: boom")
    assert re.search(r"\[\.\.\. \d+ chars cut \.\.\.\]", out)


def test_peer_health_disconnects_after_the_threshold_of_consecutive_bad_frames() -> None:
    health = PeerHealth(max_consecutive_bad=3, quarantine_s=10.0)
    assert [health.bad(b"a", "bad_type", now=0.0) for _ in range(2)] == [False, False]
    health.good(b"a")  # a good frame resets the run
    assert health.consecutive(b"a") == 0
    assert [health.bad(b"a", "bad_value", now=1.0) for _ in range(3)] == [False, False, True]
    assert health.quarantined(b"a", now=5.0)
    assert not health.quarantined(b"b", now=5.0)
    assert not health.quarantined(b"a", now=11.0)  # quarantine over
    assert health.rejected(b"a") == 5
    stats = health.statistics()
    assert stats.total == 5 and stats.disconnects == 1
    assert stats.by_code["bad_type"] == 2 and stats.by_code["bad_value"] == 3
    assert set(ERROR_CODES) <= set(stats.by_code)


def test_peer_health_counts_each_peer_on_its_own_and_forgets() -> None:
    health = PeerHealth(max_consecutive_bad=2)
    assert not health.bad(b"a", "bad_msgpack", now=0.0)
    assert not health.bad(b"b", "bad_msgpack", now=0.0)
    assert health.bad(b"a", "too_large", now=0.0)
    assert health.consecutive(b"b") == 1
    health.forget(b"a")
    assert health.rejected(b"a") == 0 and not health.quarantined(b"a", now=0.0)
    assert health.statistics().total == 3  # totals by code survive a forget


def test_peer_health_tracks_at_most_max_peers() -> None:
    health = PeerHealth(max_consecutive_bad=5, max_peers=10)
    for i in range(1000):
        health.bad(i, "bad_msgpack", now=0.0)
    stats = health.statistics()
    assert stats.total == 1000 and stats.peers_tracked == 10
    assert health.rejected(999) == 1 and health.rejected(0) == 0


def test_peer_health_forgets_a_peer_idle_past_the_limit_never_ending_a_quarantine() -> None:
    health = PeerHealth(max_consecutive_bad=2, quarantine_s=3.0, idle_s=10.0)
    health.bad(b"quiet", "bad_msgpack", now=0.0)
    assert [health.bad(b"flood", "bad_msgpack", now=t) for t in (0.0, 1.0)] == [False, True]
    health.bad(b"late", "bad_type", now=5.0)
    assert health.expire(now=9.9) == 0
    assert health.expire(now=10.0) == 1  # "quiet": 10 s since its only bad frame
    assert health.rejected(b"quiet") == 0 and health.rejected(b"late") == 1
    assert health.expire(now=11.0) == 1  # "flood" (its quarantine ended at 4.0)
    assert health.expire(now=15.0) == 1  # "late"
    stats = health.statistics()
    assert (stats.peers_tracked, stats.peers_quarantined, stats.peers_forgotten) == (0, 0, 3)
    assert stats.total == 4  # the totals by code outlive the peers
    # A quarantine longer than the idle limit keeps the peer for the whole quarantine.
    health = PeerHealth(max_consecutive_bad=1, quarantine_s=30.0, idle_s=1.0)
    assert health.bad(b"flood", "bad_msgpack", now=0.0)
    assert health.expire(now=29.9) == 0 and health.quarantined(b"flood", now=29.9)
    assert health.expire(now=30.0) == 1 and not health.quarantined(b"flood", now=30.0)


def test_peer_health_stays_bounded_under_a_stream_of_new_peers() -> None:
    health = PeerHealth(max_peers=100, idle_s=1.0)
    for i in range(50_000):
        health.bad(i, "bad_msgpack", now=i * 0.001)  # 1,000 new peers a second
        assert health.statistics().peers_tracked <= 100
    stats = health.statistics()
    assert stats.total == 50_000 and stats.peers_forgotten == 50_000 - stats.peers_tracked


def test_peer_health_refuses_nonsense_limits() -> None:
    with pytest.raises(ValueError):
        PeerHealth(max_consecutive_bad=0)
    with pytest.raises(ValueError):
        PeerHealth(idle_s=-1.0)


def test_heartbeat_constants_give_a_three_interval_liveness_window() -> None:
    assert p.HEARTBEAT_INTERVAL_S == 1.0 and p.HEARTBEAT_LIVENESS == 3
    assert p.PEER_TIMEOUT_S == 3.0


def test_the_protocol_doc_lists_every_frame_type_error_code_and_constant() -> None:
    doc = DOCS.read_text(encoding="utf-8")
    for cls in FRAME_CLASSES:
        assert f"`{cls.TYPE}`" in doc, cls  # type: ignore[attr-defined]
    for code in ERROR_CODES:
        assert f"`{code}`" in doc, code
    for kind in ERROR_KINDS:
        assert f"`{kind}`" in doc, kind
    for name in (
        "HEARTBEAT_INTERVAL_S",
        "HEARTBEAT_LIVENESS",
        "MAX_FRAME_BYTES",
        "MAX_BATCH_FRAMES",
        "BATCH",
        "ROUTER_MANDATORY",
        "MAXMSGSIZE",
        "IMMEDIATE",
        "LINGER",
        "NOBLOCK",
    ):
        assert name in doc, name
