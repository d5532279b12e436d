"""Fuzzing ``protocol.decode``: any bytes give a valid frame or a ``ProtocolError``, nothing else.

Inputs: random bytes, random msgpack values (ext types of every code included), maps
shaped like frames with random fields, valid frames with bytes flipped, cut, inserted
or appended, and valid frames with one field swapped for a wrong type, dropped, added,
inflated past a limit or nested too deep. A returned frame must re-encode to bytes that
decode to the same frame again. The ``slow`` variants run many more examples.
"""

from __future__ import annotations

from typing import Any

import msgpack
import pytest
from frame_strategies import (
    CATEGORIES,
    FIELD_NAMES,
    FRAME_TYPES,
    anything,
    ext_types,
    frames,
    pack,
    payloads,
    slots,
    timestamps,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mabeam.cluster import protocol
from mabeam.cluster.protocol import (
    ERROR_CODES,
    FRAME_CLASSES,
    MAX_FRAME_BYTES,
    Accept,
    AccountInfo,
    Ack,
    Bye,
    Cancel,
    CancelJob,
    Cancelled,
    Dispatch,
    Error,
    Event,
    Frame,
    Gpu,
    Heartbeat,
    Hello,
    Inventory,
    JobInfo,
    JobSpec,
    LedgerLine,
    ListingInfo,
    Market,
    MarketReply,
    NodeInfo,
    Progress,
    ProtocolError,
    Ready,
    Resources,
    Result,
    RunningJob,
    Status,
    StatusReply,
    Submit,
    Submitted,
    Watch,
    decode,
    encode,
    error_reply,
)

V = protocol.PROTOCOL_VERSION
_CHECKS = [HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much]
FUZZ = settings(max_examples=500, deadline=None, suppress_health_check=_CHECKS)
SOAK = settings(max_examples=20_000, deadline=None, suppress_health_check=_CHECKS)


def check(data: bytes) -> None:
    """The property: a valid frame that re-encodes, or a ProtocolError with a known code;
    and what the codec's whole walk refuses, ``decode`` refuses with the codec's error
    (it leaves that walk to the schema on the way in)."""
    try:
        walked: Exception | None = None
        protocol._CODEC.decode(data)
    except Exception as exc:
        walked = exc
    try:
        frame = decode(data)
    except ProtocolError as exc:
        assert exc.code in ERROR_CODES
        assert exc.message
        assert "could not be checked" not in exc.message, exc.message  # no checker bug
        if walked is not None and len(data) <= MAX_FRAME_BYTES:  # (else the size first)
            assert exc.message == str(walked), (exc.message[:200], str(walked)[:200])
        encode(error_reply(exc))  # the ERROR answering it is always sendable
        return
    assert walked is None, f"decoded a frame the codec's walk refuses: {str(walked)[:200]}"
    assert type(frame) in FRAME_CLASSES
    payload = encode(frame)
    protocol._CODEC.decode(payload)  # what encode writes passes the whole walk
    assert encode(decode(payload)) == payload


@st.composite
def frame_shaped(draw: st.DrawFn) -> bytes:
    """A map with a plausible envelope and random fields of random values."""
    raw: dict[str, Any] = {
        "v": draw(st.sampled_from([V, V, V, V, 0, V + 1, -1, 2**64 - 1, "1", True, None, 1.0])),
        "t": draw(
            st.sampled_from(FRAME_TYPES) | st.text(max_size=12) | st.integers(-(2**63), 2**64 - 1)
        ),
    }
    if draw(st.integers(0, 9)) == 0:
        del raw[draw(st.sampled_from(["v", "t"]))]
    raw.update(draw(st.dictionaries(st.sampled_from(FIELD_NAMES), anything, max_size=6)))
    return pack(raw)


# -- mutations of valid frames ---------------------------------------------------------

_INVENTORY = Inventory(
    node_id="gpu-node-1",
    gpus=(Gpu("GPU-5f8c1e2a-0b1c", "NVIDIA H100 80GB HBM3", 81_559), Gpu("GPU-2", "A100", 40_000)),
    cpus=16,
    ram_mb=128_000,
    slots=4,
    owner="lab-a",
    price=2.5,
)
_SPEC = JobSpec(
    entrypoint="examples.digits.train:run",
    params={"lr": 0.01, "hidden": [32, 64], "opts": {"seed": 7, "tag": "a"}, "raw": b"\x01"},
    resources=Resources(gpus=1, cpus=2, memory_mb=4096),
    timeout_s=60.0,
    max_retries=2,
    priority=-5,
    isolation="pool",
    code_version="git:abc123",
    team="vision",
    value=4.0,
)
# Hand-written frames of every type: cheap to draw, so the default run spends its
# time on mutations; the soak runs mutate hypothesis-built frames as well.
CORPUS: list[Frame] = [
    Hello("gpu-node-1", _INVENTORY, (RunningJob("job-1", 2, "lease-9"),)),
    Hello("n", Inventory("n")),
    Ready(4),
    Heartbeat(),
    Dispatch("job-1", 1, "lease-1", _SPEC.entrypoint, _SPEC.params, _SPEC.resources, 30.0, "pool"),
    Dispatch("j", 0, "l", "m:f"),
    Accept("job-1", "lease-1"),
    Progress("job-1", "lease-1", 12, {"loss": 0.25, "phase": "train", "ok": True, "n": None}),
    Result("job-1", "lease-1", 1, True, {"acc": 0.97, "curve": [0.5, 0.8]}, duration_s=3.5),
    Result("job-2", "lease-2", 3, False, None, "Traceback ...\nValueError: boom", "exception"),
    Ack("job-1", "lease-1"),
    Cancel("job-1", "lease-1"),
    Bye("draining"),
    Submit("req-1", "sweep-key-1", (_SPEC, JobSpec("a.b:c")), "sweep-1"),
    Watch("req-2", ("job-1", "job-2"), "sweep-1"),
    Status("req-3", ("job-1",)),
    CancelJob("req-4", "job-1"),
    Submitted("req-1", ("job-1", "job-2"), "sweep-1", duplicate=True),
    StatusReply(
        "req-3",
        (NodeInfo(_INVENTORY, credit=2, running=2, last_seen_s=0.4),),
        (JobInfo("job-1", "succeeded", 1, "a.b:c", "gpu-node-1", "sweep-1", {"acc": 1.0}),),
        {"queued": 3, "running": 2},
    ),
    Event("req-2", "job-1", "running", 1, "gpu-node-1", 5, {"loss": 0.1}),
    Cancelled("req-4", "job-1", "cancelled"),
    Error("unknown_job", "no job 'job-9'", "req-5"),
    Market("req-6", "vision", 12_500_000, log=5),
    MarketReply(
        "req-6",
        "auction",
        (AccountInfo("vision", "team", 9_000_000, 2_000_000, 1_500_000, 0),),
        (ListingInfo("gpu-node-1", "node:gpu-node-1", 1_500_000, 2, 0.75),),
        (LedgerLine(3, 1_700_000_000.5, "hold", "vision", "node:gpu-node-1", 2_000_000, "j-1"),),
    ),
]
corpus = st.sampled_from(CORPUS)


@st.composite
def byte_mutants(draw: st.DrawFn, source: st.SearchStrategy[Frame] = corpus) -> bytes:
    """A valid frame's bytes with a few byte-level edits."""
    data = bytearray(encode(draw(source)))
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["flip", "set", "cut", "drop", "insert", "append"]))
        at = draw(st.integers(0, max(len(data) - 1, 0)))
        if op == "flip" and data:
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif op == "set" and data:
            data[at] = draw(st.integers(0, 255))
        elif op == "cut":
            del data[at:]
        elif op == "drop":
            del data[at : at + draw(st.integers(1, 8))]
        elif op == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=8))
        else:
            data += draw(st.binary(min_size=1, max_size=16))
    return bytes(data)


def _nested(depth: int) -> Any:
    value: Any = "deep"
    for _ in range(depth):
        value = [value]
    return value


HUGE = st.sampled_from(
    [
        "x" * (256 * 1024 + 1),  # over the str cap
        "y" * 70_000,  # over a text field's limit, under the str cap
        b"\0" * (MAX_FRAME_BYTES + 1),  # over the frame size
        list(range(100_001)),  # over the array cap
        {f"k{i}": i for i in range(10_001)},  # over the map cap
        ["id"] * 10_001,  # over a list field's limit
        _nested(20),  # deeper than the depth cap
        _nested(12),  # deep but legal
    ]
)


@st.composite
def field_mutants(draw: st.DrawFn, source: st.SearchStrategy[Frame] = corpus) -> bytes:
    """A valid frame with one field (at any depth) replaced, dropped, added or inflated."""
    raw = msgpack.unpackb(encode(draw(source)), strict_map_key=False, ext_hook=msgpack.ExtType)
    positions = slots(raw, [])
    container, key = draw(st.sampled_from(positions))
    op = draw(st.sampled_from(["replace", "replace", "drop", "add", "huge", "ext"]))
    if op == "replace":
        container[key] = draw(anything)
    elif op == "drop":
        if isinstance(container, dict):
            del container[key]
        else:
            container.pop(key)
    elif op == "add":
        target = container[key] if isinstance(container[key], dict) else raw
        target[draw(st.sampled_from(FIELD_NAMES) | st.text(max_size=8))] = draw(anything)
    elif op == "huge":
        container[key] = draw(HUGE)
    else:
        container[key] = draw(ext_types | timestamps)
    return pack(raw)


# -- the default run: about 3,000 examples ---------------------------------------------


@FUZZ
@given(st.binary(max_size=300))
def test_random_bytes_decode_to_a_frame_or_a_protocol_error(data: bytes) -> None:
    check(data)


@FUZZ
@given(anything.map(pack))
def test_random_msgpack_values_decode_to_a_frame_or_a_protocol_error(data: bytes) -> None:
    check(data)


@FUZZ
@given(frame_shaped())
def test_maps_shaped_like_frames_decode_to_a_frame_or_a_protocol_error(data: bytes) -> None:
    check(data)


@FUZZ
@given(byte_mutants())
def test_valid_frames_with_bytes_mutated_decode_to_a_frame_or_a_protocol_error(
    data: bytes,
) -> None:
    check(data)


@FUZZ
@given(field_mutants())
def test_valid_frames_with_a_field_mutated_decode_to_a_frame_or_a_protocol_error(
    data: bytes,
) -> None:
    check(data)


@pytest.mark.parametrize("category", CATEGORIES)
@settings(max_examples=8, deadline=None, suppress_health_check=_CHECKS)
@given(data=st.data())
def test_every_category_of_every_frame_type_decodes_to_a_frame_or_a_protocol_error(
    category: str, data: st.DataObject
) -> None:
    """The shared fuzz strategies (frame_strategies.py), one frame of each type per
    example: each is what its category says, and ``decode`` holds its contract."""
    for cls in FRAME_CLASSES:
        payload = data.draw(payloads(cls, category), label=cls.__name__)
        check(payload)
        if category == "valid":
            assert type(decode(payload)) is cls
        elif category in ("truncated", "bad_version"):
            with pytest.raises(ProtocolError):
                decode(payload)
        elif category == "oversized":
            over = len(payload) > MAX_FRAME_BYTES
            assert MAX_FRAME_BYTES - 4_096 <= len(payload) <= MAX_FRAME_BYTES + 4_096
            try:
                decode(payload)
            except ProtocolError as exc:
                assert exc.code == "too_large" or not over, exc
            else:
                assert not over


def test_the_corpus_holds_every_frame_type_and_is_valid() -> None:
    assert {type(frame) for frame in CORPUS} == set(FRAME_CLASSES)
    for frame in CORPUS:
        assert decode(encode(frame)) == frame


def test_the_fuzzers_reach_both_outcomes_and_many_error_codes() -> None:
    """Guard against a fuzzer that only ever produces garbage (or only valid frames)."""
    seen: set[str] = set()
    valid = 0

    @settings(max_examples=400, deadline=None, suppress_health_check=_CHECKS, database=None)
    @given(field_mutants() | byte_mutants() | frame_shaped())
    def probe(data: bytes) -> None:
        nonlocal valid
        try:
            decode(data)
        except ProtocolError as exc:
            seen.add(exc.code)
        else:
            valid += 1

    probe()
    assert valid > 0
    assert len(seen) >= 6, seen


# -- soak runs (--run-slow) -------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.timeout(900)
@SOAK
@given(st.binary(max_size=2_000))
def test_soak_random_bytes(data: bytes) -> None:
    check(data)


@pytest.mark.slow
@pytest.mark.timeout(900)
@SOAK
@given(anything.map(pack) | frame_shaped())
def test_soak_random_values_and_frame_shaped_maps(data: bytes) -> None:
    check(data)


@pytest.mark.slow
@pytest.mark.timeout(900)
@SOAK
@given(byte_mutants(frames | corpus) | field_mutants(frames | corpus))
def test_soak_mutated_valid_frames(data: bytes) -> None:
    check(data)


def _outcome(payload: bytes) -> Any:
    """What ``decode`` makes of one payload: the frame, or the refusal's code."""
    try:
        return decode(payload)
    except ProtocolError as exc:
        return exc.code


@settings(max_examples=40, deadline=None, suppress_health_check=_CHECKS)
@given(data=st.data())
def test_a_batch_entry_decodes_as_it_would_alone(data: st.DataObject) -> None:
    """Valid frames and broken ones in one BATCH: every entry comes out as ``decode``
    makes of it alone, a refusal in its place, and nothing else is lost; only bytes
    that are not msgpack at all (an unknown ext type, bad UTF-8) refuse the message."""
    items = []
    for _ in range(data.draw(st.integers(2, 5), label="entries")):
        cls = data.draw(st.sampled_from(FRAME_CLASSES), label="type")
        category = data.draw(st.sampled_from(["valid", "wrong_types"]), label="category")
        items.append(data.draw(payloads(cls, category), label=cls.__name__))
    if sum(map(len, items)) > MAX_FRAME_BYTES - 64:
        return
    [group] = protocol.batches(items)
    try:
        entries = protocol.decode_batch(protocol.pack_batch(group))
    except ProtocolError as exc:  # bytes msgpack cannot read refuse the whole message
        assert exc.code == "bad_msgpack"
        assert "bad_msgpack" in [_outcome(payload) for payload in items]
        return
    assert len(entries) == len(items)
    for index, (entry, payload) in enumerate(zip(entries, items, strict=True)):
        alone = _outcome(payload)
        if isinstance(entry, ProtocolError):
            assert entry.code == alone and entry.message.startswith(f"BATCH.frames[{index}]: ")
        else:  # (compared encoded: a NaN metric is not equal to itself)
            assert not isinstance(alone, str) and encode(entry) == encode(alone)


@st.composite
def batch_mutants(draw: st.DrawFn) -> bytes:
    """A BATCH of corpus frames with a few bytes flipped, cut or inserted."""
    group = [encode(frame) for frame in draw(st.lists(corpus, min_size=2, max_size=5))]
    data = bytearray(protocol.pack_batch(group))
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, len(data) - 1))
        op = draw(st.sampled_from(["flip", "cut", "insert"]))
        if op == "flip":
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif op == "cut":
            del data[at:]
            if not data:
                break
        else:
            data.insert(at, draw(st.integers(0, 255)))
    return bytes(data)


@given(batch_mutants())
def test_mutated_batches_decode_to_entries_or_a_protocol_error(data: bytes) -> None:
    """``decode_batch`` holds ``decode``'s contract for any bytes: a list of frames and
    refusals, or one ProtocolError."""
    try:
        entries = protocol.decode_batch(data)
    except ProtocolError as exc:
        assert exc.code in ERROR_CODES
        return
    for entry in entries:
        assert type(entry) in FRAME_CLASSES or isinstance(entry, ProtocolError)
