"""What a client sends: job specs in their wire form, in SUBMIT-sized chunks; requests.

``wire_specs`` turns what ``Client.submit`` accepts (store ``JobSpec``s, plain dicts,
wire ``JobSpec``s, or a sweep spec expanded into one spec per trial) into
``protocol.JobSpec``s, checking each one before anything is sent. ``chunks`` cuts them
into SUBMIT frames of at most ``MAX_SPECS_PER_SUBMIT`` specs and at most
``MAX_FRAME_BYTES``, each with an idempotency key derived from the caller's, so a
retried submit of the same specs maps to the same keys and never duplicates a job. The
first chunks are smaller (``FIRST_CHUNK``, doubling): the coordinator stores and
dispatches the first jobs of a big submit while the rest are on their way.

``derive_code_version`` is the default code version of a sweep without one: a short
hash of the entrypoint module's source file, so editing ``train.py`` changes every
trial's content hash and the result cache trains anew.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import os
import re
import sys
import uuid
from collections.abc import Iterable, Mapping, Sequence
from importlib.machinery import PathFinder
from pathlib import Path
from typing import Any, Final

from ..ml.spec import SweepSpec
from . import protocol
from ._client_errors import BadRequest, BadSpec
from ._limits import MAX_FRAME_BYTES, MAX_ID_LEN, MAX_SPECS_PER_SUBMIT
from .store import InvalidSpecError
from .store import JobSpec as StoreJobSpec

__all__ = (
    "FIRST_CHUNK",
    "SubmitChunk",
    "chunks",
    "derive_code_version",
    "encoded",
    "is_id",
    "sized_specs",
    "spec_size",
    "sweep_id_for",
    "sweep_key",
    "trial_job",
    "wire_specs",
    "with_code_version",
)

_ID: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:/@+=-]{0,127}\Z")
_MAX_KEY_LEN: Final = 256

FIRST_CHUNK: Final = 125
"""Specs in a big submit's first SUBMIT; each next one carries twice as many, up to
``MAX_SPECS_PER_SUBMIT``. A 1,000-spec frame takes the coordinator tens of milliseconds
to check and store before its first job can be dispatched."""


# -- specs ----------------------------------------------------------------------------


def wire_specs(specs: Any) -> list[protocol.JobSpec]:
    """Every spec in wire form; ``BadSpec`` (naming the spec's index and key) for the
    first one that cannot be sent. A ``SweepSpec`` gives one spec per trial, in order."""
    return sized_specs(specs)[0]


def sized_specs(specs: Any) -> tuple[list[protocol.JobSpec], list[int]]:
    """``wire_specs`` and each one's ``spec_size`` (both from one encoding per spec)."""
    if isinstance(specs, SweepSpec):
        spec = with_code_version(specs)
        where = ((trial_job(spec, t.params), f"trial {t.index}") for t in spec.iter_trials())
    else:
        if isinstance(specs, StoreJobSpec | protocol.JobSpec | Mapping):
            specs = [specs]
        if isinstance(specs, str | bytes) or not isinstance(specs, Iterable):
            raise BadSpec(
                "submit() takes a SweepSpec, a job spec, or a list of job specs (store.JobSpec,"
                f" protocol.JobSpec or dicts), got {type(specs).__name__}"
            )
        where = ((_one(spec, f"specs[{i}]"), f"specs[{i}]") for i, spec in enumerate(specs))
    out: list[protocol.JobSpec] = []
    sizes: list[int] = []
    for job, name in where:
        sizes.append(spec_size(job, name))
        out.append(job)
    if not out:
        raise BadSpec("submit() needs at least one job spec")
    return out, sizes


def with_code_version(spec: SweepSpec) -> SweepSpec:
    """``spec`` with the derived code version when it names none (so its trials' hashes
    equal the store's content hashes)."""
    if spec.code_version is not None:
        return spec
    return dataclasses.replace(spec, code_version=derive_code_version(spec.entrypoint) or "")


def trial_job(spec: SweepSpec, params: dict[str, Any]) -> protocol.JobSpec:
    """The wire spec of one trial of ``spec`` (given its code version: see
    ``with_code_version``) with ``params``, unchecked: ``Client.submit`` checks it."""
    res = spec.resources
    return protocol.JobSpec(
        entrypoint=spec.entrypoint,
        params=params,
        resources=protocol.Resources.of(res.gpus, res.cpus, res.memory_mb),
        timeout_s=spec.timeout_s,
        max_retries=spec.max_retries,
        priority=spec.priority,
        isolation=spec.isolation,
        code_version=spec.code_version or "",
        team=spec.team,
        value=spec.value,
    )


def _one(spec: Any, where: str) -> protocol.JobSpec:
    """``spec`` as a wire spec, not yet checked against the protocol."""
    if isinstance(spec, protocol.JobSpec):
        return spec
    if isinstance(spec, Mapping):
        try:
            spec = StoreJobSpec.from_dict(spec)
        except InvalidSpecError as exc:
            raise BadSpec(f"{where}: {exc}") from None
    if not isinstance(spec, StoreJobSpec):
        raise BadSpec(
            f"{where}: expected a store.JobSpec, protocol.JobSpec or dict, got "
            f"{type(spec).__name__}"
        )
    res = spec.resources
    return protocol.JobSpec(
        entrypoint=spec.entrypoint,
        params=spec.params,
        resources=protocol.Resources.of(res.gpus, res.cpus, res.memory_mb),
        timeout_s=spec.timeout_s,
        max_retries=spec.max_retries,
        priority=spec.priority,
        isolation=spec.isolation,
        code_version=spec.code_version,
        team=spec.team,
        value=spec.value,
    )


def spec_size(job: protocol.JobSpec, where: str = "spec") -> int:
    """The bytes ``job`` adds to a SUBMIT frame; ``BadSpec`` (with the protocol's reason,
    under ``where``) if no SUBMIT can carry it."""
    try:
        frame = protocol.Submit(request_id="check", idempotency_key="k", specs=(job,))
        return len(protocol.encode(frame)) - _overheads()[0]
    except protocol.ProtocolError as exc:
        reason = exc.message.replace("SUBMIT.specs[0].", "").replace("SUBMIT.specs[0]", "spec")
        raise BadSpec(f"{where}: {reason}") from None


@functools.cache
def _overheads() -> tuple[int, int]:
    """(what a one-spec check frame has besides its spec, the most a SUBMIT can have
    besides its specs): a spec encodes to the same bytes wherever it is in the array."""
    job = protocol.JobSpec("a.b:c")

    def size(*specs: protocol.JobSpec, long: bool = False) -> int:
        if long:  # the longest request id, key and sweep id
            frame = protocol.Submit("r" * MAX_ID_LEN, "k" * _MAX_KEY_LEN, specs, "s" * MAX_ID_LEN)
        else:
            frame = protocol.Submit(request_id="check", idempotency_key="k", specs=specs)
        return len(protocol.encode(frame))

    spec = size(job, job) - size(job)
    # msgpack's array header grows from 1 byte (up to 15 items) to 3, then to 5.
    return size(job) - spec, size(job, long=True) - spec - 1 + 5


def encoded(frame: Any) -> bytes:
    """``protocol.encode(frame)`` for a request; ``BadRequest`` naming the field it
    refuses (a malformed job id, say), so nothing malformed is ever sent."""
    try:
        return protocol.encode(frame)
    except protocol.ProtocolError as exc:
        raise BadRequest(f"cannot send this request: {exc.message}") from None


# -- chunks ---------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class SubmitChunk:
    """One SUBMIT's worth of specs: ``start`` is the index of its first spec."""

    start: int
    specs: tuple[protocol.JobSpec, ...]
    idempotency_key: str


def chunks(
    specs: Sequence[protocol.JobSpec],
    key: str,
    *,
    sizes: Sequence[int] | None = None,
    limit: int = MAX_SPECS_PER_SUBMIT,
    first: int = FIRST_CHUNK,
    max_bytes: int = MAX_FRAME_BYTES,
) -> list[SubmitChunk]:
    """Cut ``specs`` into chunks of ``first``, then twice as many each, up to ``limit``
    specs, and never more than a SUBMIT of ``max_bytes`` carries (``sizes``: each spec's
    ``spec_size``, computed when not given). One chunk keeps ``key``; several get
    ``key#START`` each (same specs, same keys: a retry is recognised chunk by chunk)."""
    if sizes is None:
        sizes = [spec_size(spec, f"specs[{i}]") for i, spec in enumerate(specs)]
    room = max_bytes - _overheads()[1]
    bounds: list[tuple[int, int]] = []
    start, count = 0, max(1, min(first, limit))
    while start < len(specs):
        end, used = start, 0
        while end < len(specs) and end - start < count and used + sizes[end] <= room:
            used += sizes[end]
            end += 1
        if end == start:
            raise BadSpec(f"specs[{start}]: too large for one SUBMIT frame ({max_bytes} bytes)")
        bounds.append((start, end))
        start, count = end, min(count * 2, limit)
    if len(bounds) == 1:
        return [SubmitChunk(0, tuple(specs), key)]
    return [SubmitChunk(lo, tuple(specs[lo:hi]), _derived(key, lo)) for lo, hi in bounds]


def _derived(key: str, start: int) -> str:
    suffix = f"#{start}"
    if len(key) + len(suffix) > _MAX_KEY_LEN:
        key = hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()
    return key + suffix


def sweep_key(name: str) -> str:
    """A fresh idempotency key for one submission of sweep ``name``, usable as its
    sweep id too: ``<name as an id>-<12 random hex digits>``."""
    return f"{_slug(name)}-{uuid.uuid4().hex[:12]}"


def sweep_id_for(key: str, name: str) -> str:
    """The sweep id of a sweep submitted under idempotency ``key``: the key itself when
    it is a valid id, else ``<name as an id>-<hash of the key>`` (the same for a retry)."""
    if is_id(key):
        return key
    digest = hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()[:12]
    return f"{_slug(name)}-{digest}"


def _slug(name: str) -> str:
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-._")[:60] or "sweep"
    return slug if slug[0].isalnum() else "s" + slug


def is_id(text: str) -> bool:
    """Whether ``text`` is a valid protocol id (a sweep id, a job id)."""
    return bool(_ID.match(text))


# -- code version ---------------------------------------------------------------------


def derive_code_version(entrypoint: str) -> str | None:
    """``src:<12 hex digits>``: the SHA-256 of the entrypoint module's source file, found
    as a worker started in this directory would find it (the current directory first,
    then ``sys.path``) without importing it; None when there is no such ``.py`` file."""
    module = entrypoint.partition(":")[0]
    path = module_source(module, [os.getcwd(), *(p or os.getcwd() for p in sys.path)])
    if path is None:
        return None
    try:
        data = path.read_bytes()
    except OSError:
        return None
    return "src:" + hashlib.sha256(data).hexdigest()[:12]


def module_source(module: str, search: list[str]) -> Path | None:
    """The ``.py`` file of the dotted ``module`` on ``search``, or None; packages on the
    way are located, never executed."""
    path: list[str] | None = search
    spec = None
    parts = module.split(".")
    for depth, part in enumerate(parts):
        try:
            spec = PathFinder.find_spec(part, path)
        except (ImportError, ValueError, OSError):
            return None
        if spec is None:
            return None
        if depth < len(parts) - 1:
            locations = spec.submodule_search_locations
            if not locations:
                return None
            path = list(locations)
    origin = None if spec is None else spec.origin
    if not origin or not origin.endswith(".py"):
        return None
    return Path(origin)
