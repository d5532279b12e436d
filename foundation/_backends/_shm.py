"""``SharedMemoryBackend``: one registry table shared by the OS processes of one host.

A node agent and its GPU workers, or several runtimes on one machine, register actors in
one fixed-capacity table in ``multiprocessing.shared_memory`` and look each other up
without a broker: reads are lock-free (a sequence lock per slot), writes are serialised
by a lock file's ``flock`` and journaled, so a writer killed mid-write leaves the table
consistent. Entries carry their owner OS process; entries of a dead owner are invisible
to lookups and reclaimed by the next writer that meets them or by ``reclaim()``.

Keys are ``str`` (stored as UTF-8) or anything ``foundation.codec`` encodes (ints,
bytes, tuples ...); metadata is codec-encoded. Both have per-table size limits
(``key_max``/``meta_max`` bytes); larger values raise ``ValueTooLarge``, a full table
``RegistryFull``. See docs/registry.md for the layout and the guarantees.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import time
import zlib
from collections.abc import Hashable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .._exceptions import AlreadyRegistered, RegistryFull
from .._pid import Pid
from .._ref import ActorRef
from ..abc import Keys, MatchSpec, RegistryBackend, matches
from . import _shm_table as T
from ._liveness import Liveness, Owner
from ._liveness import self_owner as lease_self
from ._shm_codec import STR, EntryCodec
from ._shm_open import check_params, open_table

if TYPE_CHECKING:
    from multiprocessing.shared_memory import SharedMemory

_MODES = {"unique": T.KEYS_UNIQUE, "duplicate": T.KEYS_DUPLICATE}
_MODE_NAMES = {v: k for k, v in _MODES.items()}
_RETRIES = 100_000
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


class SharedMemoryBackend(RegistryBackend):
    """A registry table in shared memory, created by one process, attached by others.

    Args:
        name: the segment name other processes attach by (default: a random one; read
            it back from ``.name``).
        create: True creates (``FileExistsError`` if a live creator holds the name),
            False attaches (``FileNotFoundError`` if absent), None does whichever
            applies. A table whose creator died is adopted by the next one to open it.
        capacity: most entries the table holds (default 4096); creation only.
        key_max: most bytes of an encoded key (default 128); creation only.
        meta_max: most bytes of encoded metadata (default 256); creation only.
        liveness_interval: seconds a foreign owner found alive is trusted before its
            next check (lookups hide a dead owner's entries within this delay).
        lock_path: the writer lock file (default: in the temp directory, by name).

    The creator unlinks the segment and the lock file in ``close()``.
    """

    def __init__(
        self,
        name: str | None = None,
        *,
        create: bool | None = None,
        capacity: int | None = None,
        key_max: int | None = None,
        meta_max: int | None = None,
        liveness_interval: float = 1.0,
        lock_path: str | None = None,
    ) -> None:
        if name is None:
            name = f"mbreg-{secrets.token_hex(6)}"
        if not isinstance(name, str) or not name or "/" in name or len(name) > 200:
            raise ValueError(f"a table name is a non-empty str without '/', got: {name!r}")
        if create not in (True, False, None):
            raise TypeError(f"create must be True, False or None, got: {create!r}")
        for label, value in (("capacity", capacity), ("key_max", key_max),
                             ("meta_max", meta_max)):
            if value is not None and (not isinstance(value, int) or value < 1):
                raise ValueError(f"{label} must be a positive int, got: {value!r}")
        if (key_max is not None and key_max > 65535) or (meta_max is not None and meta_max > 65535):
            raise ValueError("key_max and meta_max are at most 65535 bytes")
        if not liveness_interval > 0:
            raise ValueError(f"liveness_interval must be positive, got: {liveness_interval!r}")
        self.name = name
        self.keys: Keys = "unique"
        self._live = Liveness(liveness_interval)
        self._hot: dict[Any, tuple[ActorRef, int, list[float], int, int]] = {}
        self._gen = -1
        self._refs: dict[tuple[int, int, int], ActorRef] = {}
        self._local: dict[Pid, set[tuple[int, bytes]]] = {}
        self._closed = False
        self._lock = T.WriterLock(lock_path or T.default_lock_path(name))
        try:
            with self._lock.held():
                shm, self.creator = open_table(
                    name, self._live, create, capacity, key_max, meta_max
                )
                self._table = T.Table(shm)
                check_params(self._table, name, capacity, key_max, meta_max)
                self._table.recover()
        except BaseException:
            self._lock.close()
            raise
        self._shm: SharedMemory = shm
        t = self._table
        self._buf = t.buf
        self._slots, self._key_max, self._meta_max = t.slots, t.key_max, t.meta_max
        self._base, self._slot_size = t.base, t.slot_size
        self._enc = EntryCodec(name, t.key_max, t.meta_max)
        if self.creator:
            self.reclaim()

    # -- opening ------------------------------------------------------------------------
    def bind(self, keys: Keys) -> None:
        with self._write():
            mode = self._table.hget(T.H_KEYS)
            if mode == T.KEYS_UNBOUND:
                self._table.hset(T.H_KEYS, _MODES[keys])
            elif mode != _MODES[keys]:
                raise ValueError(
                    f"registry table {self.name!r} holds {_MODE_NAMES[mode]} keys; a "
                    f"registry with keys={keys!r} cannot use it"
                )
        self.keys = keys

    @contextlib.contextmanager
    def _write(self) -> Iterator[T.Table]:
        if self._closed:
            raise RuntimeError(f"registry table {self.name!r} is closed")
        with self._lock.held():
            self._table.recover()
            yield self._table

    def close(self, unlink: bool | None = None) -> None:
        """Detach; the creator (or ``unlink=True``) also removes the segment and lock."""
        if self._closed:
            return
        self._closed = True
        self._hot.clear()
        self._table.close()
        self._buf = memoryview(b"")
        self._shm.close()
        if self.creator if unlink is None else unlink:
            T.unlink_segment(self._shm)
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self._lock.path)
        self._lock.close()

    def __enter__(self) -> SharedMemoryBackend:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else f"capacity={self._table.capacity}"
        return f"<SharedMemoryBackend {self.name!r} {state}>"

    # -- encoding -----------------------------------------------------------------------
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
    def _slot(self, index: int) -> tuple[Any, ...]:
        read = self._table.read_slot
        for _ in range(_RETRIES):
            s = read(index)
            if s is not None:
                return s
        raise RuntimeError(f"registry table {self.name!r}: slot {index} never settled")

    def _probe(self, index: int) -> tuple[int, int, int, int, int]:
        probe = self._table.probe
        for _ in range(_RETRIES):
            p = probe(index)
            if p is not None:
                return p
        raise RuntimeError(f"registry table {self.name!r}: slot {index} never settled")

    def _chain(self, kt: int, kb: bytes) -> Iterator[tuple[int, tuple[Any, ...]]]:
        """Every USED slot holding this key, along its probe chain (a slot is copied
        whole only when its 16-byte head matches the key)."""
        if self._closed:
            raise RuntimeError(f"registry table {self.name!r} is closed")
        h = zlib.crc32(kb, kt)
        klen = len(kb)
        slots = self._slots
        index = h % slots
        for _ in range(slots):
            _, sh, state, skt, sklen = self._probe(index)
            if state == _EMPTY:
                return
            if state == _USED and sh == h and skt == kt and sklen == klen:
                s = self._slot(index)
                if s[2] == _USED and s[1] == h and s[3] == kt and s[11] == kb:
                    yield index, s
            index = index + 1 if index + 1 < slots else 0

    def _free_slot(self, kt: int, kb: bytes) -> tuple[int, bool]:
        """Where a new entry for this key goes: ``(index, was_tombstone)``."""
        slots = self._slots
        index = zlib.crc32(kb, kt) % slots
        for _ in range(slots):
            state = self._probe(index)[2]
            if state != _USED:
                return index, state == T.TOMBSTONE
            index = index + 1 if index + 1 < slots else 0
        raise RegistryFull(f"registry table {self.name!r} has no free slot")

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

    # -- writes (under the lock) ---------------------------------------------------------
    def _is(self, s: tuple[Any, ...], ref: ActorRef) -> bool:
        """Whether slot copy ``s`` is ``ref``'s entry (a local ref: owned by us)."""
        pid = ref.pid
        if s[9] != pid.node or s[10] != pid.serial:
            return False
        return ref._proc is None or s[7] == self._live.me()[0]

    def _fields(self, kt: int, kb: bytes, mb: bytes, ref: ActorRef) -> tuple[Any, ...]:
        me = self._live.me()
        return (zlib.crc32(kb, kt), T.USED, kt, len(kb), len(mb), 0, me[0], me[1],
                ref.pid.node, ref.pid.serial)

    def _remove(self, t: T.Table, index: int) -> None:
        """Delete a USED slot: a tombstone, or empty (with the tombstones before it)
        when the next slot is empty, so probe chains stay short."""
        slots = self._slots
        nxt = index + 1 if index + 1 < slots else 0
        if self._probe(nxt)[2] != _EMPTY:
            t.mark(index, T.TOMBSTONE, -1, +1)
            return
        t.mark(index, T.EMPTY, -1, 0)
        prev = index - 1 if index else slots - 1
        while prev != index and self._probe(prev)[2] == T.TOMBSTONE:
            t.mark(prev, T.EMPTY, 0, -1)
            prev = prev - 1 if prev else slots - 1

    def _insert(self, t: T.Table, kt: int, kb: bytes, mb: bytes, ref: ActorRef) -> None:
        if t.hget(T.H_COUNT) >= t.capacity and not self._reclaim(t):
            raise RegistryFull(
                f"registry table {self.name!r} is full ({t.capacity} entries); "
                "choose a larger capacity when creating it"
            )
        index, was_tomb = self._free_slot(kt, kb)
        t.write_slot(index, self._fields(kt, kb, mb, ref), kb, mb, +1, -1 if was_tomb else 0)
        self._local.setdefault(ref.pid, set()).add((kt, kb))

    def _take_over(self, t: T.Table, index: int, kt: int, kb: bytes, mb: bytes,
                   ref: ActorRef) -> None:
        t.write_slot(index, self._fields(kt, kb, mb, ref), kb, mb, 0, 0)
        t.hset(T.H_RECLAIMED, t.hget(T.H_RECLAIMED) + 1)
        self._local.setdefault(ref.pid, set()).add((kt, kb))

    def register(self, key: Hashable, ref: ActorRef, meta: Any) -> None:
        kt, kb = self._enc.key(key, writing=True)  # type: ignore[misc]
        mb = self._enc.meta(meta)
        with self._write() as t:
            for index, s in self._chain(kt, kb):
                if self.keys == "unique":
                    if self._live.fresh(self._owner(s)):
                        raise AlreadyRegistered(key, self._ref(s[9], s[10], s[7]))
                    self._take_over(t, index, kt, kb, mb, ref)
                    return
                if self._is(s, ref):
                    t.write_slot(index, self._fields(kt, kb, mb, ref), kb, mb, 0, 0)
                    return
            self._insert(t, kt, kb, mb, ref)

    def lookup_or_register(self, key: Hashable, ref: ActorRef, meta: Any) -> tuple[ActorRef, bool]:
        if self.keys != "unique":
            raise TypeError("lookup_or_register needs a registry with unique keys")
        kt, kb = self._enc.key(key, writing=True)  # type: ignore[misc]
        mb = self._enc.meta(meta)
        with self._write() as t:
            for index, s in self._chain(kt, kb):
                if self._live.fresh(self._owner(s)):
                    return self._ref(s[9], s[10], s[7]), False
                self._take_over(t, index, kt, kb, mb, ref)
                return ref, True
            self._insert(t, kt, kb, mb, ref)
        return ref, True

    def unregister(self, key: Hashable, ref: ActorRef) -> bool:
        found = self._enc.key(key, writing=False)
        if found is None:
            return False
        with self._write() as t:
            for index, s in self._chain(*found):
                if self._is(s, ref):
                    self._remove(t, index)
                    self._forget_local(ref.pid, found)
                    return True
        return False

    def _forget_local(self, pid: Pid, kk: tuple[int, bytes]) -> None:
        keys = self._local.get(pid)
        if keys is not None:
            keys.discard(kk)
            if not keys:
                del self._local[pid]

    def unregister_ref(self, ref: ActorRef) -> list[Hashable]:
        held = self._local.pop(ref.pid, None)
        if not held or self._closed:
            return []
        removed: list[Hashable] = []
        with self._write() as t:
            for kt, kb in held:
                for index, s in self._chain(kt, kb):
                    if self._is(s, ref):
                        self._remove(t, index)
                        removed.append(self._enc.decode_key(kt, kb))
                        break
        return removed

    def update_meta(self, key: Hashable, ref: ActorRef, meta: Any) -> bool:
        found = self._enc.key(key, writing=False)
        if found is None:
            return False
        mb = self._enc.meta(meta)
        kt, kb = found
        with self._write() as t:
            for index, s in self._chain(kt, kb):
                if self._is(s, ref):
                    fields = (*s[1:5], len(mb), *s[6:11])
                    t.write_slot(index, fields, kb, mb, 0, 0)
                    return True
        return False

    def reclaim(self) -> int:
        """Remove every entry whose owner OS process has died; the number removed."""
        with self._write() as t:
            return self._reclaim(t)

    def _reclaim(self, t: T.Table) -> int:
        verdict: dict[Owner, bool] = {}
        removed = 0
        for index, s in list(self._scan()):
            owner = self._owner(s)
            alive = verdict.get(owner)
            if alive is None:
                alive = verdict[owner] = self._live.fresh(owner)
            if not alive:
                self._remove(t, index)
                removed += 1
        if removed:
            t.hset(T.H_RECLAIMED, t.hget(T.H_RECLAIMED) + removed)
        return removed
