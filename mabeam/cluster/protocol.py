"""The cluster wire protocol: versioned, validated msgpack frames over ROUTER/DEALER.

Every ZeroMQ message payload is one msgpack map ``{"v": PROTOCOL_VERSION, "t": TYPE,
...fields}`` (a ROUTER adds the peer's routing-id frame in front; this module handles
the payload bytes only). Each frame type is a frozen dataclass::

    data = encode(Dispatch(job_id="j1", attempt=1, lease="l1", entrypoint="pkg.mod:train"))
    frame = decode(data)  # == the Dispatch again, checked field by field

``decode`` accepts any bytes and either returns a valid frame or raises
``ProtocolError(code, message)``, never another exception; ``encode`` runs the same
checks plus the size limit before anything is sent, because libzmq drops a message
over ``MAXMSGSIZE`` without telling the sender. ``PeerHealth`` counts the rejects.
docs/protocol.md has the frame table, the limits and the rules (credit, liveness).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

import msgpack

from foundation._public import fixup_module_metadata

from . import _schema as s
from ._frames import (
    ERROR_KINDS,
    FROM_CLIENT,
    FROM_NODE,
    TERMINAL_STATES,
    TO_CLIENT,
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
    ErrorKind,
    Event,
    Frame,
    Gpu,
    Heartbeat,
    Hello,
    Inventory,
    Isolation,
    JobInfo,
    JobSpec,
    LedgerLine,
    ListingInfo,
    Market,
    MarketReply,
    NodeInfo,
    Progress,
    Ready,
    Resources,
    Result,
    RunningJob,
    Status,
    StatusReply,
    Submit,
    Submitted,
    Watch,
)
from ._health import MAX_CONSECUTIVE_BAD_FRAMES, QUARANTINE_S, PeerHealth, RejectStatistics
from ._limits import (  # the other limits, for callers that read them here
    HEARTBEAT_INTERVAL_S,
    HEARTBEAT_LIVENESS,
    MAX_ARRAY_LEN,  # noqa: F401
    MAX_BATCH_FRAMES,
    MAX_COUNT,  # noqa: F401
    MAX_CREDIT,  # noqa: F401
    MAX_DEPTH,  # noqa: F401
    MAX_FRAME_BYTES,
    MAX_GPUS,  # noqa: F401
    MAX_ID_LEN,  # noqa: F401
    MAX_IDS,  # noqa: F401
    MAX_MAP_LEN,  # noqa: F401
    MAX_METRICS,  # noqa: F401
    MAX_NAME_LEN,  # noqa: F401
    MAX_PARAMS,  # noqa: F401
    MAX_RETRIES,  # noqa: F401
    MAX_RUNNING,  # noqa: F401
    MAX_SPECS_PER_SUBMIT,  # noqa: F401
    MAX_STATUS_ITEMS,  # noqa: F401
    MAX_STR_BYTES,  # noqa: F401
    MAX_TEXT_LEN,
    MAX_TIMEOUT_S,  # noqa: F401
    PEER_TIMEOUT_S,
    PROTOCOL_VERSION,
)
from ._protocol_schemas import _BY_TYPE, _CODEC, _ID, _SCHEMAS, FRAME_CLASSES
from ._schema import ERROR_CODES, ErrorCode, ProtocolError

__all__ = (
    "ERROR_CODES",
    "ERROR_KINDS",
    "FRAME_CLASSES",
    "FROM_CLIENT",
    "FROM_NODE",
    "HEARTBEAT_INTERVAL_S",
    "HEARTBEAT_LIVENESS",
    "MAX_BATCH_FRAMES",
    "MAX_CONSECUTIVE_BAD_FRAMES",
    "MAX_FRAME_BYTES",
    "PEER_TIMEOUT_S",
    "PROTOCOL_VERSION",
    "QUARANTINE_S",
    "TERMINAL_STATES",
    "TO_CLIENT",
    "TO_NODE",
    "Accept",
    "Ack",
    "Bye",
    "Cancel",
    "CancelJob",
    "Cancelled",
    "Dispatch",
    "Error",
    "ErrorCode",
    "ErrorKind",
    "Event",
    "Frame",
    "Gpu",
    "Heartbeat",
    "Hello",
    "Inventory",
    "Isolation",
    "JobInfo",
    "JobSpec",
    "NodeInfo",
    "PeerHealth",
    "Progress",
    "ProtocolError",
    "Ready",
    "RejectStatistics",
    "Resources",
    "Result",
    "RunningJob",
    "Status",
    "StatusReply",
    "Submit",
    "Submitted",
    "Watch",
    "clip",
    "BATCH",
    "batches",
    "decode",
    "decode_batch",
    "encode",
    "pack_batch",
    "error_reply",
    "AccountInfo",
    "LedgerLine",
    "ListingInfo",
    "Market",
    "MarketReply",
)


# -- encode / decode ------------------------------------------------------------------


def encode(frame: Frame) -> bytes:
    """Check ``frame`` against its schema and return its payload bytes.

    Raises ``ProtocolError`` (``too_large`` past ``MAX_FRAME_BYTES``, ``bad_type`` or
    ``bad_value`` naming the field) instead of producing bytes a peer would refuse.
    """
    schema = _SCHEMAS.get(type(frame))
    if schema is None:
        raise ProtocolError(
            "unknown_type", f"cannot encode {type(frame).__name__}: not a protocol frame"
        )
    wire: dict[str, Any] = {"v": PROTOCOL_VERSION, "t": schema.name}
    wire.update(schema.dump(frame, schema.name))
    try:
        return _CODEC.encode(wire, walk=False)  # the schema held the codec's limits
    except Exception as exc:
        error = s.codec_error(exc, encoding=True)
        error.message = f"{schema.name} frame: {error.message}"
        raise error from None


def decode(data: bytes | bytearray | memoryview) -> Frame:
    """Return the frame in ``data``; raise ``ProtocolError`` for anything else.

    The payload is decoded by ``foundation.codec`` under the limits above (size, depth,
    str/array/map caps, str map keys, no unknown ext types), then checked against the
    schema of its type. No input makes this raise another exception.
    """
    return _checked(_unpacked(data))


def decode_batch(data: bytes | bytearray | memoryview) -> list[Frame | ProtocolError]:
    """The frames of one message: ``[decode(data)]`` for a single frame; for a BATCH,
    each entry's frame, or the ``ProtocolError`` that refuses that entry alone (its
    message names ``BATCH.frames[i]``; the other entries stand). A message that is
    neither (bad bytes, a bad BATCH envelope) raises ``ProtocolError`` as ``decode``."""
    raw = _unpacked(data)
    if type(raw) is not dict or raw.get("t") != BATCH:
        return [_checked(raw)]
    try:
        entries = _batch_entries(raw)
    except Exception as exc:
        error = _refused(raw, exc)
        if error is exc:
            raise
        raise error from exc
    return [_entry(index, entry) for index, entry in enumerate(entries)]


def _unpacked(data: bytes | bytearray | memoryview) -> Any:
    """The msgpack value of a payload (size and msgpack limits held, no schema yet)."""
    if not isinstance(data, bytes | bytearray | memoryview):
        raise ProtocolError("bad_msgpack", f"a frame must be bytes, got {type(data).__name__}")
    size = data.nbytes if isinstance(data, memoryview) else len(data)
    if size > MAX_FRAME_BYTES:
        raise ProtocolError(
            "too_large", f"frame is {size} bytes, over the limit of {MAX_FRAME_BYTES}"
        )
    try:
        return _CODEC.decode(data, walk=False)  # the schema checks what the walk would
    except Exception as exc:  # CodecError by contract; anything else is refused the same
        raise s.codec_error(exc, encoding=False) from None


def _checked(raw: Any) -> Frame:
    try:
        if type(raw) is not dict:
            s.bad_type("a frame", "a map", raw)
        return _load(raw)
    except Exception as exc:
        error = _refused(raw, exc)
        if error is exc:
            raise
        raise error from exc


def _refused(raw: Any, exc: Exception) -> ProtocolError:
    """The error for a decoded value that the schema refused with ``exc``: the codec's
    own when its walk refuses the value too (it came first before the walk was left to
    the schema), else ``exc`` naming the frame's type and request id."""
    try:
        _CODEC.check_decoded(raw)
    except Exception as codec_exc:
        return s.codec_error(codec_exc, encoding=False)
    if not isinstance(exc, ProtocolError):  # a checker bug must not take a peer down
        return ProtocolError(
            "bad_value", f"frame could not be checked: {type(exc).__name__}: {exc}"
        )
    if type(raw) is dict:
        frame_type, request_id = raw.get("t"), raw.get("request_id")
        if type(frame_type) is str and frame_type in _BY_TYPE:
            exc.frame_type = frame_type
        if _ID.accepts(request_id):
            exc.request_id = request_id
    return exc


def _check_version(raw: dict[str, Any]) -> None:
    """A frame's (or a BATCH's) envelope names this protocol version."""
    if "v" not in raw:
        s.fail("missing_field", "frame is missing the field 'v' (the protocol version)")
    version = raw["v"]
    if type(version) is not int or version != PROTOCOL_VERSION:
        s.fail(
            "bad_version",
            f"frame field 'v' is {s.show(version)}; this peer speaks version {PROTOCOL_VERSION}",
        )


def _load(raw: dict[str, Any]) -> Frame:
    _check_version(raw)
    if "t" not in raw:
        s.fail("missing_field", "frame is missing the field 't' (the frame type)")
    kind = raw["t"]
    if type(kind) is not str:
        s.bad_type("frame field 't'", "a str", kind)
    schema = _BY_TYPE.get(kind)
    if schema is None:
        if kind == BATCH:
            s.fail("unknown_type", "a BATCH holds several frames: decode_batch reads it")
        s.fail("unknown_type", f"frame field 't' is an unknown frame type {s.show(kind)}")
    if kind == "CANCEL" and "lease" not in raw:
        if "request_id" not in raw:
            s.fail(
                "missing_field",
                "CANCEL needs 'lease' (coordinator to node) or 'request_id' (client)",
            )
        schema = _SCHEMAS[CancelJob]
    frame: Frame = schema.load(raw, kind)
    return frame


# -- batches --------------------------------------------------------------------------

BATCH: Final = "BATCH"
"""The ``t`` of a message that carries several frames: ``{v, t: "BATCH", frames: [...]}``."""
_BATCH_KEYS: Final = frozenset({"v", "t", "frames"})
_BATCH_HEAD: Final = b"\x83" + b"".join(
    msgpack.packb(x) for x in ("v", PROTOCOL_VERSION, "t", BATCH, "frames")
)
_BATCH_OVERHEAD: Final = len(_BATCH_HEAD) + 5  # the array header takes at most 5 bytes


def batches(payloads: Sequence[bytes]) -> list[list[bytes]]:
    """Encoded frames grouped, in order, into as few messages as the limits allow (up to
    ``MAX_BATCH_FRAMES`` each and ``MAX_FRAME_BYTES`` in all); ``pack_batch`` each."""
    groups: list[list[bytes]] = []
    group: list[bytes] = []
    size = _BATCH_OVERHEAD
    for payload in payloads:
        if group and (len(group) >= MAX_BATCH_FRAMES or size + len(payload) > MAX_FRAME_BYTES):
            groups.append(group)
            group, size = [], _BATCH_OVERHEAD
        group.append(payload)
        size += len(payload)
    if group:
        groups.append(group)
    return groups


def pack_batch(group: Sequence[bytes]) -> bytes:
    """One message for a group of ``batches``: a single frame as itself, more as a BATCH
    whose entries are the frames' own bytes (nothing is encoded again)."""
    if len(group) == 1:
        return group[0]
    header: bytes = msgpack.Packer().pack_array_header(len(group))
    return _BATCH_HEAD + header + b"".join(group)


def _batch_entries(raw: dict[str, Any]) -> list[Any]:
    """The entries of a BATCH map, its envelope checked."""
    _check_version(raw)
    if not raw.keys() <= _BATCH_KEYS:
        unknown = next(key for key in raw if key not in _BATCH_KEYS)
        s.fail("unknown_field", f"BATCH has an unknown field {s.show(unknown)}")
    if "frames" not in raw:
        s.fail("missing_field", "BATCH is missing the field 'frames'")
    entries = raw["frames"]
    if type(entries) is not list:
        s.bad_type("BATCH.frames", "a list", entries)
    if not 1 <= len(entries) <= MAX_BATCH_FRAMES:
        s.fail("bad_value", f"BATCH.frames has {len(entries)} items; it must have 1 to "
               f"{MAX_BATCH_FRAMES}")  # fmt: skip
    return entries


def _entry(index: int, raw: Any) -> Frame | ProtocolError:
    """One BATCH entry checked as a frame on its own (its limits counted from it)."""
    try:
        if type(raw) is dict and raw.get("t") == BATCH:
            s.fail("bad_value", "a BATCH entry cannot be a BATCH")
        return _checked(raw)
    except ProtocolError as exc:
        message = f"BATCH.frames[{index}]: {exc.message}"
        return ProtocolError(
            exc.code, message, frame_type=exc.frame_type, request_id=exc.request_id
        )


# -- helpers --------------------------------------------------------------------------


def clip(text: str, limit: int = MAX_TEXT_LEN) -> str:
    """``text`` cut to ``limit`` chars, keeping its head and tail (a traceback's end matters)."""
    if len(text) <= limit:
        return text
    marker = f"\n[... {len(text) - limit} chars cut ...]\n"
    keep = max(limit - len(marker), 0)
    head = keep // 2
    return text[:head] + marker[: limit - keep] + text[len(text) - (keep - head) :]


def error_reply(error: ProtocolError) -> Error:
    """The ERROR frame that answers a refused frame (naming its request when it had one)."""
    return Error(code=error.code, message=clip(error.message), in_reply_to=error.request_id)


fixup_module_metadata(__name__, globals())
