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

from typing import Any

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
    "decode",
    "encode",
    "error_reply",
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


def _load(raw: dict[str, Any]) -> Frame:
    if "v" not in raw:
        s.fail("missing_field", "frame is missing the field 'v' (the protocol version)")
    version = raw["v"]
    if type(version) is not int or version != PROTOCOL_VERSION:
        s.fail(
            "bad_version",
            f"frame field 'v' is {s.show(version)}; this peer speaks version {PROTOCOL_VERSION}",
        )
    if "t" not in raw:
        s.fail("missing_field", "frame is missing the field 't' (the frame type)")
    kind = raw["t"]
    if type(kind) is not str:
        s.bad_type("frame field 't'", "a str", kind)
    schema = _BY_TYPE.get(kind)
    if schema is None:
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
