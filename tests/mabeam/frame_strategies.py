"""Hypothesis strategies for the cluster protocol: valid frames of every type, and each
way a frame can be wrong; the protocol tests and every fuzz test draw from here.

``FRAME_STRATEGIES[cls]`` builds a valid frame of each class in
``protocol.FRAME_CLASSES`` field by field (``frames``: any of them).
``payloads(cls, category)`` draws the payload bytes of one frame of ``cls`` in one of
``CATEGORIES``:

- ``valid``: the frame, encoded;
- ``mutated``: one field, at any depth, replaced by a value of another type or out of
  its range, dropped, or an extra field added;
- ``truncated``: the encoded bytes cut short;
- ``oversized``: padded (in a user-data field where the frame has one, else in an extra
  field) to just over ``MAX_FRAME_BYTES``, which libzmq drops before the receiver sees
  it, or to just under it, which the receiver decodes in full;
- ``wrong_types``: every field of another msgpack type, the type tag of a wrong type,
  or the frame not a map at all;
- ``bad_version``: ``v`` missing, or anything but ``PROTOCOL_VERSION``;
- ``random``: random bytes.

``category_payloads(category)`` is one category over every frame type and ``mixed``
all categories but ``oversized`` (1 MiB each: streams add those on a schedule).
``coordinator_refuses`` and ``node_refuses`` say whether that receiver must count a
payload as a reject: ``decode`` refuses it, or it is a valid frame that the sender may
not send to it.
"""

from __future__ import annotations

import math
import string
from typing import Any, Final

import msgpack
import pytest
from hypothesis import strategies as st

from mabeam.cluster.protocol import (
    ERROR_KINDS,
    FRAME_CLASSES,
    FROM_CLIENT,
    FROM_NODE,
    MAX_FRAME_BYTES,
    PROTOCOL_VERSION,
    TO_NODE,
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
)

CATEGORIES: Final = (
    "valid",
    "mutated",
    "truncated",
    "oversized",
    "wrong_types",
    "bad_version",
    "random",
)
FRAME_TYPES: Final = sorted({cls.TYPE for cls in FRAME_CLASSES})  # type: ignore[attr-defined]
FIELD_NAMES: Final = sorted(
    {name for cls in FRAME_CLASSES for name in cls.__dataclass_fields__}  # type: ignore[attr-defined]
    | {"node_id", "gpus", "uuid", "model", "memory_mb", "cpus", "ram_mb", "slots", "v", "t"}
)


def pack(value: Any) -> bytes:
    """msgpack bytes of any value, bypassing every check of ``encode``."""
    data: bytes = msgpack.packb(value, use_bin_type=True, datetime=False)
    return data


def wire(**fields: Any) -> bytes:
    """Raw msgpack bytes of a map, bypassing every check of ``encode``."""
    return pack(fields)


def refused(data: bytes) -> ProtocolError:
    """The ``ProtocolError`` that ``decode`` raises for ``data`` (the test fails if none)."""
    with pytest.raises(ProtocolError) as info:
        decode(data)
    return info.value


def unpack(payload: bytes) -> Any:
    """The msgpack value in ``payload`` (ext types kept as ``msgpack.ExtType``)."""
    return msgpack.unpackb(payload, raw=False, strict_map_key=False, ext_hook=msgpack.ExtType)


# -- valid frames, field by field --------------------------------------------------------


def _word(first: str, rest: str, min_rest: int, max_rest: int) -> st.SearchStrategy[str]:
    """A str: one char of ``first``, then ``min_rest`` to ``max_rest`` of ``rest`` (what
    ``st.from_regex`` would draw, twenty times faster)."""
    return st.builds(
        str.__add__, st.sampled_from(first), st.text(rest, min_size=min_rest, max_size=max_rest)
    )


_ALNUM: Final = string.ascii_letters + string.digits
_ID_CHARS: Final = _ALNUM + "._:/@+=-"
ids = _word(_ALNUM, _ID_CHARS, 0, 40) | _word(_ALNUM, _ID_CHARS, 127, 127)
names = _word(string.ascii_lowercase, string.ascii_lowercase + string.digits + "_", 0, 31)
idents = _word(string.ascii_letters + "_", _ALNUM + "_", 0, 12)
entrypoints = st.builds(
    lambda mods, fn: ".".join(mods) + ":" + fn, st.lists(idents, min_size=1, max_size=3), idents
)
labels = st.text(st.characters(exclude_categories=["Cc", "Cs"]), max_size=40)
texts = st.text(st.characters(exclude_categories=["Cs"]), max_size=200)
counts = st.integers(0, 2**63 - 1) | st.integers(0, 10)
seconds = st.floats(0, 1e9, allow_nan=False)
teams = st.just("") | _word(_ALNUM, _ID_CHARS, 0, 63)
money = st.integers(0, 2**63 - 1) | st.integers(0, 10**7)
timeouts = st.none() | st.floats(0, 1e9, exclude_min=True, allow_nan=False)
scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats(allow_nan=False)
    | st.text(st.characters(exclude_categories=["Cs"]), max_size=30)
)


def _nest(inner: st.SearchStrategy[Any], keys: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Lists, tuples and maps of ``inner`` (one level of nesting)."""
    return (
        st.lists(inner, max_size=4)
        | st.lists(inner, max_size=3).map(tuple)
        | st.dictionaries(keys, inner, max_size=4)
    )


# Two levels of nesting built directly: st.recursive draws the same shapes 4x slower.
_flat = scalars | st.binary(max_size=30)
_keys = st.text(max_size=8)
plain = _flat | _nest(_flat, _keys) | _nest(_flat | _nest(_flat, _keys), _keys)
params = st.dictionaries(st.text(max_size=20), plain, max_size=5)
metrics = st.dictionaries(labels, scalars, max_size=5)
id_tuples = st.lists(ids, max_size=4).map(tuple)

gpus = st.builds(Gpu, uuid=ids, model=labels, memory_mb=counts)
resources = st.builds(Resources, gpus=st.integers(0, 256), cpus=counts, memory_mb=counts)


@st.composite
def inventories(draw: st.DrawFn, node_id: str | None = None) -> Inventory:
    return Inventory(
        node_id=draw(ids) if node_id is None else node_id,
        gpus=tuple(draw(st.lists(gpus, max_size=4, unique_by=lambda g: g.uuid))),
        cpus=draw(counts),
        ram_mb=draw(counts),
        slots=draw(st.integers(0, 1_000_000)),
        owner=draw(teams),
        price=draw(st.floats(0, 1e12, allow_nan=False)),
    )


@st.composite
def hellos(draw: st.DrawFn) -> Hello:
    node_id = draw(ids)
    running = st.builds(RunningJob, job_id=ids, attempt=counts, lease=ids)
    return Hello(
        node_id=node_id,
        inventory=draw(inventories(node_id)),
        running=tuple(draw(st.lists(running, max_size=3))),
    )


@st.composite
def results(draw: st.DrawFn) -> Result:
    ok = draw(st.booleans())
    return Result(
        job_id=draw(ids),
        lease=draw(ids),
        attempt=draw(counts),
        ok=ok,
        value=draw(plain) if ok else None,
        error=None if ok else draw(texts),
        error_kind=None if ok else draw(st.sampled_from(ERROR_KINDS)),
        duration_s=draw(seconds),
    )


@st.composite
def watches(draw: st.DrawFn) -> Watch:
    job_ids = draw(id_tuples)
    sweep_id = draw(ids if not job_ids else st.none() | ids)
    return Watch(request_id=draw(ids), job_ids=job_ids, sweep_id=sweep_id)


job_specs = st.builds(
    JobSpec,
    entrypoint=entrypoints,
    params=params,
    resources=resources,
    timeout_s=timeouts,
    max_retries=st.integers(0, 1000),
    priority=st.integers(-(2**31), 2**31 - 1),
    isolation=st.sampled_from(["process", "pool"]),
    code_version=labels,
    team=teams,
    value=st.none() | st.floats(0, 1e12, allow_nan=False),
)
node_infos = st.builds(
    NodeInfo, inventory=inventories(), credit=counts, running=counts, last_seen_s=seconds
)
job_infos = st.builds(
    JobInfo,
    job_id=ids,
    state=names,
    attempt=counts,
    entrypoint=entrypoints,
    node_id=st.none() | ids,
    sweep_id=st.none() | ids,
    value=plain,
    error=st.none() | texts,
    duration_s=st.none() | seconds,
)

FRAME_STRATEGIES: dict[type, st.SearchStrategy[Any]] = {
    Hello: hellos(),
    Ready: st.builds(Ready, credit=st.integers(0, 1_000_000)),
    Heartbeat: st.just(Heartbeat()),
    Dispatch: st.builds(
        Dispatch,
        job_id=ids,
        attempt=counts,
        lease=ids,
        entrypoint=entrypoints,
        params=params,
        resources=resources,
        timeout_s=timeouts,
        isolation=st.sampled_from(["process", "pool"]),
    ),
    Accept: st.builds(Accept, job_id=ids, lease=ids),
    Progress: st.builds(Progress, job_id=ids, lease=ids, step=counts, metrics=metrics),
    Result: results(),
    Ack: st.builds(Ack, job_id=ids, lease=ids),
    Cancel: st.builds(Cancel, job_id=ids, lease=ids),
    Bye: st.builds(Bye, reason=texts),
    Submit: st.builds(
        Submit,
        request_id=ids,
        idempotency_key=labels.filter(bool),
        specs=st.lists(job_specs, min_size=1, max_size=3).map(tuple),
        sweep_id=st.none() | ids,
    ),
    Watch: watches(),
    Status: st.builds(Status, request_id=ids, job_ids=id_tuples, sweep_id=st.none() | ids),
    CancelJob: st.builds(CancelJob, request_id=ids, job_id=ids),
    Submitted: st.builds(
        Submitted,
        request_id=ids,
        job_ids=id_tuples,
        sweep_id=st.none() | ids,
        duplicate=st.booleans(),
    ),
    StatusReply: st.builds(
        StatusReply,
        request_id=ids,
        nodes=st.lists(node_infos, max_size=2).map(tuple),
        jobs=st.lists(job_infos, max_size=3).map(tuple),
        counts=st.dictionaries(names, counts, max_size=4),
    ),
    Event: st.builds(
        Event,
        request_id=ids,
        job_id=ids,
        state=names,
        attempt=counts,
        node_id=st.none() | ids,
        step=st.none() | counts,
        metrics=metrics,
        value=plain,
        error=st.none() | texts,
    ),
    Cancelled: st.builds(Cancelled, request_id=ids, job_id=ids, state=names),
    Market: st.one_of(
        st.builds(Market, request_id=ids, team=teams, budget=st.none(), log=st.integers(0, 100)),
        st.builds(
            Market, request_id=ids, team=teams.filter(bool), budget=money, log=st.integers(0, 100)
        ),
    ),
    MarketReply: st.builds(
        MarketReply,
        request_id=ids,
        policy=names,
        accounts=st.lists(
            st.builds(
                AccountInfo,
                name=teams,
                kind=names,
                available=money,
                held=money,
                spent=money,
                earned=money,
            ),
            max_size=3,
        ).map(tuple),
        listings=st.lists(
            st.builds(
                ListingInfo,
                node_id=ids,
                owner=teams,
                price=money,
                gpus=st.integers(0, 16),
                reputation=st.floats(0, 1),
            ),
            max_size=3,
        ).map(tuple),
        log=st.lists(
            st.builds(
                LedgerLine,
                seq=counts,
                time=seconds,
                op=names,
                account=teams,
                counterparty=teams,
                amount=money,
                job=labels,
            ),
            max_size=3,
        ).map(tuple),
    ),
    Error: st.builds(Error, code=names, message=texts, in_reply_to=st.none() | ids),
}
frames = st.one_of(*FRAME_STRATEGIES.values())


# -- any msgpack value -----------------------------------------------------------------

ext_types = st.builds(msgpack.ExtType, st.integers(0, 127), st.binary(max_size=12))
timestamps = st.builds(msgpack.Timestamp, st.integers(0, 2**32 - 1), st.integers(0, 10**9 - 1))
leaves = (
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats()
    | st.text(max_size=20)
    | st.binary(max_size=20)
    | ext_types
    | timestamps
    | st.sampled_from(FRAME_TYPES + FIELD_NAMES)
)
_any_keys = st.sampled_from(FIELD_NAMES) | st.text(max_size=8) | st.integers(-5, 5) | st.none()
anything = leaves | _nest(leaves, _any_keys) | _nest(leaves | _nest(leaves, _any_keys), _any_keys)
"""Any msgpack value: nested lists and maps (non-str keys too), ext types, timestamps."""


def slots(value: Any, out: list[tuple[Any, Any]]) -> list[tuple[Any, Any]]:
    """Every (container, key) position inside a decoded frame, nested ones included."""
    if isinstance(value, dict):
        for key, item in value.items():
            out.append((value, key))
            slots(item, out)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            out.append((value, index))
            slots(item, out)
    return out


# -- wrong values ----------------------------------------------------------------------

_OF_TYPE: Final[dict[type, st.SearchStrategy[Any]]] = {
    type(None): st.none(),
    bool: st.booleans(),
    int: st.integers(-(2**63), 2**64 - 1),
    float: st.floats(),
    str: st.text(max_size=12),
    bytes: st.binary(max_size=12),
    list: st.lists(st.integers(-3, 3), max_size=3),
    dict: st.dictionaries(st.text(max_size=4), st.integers(-3, 3), max_size=2),
    msgpack.ExtType: ext_types,
}
_OUT_OF_RANGE: Final[dict[type, st.SearchStrategy[Any]]] = {
    int: st.sampled_from([-1, -(2**63), 2**31, 2**63, 2**64 - 1, 1_000_001, 10**6 + 1]),
    float: st.sampled_from([math.nan, math.inf, -math.inf, -1.0, 0.0, 1e300]),
    str: st.sampled_from(
        ["", " ", "-x", "a b", "x\x00", "\x7f", "é", "../x", "x" * 129, "y" * 257, "z" * 70_000]
    ),
    list: st.sampled_from([["id"] * 10_001, [None], [[]], [{}]]),
    dict: st.sampled_from([{f"k{i}": i for i in range(1_025)}, {"": None}, {"\x00": 1}]),
}


def wrong_type(original: Any) -> st.SearchStrategy[Any]:
    """A value of any msgpack type but that of ``original``."""
    kind = type(original)
    return st.one_of(*(strategy for t, strategy in _OF_TYPE.items() if t is not kind))


def wrong_value(original: Any) -> st.SearchStrategy[Any]:
    """A value that breaks the field ``original`` came from: another type, or the same
    type out of any field's range (negative, past a limit, NaN, not matching a pattern)."""
    other = wrong_type(original)
    same = _OUT_OF_RANGE.get(type(original))
    return other if same is None else same | other


# -- the categories ----------------------------------------------------------------------


def raw_frame(frame: Frame) -> dict[str, Any]:
    """The wire map of a valid frame, to be broken."""
    raw: dict[str, Any] = unpack(encode(frame))
    return raw


@st.composite
def _valid(draw: st.DrawFn, cls: type) -> bytes:
    return encode(draw(FRAME_STRATEGIES[cls]))


@st.composite
def _mutated(draw: st.DrawFn, cls: type) -> bytes:
    raw = raw_frame(draw(FRAME_STRATEGIES[cls]))
    fields = [(c, k) for c, k in slots(raw, []) if c is not raw or k not in ("v", "t")]
    op = draw(st.sampled_from(["replace", "replace", "replace", "drop", "extra"]))
    if op == "extra" or not fields:
        maps = [raw] + [c[k] for c, k in fields if type(c[k]) is dict]
        target = draw(st.sampled_from(maps))
        target[draw(st.sampled_from(FIELD_NAMES) | st.text(max_size=8))] = draw(anything)
        return pack(raw)
    container, key = draw(st.sampled_from(fields))
    if op == "replace":
        container[key] = draw(wrong_value(container[key]))
    elif type(container) is dict:
        del container[key]
    else:
        container.pop(key)
    return pack(raw)


@st.composite
def _truncated(draw: st.DrawFn, cls: type) -> bytes:
    payload = encode(draw(FRAME_STRATEGIES[cls]))
    return payload[: draw(st.integers(0, len(payload) - 1))]


def padded(raw: dict[str, Any], size: int, *, text: bool = False) -> bytes:
    """``raw`` packed to exactly ``size`` bytes by a bytes value (a str if ``text``:
    over the str limit, so ``too_large`` at any size): in its ``params`` or its
    ``value`` (a valid frame, if the rest is) when it has one, else an extra field."""
    if type(raw.get("params")) is dict:
        holder, key = raw["params"], "~blob"
    elif "value" in raw and raw.get("ok") is not False:
        holder, key = raw, "value"
    else:
        holder, key = raw, "~pad"
    holder[key] = "" if text else b""
    fill = size - len(pack(raw)) - 4 + (not text)  # a 1- or 2-byte header becomes 5 bytes
    if fill < 1 << 16:
        raise ValueError(f"cannot pad a frame of {len(pack(raw))} bytes to {size}")
    holder[key] = "x" * fill if text else bytes(fill)
    data = pack(raw)
    assert len(data) == size, (len(data), size)
    return data


@st.composite
def _oversized(draw: st.DrawFn, cls: type) -> bytes:
    raw = raw_frame(draw(FRAME_STRATEGIES[cls]))
    if draw(st.booleans()):
        return padded(raw, MAX_FRAME_BYTES + draw(st.integers(1, 4_096)))
    return padded(raw, MAX_FRAME_BYTES - draw(st.integers(0, 4_096)), text=draw(st.booleans()))


@st.composite
def _wrong_types(draw: st.DrawFn, cls: type) -> bytes:
    raw = raw_frame(draw(FRAME_STRATEGIES[cls]))
    how = draw(st.sampled_from(["fields", "fields", "tag", "not_a_map"]))
    if how == "fields" and len(raw) > 2:
        for key in list(raw)[2:]:
            raw[key] = draw(wrong_type(raw[key]))
    elif how == "not_a_map":
        return pack(draw(st.sampled_from([list(raw.values()), list(raw), cls.TYPE, None, 1])))  # type: ignore[attr-defined]
    else:
        tag: str = cls.TYPE  # type: ignore[attr-defined]
        raw["t"] = draw(st.sampled_from([tag.encode(), tag.lower(), [tag], {"t": tag}, 1, None]))
    return pack(raw)


_V: Final = PROTOCOL_VERSION
_VERSIONS: Final = [0, _V - 1, -1, _V + 1, 2**64 - 1, "1", 1.0, True, None, b"\x01", [1]]


@st.composite
def _bad_version(draw: st.DrawFn, cls: type) -> bytes:
    raw = raw_frame(draw(FRAME_STRATEGIES[cls]))
    if draw(st.integers(0, 9)) == 0:
        del raw["v"]
    else:
        raw["v"] = draw(st.sampled_from(_VERSIONS))
    return pack(raw)


_BUILDERS: Final = {
    "valid": _valid,
    "mutated": _mutated,
    "truncated": _truncated,
    "oversized": _oversized,
    "wrong_types": _wrong_types,
    "bad_version": _bad_version,
}


def payloads(cls: type, category: str) -> st.SearchStrategy[bytes]:
    """Payload bytes of one frame of ``cls`` in ``category`` (one of ``CATEGORIES``)."""
    if category == "random":
        return st.binary(max_size=256)
    if cls not in FRAME_STRATEGIES or category not in _BUILDERS:
        raise ValueError(f"no strategy for {cls!r} in {category!r}")
    strategy: st.SearchStrategy[bytes] = _BUILDERS[category](cls)
    return strategy


def category_payloads(category: str) -> st.SearchStrategy[bytes]:
    """Payloads of ``category`` over every frame type."""
    return st.one_of(*(payloads(cls, category) for cls in FRAME_CLASSES))


mixed = st.one_of(
    *(category_payloads(c) for c in CATEGORIES if c not in ("oversized", "mutated")),
    category_payloads("mutated"),
    category_payloads("mutated"),  # twice: the category with the most ways to go wrong
)
"""Payloads of every category but ``oversized``, over every frame type."""


# -- who must refuse what ----------------------------------------------------------------

_TO_COORDINATOR: Final = FROM_NODE | FROM_CLIENT


def decoded(payload: bytes) -> Frame | None:
    """The frame in ``payload``, or None when ``decode`` refuses it."""
    try:
        return decode(payload)
    except ProtocolError:
        return None


def coordinator_refuses(payload: bytes, peer: bytes) -> bool:
    """Whether the coordinator counts ``payload`` from ``peer`` as a reject: ``decode``
    refuses it, no node or client may send its type, or it is a HELLO whose ``node_id``
    is not ``peer``."""
    frame = decoded(payload)
    if frame is None or type(frame) not in _TO_COORDINATOR:
        return True
    return isinstance(frame, Hello) and frame.node_id.encode() != peer


def node_refuses(payload: bytes) -> bool:
    """Whether a node counts ``payload`` from its coordinator as a reject: ``decode``
    refuses it, or a coordinator never sends its type to a node."""
    frame = decoded(payload)
    return frame is None or type(frame) not in TO_NODE
