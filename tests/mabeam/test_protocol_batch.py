"""The wire protocol's BATCH frames, and user data holding the codec's limits itself
(``encode``/``decode`` leave the codec's walk of the whole frame to the schema)."""

from __future__ import annotations

import dataclasses
from typing import Any

import msgpack
import pytest
from frame_strategies import refused, wire

from mabeam.cluster import protocol as p
from mabeam.cluster.protocol import (
    MAX_FRAME_BYTES,
    PROTOCOL_VERSION,
    Ack,
    Dispatch,
    JobSpec,
    ProtocolError,
    Ready,
    Result,
    Submit,
    decode,
    encode,
)

V = PROTOCOL_VERSION


def _nested(depth: int) -> Any:
    value: Any = 1
    for _ in range(depth):
        value = [value]
    return value


def _deep(levels: int, leaf: Any = 0) -> Any:
    value = leaf
    for i in range(levels):
        value = [value] if i % 2 else {"k": value}
    return value


def _user_data_frames(data: Any) -> list[p.Frame]:
    """A frame of each type that carries user data at each place it can sit."""
    spec = JobSpec(entrypoint="pkg.mod:f", params={"x": data})
    info = p.JobInfo(job_id="j1", state="succeeded", attempt=1, entrypoint="pkg.mod:f", value=data)
    return [
        Dispatch(job_id="j1", attempt=1, lease="l1", entrypoint="pkg.mod:f", params={"x": data}),
        Result(job_id="j1", lease="l1", attempt=1, ok=True, value=data, duration_s=0.1),
        Submit(request_id="r1", idempotency_key="k", specs=(spec,)),
        p.Event(request_id="r1", job_id="j1", state="succeeded", attempt=1, value=data),
        p.StatusReply(request_id="r1", nodes=(), jobs=(info,), counts={}),
    ]


@pytest.mark.parametrize(
    "data",
    [_deep(n) for n in range(10, 17)]
    + [_deep(12, "x" * 70_000), "é" * 70_000, "x" * 262_144, "x" * 262_145]
    + [[0] * 100_001, dict.fromkeys(map(str, range(10_001)), 0), {"é" * 65_537: 1}],
    ids=lambda d: type(d).__name__,
)
def test_user_data_holds_the_codecs_limits_without_its_walk(data: Any) -> None:
    """encode and decode leave the codec's walk of the whole frame to the schema: user
    data at any depth is refused exactly when the walk would refuse it, with its error."""
    for frame in _user_data_frames(data):
        name = p._SCHEMAS[type(frame)].name
        raw = {"v": PROTOCOL_VERSION, "t": name, **dataclasses.asdict(frame)}
        try:
            p._CODEC._check_encodable(raw)  # the codec's whole walk
        except Exception as exc:
            with pytest.raises(ProtocolError) as info:
                encode(frame)
            assert info.value.code == "too_large", (type(frame), info.value)
            try:
                expected = refused(wire(**raw))
            except Exception:  # over the size limit on the way in too
                continue
            assert "max_" in str(exc) or "nested" in str(exc)
            assert expected.code == "too_large"
        else:
            assert decode(encode(frame)) == frame


# -- batches -----------------------------------------------------------------------------


def test_a_batch_carries_frames_in_order_and_one_frame_goes_alone() -> None:
    frames = [Ack(f"j{i}", "l") for i in range(5)] + [Ready(3)]
    payloads = [encode(f) for f in frames]
    [group] = p.batches(payloads)
    message = p.pack_batch(group)
    raw = msgpack.unpackb(message)
    assert (raw["v"], raw["t"], len(raw["frames"])) == (V, "BATCH", 6)
    assert p.decode_batch(message) == frames
    assert p.pack_batch(p.batches(payloads[:1])[0]) == payloads[0]  # no BATCH for one
    assert p.decode_batch(payloads[0]) == [frames[0]]
    with pytest.raises(ProtocolError, match="decode_batch") as info:
        decode(message)  # decode reads one frame only
    assert info.value.code == "unknown_type"


def test_batches_hold_the_entry_and_size_limits() -> None:
    acks = [encode(Ack(f"j{i}", "l")) for i in range(2 * p.MAX_BATCH_FRAMES + 5)]
    assert [len(g) for g in p.batches(acks)] == [p.MAX_BATCH_FRAMES, p.MAX_BATCH_FRAMES, 5]
    big = [
        encode(Result(f"j{i}", "l", 1, ok=True, value="x" * 250_000, duration_s=0.0))
        for i in range(9)
    ]
    groups = p.batches(big)
    assert [len(g) for g in groups] == [4, 4, 1]
    out = [f for g in groups for f in p.decode_batch(p.pack_batch(g))]
    assert out == [decode(b) for b in big]
    assert all(len(p.pack_batch(g)) <= MAX_FRAME_BYTES for g in groups)


def test_a_bad_batch_entry_is_refused_alone() -> None:
    good = {"v": V, "t": "ACK", "job_id": "j1", "lease": "l1"}
    message = wire(
        v=V,
        t="BATCH",
        frames=[
            good,
            {"v": V, "t": "ACK", "job_id": "j2"},
            7,
            {"v": V + 1, "t": "READY", "credit": 1},
            {"v": V, "t": "BATCH", "frames": [good]},
            {"v": V, "t": "BYE", "reason": _nested(16)},
            {**good, "job_id": "j3"},
        ],
    )
    out = p.decode_batch(message)
    assert out[0] == Ack("j1", "l1") and out[6] == Ack("j3", "l1")
    codes = [(e.code, e.message.split(":")[0]) for e in out[1:6]]  # type: ignore[union-attr]
    assert codes == [
        ("missing_field", "BATCH.frames[1]"),
        ("bad_type", "BATCH.frames[2]"),
        ("bad_version", "BATCH.frames[3]"),
        ("bad_value", "BATCH.frames[4]"),
        ("too_large", "BATCH.frames[5]"),  # nesting counted from the entry, as alone
    ]


@pytest.mark.parametrize(
    ("fields", "code"),
    [
        ({"v": V + 1, "t": "BATCH", "frames": [{}]}, "bad_version"),
        ({"t": "BATCH", "frames": [{}]}, "missing_field"),
        ({"v": V, "t": "BATCH"}, "missing_field"),
        ({"v": V, "t": "BATCH", "frames": [{}], "x": 1}, "unknown_field"),
        ({"v": V, "t": "BATCH", "frames": {}}, "bad_type"),
        ({"v": V, "t": "BATCH", "frames": []}, "bad_value"),
        ({"v": V, "t": "BATCH", "frames": [0] * 1001}, "bad_value"),
    ],
)
def test_a_bad_batch_envelope_refuses_the_message(fields: dict[str, Any], code: str) -> None:
    with pytest.raises(ProtocolError) as info:
        p.decode_batch(wire(**fields))
    assert info.value.code == code
