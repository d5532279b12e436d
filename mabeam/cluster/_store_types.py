"""The job store's values: job specs, records, events and errors.

Private to ``mabeam.cluster.store``, which re-exports every public name here (the ops
and outcomes of a batch are in ``_store_batch``). Specs are
validated when built (``JobSpec.from_dict`` names the offending key), so a bad spec
never reaches the database.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Literal

import msgpack

from foundation import CodecError
from foundation.codec import Codec

from ..ml.spec import trial_hash
from ._limits import ACCOUNT_NAME, MAX_VALUE

# Specs, results, progress and event details are msgpack (never pickle), up to 16 MiB.
CODEC: Final = Codec(max_size=16 << 20)
_PACK: Final = msgpack.Packer(use_bin_type=True).pack  # scalars only: no checks needed

STATES: Final = ("queued", "leased", "running", "succeeded", "failed", "cancelled")
TERMINAL_STATES: Final = frozenset({"succeeded", "failed", "cancelled"})

_ENTRYPOINT: Final = re.compile(r"[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*:[A-Za-z_]\w*\Z")
_MAX_PARAM_DEPTH: Final = 16
_INT64: Final = (-(1 << 63), 1 << 63)
_SPEC_KEYS: Final = frozenset(
    {"entrypoint", "params", "resources", "timeout_s", "max_retries", "priority",
     "code_version", "cache", "isolation", "team", "value"}
)  # fmt: skip
_TEAM: Final = re.compile(ACCOUNT_NAME + r"\Z")

_RESOURCE_KEYS: Final = frozenset({"gpus", "cpus", "memory_mb"})


MAX_ERROR_CHARS: Final = 64 * 1024
"""A job's error text is cut to its last this many characters."""


def error_text(error: object) -> str:
    """Error text, cut to its last ``MAX_ERROR_CHARS`` (a traceback's useful end)."""
    if type(error) is not str:
        raise InvalidOpError(f"error text must be a str, got: {error!r}")
    return error if len(error) <= MAX_ERROR_CHARS else "..." + error[-MAX_ERROR_CHARS:]


class StoreError(Exception):
    """Base of the job store's errors."""


class StoreFormatError(StoreError):
    """The file is not a job store this version can open (other app, newer schema)."""


class StoreClosedError(StoreError):
    """The store was used after ``close()``."""


class UnknownJobError(StoreError, LookupError):
    """No job has this id."""


class InvalidSpecError(StoreError, ValueError):
    """A job spec is malformed; the message names the offending key."""


class InvalidOpError(StoreError, ValueError):
    """An op's arguments have the wrong type or cannot be stored."""


class IdempotencyConflictError(StoreError):
    """An idempotency key was reused by its submitter for different specs."""


class QuotaExceededError(StoreError):
    """A submit would give its owner more unfinished jobs than its quota allows."""


def _int(path: str, value: object, minimum: int | None = None) -> int:
    if type(value) is not int or not _INT64[0] <= value < _INT64[1]:
        raise InvalidSpecError(f"{path}: expected an int (64-bit), got: {value!r}")
    if minimum is not None and value < minimum:
        raise InvalidSpecError(f"{path}: must be >= {minimum}, got: {value!r}")
    return value


def _number(path: str, value: object, minimum: float, *, strict: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise InvalidSpecError(f"{path}: expected a finite number, got: {value!r}")
    number = float(value)
    if number < minimum or (strict and number == minimum):
        bound = ">" if strict else ">="
        raise InvalidSpecError(f"{path}: must be {bound} {minimum}, got: {value!r}")
    return number


@dataclass(frozen=True, slots=True)
class Resources:
    """What one attempt of a job needs on a node: whole GPUs, CPUs (may be fractional)
    and memory in MiB."""

    gpus: int = 0
    cpus: float = 1.0
    memory_mb: int = 0

    def __post_init__(self) -> None:
        _int("spec.resources.gpus", self.gpus, 0)
        object.__setattr__(self, "cpus", _number("spec.resources.cpus", self.cpus, 0.0))
        _int("spec.resources.memory_mb", self.memory_mb, 0)


def _canonical(value: Any, path: str, depth: int = 0) -> Any:
    """``value`` with dict keys sorted and tuples as lists; refuse what is not data."""
    kind = type(value)
    if kind is dict:
        if depth >= _MAX_PARAM_DEPTH:
            raise InvalidSpecError(f"{path}: nested deeper than {_MAX_PARAM_DEPTH} levels")
        for key in value:
            if type(key) is not str:
                raise InvalidSpecError(f"{path}: keys must be str, got: {key!r}")
        return {k: _canonical(value[k], f"{path}.{k}", depth + 1) for k in sorted(value)}
    if kind is list or kind is tuple:
        if depth >= _MAX_PARAM_DEPTH:
            raise InvalidSpecError(f"{path}: nested deeper than {_MAX_PARAM_DEPTH} levels")
        return [_canonical(v, f"{path}[{i}]", depth + 1) for i, v in enumerate(value)]
    if kind is int:
        return _int(path, value)
    if value is None or kind is bool or kind is float or kind is str or kind is bytes:
        return value
    raise InvalidSpecError(
        f"{path}: {kind.__name__} is not allowed (use None, bool, int, float, str, bytes,"
        " list, tuple or dict)"
    )


_FLAT_MAX_CHARS: Final = 1 << 20  # far below CODEC's 16 MiB: a flat map of these fits


def _flat(params: dict[Any, Any]) -> bool:
    """Whether ``params`` is the common kind that ``_canonical`` and ``CODEC.encode``
    certainly take, checked in one pass without building the sorted copy: ASCII str
    keys, values None, bool, float, 64-bit int or ASCII str, and at most
    ``_FLAT_MAX_CHARS`` characters in all. False sends them through both (and their
    wording of what is wrong)."""
    chars = 0
    lo, hi = _INT64
    for key, value in params.items():
        if type(key) is not str or not key.isascii():
            return False
        kind = type(value)
        if kind is str:
            if not value.isascii():
                return False
            chars += len(value)
        elif kind is int:
            if not lo <= value < hi:
                return False
        elif kind is not float and kind is not bool and value is not None:
            return False
        chars += len(key)
    return chars <= _FLAT_MAX_CHARS


@dataclass(frozen=True, slots=True)
class JobSpec:
    """What to run: ``entrypoint`` (``package.module:function``) called with ``params``.

    ``timeout_s`` (None: no limit) bounds one attempt; a job is retried after up to
    ``max_retries`` failures; higher ``priority`` goes first under the priority policy;
    ``code_version`` is part of the result-cache key; ``cache=False`` always runs anew;
    ``isolation`` (``"process"`` or ``"pool"``) is how a node runs it (not in the key).
    ``team`` names the ledger account that pays for it and ``value`` what one GPU-hour
    of it is worth to the team (credits; None: derived from budget and priority): both
    matter only under the ``auction`` policy, neither is in the cache key.
    """

    entrypoint: str
    params: dict[str, Any] = field(default_factory=dict)
    resources: Resources = field(default_factory=Resources)
    timeout_s: float | None = None
    max_retries: int = 3
    priority: int = 0
    code_version: str = ""
    cache: bool = True
    isolation: Literal["process", "pool"] = "process"
    team: str = ""
    value: float | None = None
    _hash: str = field(default="", init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if type(self.entrypoint) is not str or not _ENTRYPOINT.match(self.entrypoint):
            raise InvalidSpecError(
                f"spec.entrypoint: expected 'package.module:function', got: {self.entrypoint!r}"
            )
        if type(self.params) is not dict:
            raise InvalidSpecError(f"spec.params: expected a dict, got: {self.params!r}")
        canonical = None if _flat(self.params) else _canonical(self.params, "spec.params")
        if not isinstance(self.resources, Resources):
            raise InvalidSpecError(f"spec.resources: expected Resources, got: {self.resources!r}")
        if self.timeout_s is not None:
            timeout = _number("spec.timeout_s", self.timeout_s, 0.0, strict=True)
            object.__setattr__(self, "timeout_s", timeout)
        _int("spec.max_retries", self.max_retries, 0)
        _int("spec.priority", self.priority)
        if type(self.code_version) is not str:
            raise InvalidSpecError(f"spec.code_version: expected a str, got: {self.code_version!r}")
        if type(self.cache) is not bool:
            raise InvalidSpecError(f"spec.cache: expected a bool, got: {self.cache!r}")
        if self.isolation not in ("process", "pool"):
            raise InvalidSpecError(
                f"spec.isolation: expected 'process' or 'pool', got: {self.isolation!r}"
            )
        if type(self.team) is not str or (self.team and not _TEAM.match(self.team)):
            raise InvalidSpecError(
                "spec.team: expected an account name (1-64 chars of A-Z a-z 0-9 . _ : / @ + = -,"
                f" starting alphanumeric), got: {self.team!r}"
            )
        if self.value is not None:
            value = _number("spec.value", self.value, 0.0)
            if value > MAX_VALUE:
                raise InvalidSpecError(f"spec.value: at most {MAX_VALUE:g}, got: {self.value!r}")
            object.__setattr__(self, "value", value)
        if canonical is not None:
            try:
                CODEC.encode(canonical)
            except CodecError as exc:
                raise InvalidSpecError(f"spec.params: not storable: {exc}") from None
        try:
            # The one cache key of the project: the sweep spec's trials carry the same.
            digest = trial_hash(self.entrypoint, self.params, self.code_version)
        except (TypeError, ValueError) as exc:
            raise InvalidSpecError(f"spec.params: cannot be hashed: {exc}") from None
        object.__setattr__(self, "_hash", digest)

    def to_dict(self) -> dict[str, Any]:
        """The spec as plain data (what is stored, and what ``from_dict`` reads)."""
        r = self.resources
        return {
            "entrypoint": self.entrypoint,
            "params": self.params,
            "resources": {"gpus": r.gpus, "cpus": r.cpus, "memory_mb": r.memory_mb},
            "timeout_s": self.timeout_s,
            "max_retries": self.max_retries,
            "priority": self.priority,
            "code_version": self.code_version,
            "cache": self.cache,
            "isolation": self.isolation,
            "team": self.team,
            "value": self.value,
        }

    @classmethod
    def from_dict(cls, raw: object) -> JobSpec:
        """Build a spec from plain data; ``InvalidSpecError`` names a missing, unknown or
        ill-typed key."""
        if not isinstance(raw, Mapping):
            raise InvalidSpecError(f"spec: expected a map, got: {type(raw).__name__}")
        unknown = sorted(str(k) for k in raw if k not in _SPEC_KEYS)
        if unknown:
            raise InvalidSpecError(f"spec: unknown key {unknown[0]!r}")
        if "entrypoint" not in raw:
            raise InvalidSpecError("spec: missing key 'entrypoint'")
        fields = dict(raw)
        res = fields.pop("resources", {})
        if isinstance(res, Mapping):
            bad = sorted(str(k) for k in res if k not in _RESOURCE_KEYS)
            if bad:
                raise InvalidSpecError(f"spec.resources: unknown key {bad[0]!r}")
            res = Resources(**res)
        elif not isinstance(res, Resources):
            raise InvalidSpecError(f"spec.resources: expected a map, got: {res!r}")
        return cls(resources=res, **fields)

    @property
    def content_hash(self) -> str:
        """``mabeam.ml.trial_hash(entrypoint, params, code_version)``: the cache key."""
        return self._hash


def content_hash(spec: JobSpec) -> str:
    """The result-cache key of ``spec`` (see ``JobSpec.content_hash``)."""
    return spec._hash


def job_id_of(store_id: str, seq: int) -> str:
    """The id of job ``seq`` in the store ``store_id``: ``j-<store id>-<seq>``."""
    return f"j-{store_id}-{seq}"


def seq_of(store_id: str, job_id: object) -> int:
    """The row of ``job_id``: ``InvalidOpError`` if it is not a str, ``UnknownJobError``
    if it is not an id of this store."""
    if type(job_id) is not str:
        raise InvalidOpError(f"job_id must be a str, got: {job_id!r}")
    prefix = f"j-{store_id}-"
    tail = job_id[len(prefix) :]
    if (
        not job_id.startswith(prefix)
        or not (tail.isascii() and tail.isdigit())
        or tail[0] == "0"
        or len(tail) > 18
    ):
        raise UnknownJobError(f"unknown job id: {job_id!r}")
    return int(tail)


def stored_spec(blob: bytes, digest: str) -> JobSpec:
    """Rebuild a spec this store wrote: it was validated when submitted, so only decode
    (and set the fields through their slots: a third of ``object.__setattr__``'s cost)."""
    raw = CODEC.decode(blob, walk=False)  # written by this store: nothing to walk
    res = raw["resources"]
    resources = object.__new__(Resources)
    for name, put in _RESOURCE_SLOTS:
        put(resources, res[name])
    spec = object.__new__(JobSpec)
    raw.setdefault("isolation", "process")  # written before specs had an isolation
    raw.setdefault("team", "")  # ... or a team and a value
    raw.setdefault("value", None)
    raw["resources"] = resources
    raw["_hash"] = digest
    for name, put in _SPEC_SLOTS:
        put(spec, raw[name])
    return spec


_RESOURCE_SLOTS: Final = tuple(
    (name, getattr(Resources, name).__set__) for name in ("gpus", "cpus", "memory_mb")
)
_SPEC_SLOTS: Final = tuple(
    (name, getattr(JobSpec, name).__set__) for name in (*_SPEC_KEYS, "_hash")
)


def specs_digest(specs: Sequence[JobSpec]) -> str:
    """A digest of whole specs, to tell a retried SUBMIT from a reused idempotency key:
    each spec's content hash (entrypoint, canonical params, code version: computed once,
    when the spec was built) and its other fields, which are scalars."""
    digest = hashlib.blake2b(digest_size=16)
    for spec in specs:
        r = spec.resources
        fields = (spec._hash, r.gpus, r.cpus, r.memory_mb, spec.timeout_s, spec.max_retries,
                  spec.priority, spec.cache, spec.isolation, spec.team, spec.value)  # fmt: skip
        digest.update(_PACK(fields))
    return digest.hexdigest()


# -- reads -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class JobRecord:
    """A job as stored. ``attempt`` counts leases handed out (from 1); ``failures``
    counts failed attempts; ``follows`` names the job whose result this one shares."""

    job_id: str
    seq: int
    submitter: str
    spec: JobSpec
    content_hash: str
    state: str
    attempt: int
    failures: int
    node: str | None
    token: str | None
    leased_at: float | None
    not_before: float
    cancel_requested: bool
    follows: str | None
    result: Any
    error: str | None
    progress: Any
    created: float
    updated: float

    @classmethod
    def from_row(cls, store_id: str, row: Sequence[Any]) -> JobRecord:
        """Build from a row in ``RECORD_COLUMNS`` order."""
        seq, follows, spec, digest = row[0], row[12], row[2], row[3]
        return cls(
            job_id_of(store_id, seq),
            seq,
            row[1],
            stored_spec(spec, digest),
            digest,
            row[4],
            row[5],
            row[6],
            row[7],
            row[8],
            row[9],
            row[10],
            bool(row[11]),
            None if follows is None else job_id_of(store_id, follows),
            None if row[13] is None else CODEC.decode(row[13]),
            row[14],
            None if row[15] is None else CODEC.decode(row[15]),
            row[16],
            row[17],
        )


RECORD_COLUMNS: Final = (
    "seq, submitter, spec, content_hash, state, attempt, failures, node, token, leased_at,"
    " not_before, cancel_requested, follows, result, error, progress, created, updated"
)


@dataclass(frozen=True, slots=True)
class Event:
    """One line of a job's history; ``seq`` grows across all jobs (watch from a seq)."""

    seq: int
    job_id: str
    kind: str
    attempt: int
    detail: dict[str, Any]
    time: float
