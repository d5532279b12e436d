"""The schemas of the cluster wire protocol: one ``Struct`` per frame type.

``protocol.encode`` and ``protocol.decode`` check every frame against these; the
limits they use are in ``_limits`` and the table of them in docs/protocol.md.
"""

from __future__ import annotations

from typing import Final

from foundation.codec import Codec

from . import _schema as s
from ._frames import (
    ERROR_KINDS,
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
from ._limits import (
    ACCOUNT_NAME,
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
    MAX_VALUE,
)
from ._schema_struct import Struct

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
_TEAM = s.Text(
    64,
    f"(?:{ACCOUNT_NAME})?",
    "an account name: up to 64 chars of A-Z a-z 0-9 . _ : / @ + = - (starting alphanumeric)",
)
_ENTRYPOINT = s.Text(
    MAX_NAME_LEN,
    rf"{_IDENT}(?:\.{_IDENT})*:{_IDENT}",
    "an entrypoint 'package.module:function'",
)
_COUNT = s.Integer(0, MAX_COUNT)
_SECONDS = s.Number(0.0, MAX_TIMEOUT_S)
_ISOLATION = s.Choice("process", "pool")
_METRICS = s.MapOf(_LABEL, s.Scalar(1024), MAX_METRICS)

_CODEC: Final[Codec] = s.make_codec(
    max_size=MAX_FRAME_BYTES,
    max_depth=MAX_DEPTH,
    max_str=MAX_STR_BYTES,
    max_array=MAX_ARRAY_LEN,
    max_map=MAX_MAP_LEN,
)
# Everything but user data is bounded by its schema within the codec's limits (the
# longest Text fits max_str, no list or map cap is over the codec's, the fixed nesting
# is at most 6), so encode and decode skip the codec's walk of the whole frame; user
# data holds the codec's limits itself, knowing its depth in the frame (the map is 0).
assert MAX_TEXT_LEN * 4 <= MAX_STR_BYTES and MAX_STATUS_ITEMS <= MAX_ARRAY_LEN
assert max(MAX_PARAMS, MAX_METRICS) <= MAX_MAP_LEN and MAX_IDS <= MAX_ARRAY_LEN


def _plain(depth: int) -> s.Plain:
    return s.Plain(MAX_FRAME_BYTES, depth=depth, limits=_CODEC)


def _params(depth: int) -> s.MapOf:
    """A params map at ``depth`` (its values one below)."""
    return s.MapOf(s.Text(MAX_NAME_LEN), _plain(depth + 1), MAX_PARAMS)


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


_GPU = Struct(Gpu, {"uuid": _ID, "model": _LABEL, "memory_mb": _COUNT}, name="gpu")
_INVENTORY = Struct(
    Inventory,
    {
        "node_id": _ID,
        "gpus": s.Sequence(_GPU, MAX_GPUS),
        "cpus": _COUNT,
        "ram_mb": _COUNT,
        "slots": s.Integer(0, MAX_CREDIT),
        "owner": _TEAM,
        "price": s.Number(0.0, MAX_VALUE),
    },
    name="inventory",
    check=_unique_gpus,
)
_RESOURCES = Struct(
    Resources,
    {"gpus": s.Integer(0, MAX_GPUS), "cpus": _COUNT, "memory_mb": _COUNT},
    name="resources",
)
_RUNNING_JOB = Struct(RunningJob, {"job_id": _ID, "attempt": _COUNT, "lease": _ID}, name="job")
_JOB_SPEC = Struct(
    JobSpec,
    {
        "entrypoint": _ENTRYPOINT,
        "params": _params(3),  # SUBMIT -> specs -> spec -> params
        "resources": _RESOURCES,
        "timeout_s": s.Optional(s.Number(0.0, MAX_TIMEOUT_S, positive=True)),
        "max_retries": s.Integer(0, MAX_RETRIES),
        "priority": s.Integer(-(1 << 31), (1 << 31) - 1),
        "isolation": _ISOLATION,
        "code_version": _LABEL,
        "team": _TEAM,
        "value": s.Optional(s.Number(0.0, MAX_VALUE)),
    },
    name="spec",
)
_NODE_INFO = Struct(
    NodeInfo,
    {"inventory": _INVENTORY, "credit": _COUNT, "running": _COUNT, "last_seen_s": _SECONDS},
    name="node",
)
_JOB_INFO = Struct(
    JobInfo,
    {
        "job_id": _ID,
        "state": _NAME,
        "attempt": _COUNT,
        "entrypoint": _ENTRYPOINT,
        "node_id": s.Optional(_ID),
        "sweep_id": s.Optional(_ID),
        "value": _plain(3),  # STATUS_REPLY -> jobs -> job -> value
        "error": s.Optional(_TEXT),
        "duration_s": s.Optional(_SECONDS),
    },
    name="job",
)
_IDS = s.Sequence(_ID, MAX_IDS)
_MONEY = _COUNT  # micro-credits
_ACCOUNT = Struct(
    AccountInfo,
    {"name": _TEAM, "kind": _NAME, "available": _MONEY, "held": _MONEY, "spent": _MONEY,
     "earned": _MONEY},
    name="account",
)  # fmt: skip
_LISTING = Struct(
    ListingInfo,
    {"node_id": _ID, "owner": _TEAM, "price": _MONEY, "gpus": s.Integer(0, MAX_GPUS),
     "reputation": s.Number(0.0, 1.0)},
    name="listing",
)  # fmt: skip
_LEDGER_LINE = Struct(
    LedgerLine,
    {"seq": _COUNT, "time": s.Number(0.0, MAX_TIMEOUT_S * 10), "op": _NAME, "account": _TEAM,
     "counterparty": _TEAM, "amount": _MONEY, "job": _LABEL},
    name="entry",
)  # fmt: skip


def _budget_has_team(market: Market, path: str) -> None:
    if market.budget is not None and not market.team:
        s.fail("bad_value", f"{path}.budget needs a team")


_ENVELOPE: Final = frozenset({"v", "t"})
_SCHEMAS: Final[dict[type, Struct]] = {
    Hello: Struct(
        Hello,
        {"node_id": _ID, "inventory": _INVENTORY, "running": s.Sequence(_RUNNING_JOB, MAX_RUNNING)},
        name="HELLO",
        envelope=_ENVELOPE,
        check=_hello_matches,
    ),
    Ready: Struct(Ready, {"credit": s.Integer(0, MAX_CREDIT)}, name="READY", envelope=_ENVELOPE),
    Heartbeat: Struct(Heartbeat, {}, name="HEARTBEAT", envelope=_ENVELOPE),
    Dispatch: Struct(
        Dispatch,
        {
            "job_id": _ID,
            "attempt": _COUNT,
            "lease": _ID,
            "entrypoint": _ENTRYPOINT,
            "params": _params(1),
            "resources": _RESOURCES,
            "timeout_s": s.Optional(s.Number(0.0, MAX_TIMEOUT_S, positive=True)),
            "isolation": _ISOLATION,
            "code_version": _LABEL,
        },
        name="DISPATCH",
        envelope=_ENVELOPE,
    ),
    Accept: Struct(Accept, {"job_id": _ID, "lease": _ID}, name="ACCEPT", envelope=_ENVELOPE),
    Progress: Struct(
        Progress,
        {"job_id": _ID, "lease": _ID, "step": _COUNT, "metrics": _METRICS},
        name="PROGRESS",
        envelope=_ENVELOPE,
    ),
    Result: Struct(
        Result,
        {
            "job_id": _ID,
            "lease": _ID,
            "attempt": _COUNT,
            "ok": s.Boolean(),
            "value": _plain(1),
            "error": s.Optional(_TEXT),
            "error_kind": s.Optional(s.Choice(*ERROR_KINDS)),
            "duration_s": _SECONDS,
        },
        name="RESULT",
        envelope=_ENVELOPE,
        check=_result_consistent,
    ),
    Ack: Struct(Ack, {"job_id": _ID, "lease": _ID}, name="ACK", envelope=_ENVELOPE),
    Cancel: Struct(Cancel, {"job_id": _ID, "lease": _ID}, name="CANCEL", envelope=_ENVELOPE),
    Bye: Struct(Bye, {"reason": _TEXT}, name="BYE", envelope=_ENVELOPE),
    Submit: Struct(
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
    Watch: Struct(
        Watch,
        {"request_id": _ID, "job_ids": _IDS, "sweep_id": s.Optional(_ID)},
        name="WATCH",
        envelope=_ENVELOPE,
        check=_has_target,
    ),
    Status: Struct(
        Status,
        {"request_id": _ID, "job_ids": _IDS, "sweep_id": s.Optional(_ID)},
        name="STATUS",
        envelope=_ENVELOPE,
    ),
    CancelJob: Struct(
        CancelJob, {"request_id": _ID, "job_id": _ID}, name="CANCEL", envelope=_ENVELOPE
    ),
    Market: Struct(
        Market,
        {
            "request_id": _ID,
            "team": _TEAM,
            "budget": s.Optional(_MONEY),
            "log": s.Integer(0, MAX_STATUS_ITEMS),
        },
        name="MARKET",
        envelope=_ENVELOPE,
        check=_budget_has_team,
    ),
    MarketReply: Struct(
        MarketReply,
        {
            "request_id": _ID,
            "policy": _NAME,
            "accounts": s.Sequence(_ACCOUNT, MAX_STATUS_ITEMS),
            "listings": s.Sequence(_LISTING, MAX_STATUS_ITEMS),
            "log": s.Sequence(_LEDGER_LINE, MAX_STATUS_ITEMS),
        },
        name="MARKET_REPLY",
        envelope=_ENVELOPE,
    ),
    Submitted: Struct(
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
    StatusReply: Struct(
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
    Event: Struct(
        Event,
        {
            "request_id": _ID,
            "job_id": _ID,
            "state": _NAME,
            "attempt": _COUNT,
            "node_id": s.Optional(_ID),
            "step": s.Optional(_COUNT),
            "metrics": _METRICS,
            "value": _plain(1),
            "error": s.Optional(_TEXT),
        },
        name="EVENT",
        envelope=_ENVELOPE,
    ),
    Cancelled: Struct(
        Cancelled,
        {"request_id": _ID, "job_id": _ID, "state": _NAME},
        name="CANCELLED",
        envelope=_ENVELOPE,
    ),
    Error: Struct(
        Error,
        {"code": _NAME, "message": _TEXT, "in_reply_to": s.Optional(_ID)},
        name="ERROR",
        envelope=_ENVELOPE,
    ),
}

FRAME_CLASSES: Final[tuple[type, ...]] = tuple(_SCHEMAS)
_BY_TYPE: Final = {schema.name: schema for cls, schema in _SCHEMAS.items() if cls is not CancelJob}
