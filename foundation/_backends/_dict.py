"""``DictBackend``: the default in-process registry storage.

``whereis`` is the bound ``get`` of a plain dict, so a lookup costs what a dict lookup
costs; metadata and the reverse index (pid -> keys) live in separate dicts that only
writes touch. Metadata fields named in ``index`` get a value -> entries index, so a
``select({"capability": "gpu"})`` reads one bucket instead of scanning every entry.
"""

from __future__ import annotations

import contextlib
from collections.abc import Hashable, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .._exceptions import AlreadyRegistered
from ..abc import Keys, MatchSpec, RegistryBackend, matches

if TYPE_CHECKING:
    from .._ref import ActorRef


@dataclass(frozen=True, slots=True)
class DictBackendStatistics:
    """A snapshot of a ``DictBackend``."""

    keys: str
    entries: int
    distinct_keys: int
    owners: int
    indexed_fields: tuple[str, ...] = ()


_Entry = tuple[Hashable, "ActorRef"]


class DictBackend(RegistryBackend):
    """Registry entries in Python dicts (unique or duplicate keys).

    Args:
        index: metadata fields to index for ``select`` (mapping specs that name an indexed
            field with a hashable value read that field's bucket, not every entry).
    """

    def __init__(self, index: Iterable[str] = ()) -> None:
        if isinstance(index, str):
            index = (index,)
        fields = tuple(index)
        for field in fields:
            if not isinstance(field, str):
                raise TypeError(f"index fields are metadata field names (str), got: {field!r}")
        self.keys: Keys = "unique"
        self._fields = fields
        # field -> value -> {(key, ref): None} (insertion-ordered set of entries)
        self._idx: dict[str, dict[Any, dict[_Entry, None]]] = {f: {} for f in fields}
        self._refs: dict[Hashable, ActorRef] = {}
        self._meta: dict[Hashable, Any] = {}
        self._dups: dict[Hashable, dict[ActorRef, Any]] = {}
        self._by_ref: dict[ActorRef, set[Hashable]] = {}
        self._entries = 0
        self.whereis = self._refs.get  # type: ignore[method-assign, assignment]

    def bind(self, keys: Keys) -> None:
        if self._entries:
            raise RuntimeError("cannot change the key mode of a non-empty backend")
        self.keys = keys

    def whereis(self, key: Hashable) -> ActorRef | None:  # replaced per instance
        return self._refs.get(key)

    def _index(self, key: Hashable, ref: ActorRef) -> None:
        keys = self._by_ref.get(ref)
        if keys is None:
            self._by_ref[ref] = {key}
        else:
            keys.add(key)
        self._entries += 1

    def _unindex(self, key: Hashable, ref: ActorRef) -> None:
        keys = self._by_ref.get(ref)
        if keys is not None:
            keys.discard(key)
            if not keys:
                del self._by_ref[ref]
        self._entries -= 1

    def _idx_add(self, key: Hashable, ref: ActorRef, meta: Any) -> None:
        if isinstance(meta, Mapping):
            for field in self._fields:
                if field in meta:
                    # An unhashable value is left out: it never equals a hashable wanted
                    # value, and a spec with an unhashable value scans.
                    with contextlib.suppress(TypeError):
                        self._idx[field].setdefault(meta[field], {})[(key, ref)] = None

    def _idx_remove(self, key: Hashable, ref: ActorRef, meta: Any) -> None:
        if isinstance(meta, Mapping):
            for field in self._fields:
                if field in meta:
                    buckets = self._idx[field]
                    try:
                        bucket = buckets.get(meta[field])
                    except TypeError:
                        continue
                    if bucket is not None:
                        bucket.pop((key, ref), None)
                        if not bucket:
                            del buckets[meta[field]]

    def register(self, key: Hashable, ref: ActorRef, meta: Any) -> None:
        if self.keys == "unique":
            owner = self._refs.get(key)
            if owner is not None:
                raise AlreadyRegistered(key, owner)
            self._refs[key] = ref
            self._meta[key] = meta
        else:
            entries = self._dups.setdefault(key, {})
            if ref in entries:
                if self._fields:
                    self._idx_remove(key, ref, entries[ref])
                    self._idx_add(key, ref, meta)
                entries[ref] = meta
                return
            entries[ref] = meta
        if self._fields:
            self._idx_add(key, ref, meta)
        self._index(key, ref)

    def lookup_or_register(self, key: Hashable, ref: ActorRef, meta: Any) -> tuple[ActorRef, bool]:
        if self.keys != "unique":
            raise TypeError("lookup_or_register needs a registry with unique keys")
        owner = self._refs.get(key)
        if owner is not None:
            return owner, False
        self.register(key, ref, meta)
        return ref, True

    def unregister(self, key: Hashable, ref: ActorRef) -> bool:
        if self.keys == "unique":
            if self._refs.get(key) != ref:
                return False
            del self._refs[key]
            meta = self._meta.pop(key)
        else:
            entries = self._dups.get(key)
            if entries is None or ref not in entries:
                return False
            meta = entries.pop(ref)
            if not entries:
                del self._dups[key]
        if self._fields:
            self._idx_remove(key, ref, meta)
        self._unindex(key, ref)
        return True

    def unregister_ref(self, ref: ActorRef) -> list[Hashable]:
        # On every exit of a registered actor: one pop of its key set, no per-key
        # re-validation (this halved the registry's share of an exit).
        keys = self._by_ref.pop(ref, None)
        if not keys:
            return []
        indexed = bool(self._fields)
        if self.keys == "unique":
            refs, metas = self._refs, self._meta
            for key in keys:
                del refs[key]
                meta = metas.pop(key)
                if indexed:
                    self._idx_remove(key, ref, meta)
        else:
            dups = self._dups
            for key in keys:
                entries = dups[key]
                meta = entries.pop(ref)
                if not entries:
                    del dups[key]
                if indexed:
                    self._idx_remove(key, ref, meta)
        self._entries -= len(keys)
        return list(keys)

    def lookup(self, key: Hashable) -> list[tuple[ActorRef, Any]]:
        if self.keys == "unique":
            ref = self._refs.get(key)
            return [] if ref is None else [(ref, self._meta[key])]
        return list(self._dups.get(key, {}).items())

    def keys_of(self, ref: ActorRef) -> list[Hashable]:
        return list(self._by_ref.get(ref, ()))

    def holds(self, ref: ActorRef) -> bool:
        return ref in self._by_ref

    def update_meta(self, key: Hashable, ref: ActorRef, meta: Any) -> bool:
        if self.keys == "unique":
            if self._refs.get(key) != ref:
                return False
            old = self._meta[key]
            self._meta[key] = meta
        else:
            entries = self._dups.get(key)
            if entries is None or ref not in entries:
                return False
            old = entries[ref]
            entries[ref] = meta
        if self._fields:
            self._idx_remove(key, ref, old)
            self._idx_add(key, ref, meta)
        return True

    def _bucket(self, spec: MatchSpec) -> dict[_Entry, None] | None:
        """The smallest index bucket that holds every match of ``spec``, if one applies."""
        if not self._fields or spec is None or callable(spec):
            return None
        best: dict[_Entry, None] | None = None
        for field, want in spec.items():
            buckets = self._idx.get(field)
            if buckets is None:
                continue
            try:
                bucket = buckets.get(want, {})
            except TypeError:
                continue
            if best is None or len(bucket) < len(best):
                best = bucket
        return best

    def select(self, spec: MatchSpec) -> list[tuple[Hashable, ActorRef, Any]]:
        out: list[tuple[Hashable, ActorRef, Any]] = []
        bucket = self._bucket(spec)
        if bucket is not None:
            for key, ref in bucket:
                meta = self._meta[key] if self.keys == "unique" else self._dups[key][ref]
                if matches(spec, key, ref, meta):
                    out.append((key, ref, meta))
            return out
        if self.keys == "unique":
            meta = self._meta
            for key, ref in self._refs.items():
                if matches(spec, key, ref, meta[key]):
                    out.append((key, ref, meta[key]))
        else:
            for key, entries in self._dups.items():
                for ref, m in entries.items():
                    if matches(spec, key, ref, m):
                        out.append((key, ref, m))
        return out

    def count(self) -> int:
        return self._entries

    def statistics(self) -> DictBackendStatistics:
        distinct = len(self._refs) if self.keys == "unique" else len(self._dups)
        return DictBackendStatistics(
            self.keys, self._entries, distinct, len(self._by_ref), self._fields
        )
