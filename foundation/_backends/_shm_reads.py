"""The read side of ``SharedMemoryBackend``: lock-free lookups, scans and statistics.

Every read copies what it needs from a slot and keeps it only if the slot's sequence
number was even and unchanged (``Table.read_slot`` / ``Table.probe`` retry otherwise). A
``whereis`` of a str or bytes key is cached per process as ``(ref, generation, lease,
offset, seq)`` and revalidated with one 8-byte read: the table's write generation, or the
slot's sequence number after a write.
"""

from __future__ import annotations

import time
import zlib
from collections.abc import Callable, Hashable, Iterator
from dataclasses import dataclass
from typing import Any

from .._pid import Pid
from .._ref import ActorRef
from ..abc import Keys, MatchSpec, RegistryBackend, matches
from . import _shm_table as T
from ._liveness import Liveness, Owner
from ._liveness import self_owner as lease_self
from ._shm_codec import STR, EntryCodec

RETRIES = 100_000
_unpack_u64 = T.U64.unpack_from
_unpack_probe = T.SLOT_PROBE.unpack_from
_unpack_tail = T.SLOT_TAIL.unpack_from
_USED, _EMPTY = T.USED, T.EMPTY
_H_GEN = T.H_GEN
_monotonic = time.monotonic


@dataclass(frozen=True, slots=True)
class SharedMemoryStatistics:
    """A snapshot of a ``SharedMemoryBackend`` table (taken with one scan)."""

    name: str
    keys: str
    entries: int
    distinct_keys: int
    owners: int
    owner_processes: int
    capacity: int
    slots: int
    tombstones: int
    key_max: int
    meta_max: int
    writes: int
    reclaimed: int
    recoveries: int


class SharedTableReads(RegistryBackend):
    """Reads of a shared registry table; ``SharedMemoryBackend`` opens it and writes."""

    name: str
    keys: Keys
    _closed: bool
    _table: T.Table
    _buf: memoryview
    _base: int
    _slot_size: int
    _slots: int
    _key_max: int
    _enc: EntryCodec
    _live: Liveness
    _hot: dict[Any, tuple[ActorRef, int, list[float], int, int]]
    _refs: dict[tuple[int, int, int], ActorRef]
    _gen: int
    _local: dict[Pid, set[tuple[int, bytes]]]

    def _ref(self, node: int, serial: int, owner_pid: int) -> ActorRef:
        if owner_pid == self._live.me()[0]:
            return ActorRef._from_pid(Pid._create(node, serial))
        refs = self._refs
        ref = refs.get((node, serial, owner_pid))
        if ref is None:
            if len(refs) > 2 * self._slots + 1024:
                refs.clear()
            ref = ActorRef._create(Pid._create(node, serial), None)
            refs[(node, serial, owner_pid)] = ref
        return ref

    # -- probing --------------------------------------------------------------------------
    def _settled(self, read: Callable[[int], Any], index: int) -> Any:
        """``read(index)`` retried until it returns a consistent copy (not None)."""
        for _ in range(RETRIES):
            copy = read(index)
            if copy is not None:
                return copy
        raise RuntimeError(f"registry table {self.name!r}: slot {index} never settled")

    def _slot(self, index: int) -> tuple[Any, ...]:
        """The whole slot (``Table.read_slot``), consistent."""
        slot: tuple[Any, ...] = self._settled(self._table.read_slot, index)
        return slot

    def _probe(self, index: int) -> tuple[int, int, int, int, int]:
        """The slot's 16-byte head (``Table.probe``), consistent."""
        head: tuple[int, int, int, int, int] = self._settled(self._table.probe, index)
        return head

    def _locate(
        self, kt: int, kb: bytes
    ) -> tuple[list[tuple[int, tuple[Any, ...]]], tuple[int, bool] | None]:
        """One walk of this key's probe chain: the USED slots holding the key (each copied
        whole only when its 16-byte head matches), and where a new entry for it would go,
        ``(index, was_tombstone)``: the first tombstone, else the empty slot ending the
        chain (None when the table has neither)."""
        if self._closed:
            raise RuntimeError(f"registry table {self.name!r} is closed")
        h = zlib.crc32(kb, kt)
        klen = len(kb)
        slots = self._slots
        index = h % slots
        found: list[tuple[int, tuple[Any, ...]]] = []
        free: tuple[int, bool] | None = None
        for _ in range(slots):
            _, sh, state, skt, sklen = self._probe(index)
            if state != _USED and free is None:
                free = (index, state == T.TOMBSTONE)
            if state == _EMPTY:
                break
            if state == _USED and sh == h and skt == kt and sklen == klen:
                s = self._slot(index)
                if s[2] == _USED and s[1] == h and s[3] == kt and s[11] == kb:
                    found.append((index, s))
            index = index + 1 if index + 1 < slots else 0
        return found, free

    def _chain(self, kt: int, kb: bytes) -> list[tuple[int, tuple[Any, ...]]]:
        """Every USED slot holding this key, along its probe chain."""
        return self._locate(kt, kb)[0]

    @staticmethod
    def _owner(s: tuple[Any, ...]) -> Owner:
        return (s[7], s[8])

    # -- reads (lock-free) --------------------------------------------------------------
    def whereis(self, key: Hashable) -> ActorRef | None:
        cls = key.__class__
        cacheable = cls is str or cls is bytes
        if cacheable:
            hot = self._hot.get(key)
            if hot is not None:
                # ``(ref, generation, lease, offset, seq)``: valid while no write has
                # started since it was read (the header's generation, one line every
                # reader keeps in cache, is unchanged), else while its slot's sequence
                # number is; and while its owner's lease runs. The generation and lease
                # objects are shared by all cached entries, so a hit reads few lines.
                buf = self._buf
                if (
                    _unpack_u64(buf, _H_GEN)[0] == hot[1]
                    or _unpack_u64(buf, hot[3])[0] == hot[4]
                ) and hot[2][1] > _monotonic():
                    return hot[0]
        if cls is str and not self._closed:
            try:
                kb, kt = key.encode(), STR  # type: ignore[attr-defined]
            except UnicodeEncodeError:
                self._enc.key(key, writing=True)  # raises the clear TypeError
                raise
            if len(kb) > self._key_max:
                return None
        else:
            if self._closed:  # (a closed str key lands here too)
                raise RuntimeError(f"registry table {self.name!r} is closed")
            found = self._enc.key(key, writing=False)
            if found is None:
                return None
            kt, kb = found
        # The probe loop inlined (no generator, a 16-byte read per probed slot): this is
        # what a first lookup from another process costs, so it is kept to few C calls.
        h = zlib.crc32(kb, kt)
        buf, base, size, slots = self._buf, self._base, self._slot_size, self._slots
        klen = len(kb)
        index = h % slots
        gen = _unpack_u64(buf, _H_GEN)[0]
        for _ in range(slots):
            off = base + index * size
            seq, sh, state, skt, sklen = _unpack_probe(buf, off)
            if seq & 1:
                return self._whereis_settled(kt, kb)  # a writer is here: the slow way
            if state == _USED and sh == h and skt == kt and sklen == klen:
                _, _, opid, ostart, node, serial = _unpack_tail(buf, off + 16)
                same = buf[off + 48 : off + 48 + klen] == kb
                if _unpack_u64(buf, off)[0] != seq:
                    return self._whereis_settled(kt, kb)
                if same:
                    lease = self._live.lease(opid, ostart)
                    if lease is not None:
                        ref = self._ref(node, serial, opid)
                        if cacheable and (ref._proc is not None or opid != lease_self()[0]):
                            self._cache(key, ref, gen, lease, off, seq)
                        return ref
            elif _unpack_u64(buf, off)[0] != seq:  # what was read of this slot is stale
                return self._whereis_settled(kt, kb)
            elif state == _EMPTY:
                return None
            index = index + 1 if index + 1 < slots else 0
        return None

    def _cache(self, key: Any, ref: ActorRef, gen: int, lease: list[float], off: int,
               seq: int) -> None:
        hot = self._hot
        if len(hot) > 2 * self._slots + 1024:
            hot.clear()
        if gen & 1:
            gen = -1  # read while a write was under way: never matches
        elif gen == self._gen:
            gen = self._gen  # one shared int object for every entry of this generation
        else:
            self._gen = gen
        hot[key] = (ref, gen, lease, off, seq)

    def _whereis_settled(self, kt: int, kb: bytes) -> ActorRef | None:
        """``whereis`` through the seqlock-retrying slot reader (a writer was seen)."""
        for _, s in self._chain(kt, kb):
            owner = self._owner(s)
            if self._live.until(*owner):
                return self._ref(s[9], s[10], owner[0])
        return None

    def lookup(self, key: Hashable) -> list[tuple[ActorRef, Any]]:
        found = self._enc.key(key, writing=False)
        if found is None:
            return []
        out = []
        unique = self.keys == "unique"
        for _, s in self._chain(*found):
            owner = self._owner(s)
            if self._live.until(*owner):
                out.append((self._ref(s[9], s[10], owner[0]), self._enc.decode_meta(s[12])))
                if unique:
                    break  # a unique key has one live entry
        return out

    def _scan(self) -> Iterator[tuple[int, tuple[Any, ...]]]:
        if self._closed:
            raise RuntimeError(f"registry table {self.name!r} is closed")
        for index in range(self._slots):
            if self._probe(index)[2] == _USED:
                s = self._slot(index)
                if s[2] == _USED:
                    yield index, s

    def _entries(self) -> Iterator[tuple[tuple[Any, ...], Owner]]:
        for _, s in self._scan():
            owner = self._owner(s)
            if self._live.until(*owner):
                yield s, owner

    def select(self, spec: MatchSpec) -> list[tuple[Hashable, ActorRef, Any]]:
        out: list[tuple[Hashable, ActorRef, Any]] = []
        for s, owner in self._entries():
            key = self._enc.decode_key(s[3], s[11])
            ref = self._ref(s[9], s[10], owner[0])
            meta = self._enc.decode_meta(s[12])
            if matches(spec, key, ref, meta):
                out.append((key, ref, meta))
        return out

    def keys_of(self, ref: ActorRef) -> list[Hashable]:
        pid = ref.pid
        mine = ref._proc is not None
        me = self._live.me()[0]
        return [
            self._enc.decode_key(s[3], s[11])
            for s, owner in self._entries()
            if s[9] == pid.node and s[10] == pid.serial and (not mine or owner[0] == me)
        ]

    def holds(self, ref: ActorRef) -> bool:
        """Whether this process registered an entry for ``ref`` that it still holds."""
        return ref.pid in self._local

    def count(self) -> int:
        if self._closed:
            raise RuntimeError(f"registry table {self.name!r} is closed")
        return self._table.counters()[0]

    def statistics(self) -> SharedMemoryStatistics:
        keys: set[tuple[int, bytes]] = set()
        refs: set[tuple[int, int, int]] = set()
        procs: set[Owner] = set()
        entries = 0
        for s, owner in self._entries():
            entries += 1
            keys.add((s[3], s[11]))
            refs.add((s[9], s[10], owner[0]))
            procs.add(owner)
        t = self._table
        return SharedMemoryStatistics(
            name=self.name, keys=self.keys, entries=entries, distinct_keys=len(keys),
            owners=len(refs), owner_processes=len(procs), capacity=t.capacity,
            slots=t.slots, tombstones=t.counters()[1], key_max=t.key_max,
            meta_max=t.meta_max, writes=t.hget(T.H_WRITES),
            reclaimed=t.hget(T.H_RECLAIMED), recoveries=t.hget(T.H_RECOVERIES),
        )
