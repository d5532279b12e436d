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

from typing import Any, Final

from foundation._public import fixup_module_metadata
from foundation.codec import Codec

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
from ._limits import (
    HEARTBEAT_INTERVAL_S,
    HEARTBEAT_LIVENESS,
    MAX_ARRAY_LEN,
    MAX_COUNT,
    MAX_CREDIT,
    MAX_DEPTH,
    MAX_FRAME_BYTES,
    MAX_GPUS,
    MAX_ID_LEN,
    MAX_IDS,
    MAX_MAP_LEN,
    MAX_METRICS,
    MAX_NAME_LEN,
    MAX_PARAMS,
    MAX_RETRIES,
    MAX_RUNNING,
    MAX_SPECS_PER_SUBMIT,
    MAX_STATUS_ITEMS,
    MAX_STR_BYTES,
    MAX_TEXT_LEN,
    MAX_TIMEOUT_S,
    PEER_TIMEOUT_S,
    PROTOCOL_VERSION,
)
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


_IDENT: Final = r"[A-Za-z_][A-Za-z0-9_]*"
_ID = s.Text(
    MAX_ID_LEN,
    r"[A-Za-z0-9][A-Za-z0-9._:/@+=-]*",
    f"an id: 1 to {MAX_ID_LEN} chars of A-Z a-z 0-9 . _ : / @ + = - (starting alphanumeric)",
)
_NAME = s.Text(32, r"[a-z][a-z0-9_]*", "a lowercase name: a-z, 0-9 and _, starting with a letter")
_LABEL = s.Text(MAX_NAME_LEN, r"[^\x00-\x1f\x7f]*", "a str without control characters")
_KEY = s.Text(MAX_NAME_LEN, r"[^\x00-\x1f\x7f]+", "a non-empty str without control characters")
_TEXT = s.Text(MAX_TEXT_LEN)
_ENTRYPOINT = s.Text(
    MAX_NAME_LEN,
    rf"{_IDENT}(?:\.{_IDENT})*:{_IDENT}",
    "an entrypoint 'package.module:function'",
)
_COUNT = s.Integer(0, MAX_COUNT)
_SECONDS = s.Number(0.0, MAX_TIMEOUT_S)
_PLAIN = s.Plain(MAX_FRAME_BYTES)
_ISOLATION = s.Choice("process", "pool")
_METRICS = s.MapOf(_LABEL, s.Scalar(1024), MAX_METRICS)
_PARAMS = s.MapOf(s.Text(MAX_NAME_LEN), _PLAIN, MAX_PARAMS)

_CODEC: Final[Codec] = s.make_codec(
    max_size=MAX_FRAME_BYTES,
    max_depth=MAX_DEPTH,
    max_str=MAX_STR_BYTES,
    max_array=MAX_ARRAY_LEN,
    max_map=MAX_MAP_LEN,
)

# -- schemas --------------------------------------------------------------------------


def _unique_gpus(inv: Inventory, path: str) -> None:
    if len({gpu.uuid for gpu in inv.gpus}) != len(inv.gpus):
        s.fail("bad_value", f"{path}.gpus lists a GPU uuid twice")


def _hello_matches(hello: Hello, path: str) -> None:
    if hello.node_id != hello.inventory.node_id:
        s.fail("bad_value", f"{path}.inventory.node_id must equal {path}.node_id")


def _result_consistent(res: Result, path: str) -> None:
    if res.ok and (res.error is not None or res.error_kind is not None):
        s.fail("bad_value", f"{path}.error and .error_kind must be None when ok is true")
    if not res.ok and (res.error is None or res.error_kind is None or res.value is not None):
        s.fail("bad_value", f"{path} with ok false needs error and error_kind, and value None")


def _has_target(watch: Watch, path: str) -> None:
    if not watch.job_ids and watch.sweep_id is None:
        s.fail("bad_value", f"{path} needs job_ids or sweep_id")


_GPU = s.Struct(Gpu, {"uuid": _ID, "model": _LABEL, "memory_mb": _COUNT}, name="gpu")
_INVENTORY = s.Struct(
    Inventory,
    {
        "node_id": _ID,
        "gpus": s.Sequence(_GPU, MAX_GPUS),
        "cpus": _COUNT,
        "ram_mb": _COUNT,
        "slots": s.Integer(0, MAX_CREDIT),
    },
    name="inventory",
    check=_unique_gpus,
)
_RESOURCES = s.Struct(
    Resources,
    {"gpus": s.Integer(0, MAX_GPUS), "cpus": _COUNT, "memory_mb": _COUNT},
    name="resources",
)
_RUNNING_JOB = s.Struct(RunningJob, {"job_id": _ID, "attempt": _COUNT, "lease": _ID}, name="job")
_JOB_SPEC = s.Struct(
    JobSpec,
    {
        "entrypoint": _ENTRYPOINT,
        "params": _PARAMS,
        "resources": _RESOURCES,
        "timeout_s": s.Optional(s.Number(0.0, MAX_TIMEOUT_S, positive=True)),
        "max_retries": s.Integer(0, MAX_RETRIES),
        "priority": s.Integer(-(1 << 31), (1 << 31) - 1),
        "isolation": _ISOLATION,
        "code_version": _LABEL,
    },
    name="spec",
)
_NODE_INFO = s.Struct(
    NodeInfo,
    {"inventory": _INVENTORY, "credit": _COUNT, "running": _COUNT, "last_seen_s": _SECONDS},
    name="node",
)
_JOB_INFO = s.Struct(
    JobInfo,
    {
        "job_id": _ID,
        "state": _NAME,
        "attempt": _COUNT,
        "entrypoint": _ENTRYPOINT,
        "node_id": s.Optional(_ID),
        "sweep_id": s.Optional(_ID),
        "value": _PLAIN,
        "error": s.Optional(_TEXT),
        "duration_s": s.Optional(_SECONDS),
    },
    name="job",
)
_IDS = s.Sequence(_ID, MAX_IDS)

_ENVELOPE: Final = frozenset({"v", "t"})
_SCHEMAS: Final[dict[type, s.Struct]] = {
    Hello: s.Struct(
        Hello,
        {"node_id": _ID, "inventory": _INVENTORY, "running": s.Sequence(_RUNNING_JOB, MAX_RUNNING)},
        name="HELLO",
        envelope=_ENVELOPE,
        check=_hello_matches,
    ),
    Ready: s.Struct(Ready, {"credit": s.Integer(0, MAX_CREDIT)}, name="READY", envelope=_ENVELOPE),
    Heartbeat: s.Struct(Heartbeat, {}, name="HEARTBEAT", envelope=_ENVELOPE),
    Dispatch: s.Struct(
        Dispatch,
        {
            "job_id": _ID,
            "attempt": _COUNT,
            "lease": _ID,
            "entrypoint": _ENTRYPOINT,
            "params": _PARAMS,
            "resources": _RESOURCES,
            "timeout_s": s.Optional(s.Number(0.0, MAX_TIMEOUT_S, positive=True)),
            "isolation": _ISOLATION,
            "code_version": _LABEL,
        },
        name="DISPATCH",
        envelope=_ENVELOPE,
    ),
    Accept: s.Struct(Accept, {"job_id": _ID, "lease": _ID}, name="ACCEPT", envelope=_ENVELOPE),
    Progress: s.Struct(
        Progress,
        {"job_id": _ID, "lease": _ID, "step": _COUNT, "metrics": _METRICS},
        name="PROGRESS",
        envelope=_ENVELOPE,
    ),
    Result: s.Struct(
        Result,
        {
            "job_id": _ID,
            "lease": _ID,
            "attempt": _COUNT,
            "ok": s.Boolean(),
            "value": _PLAIN,
            "error": s.Optional(_TEXT),
            "error_kind": s.Optional(s.Choice(*ERROR_KINDS)),
            "duration_s": _SECONDS,
        },
        name="RESULT",
        envelope=_ENVELOPE,
        check=_result_consistent,
    ),
    Ack: s.Struct(Ack, {"job_id": _ID, "lease": _ID}, name="ACK", envelope=_ENVELOPE),
    Cancel: s.Struct(Cancel, {"job_id": _ID, "lease": _ID}, name="CANCEL", envelope=_ENVELOPE),
    Bye: s.Struct(Bye, {"reason": _TEXT}, name="BYE", envelope=_ENVELOPE),
    Submit: s.Struct(
        Submit,
        {
            "request_id": _ID,
            "idempotency_key": _KEY,
            "specs": s.Sequence(_JOB_SPEC, MAX_SPECS_PER_SUBMIT, min_len=1),
            "sweep_id": s.Optional(_ID),
        },
        name="SUBMIT",
        envelope=_ENVELOPE,
    ),
    Watch: s.Struct(
        Watch,
        {"request_id": _ID, "job_ids": _IDS, "sweep_id": s.Optional(_ID)},
        name="WATCH",
        envelope=_ENVELOPE,
        check=_has_target,
    ),
    Status: s.Struct(
        Status,
        {"request_id": _ID, "job_ids": _IDS, "sweep_id": s.Optional(_ID)},
        name="STATUS",
        envelope=_ENVELOPE,
    ),
    CancelJob: s.Struct(
        CancelJob, {"request_id": _ID, "job_id": _ID}, name="CANCEL", envelope=_ENVELOPE
    ),
    Submitted: s.Struct(
        Submitted,
        {
            "request_id": _ID,
            "job_ids": s.Sequence(_ID, MAX_SPECS_PER_SUBMIT),
            "sweep_id": s.Optional(_ID),
            "duplicate": s.Boolean(),
        },
        name="SUBMITTED",
        envelope=_ENVELOPE,
    ),
    StatusReply: s.Struct(
        StatusReply,
        {
            "request_id": _ID,
            "nodes": s.Sequence(_NODE_INFO, MAX_STATUS_ITEMS),
            "jobs": s.Sequence(_JOB_INFO, MAX_STATUS_ITEMS),
            "counts": s.MapOf(_NAME, _COUNT, 64),
        },
        name="STATUS_REPLY",
        envelope=_ENVELOPE,
    ),
    Event: s.Struct(
        Event,
        {
            "request_id": _ID,
            "job_id": _ID,
            "state": _NAME,
            "attempt": _COUNT,
            "node_id": s.Optional(_ID),
            "step": s.Optional(_COUNT),
            "metrics": _METRICS,
            "value": _PLAIN,
            "error": s.Optional(_TEXT),
        },
        name="EVENT",
        envelope=_ENVELOPE,
    ),
    Cancelled: s.Struct(
        Cancelled,
        {"request_id": _ID, "job_id": _ID, "state": _NAME},
        name="CANCELLED",
        envelope=_ENVELOPE,
    ),
    Error: s.Struct(
        Error,
        {"code": _NAME, "message": _TEXT, "in_reply_to": s.Optional(_ID)},
        name="ERROR",
        envelope=_ENVELOPE,
    ),
}

FRAME_CLASSES: Final[tuple[type, ...]] = tuple(_SCHEMAS)
_BY_TYPE: Final = {schema.name: schema for cls, schema in _SCHEMAS.items() if cls is not CancelJob}

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
        return _CODEC.encode(wire)
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
    if not isinstance(data, bytes | bytearray | memoryview):
        raise ProtocolError("bad_msgpack", f"a frame must be bytes, got {type(data).__name__}")
    size = data.nbytes if isinstance(data, memoryview) else len(data)
    if size > MAX_FRAME_BYTES:
        raise ProtocolError(
            "too_large", f"frame is {size} bytes, over the limit of {MAX_FRAME_BYTES}"
        )
    try:
        raw = _CODEC.decode(data)
    except Exception as exc:  # CodecError by contract; anything else is refused the same
        raise s.codec_error(exc, encoding=False) from None
    if type(raw) is not dict:
        raise ProtocolError("bad_type", f"a frame must be a map, got {s.show(raw)}")
    try:
        return _load(raw)
    except ProtocolError as exc:
        frame_type, request_id = raw.get("t"), raw.get("request_id")
        if type(frame_type) is str and frame_type in _BY_TYPE:
            exc.frame_type = frame_type
        if _ID.accepts(request_id):
            exc.request_id = request_id
        raise
    except Exception as exc:  # a checker bug must not take a long-running peer down
        raise ProtocolError(
            "bad_value", f"frame could not be checked: {type(exc).__name__}: {exc}"
        ) from exc


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
